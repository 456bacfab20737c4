//! Attacks on the real `punktfunk serve` over loopback (issue 6, "One online
//! guess" and "No unauthenticated change"). The attackers are written here
//! in Rust so that thousands of attempts take seconds:
//!
//! - native: the `punktfunk-native` reference client API, with guessed PINs
//!   and with certificates that only look like a paired one;
//! - GameStream: a small Moonlight-compatible client (raw HTTP/1.1 from a
//!   chosen loopback address, HTTPS with a client certificate, and the
//!   pairing crypto of the crate docs of `punktfunk-gamestream`), so that it
//!   can send phases out of order, with another client's `uniqueid`, or with
//!   a PIN the console never got;
//! - console: requests without a session, with wrong or foreign CSRF tokens,
//!   from other origins, against real state (a paired device, a knock, a
//!   held Moonlight request, an armed PIN) that must come out unchanged.
//!
//! Every test asserts on what the host stored (`GET /api/pairing`), not only
//! on status codes.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{Console, Host};
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::ssl::{Ssl, SslContext, SslMethod, SslVerifyMode};
use openssl::x509::extension::BasicConstraints;
use openssl::x509::X509;
use punktfunk_certs::Identity;
use punktfunk_native::{Client, Connected, DisplayName, HostAddr, NewHost, Pin};
use punktfunk_testsupport::{moonlight, xml};
use rand::Rng;
use serde_json::{json, Value};

// ---- shared helpers ---------------------------------------------------------------

fn pin(s: &str) -> Pin {
    s.parse().unwrap()
}

fn devices(console: &Console) -> Vec<String> {
    console.pairing()["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["fingerprint"].as_str().unwrap().to_owned())
        .collect()
}

fn pending_list(console: &Console) -> Vec<Value> {
    console.pairing()["pending"].as_array().unwrap().clone()
}

/// Polls until the request of certificate `fp` is listed; returns it.
fn wait_pending(console: &Console, fp: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(p) = pending_list(console)
            .into_iter()
            .find(|p| p["fingerprint"] == fp)
        {
            return p;
        }
        assert!(Instant::now() < deadline, "no pending request for {fp}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls until nothing is pending any more.
fn wait_no_pending(console: &Console) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pending = pending_list(console);
        if pending.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "still pending: {pending:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `POST /api/pending/{id}/pin` on a thread: it answers only once the
/// pairing it started has ended.
fn enter_pin_bg(console: &Console, id: &str, pin: &str) -> JoinHandle<(u16, Value)> {
    let http = console.http.clone();
    let (base, csrf) = (console.base.clone(), console.csrf.clone());
    let (id, pin) = (id.to_owned(), pin.to_owned());
    std::thread::spawn(move || {
        let resp = http
            .post(format!("{base}/api/pending/{id}/pin"))
            .header("X-CSRF-Token", csrf)
            .json(&json!({ "pin": pin }))
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().unwrap_or(Value::Null))
    })
}

/// A certificate that copies everything a person or a lax check might look
/// at in `of` (version, serial, subject, issuer, validity, basic
/// constraints) but has its own key: only the fingerprint differs.
fn lookalike(of: &X509) -> Identity {
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(of.serial_number()).unwrap();
    b.set_subject_name(of.subject_name()).unwrap();
    b.set_issuer_name(of.issuer_name()).unwrap();
    b.set_not_before(of.not_before()).unwrap();
    b.set_not_after(of.not_after()).unwrap();
    b.set_pubkey(&key).unwrap();
    b.append_extension(BasicConstraints::new().critical().build().unwrap())
        .unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    let cert = b.build();
    assert_eq!(
        cert.subject_name().to_der().unwrap(),
        of.subject_name().to_der().unwrap()
    );
    assert_eq!(
        cert.issuer_name().to_der().unwrap(),
        of.issuer_name().to_der().unwrap()
    );
    assert_eq!(
        cert.serial_number().to_bn().unwrap(),
        of.serial_number().to_bn().unwrap()
    );
    let id = Identity::from_pem(
        &cert.to_pem().unwrap(),
        &key.private_key_to_pem_pkcs8().unwrap(),
    )
    .unwrap();
    assert_ne!(id.cert_der(), of.to_der().unwrap().as_slice());
    id
}

// ---- native ---------------------------------------------------------------------------

fn native_addr(host: &Host) -> HostAddr {
    HostAddr::parse(&host.url("native")).unwrap()
}

fn native_client(dir: &Path) -> Client {
    Client::open(dir, DisplayName::sanitize("attacker").unwrap()).unwrap()
}

/// A native client whose identity is `id`.
fn native_client_as(dir: &Path, id: &Identity) -> Client {
    common::native_client_as(dir, id, "attacker")
}

/// A 4-digit guess that is certainly not `armed`: the single guess must
/// be wrong, so that "nothing stored" is a fact and not a 1-in-10,000 bet.
fn wrong_guess(armed: &str) -> String {
    let mut rng = rand::thread_rng();
    loop {
        let g = format!("{:04}", rng.gen_range(0..10_000));
        if g != armed {
            return g;
        }
    }
}

async fn attempt(client: &mut Client, addr: &HostAddr, guess: &str) -> String {
    match client.pair(addr, &pin(guess)).await {
        Ok(_) => "paired".to_owned(),
        Err(e) => e.code().to_owned(),
    }
}

/// `workers` attackers at once, `per_worker` guesses each; the tally of
/// the codes they got.
fn burst(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    addr: &HostAddr,
    armed: &str,
    workers: usize,
    per_worker: usize,
) -> BTreeMap<String, usize> {
    let clients: Vec<Client> = (0..workers)
        .map(|w| native_client(&dir.join(format!("worker{w}"))))
        .collect();
    let codes = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for mut client in clients {
            let addr = addr.clone();
            let guesses: Vec<String> = (0..per_worker).map(|_| wrong_guess(armed)).collect();
            set.spawn(async move {
                let mut codes = Vec::new();
                for g in guesses {
                    codes.push(attempt(&mut client, &addr, &g).await);
                }
                codes
            });
        }
        let mut all = Vec::new();
        while let Some(codes) = set.join_next().await {
            all.extend(codes.unwrap());
        }
        all
    });
    let mut tally = BTreeMap::new();
    for c in codes {
        *tally.entry(c).or_insert(0) += 1;
    }
    tally
}

