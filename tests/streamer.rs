//! The streamer's contract (docs/streamer-api.md) against the real binary,
//! with a small example streamer written from that document alone: it
//! "streams" over TLS to a paired punktfunk app, asks `streamer.sock` to
//! `watch` the client's certificate, cuts the stream off when access ends
//! (removed, disabled, expired) or `view` and `launch` are gone, and takes a
//! key event only while the grant has `input_kbd`. Each cut-off's delay is
//! printed (the closing note's figures); the test holds it to a bound no
//! working streamer comes near.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::moonlight;
use common::raw_native::{self, Raw};
use common::{Console, Host, BIN};
use openssl::pkey::PKey;
use openssl::ssl::{Ssl, SslAcceptor, SslContext, SslMethod, SslStream, SslVerifyMode, SslVersion};
use openssl::x509::X509;
use punktfunk_certs::Identity;
use serde_json::{json, Value};

/// The example streamer: what a streamer does with the contract, and
/// nothing of a real stream.
mod example {
    use super::*;

    /// One answer line of `streamer.sock`: what the device may do, or why
    /// not (`Err(code)`).
    pub fn access(line: &str) -> Result<Vec<String>, String> {
        let v: Value = serde_json::from_str(line).expect("a JSON line");
        if let Some(ok) = v.get("ok") {
            let names = ok["permissions"].as_array().expect("permissions");
            return Ok(names
                .iter()
                .map(|n| n.as_str().unwrap().to_owned())
                .collect());
        }
        Err(v["error"]["code"].as_str().expect("a code").to_owned())
    }

    /// Listens on an ephemeral loopback port with the host's certificate,
    /// taking any client certificate (its fingerprint is the identity).
    pub fn start(state_dir: &Path) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let cert = X509::from_pem(&std::fs::read(state_dir.join("host.crt")).unwrap()).unwrap();
        let key = PKey::private_key_from_pem(&std::fs::read(state_dir.join("host.key")).unwrap())
            .unwrap();
        let mut b = SslAcceptor::mozilla_modern_v5(SslMethod::tls_server()).unwrap();
        b.set_certificate(&cert).unwrap();
        b.set_private_key(&key).unwrap();
        b.set_verify_callback(
            SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
            |_, _| true,
        );
        let acceptor = Arc::new(b.build());
        let socket = state_dir.join("streamer.sock");
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let (acceptor, socket) = (acceptor.clone(), socket.clone());
                std::thread::spawn(move || {
                    if let Ok(tls) = acceptor.accept(tcp) {
                        serve(tls, &socket);
                    }
                });
            }
        });
        addr
    }

    fn serve(mut tls: SslStream<TcpStream>, socket: &PathBuf) {
        let der = tls.ssl().peer_certificate().unwrap().to_der().unwrap();
        let fp = hex::encode(openssl::sha::sha256(&der));
        let mut host = UnixStream::connect(socket).expect("streamer.sock");
        let request = json!({"op": "watch", "fingerprint": fp, "door": "native"});
        writeln!(host, "{request}").unwrap();
        let mut lines = BufReader::new(host.try_clone().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let grant = match access(&first) {
            Ok(permissions) => permissions,
            Err(code) => {
                let _ = writeln!(tls, "refused {code}");
                let _ = tls.shutdown();
                return;
            }
        };
        let grant = Arc::new(Mutex::new(grant));
        let tcp = tls.get_ref().try_clone().unwrap();
        // The watch: each line replaces the grant; an end of access, or
        // neither `view` nor `launch`, cuts the stream off at once.
        {
            let grant = grant.clone();
            std::thread::spawn(move || {
                for line in lines {
                    let Ok(line) = line else { break };
                    match access(&line) {
                        Ok(p) if p.iter().any(|n| n == "view" || n == "launch") => {
                            *grant.lock().unwrap() = p;
                        }
                        _ => {
                            let _ = tcp.shutdown(std::net::Shutdown::Both);
                            break;
                        }
                    }
                }
                drop(host);
            });
        }
        if writeln!(tls, "streaming").is_err() {
            return;
        }
        let mut buf = [0u8; 256];
        loop {
            let n = match tls.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let line = String::from_utf8_lossy(&buf[..n]);
            if line.starts_with("key") {
                let may = grant.lock().unwrap().iter().any(|n| n == "input_kbd");
                let answer = if may { "key accepted" } else { "key refused" };
                if writeln!(tls, "{answer}").is_err() {
                    return;
                }
            }
        }
    }
}

