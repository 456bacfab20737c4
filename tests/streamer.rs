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

/// One request line to `socket`, and the answer line.
fn ask(socket: &Path, line: &str) -> Value {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    writeln!(s, "{line}").unwrap();
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer).unwrap();
    serde_json::from_str(&answer).unwrap_or_else(|_| panic!("{answer:?}"))
}

/// A device that knocked from `src` and was approved with `body` (the
/// grant picker), its connection closed.
fn approved_as(host: &Host, console: &Console, src: &str, body: Value) -> Identity {
    let (mut raw, id, answer) = raw_native::knock(src, raw_native::addr(host), "Guest Tablet");
    assert_eq!(answer["status"], "approval_pending", "{answer}");
    let pending = moonlight::pending(console, &id.fingerprint().to_string());
    let (status, reply) = console.send(
        "POST",
        &format!("/api/pending/{}/approve", pending["id"].as_str().unwrap()),
        Some(body),
    );
    assert_eq!(status, 200, "{reply}");
    assert_eq!(raw.recv().unwrap()["outcome"], "approved");
    id
}

#[test]
fn a_guest_until_its_first_session_ends_loses_access_when_the_streamer_says_so() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    let owner = approved(&host, &console);
    let guest = approved_as(
        &host,
        &console,
        "127.0.0.21",
        json!({"grant": {"may": "watch", "first_session": true}}),
    );
    let socket = host.state_dir.join("streamer.sock");
    let line = |op: &str, id: &Identity| {
        format!(
            "{{\"op\":\"{op}\",\"fingerprint\":\"{}\",\"door\":\"native\"}}",
            id.fingerprint()
        )
    };
    let listed = Command::new(BIN)
        .args(["devices", "list", "--state-dir"])
        .arg(&host.state_dir)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("Watch until its session ends"), "{listed}");
    let device = moonlight::device(&console, &guest.fingerprint().to_string()).unwrap();
    assert_eq!(device["until_first_session"], true, "{device}");
    assert_eq!(device["expires_at"], Value::Null, "{device}");

    // A watch on the guest, as a streamer holds one per stream.
    let mut watch = UnixStream::connect(&socket).unwrap();
    watch
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    writeln!(watch, "{}", line("watch", &guest)).unwrap();
    let mut lines = BufReader::new(watch.try_clone().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("{\"ok\""), "{first}");

    // The owner's session ending changes nothing.
    let still = ask(&socket, &line("session_ended", &owner));
    assert!(still["ok"].is_object(), "{still}");

    // The guest's does: its access ends, and the watch hears it.
    let since = Instant::now();
    let ended = ask(&socket, &line("session_ended", &guest));
    assert_eq!(ended["error"]["code"], "expired", "{ended}");
    let heard = lines.next().unwrap().unwrap();
    eprintln!(
        "first session ended -> watch heard it in {:?}",
        since.elapsed()
    );
    assert!(heard.contains("\"expired\""), "{heard}");
    assert_eq!(
        ask(&socket, &line("authorize", &guest))["error"]["code"],
        "expired"
    );
    let mut raw = Raw::connect("127.0.0.21", raw_native::addr(&host), &guest);
    let refused = raw.hello("Guest Tablet", "connect");
    assert_eq!(refused["code"], "expired", "{refused}");
    // Once: a second report records nothing more.
    ask(&socket, &line("session_ended", &guest));
    let trail = std::fs::read_to_string(host.state_dir.join("audit.jsonl")).unwrap();
    let expired: Vec<&str> = trail
        .lines()
        .filter(|l| l.contains("\"access_expired\""))
        .collect();
    assert_eq!(expired.len(), 1, "{trail}");
    assert!(expired[0].contains("its first session ended"), "{trail}");
}

/// `streamer_group`: its members pass through the state dir to
/// `streamer.sock`, and reach nothing else. Needs root (to be another
/// user with that group); other runs say so and check the settings only.
#[test]
fn a_group_named_in_the_settings_reaches_the_socket_and_nothing_else() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let tmp = tempfile::tempdir().unwrap();
    // Passable by others, as /var/lib is for a service's dir.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(state.join("punktfunk.toml"), "streamer_group = \"54321\"\n").unwrap();
    if !rustix::process::geteuid().is_root() {
        eprintln!("not root: the group's access is not tried here (CI runs it as root)");
        return;
    }
    let host = Host::start_in(&state, &["--native"]);
    let console = Console::login(&host);
    let id = approved(&host, &console);
    let socket = state.join("streamer.sock");
    let meta = std::fs::metadata(&state).unwrap();
    assert_eq!((meta.mode() & 0o777, meta.gid()), (0o710, 54321));
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!((meta.mode() & 0o777, meta.gid()), (0o660, 54321));
    let control = std::fs::metadata(state.join("control.sock")).unwrap();
    assert_eq!(
        control.mode() & 0o777,
        0o600,
        "the control socket stays private"
    );

    // As nobody, in the group (a supplementary one) or not.
    let probe = format!(
        r#"
import json, os, socket
def reach(path):
    try:
        s = socket.socket(socket.AF_UNIX); s.connect(path)
        s.sendall(b'{{"op":"authorize","fingerprint":"{fp}","door":"native"}}\n')
        return json.loads(s.makefile().readline())
    except OSError as e:
        return type(e).__name__
def read(path):
    try:
        open(path).read(); return "read"
    except OSError as e:
        return type(e).__name__
def listing(path):
    try:
        os.listdir(path); return "listed"
    except OSError as e:
        return type(e).__name__
print(json.dumps({{"streamer": reach("{dir}/streamer.sock"), "control": reach("{dir}/control.sock"),
                  "registry": read("{dir}/trust.json"), "list": listing("{dir}")}}))
"#,
        fp = id.fingerprint(),
        dir = state.display()
    );
    let as_nobody = |groups: &str| -> Value {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", groups, "--"])
            .args(["/usr/bin/python3", "-c", &probe])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let member = as_nobody("--groups=54321");
    assert_eq!(
        member["streamer"]["ok"]["fingerprint"],
        id.fingerprint().to_string(),
        "{member}"
    );
    assert_eq!(member["control"], "PermissionError", "{member}");
    assert_eq!(member["registry"], "PermissionError", "{member}");
    assert_eq!(member["list"], "PermissionError", "{member}");
    let stranger = as_nobody("--clear-groups");
    assert_eq!(stranger["streamer"], "PermissionError", "{stranger}");

    // Without the setting, the next start makes the dir private again.
    drop(console);
    host.stop();
    std::fs::remove_file(state.join("punktfunk.toml")).unwrap();
    let host = Host::start_in(&state, &["--native"]);
    let meta = std::fs::metadata(&state).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o700);
    let meta = std::fs::metadata(state.join("streamer.sock")).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    drop(host);
}

fn since_epoch() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

fn rfc3339(unix: u64) -> String {
    punktfunk_certs::audit::rfc3339(unix)
}