#[test]
fn native_one_online_guess_per_arming_whatever_the_attacker_does() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    let addr = native_addr(&host);
    let tmp = tempfile::tempdir().unwrap();
    let rt = common::runtime();
    let started = Instant::now();

    // One arming, 1,000 attempts with random (wrong) PINs, one after the
    // other: the first one takes the PIN, whatever happens next.
    let armed = common::arm(&console);
    let mut attacker = native_client(&tmp.path().join("attacker"));
    let mut codes = Vec::new();
    rt.block_on(async {
        for _ in 0..1000 {
            codes.push(attempt(&mut attacker, &addr, &wrong_guess(&armed)).await);
        }
    });
    let reached: Vec<(usize, &str)> = codes
        .iter()
        .enumerate()
        .filter(|(_, c)| *c != "not_armed")
        .map(|(i, c)| (i, c.as_str()))
        .collect();
    assert_eq!(
        reached,
        vec![(0, "pin_rejected")],
        "exactly the first exchange reached SPAKE2; every other one got not_armed"
    );
    let state = console.pairing();
    // The PIN is spent; only the arming's link (its own secret) still pairs.
    assert_eq!(
        state["armed"]["pin_used"], true,
        "the PIN is spent: {state}"
    );
    assert_eq!(state["last_attempt"]["result"], "pin_rejected", "{state}");
    assert_eq!(state["devices"], json!([]), "{state}");
    assert_eq!(state["pending"], json!([]), "{state}");

    // It keeps trying, now 8 connections at once, and finally with the
    // real PIN (as if it had learnt it): still nothing.
    let tally = burst(&rt, tmp.path(), &addr, &armed, 8, 25);
    assert_eq!(tally, BTreeMap::from([("not_armed".to_owned(), 200)]));
    let code = rt.block_on(attempt(&mut attacker, &addr, &armed));
    assert_eq!(code, "not_armed");
    assert_eq!(devices(&console), Vec::<String>::new());
    assert_eq!(console.pairing()["last_attempt"]["result"], "pin_rejected");

    // A new arming attacked by 8 connections at once from the start (one
    // address, 4 places): the racing attempts are turned away (not armed,
    // busy, or closed without an answer when a newer one from the same
    // address took the place of one still before its `pake`), and still
    // only one exchange ever gets the PIN.
    let armed = common::arm(&console);
    let tally = burst(&rt, tmp.path(), &addr, &armed, 8, 25);
    assert_eq!(tally.get("pin_rejected"), Some(&1), "{tally:?}");
    let refused: usize = ["not_armed", "pairing_busy", "connection_failed"]
        .iter()
        .filter_map(|c| tally.get(*c))
        .sum();
    assert_eq!(refused, 199, "{tally:?}");
    let state = console.pairing();
    assert_eq!(state["armed"]["pin_used"], true, "{state}");
    assert_eq!(state["last_attempt"]["result"], "pin_rejected", "{state}");
    assert_eq!(state["devices"], json!([]), "{state}");
    eprintln!(
        "native one-guess attack: 1,401 attempts in {:.1} s; second arming: {tally:?}",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn native_unknown_and_lookalike_certificates_are_never_trusted() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    let addr = native_addr(&host);
    let tmp = tempfile::tempdir().unwrap();
    let rt = common::runtime();

    let real_dir = tmp.path().join("real");
    let mut real = native_client(&real_dir);
    let armed = common::arm(&console);
    rt.block_on(real.pair(&addr, &pin(&armed))).unwrap();
    let real_fp = real.fingerprint().to_string();
    assert_eq!(devices(&console), vec![real_fp.clone()]);
    // Control: the paired device itself is trusted.
    match rt
        .block_on(real.connect(&addr, NewHost::Refuse, false))
        .unwrap()
    {
        Connected::Session(s) => assert_eq!(s.status(), punktfunk_native::Status::Trusted),
        Connected::ApprovalPending => panic!("the paired device was not trusted"),
    }

    // An unknown certificate: approval_pending, as often as it asks.
    let mut stranger = native_client(&tmp.path().join("stranger"));
    for _ in 0..3 {
        let got = rt
            .block_on(stranger.connect(&addr, NewHost::DangerAcceptAny, false))
            .unwrap();
        assert!(matches!(got, Connected::ApprovalPending), "{got:?}");
    }
    let knock = wait_pending(&console, &stranger.fingerprint().to_string());
    assert_eq!(knock["needs"], "approval");

    // Same subject, issuer, serial and validity as the paired device's
    // certificate, another key: a stranger too.
    let real_cert = Identity::load(&real_dir.join("client.crt"), &real_dir.join("client.key"))
        .unwrap()
        .cert()
        .clone();
    let fake = lookalike(&real_cert);
    let mut twin = native_client_as(&tmp.path().join("twin"), &fake);
    assert_ne!(twin.fingerprint().to_string(), real_fp);
    for _ in 0..2 {
        let got = rt
            .block_on(twin.connect(&addr, NewHost::DangerAcceptAny, false))
            .unwrap();
        assert!(matches!(got, Connected::ApprovalPending), "{got:?}");
    }
    // Nor can it pair without an arming.
    let code = rt.block_on(attempt(&mut twin, &addr, &armed));
    assert_eq!(code, "not_armed");

    let state = console.pairing();
    assert_eq!(devices(&console), vec![real_fp.clone()], "{state}");
    let mut waiting: Vec<String> = pending_list(&console)
        .iter()
        .map(|p| p["fingerprint"].as_str().unwrap().to_owned())
        .collect();
    waiting.sort();
    let mut expected = vec![
        stranger.fingerprint().to_string(),
        twin.fingerprint().to_string(),
    ];
    expected.sort();
    assert_eq!(waiting, expected, "two knocks, neither trusted");
}