/// The client side: the paired app's certificate over TLS to the streamer.
struct Viewer {
    tls: BufReader<SslStream<TcpStream>>,
}

impl Viewer {
    fn connect(addr: SocketAddr, id: &Identity) -> (Viewer, String) {
        let mut b = SslContext::builder(SslMethod::tls_client()).unwrap();
        b.set_verify(SslVerifyMode::NONE);
        b.set_min_proto_version(Some(SslVersion::TLS1_3)).unwrap();
        b.set_certificate(id.cert()).unwrap();
        b.set_private_key(id.key()).unwrap();
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let tls = Ssl::new(&b.build()).unwrap().connect(tcp).unwrap();
        let mut viewer = Viewer {
            tls: BufReader::new(tls),
        };
        let first = viewer.line().expect("the streamer's first line");
        (viewer, first)
    }

    fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.tls.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end().to_owned()),
        }
    }

    fn key(&mut self) -> Option<String> {
        writeln!(self.tls.get_mut(), "key a").ok()?;
        self.line()
    }

    /// Waits for the stream to be cut off: how long after `since`.
    fn cut_off_after(mut self, since: Instant) -> Duration {
        while self.line().is_some() {}
        since.elapsed()
    }
}

fn cli(state_dir: &Path, args: &[&str]) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--state-dir")
        .arg(state_dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
}

/// A native device that knocked and was approved in the console.
fn approved(host: &Host, console: &Console) -> Identity {
    let (mut raw, id, answer) =
        raw_native::knock("127.0.0.11", raw_native::addr(host), "Living Room TV");
    assert_eq!(answer["status"], "approval_pending", "{answer}");
    let pending = moonlight::pending(console, &id.fingerprint().to_string());
    let (status, body) = console.send(
        "POST",
        &format!("/api/pending/{}/approve", pending["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(raw.recv().unwrap()["outcome"], "approved");
    drop::<Raw>(raw);
    id
}

/// Far more than a working streamer takes; the delays are printed.
const BOUND: Duration = Duration::from_secs(3);

#[test]
fn an_example_streamer_cuts_off_at_once_and_drops_keys_the_grant_does_not_allow() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    let state = host.state_dir.clone();
    let id = approved(&host, &console);
    let fp = id.fingerprint().to_string();
    let streamer = example::start(&state);
    let mut delays = Vec::new();

    // Keys while `input_kbd` is granted, none once it is removed.
    let (mut viewer, first) = Viewer::connect(streamer, &id);
    assert_eq!(first, "streaming");
    assert_eq!(viewer.key().as_deref(), Some("key accepted"));
    cli(&state, &["devices", "grant", &fp[..8], "-keyboard"]);
    let since = Instant::now();
    let mut refused = false;
    while since.elapsed() < BOUND {
        if viewer.key().as_deref() == Some("key refused") {
            refused = true;
            break;
        }
    }
    assert!(refused, "a key after `keyboard` was removed");
    delays.push((
        "keyboard removed, from the command's answer to the first key refused",
        since.elapsed(),
    ));

    // Removing `view` and `launch` ends the stream.
    let since = Instant::now();
    cli(&state, &["devices", "grant", &fp[..8], "-view,-launch"]);
    let took = viewer.cut_off_after(since);
    delays.push(("view removed, from the command's start", took));
    cli(&state, &["devices", "grant", &fp[..8], "play"]);

    // Disabled: cut off; a new stream is refused with the reason.
    let (viewer, first) = Viewer::connect(streamer, &id);
    assert_eq!(first, "streaming");
    let since = Instant::now();
    cli(&state, &["devices", "disable", &fp[..8]]);
    delays.push((
        "disabled, from the command's start",
        viewer.cut_off_after(since),
    ));
    assert_eq!(Viewer::connect(streamer, &id).1, "refused disabled");
    cli(&state, &["devices", "enable", &fp[..8]]);

    // Expiry: cut off at its time, by the host's timer alone.
    let (viewer, first) = Viewer::connect(streamer, &id);
    assert_eq!(first, "streaming");
    let at = since_epoch().as_secs() + 2;
    cli(
        &state,
        &["devices", "expire", &fp[..8], "--at", &rfc3339(at)],
    );
    let _ = viewer.cut_off_after(Instant::now());
    let ended = since_epoch();
    let at = Duration::from_secs(at);
    assert!(ended >= at, "cut off {:?} before its time", at - ended);
    delays.push(("expired, after its time", ended - at));
    assert_eq!(Viewer::connect(streamer, &id).1, "refused expired");
    cli(&state, &["devices", "expire", &fp[..8], "--never"]);

    // Revoked: cut off; then unknown.
    let (viewer, first) = Viewer::connect(streamer, &id);
    assert_eq!(first, "streaming");
    let since = Instant::now();
    cli(&state, &["devices", "revoke", &fp[..8]]);
    delays.push((
        "revoked, from the command's start",
        viewer.cut_off_after(since),
    ));
    assert_eq!(Viewer::connect(streamer, &id).1, "refused not_paired");

    for (what, took) in &delays {
        eprintln!("streamer cut-off: {what}: {took:?}");
        assert!(*took < BOUND, "{what}: {took:?}");
    }
}

#[test]
fn the_streamer_socket_answers_authorize_and_refuses_bad_lines_and_strangers() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    let id = approved(&host, &console);
    let socket = host.state_dir.join("streamer.sock");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let ask = |line: &str| -> Value {
        let mut s = UnixStream::connect(&socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(line.as_bytes()).unwrap();
        let mut answer = String::new();
        BufReader::new(s).read_line(&mut answer).unwrap();
        serde_json::from_str(&answer).unwrap_or_else(|_| panic!("{answer:?}"))
    };
    let fp = id.fingerprint().to_string();
    let ok = ask(&format!(
        "{{\"op\":\"authorize\",\"fingerprint\":\"{}\",\"door\":\"native\"}}\n",
        fp.to_uppercase()
    ));
    assert_eq!(ok["ok"]["fingerprint"], fp.as_str(), "{ok}");
    assert_eq!(ok["ok"]["name"], "Living Room TV");
    assert_eq!(
        ok["ok"]["perm"], 0x071F_1F00,
        "the host's first device: Full"
    );
    assert_eq!(ok["ok"]["expires_at"], Value::Null);
    let other_door = ask(&format!(
        "{{\"op\":\"authorize\",\"fingerprint\":\"{fp}\",\"door\":\"gamestream\"}}\n"
    ));
    assert_eq!(other_door["error"]["code"], "not_paired", "{other_door}");
    for bad in [
        "{\"op\":\"authorize\",\"fingerprint\":\"xyz\",\"door\":\"native\"}\n".to_owned(),
        "{\"op\":\"teleport\"}\n".to_owned(),
        "not json\n".to_owned(),
    ] {
        assert_eq!(ask(&bad)["error"]["code"], "bad_request", "{bad}");
    }
    let long = format!("{}\n", "x".repeat(5000));
    assert_eq!(ask(&long)["error"]["code"], "too_large");
    // Several requests on one connection.
    let mut s = UnixStream::connect(&socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut lines = BufReader::new(s.try_clone().unwrap()).lines();
    for _ in 0..3 {
        writeln!(
            s,
            "{{\"op\":\"authorize\",\"fingerprint\":\"{fp}\",\"door\":\"native\"}}"
        )
        .unwrap();
        let line = lines.next().unwrap().unwrap();
        assert!(line.starts_with("{\"ok\""), "{line}");
    }
    // Another user is refused (as root, the tests can be nobody).
    if rustix::process::geteuid().is_root() {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .args(["python3", "-c"])
            .arg(format!(
                "import socket; s=socket.socket(socket.AF_UNIX); s.connect({:?}); print(s.recv(4096).decode())",
                socket.display().to_string()
            ))
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        // The 0700 state dir keeps nobody out before the peer check can.
        assert!(
            said.contains("forbidden") || !out.status.success(),
            "{said} {out:?}"
        );
    }
}

fn since_epoch() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

fn rfc3339(unix: u64) -> String {
    punktfunk_certs::audit::rfc3339(unix)
}