// ---- GameStream ---------------------------------------------------------------------

/// What every stock client sends as `uniqueid`.
const UNIQUEID: &str = moonlight::UNIQUE_ID;
const GFE_401: &str = "The client is not authorized. Certificate verification failed.";

#[derive(Clone, Copy)]
struct Door {
    http: SocketAddr,
    https: SocketAddr,
}

impl Door {
    fn of(host: &Host) -> Door {
        let addr = |what: &str| -> SocketAddr {
            let url = host.url(what);
            let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
            SocketAddr::from(([127, 0, 0, 1], port))
        };
        Door {
            http: addr("gamestream-http"),
            https: addr("gamestream-https"),
        }
    }
}

/// A GameStream reply (HTTP 200): the XML body, and the body parsed (so
/// every reply a test reads is proven well-formed).
struct Reply {
    body: String,
    xml: xml::Reply,
}

/// Failure messages show the body as the host sent it.
impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.body)
    }
}

impl Reply {
    fn code(&self) -> &str {
        self.xml.status_code()
    }

    fn attr(&self, name: &str) -> Option<&str> {
        self.xml.attr(name)
    }

    fn field(&self, name: &str) -> Option<&str> {
        self.xml.field(name)
    }
}

/// One request, `Connection: close`; every GameStream reply must be HTTP
/// 200 with XML.
fn exchange<S: Read + Write>(mut s: S, path: &str) -> Reply {
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    s.flush().unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let complete = |buf: &[u8]| -> Option<usize> {
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))?
            .trim()
            .parse()
            .ok()?;
        (buf.len() >= end + 4 + len).then_some(end)
    };
    let end = loop {
        if let Some(end) = complete(&buf) {
            break end;
        }
        match s.read(&mut chunk) {
            Ok(0) => panic!(
                "connection closed mid-reply to {path}: {:?}",
                String::from_utf8_lossy(&buf)
            ),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("reading the reply to {path}: {e}"),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status_line = head.lines().next().unwrap_or("").to_owned();
    let body = String::from_utf8_lossy(&buf[end + 4..]).into_owned();
    assert!(
        status_line.starts_with("HTTP/1.1 200"),
        "{path}: {status_line} {body:?}"
    );
    assert!(body.starts_with("<?xml"), "{path}: {status_line} {body:?}");
    let xml = xml::parse(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body:?}"));
    let reply = Reply { body, xml };
    assert!(!reply.code().is_empty(), "{path}: {reply:?}");
    reply
}

/// A TCP connection to `dst` from the loopback address `src` (all of
/// 127/8 is loopback: another address is another device).
fn connect_from(src: &str, dst: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let src: SocketAddr = format!("{src}:0").parse().unwrap();
    let tcp = rt
        .block_on(async {
            let sock = tokio::net::TcpSocket::new_v4()?;
            sock.bind(src)?;
            sock.connect(dst).await?.into_std()
        })
        .unwrap();
    tcp.set_nonblocking(false).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    tcp
}

fn http(door: Door, src: &str, path: &str) -> Reply {
    exchange(connect_from(src, door.http), path)
}

/// HTTPS with a client certificate (or none).
fn https(door: Door, id: Option<&Identity>, path: &str) -> Reply {
    // A bare context: `SslConnector` would load the system CA store each time.
    let mut b = SslContext::builder(SslMethod::tls_client()).unwrap();
    b.set_verify(SslVerifyMode::NONE);
    if let Some(id) = id {
        b.set_certificate(id.cert()).unwrap();
        b.set_private_key(id.key()).unwrap();
    }
    let tcp = TcpStream::connect(door.https).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let tls = Ssl::new(&b.build()).unwrap().connect(tcp).unwrap();
    exchange(tls, path)
}

/// A Moonlight-compatible client: the address it connects from and its
/// pairing attempt (punktfunk-testsupport's restatement of Moonlight's
/// steps, which follows the exchange in the `punktfunk-gamestream` crate
/// docs), one phase per call, so a test can skip, reorder or forge phases.
struct Moon {
    client: moonlight::Client,
    src: &'static str,
    pin: String,
}

impl Moon {
    fn new(src: &'static str, pin: &str) -> Moon {
        Moon::with_identity(
            Identity::generate("NVIDIA GameStream Client").unwrap(),
            src,
            pin,
        )
    }

    fn with_identity(id: Identity, src: &'static str, pin: &str) -> Moon {
        Moon {
            client: moonlight::Client::random(id, pin),
            src,
            pin: pin.to_owned(),
        }
    }

    /// A client showing `pin` while the host is told `entered`: a wrong PIN
    /// that cannot be mistaken for moonlight-qt's key bug.
    fn wrong_pin(src: &'static str, pin: &str, entered: &str) -> Moon {
        let id = Identity::generate("NVIDIA GameStream Client").unwrap();
        let salt = moonlight::salt_clear_of_moonlight_qt_bug(entered);
        Moon {
            client: moonlight::Client::new(
                id,
                pin,
                salt,
                moonlight::random16(),
                moonlight::random16(),
            ),
            src,
            pin: pin.to_owned(),
        }
    }

    fn id(&self) -> &Identity {
        self.client.identity()
    }

    fn fp(&self) -> String {
        self.client.fingerprint().to_string()
    }

    fn path(rest: &str) -> String {
        format!("/pair?{}", moonlight::query_with_uuid(rest))
    }

    fn phase1_path(&self) -> String {
        Moon::path(&self.client.getservercert())
    }

    /// Phase 1 on a thread: the host holds it until the console enters a PIN.
    fn phase1_bg(&self, door: Door) -> JoinHandle<Reply> {
        let (src, path) = (self.src, self.phase1_path());
        std::thread::spawn(move || http(door, src, &path))
    }

    fn phase2_path(&self) -> String {
        Moon::path(&self.client.clientchallenge())
    }

    fn phase2(&mut self, door: Door) -> Reply {
        let reply = http(door, self.src, &self.phase2_path());
        if let Some(resp) = reply.field("challengeresponse") {
            let read = self.client.read_challengeresponse(resp);
            assert_eq!(read, Ok(()), "{reply:?}");
        }
        reply
    }

    /// Phase 3 as if phase 2 had answered with a random challenge.
    fn forge_server_challenge(&mut self) {
        self.client.forge_server_challenge(moonlight::random16());
    }

    fn phase3_path(&self) -> String {
        Moon::path(&self.client.serverchallengeresp())
    }

    fn phase4_path(&self) -> String {
        Moon::path(&self.client.clientpairingsecret())
    }

    /// Phases 2 to 4 after phase 1 was answered; the phase-4 reply.
    fn finish(&mut self, door: Door) -> Reply {
        let r2 = self.phase2(door);
        assert_eq!(r2.code(), "200", "{r2:?}");
        let r3 = http(door, self.src, &self.phase3_path());
        assert_eq!(r3.code(), "200", "{r3:?}");
        assert!(r3.field("pairingsecret").is_some(), "{r3:?}");
        http(door, self.src, &self.phase4_path())
    }
}

/// Pairs `moon` the whole way with the console's help.
fn pair_moon(console: &Console, door: Door, moon: &mut Moon) {
    let held = moon.phase1_bg(door);
    let id = wait_pending(console, &moon.fp())["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let entry = enter_pin_bg(console, &id, &moon.pin);
    let r1 = held.join().unwrap();
    assert_eq!(r1.field("paired"), Some("1"), "{r1:?}");
    assert!(r1.field("plaincert").is_some(), "{r1:?}");
    let r4 = moon.finish(door);
    assert_eq!(r4.field("paired"), Some("1"), "{r4:?}");
    assert_eq!(entry.join().unwrap(), (200, json!({"result": "paired"})));
    assert!(devices(console).contains(&moon.fp()));
}

#[test]
fn gamestream_one_pin_entry_per_request_and_no_device_without_the_pin() {
    let host = Host::start(&[]);
    let door = Door::of(&host);
    let console = Console::login(&host);

    // The client shows 1111; the console is told 2222 (a client that does
    // not know the PIN the host uses).
    let mut moon = Moon::wrong_pin("127.0.0.1", "1111", "2222");
    let held = moon.phase1_bg(door);
    let id = wait_pending(&console, &moon.fp())["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let entry = enter_pin_bg(&console, &id, "2222");
    let r1 = held.join().unwrap();
    assert_eq!(r1.field("paired"), Some("1"), "{r1:?}");
    assert_eq!(wait_pending(&console, &moon.fp())["pin_entered"], true);

    // One PIN entry per request: a second one, even the right PIN, is refused.
    for second in ["1111", "2222"] {
        let (status, body) = console.send(
            "POST",
            &format!("/api/pending/{id}/pin"),
            Some(json!({ "pin": second })),
        );
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["error"]["code"], "pin_already_entered", "{body}");
    }

    // The client goes on with its own PIN: phase 4 fails, nothing stored.
    let r4 = moon.finish(door);
    assert_eq!(r4.field("paired"), Some("0"), "{r4:?}");
    assert_eq!(
        entry.join().unwrap(),
        (200, json!({"result": "pin_rejected"}))
    );
    assert_eq!(devices(&console), Vec::<String>::new());
    assert!(pending_list(&console).is_empty());
    let info = https(door, Some(moon.id()), "/serverinfo");
    assert_eq!(info.code(), "401", "{info:?}");
    // The attempt is over: more phases find no session.
    let again = http(door, moon.src, &moon.phase4_path());
    assert_eq!(again.code(), "400", "{again:?}");
    assert_eq!(devices(&console), Vec::<String>::new());
}

#[test]
fn gamestream_pair_phases_out_of_order_are_refused_and_store_nothing() {
    let host = Host::start(&[]);
    let door = Door::of(&host);
    let console = Console::login(&host);

    // No request at all: phases 2, 3 and 4 first.
    let mut moon = Moon::new("127.0.0.1", "4321");
    moon.forge_server_challenge();
    for path in [moon.phase2_path(), moon.phase3_path(), moon.phase4_path()] {
        let r = http(door, moon.src, &path);
        assert_eq!(r.code(), "400", "{path}: {r:?}");
        assert_ne!(r.field("paired"), Some("1"), "{r:?}");
    }
    assert!(pending_list(&console).is_empty());

    // Phase 2 while phase 1 still waits for its PIN: the request ends.
    let held = moon.phase1_bg(door);
    wait_pending(&console, &moon.fp());
    let r = http(door, moon.src, &moon.phase2_path());
    assert_eq!(r.code(), "400", "{r:?}");
    let r1 = held.join().unwrap();
    assert_ne!(r1.code(), "200", "{r1:?}");
    assert_eq!(r1.field("plaincert"), None, "{r1:?}");
    wait_no_pending(&console);

    // PIN entered, phase 1 answered, then phase 3 before phase 2.
    let mut moon = Moon::new("127.0.0.1", "4321");
    let held = moon.phase1_bg(door);
    let id = wait_pending(&console, &moon.fp())["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let entry = enter_pin_bg(&console, &id, "4321");
    assert_eq!(held.join().unwrap().field("paired"), Some("1"));
    moon.forge_server_challenge();
    let r = http(door, moon.src, &moon.phase3_path());
    assert_eq!(r.code(), "400", "{r:?}");
    assert_eq!(entry.join().unwrap(), (200, json!({"result": "abandoned"})));
    let r = moon.phase2(door);
    assert_eq!(r.code(), "400", "the attempt is over: {r:?}");

    // Phases 1 and 2 right, then phase 4 without phase 3.
    let mut moon = Moon::new("127.0.0.1", "4321");
    let held = moon.phase1_bg(door);
    let id = wait_pending(&console, &moon.fp())["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let entry = enter_pin_bg(&console, &id, "4321");
    assert_eq!(held.join().unwrap().field("paired"), Some("1"));
    assert_eq!(moon.phase2(door).code(), "200");
    let r = http(door, moon.src, &moon.phase4_path());
    assert_eq!(r.code(), "400", "{r:?}");
    assert_ne!(r.field("paired"), Some("1"), "{r:?}");
    assert_eq!(entry.join().unwrap(), (200, json!({"result": "abandoned"})));

    // Phases 1 to 3 right, then phase 3 again instead of 4.
    let mut moon = Moon::new("127.0.0.1", "4321");
    let held = moon.phase1_bg(door);
    let id = wait_pending(&console, &moon.fp())["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let entry = enter_pin_bg(&console, &id, "4321");
    assert_eq!(held.join().unwrap().field("paired"), Some("1"));
    assert_eq!(moon.phase2(door).code(), "200");
    assert_eq!(http(door, moon.src, &moon.phase3_path()).code(), "200");
    let r = http(door, moon.src, &moon.phase3_path());
    assert_eq!(r.code(), "400", "{r:?}");
    assert_eq!(entry.join().unwrap(), (200, json!({"result": "abandoned"})));
    let r = http(door, moon.src, &moon.phase4_path());
    assert_eq!(r.code(), "400", "{r:?}");

    let state = console.pairing();
    assert_eq!(state["devices"], json!([]), "{state}");
    assert_eq!(state["pending"], json!([]), "{state}");
}

#[test]
fn gamestream_another_address_with_the_same_uniqueid_cannot_hijack_or_cancel() {
    let host = Host::start(&[]);
    let door = Door::of(&host);
    let console = Console::login(&host);

    // The victim pairs from 127.0.0.1; the attacker on 127.0.0.2 sends the
    // same uniqueid (every stock client does) and even knows the PIN.
    let mut victim = Moon::new("127.0.0.1", "2580");
    let mut mallory = Moon::new("127.0.0.2", "2580");
    let held = victim.phase1_bg(door);
    let request = wait_pending(&console, &victim.fp());
    let id = request["id"].as_str().unwrap().to_owned();

    // Before the PIN: cancel, step in, or queue up beside it.
    let unpair = format!("/unpair?uniqueid={UNIQUEID}");
    assert_eq!(http(door, mallory.src, &unpair).code(), "200");
    assert_eq!(mallory.phase2(door).code(), "400");
    let mallory_held = mallory.phase1_bg(door);
    let theirs = wait_pending(&console, &mallory.fp());
    assert_eq!(theirs["address"], "127.0.0.2");
    let victims = wait_pending(&console, &victim.fp());
    assert_eq!(victims["id"], id.as_str(), "not replaced");
    assert_eq!(victims["pin_entered"], false);
    assert_eq!(victims["address"], "127.0.0.1");
    // The attacker's own request is its own; the console denies it.
    let (status, _) = console.send(
        "POST",
        &format!("/api/pending/{}/deny", theirs["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(status, 200);
    let denied = mallory_held.join().unwrap();
    assert_eq!(denied.field("plaincert"), None, "{denied:?}");
    assert_eq!(wait_pending(&console, &victim.fp())["id"], id.as_str());

    // The PIN for the victim's request answers the victim.
    let entry = enter_pin_bg(&console, &id, "2580");
    let r1 = held.join().unwrap();
    assert_eq!(r1.field("paired"), Some("1"), "{r1:?}");

    // After the PIN: the attacker's phases 2 to 4 and /unpair find no session.
    let r2 = mallory.phase2(door);
    assert_eq!(r2.code(), "400", "{r2:?}");
    assert_eq!(r2.field("challengeresponse"), None);
    mallory.forge_server_challenge();
    assert_eq!(
        http(door, mallory.src, &mallory.phase3_path()).code(),
        "400"
    );
    assert_eq!(
        http(door, mallory.src, &mallory.phase4_path()).code(),
        "400"
    );
    assert_eq!(http(door, mallory.src, &unpair).code(), "200");

    // The victim finishes undisturbed.
    let r4 = victim.finish(door);
    assert_eq!(r4.field("paired"), Some("1"), "{r4:?}");
    assert_eq!(entry.join().unwrap(), (200, json!({"result": "paired"})));
    assert_eq!(devices(&console), vec![victim.fp()]);
    assert!(pending_list(&console).is_empty());

    // /unpair over HTTP, from anyone, with the victim's uniqueid, removes nobody.
    for src in ["127.0.0.1", "127.0.0.2", "127.0.0.3"] {
        assert_eq!(http(door, src, &unpair).code(), "200");
    }
    assert_eq!(https(door, Some(mallory.id()), &unpair).code(), "401");
    assert_eq!(devices(&console), vec![victim.fp()]);
    let info = https(door, Some(victim.id()), "/serverinfo");
    assert_eq!(info.field("PairStatus"), Some("1"), "{info:?}");
}

#[test]
fn gamestream_unknown_lookalike_absent_and_revoked_certificates_get_401_on_every_https_path() {
    let host = Host::start(&[]);
    let door = Door::of(&host);
    let console = Console::login(&host);
    let mut paired = Moon::new("127.0.0.1", "8642");
    pair_moon(&console, door, &mut paired);

    let stranger = Identity::generate("NVIDIA GameStream Client").unwrap();
    let twin = lookalike(paired.id().cert());
    let twin_moon = Moon::with_identity(
        Identity::from_pem(
            twin.cert_pem().as_bytes(),
            &twin.key().private_key_to_pem_pkcs8().unwrap(),
        )
        .unwrap(),
        "127.0.0.1",
        "8642",
    );
    let q = |p: &str| -> String {
        let sep = if p.contains('?') { '&' } else { '?' };
        format!(
            "{p}{sep}uniqueid={UNIQUEID}&uuid={}",
            hex::encode(moonlight::random16())
        )
    };
    let paths: Vec<String> = [
        "/serverinfo",
        "/applist",
        "/appasset?appid=1&AssetType=2&AssetIdx=0",
        "/launch?appid=1",
        "/resume",
        "/cancel",
        "/unpair",
        "/pair?phrase=pairchallenge",
        "/pair?clientchallenge=00112233445566778899aabbccddeeff",
        "/no/such/path",
        "/",
    ]
    .iter()
    .map(|p| q(p))
    .chain([twin_moon.phase1_path()])
    .collect();

    // Control: the paired certificate passes.
    let info = https(door, Some(paired.id()), &q("/serverinfo"));
    assert_eq!(
        (info.code(), info.field("PairStatus")),
        ("200", Some("1")),
        "{info:?}"
    );
    assert_eq!(https(door, Some(paired.id()), &q("/applist")).code(), "200");

    let refused = |who: Option<&Identity>, what: &str| {
        for path in &paths {
            let r = https(door, who, path);
            assert_eq!(r.code(), "401", "{what} {path}: {r:?}");
            assert_eq!(r.attr("status_message"), Some(GFE_401), "{what} {path}");
            assert_ne!(r.field("PairStatus"), Some("1"), "{what} {path}: {r:?}");
            assert_eq!(r.field("plaincert"), None, "{what} {path}: {r:?}");
        }
    };
    refused(Some(&stranger), "unknown certificate");
    refused(Some(&twin), "same subject, other key");
    refused(None, "no certificate");
    // The HTTPS getservercert of the lookalike created no request.
    assert!(pending_list(&console).is_empty());
    assert_eq!(devices(&console), vec![paired.fp()]);

    let (status, _) = console.send("DELETE", &format!("/api/devices/{}", paired.fp()), None);
    assert_eq!(status, 200);
    assert_eq!(devices(&console), Vec::<String>::new());
    refused(Some(paired.id()), "revoked certificate");
    let plain = http(door, "127.0.0.1", &q("/serverinfo"));
    assert_eq!(plain.field("PairStatus"), Some("0"), "{plain:?}");
    assert!(pending_list(&console).is_empty());
    assert_eq!(devices(&console), Vec::<String>::new());
}

// ---- console --------------------------------------------------------------------------

/// What an attack on the console could change, without the clocks.
fn snapshot(console: &Console) -> Value {
    let state = console.pairing();
    let pending: Vec<Value> = state["pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| json!([p["id"], p["fingerprint"], p["pin_entered"]]))
        .collect();
    let devices: Vec<Value> = state["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| json!([d["fingerprint"], d["label"], d["name"]]))
        .collect();
    json!({
        "armed": state["armed"]["pin"],
        "last_attempt": state["last_attempt"],
        "pending": pending,
        "devices": devices,
    })
}

/// A plain client (no cookie store) for hand-made cookies.
fn bare() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A second session's cookie value and CSRF token.
fn session_of(host: &Host) -> (String, String) {
    let resp = common::logged_in(&bare(), host);
    let cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .find_map(|v| {
            v.to_str()
                .ok()?
                .split(';')
                .next()?
                .strip_prefix("pf_session=")
                .map(str::to_owned)
        })
        .expect("a session cookie");
    let csrf = resp.json::<Value>().unwrap()["csrf"]
        .as_str()
        .unwrap()
        .to_owned();
    (cookie, csrf)
}

#[test]
fn console_refuses_every_unauthenticated_change_to_real_state() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    let door = Door::of(&host);
    let addr = native_addr(&host);
    let tmp = tempfile::tempdir().unwrap();
    let rt = common::runtime();

    // Real state: a paired device, a knock, a held Moonlight request, an armed PIN.
    let mut paired = native_client(&tmp.path().join("paired"));
    rt.block_on(paired.pair(&addr, &pin(&common::arm(&console))))
        .unwrap();
    let mut knocker = native_client(&tmp.path().join("knocker"));
    let got = rt
        .block_on(knocker.connect(&addr, NewHost::DangerAcceptAny, false))
        .unwrap();
    assert!(matches!(got, Connected::ApprovalPending));
    let knock = wait_pending(&console, &knocker.fingerprint().to_string());
    let moon = Moon::new("127.0.0.1", "7777");
    let held = moon.phase1_bg(door);
    let moon_req = wait_pending(&console, &moon.fp());
    common::arm(&console);
    let before = snapshot(&console);
    assert_eq!(before["devices"].as_array().unwrap().len(), 1, "{before}");
    assert_eq!(before["pending"].as_array().unwrap().len(), 2, "{before}");
    assert!(before["armed"].is_string(), "{before}");

    let fp = paired.fingerprint().to_string();
    let (kid, mid) = (
        knock["id"].as_str().unwrap(),
        moon_req["id"].as_str().unwrap(),
    );
    let label = Some(json!({"label": "pwned"}));
    let changes: Vec<(&str, String, Option<Value>)> = vec![
        ("POST", "/api/logout".into(), None),
        ("POST", "/api/pairing/arm".into(), None),
        ("POST", "/api/pairing/disarm".into(), None),
        ("POST", format!("/api/pending/{kid}/approve"), label.clone()),
        ("POST", format!("/api/pending/{kid}/deny"), None),
        ("POST", format!("/api/pending/{mid}/approve"), label.clone()),
        ("POST", format!("/api/pending/{mid}/deny"), None),
        (
            "POST",
            format!("/api/pending/{mid}/pin"),
            Some(json!({"pin": "7777", "label": "pwned"})),
        ),
        ("PATCH", format!("/api/devices/{fp}"), label.clone()),
        ("DELETE", format!("/api/devices/{fp}"), None),
    ];
    let url = |path: &str| format!("{}{path}", host.console);
    let send = |client: &reqwest::blocking::Client,
                method: &str,
                path: &str,
                body: &Option<Value>,
                headers: &[(&str, &str)]| {
        let mut req = client.request(method.parse().unwrap(), url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().unwrap();
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().unwrap_or(Value::Null))
    };
    let expect = |got: (u16, Value), status: u16, code: &str, what: &str| {
        assert_eq!(got.0, status, "{what}: {}", got.1);
        assert_eq!(got.1["error"]["code"], code, "{what}");
    };

    // Sessions to misuse: one logged out, one alive (for its token).
    let (dead_cookie, dead_csrf) = session_of(&host);
    let logout = bare()
        .post(url("/api/logout"))
        .header("Cookie", format!("pf_session={dead_cookie}"))
        .header("X-CSRF-Token", &dead_csrf)
        .send()
        .unwrap();
    assert_eq!(logout.status(), 200);
    let (_, other_csrf) = session_of(&host);

    let anon = bare();
    let origin = url("").replace("https://", "");
    let port = origin.rsplit(':').next().unwrap().to_owned();
    let http_origin = format!("http://{origin}");
    let other_port = format!("https://127.0.0.1:{}", port.parse::<u16>().unwrap() ^ 1);
    let csrf = console.csrf.as_str();
    for (method, path, body) in &changes {
        let what = |w: &str| format!("{method} {path} {w}");
        // No session: with the real token, a made-up cookie, a logged-out one.
        expect(
            send(&anon, method, path, body, &[("X-CSRF-Token", csrf)]),
            401,
            "unauthorized",
            &what("no cookie"),
        );
        let forged = format!("pf_session={}", "A".repeat(43));
        expect(
            send(
                &anon,
                method,
                path,
                body,
                &[("Cookie", &forged), ("X-CSRF-Token", csrf)],
            ),
            401,
            "unauthorized",
            &what("forged cookie"),
        );
        let dead = format!("pf_session={dead_cookie}");
        expect(
            send(
                &anon,
                method,
                path,
                body,
                &[("Cookie", &dead), ("X-CSRF-Token", &dead_csrf)],
            ),
            401,
            "unauthorized",
            &what("logged-out session"),
        );
        // A live session with no, a wrong, or another session's token.
        for token in [None, Some(""), Some("wrong"), Some(other_csrf.as_str())] {
            let headers: Vec<(&str, &str)> =
                token.map(|t| ("X-CSRF-Token", t)).into_iter().collect();
            expect(
                send(&console.http, method, path, body, &headers),
                403,
                "csrf",
                &what(&format!("token {token:?}")),
            );
        }
        // The right token from another origin, however it is dressed up.
        let cross: [&[(&str, &str)]; 8] = [
            &[("Origin", "https://evil.example")],
            &[("Origin", "null")],
            &[("Origin", &http_origin)],
            &[("Origin", &other_port)],
            &[("Sec-Fetch-Site", "cross-site")],
            &[("Sec-Fetch-Site", "same-site")],
            &[
                ("Origin", "https://evil.example"),
                ("X-Forwarded-Host", "evil.example"),
            ],
            &[
                ("Origin", "https://evil.example"),
                ("Forwarded", "host=evil.example;proto=https"),
            ],
        ];
        for extra in cross {
            let mut headers = vec![("X-CSRF-Token", csrf)];
            headers.extend_from_slice(extra);
            expect(
                send(&console.http, method, path, body, &headers),
                403,
                "cross_origin",
                &what(&format!("{extra:?}")),
            );
        }
        // A method the route does not take changes nothing either (GET and
        // HEAD skip the CSRF check, so they must never reach a change).
        for other in ["GET", "HEAD"] {
            let (status, _) = send(&console.http, other, path, body, &[]);
            // `GET /api/devices/{fingerprint}` is a read of its own.
            let read = other == "GET" && path.starts_with("/api/devices/");
            assert!(
                status == 404 || status == 405 || (read && status == 200),
                "{other} {path}: {status}"
            );
        }
        assert_eq!(snapshot(&console), before, "{}", what("changed the state"));
    }

    // Reads need a session too.
    for path in ["/api/pairing", "/api/session", "/api/events"] {
        expect(
            send(&anon, "GET", path, &None, &[]),
            401,
            "unauthorized",
            path,
        );
        let dead = format!("pf_session={dead_cookie}");
        expect(
            send(&anon, "GET", path, &None, &[("Cookie", &dead)]),
            401,
            "unauthorized",
            path,
        );
    }

    // Nothing changed, and the real session still works (no logout went through).
    assert_eq!(snapshot(&console), before);
    let (status, _) = console.send("POST", &format!("/api/pending/{kid}/deny"), None);
    assert_eq!(status, 200, "the legitimate session can still act");
    let (status, _) = console.send("POST", &format!("/api/pending/{mid}/deny"), None);
    assert_eq!(status, 200);
    let denied = held.join().unwrap();
    assert_eq!(denied.field("plaincert"), None, "{denied:?}");
}
