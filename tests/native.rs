//! The native front door end to end: the real `punktfunk serve --native`
//! and `m3-host` binaries, driven over TLS on loopback by the real
//! reference client (`punktfunk pair` / `punktfunk connect`, and `pair
//! --link` with a pairing link) and the console API
//! (docs/native-protocol.md § 7, § 12).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{signal, wait_timeout, Console, Host, BIN};
use serde_json::Value;

const M3_HOST: &str = env!("CARGO_BIN_EXE_m3-host");

/// What a client run printed and how it exited.
#[derive(Debug)]
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Out {
    fn last(&self) -> &str {
        self.stdout.lines().last().unwrap_or("")
    }

    fn ok(&self, word: &str) {
        assert_eq!(self.code, Some(0), "{self:#?}");
        assert_eq!(self.last(), word, "{self:#?}");
    }

    /// Failed with `code`: said on stderr (its last line), nothing on stdout.
    fn err(&self, code: &str) {
        assert_ne!(self.code, Some(0), "{self:#?}");
        assert!(
            self.stderr
                .lines()
                .last()
                .unwrap_or("")
                .starts_with(&format!("error: {code}: ")),
            "expected error {code} on stderr: {self:#?}"
        );
        assert!(
            !self.stdout.contains("error"),
            "errors go to stderr: {self:#?}"
        );
    }
}

/// A client dir of its own: one simulated device.
struct Device {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    name: &'static str,
}

impl Device {
    fn new(name: &'static str) -> Device {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("client");
        Device {
            _tmp: tmp,
            dir,
            name,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .arg("--client-dir")
            .arg(&self.dir)
            .args(["--name", self.name])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn run(&self, args: &[&str]) -> Out {
        self.run_with_stdin(args, "")
    }

    fn run_with_stdin(&self, args: &[&str], input: &str) -> Out {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn punktfunk");
        let mut stdin = child.stdin.take().unwrap();
        // The client may exit before reading (e.g. a pinned host).
        let _ = stdin.write_all(input.as_bytes());
        drop(stdin);
        finish(child, Duration::from_secs(60))
    }

    fn pair(&self, addr: &str, pin: &str) -> Out {
        self.run(&["pair", addr, "--pin", pin])
    }

    fn connect(&self, addr: &str, extra: &[&str]) -> Out {
        let mut args = vec!["connect", addr];
        args.extend_from_slice(extra);
        self.run(&args)
    }
}

/// Waits for a spawned client and collects its output.
fn finish(mut child: Child, limit: Duration) -> Out {
    let status = wait_timeout(&mut child, limit);
    if status.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let out = Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        status.is_some(),
        "client did not finish in {limit:?}: {out:#?}"
    );
    out
}

fn wait_line(rx: &mpsc::Receiver<String>, prefix: &str, seen: &mut Vec<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push(line.clone());
                if let Some(rest) = line.strip_prefix(prefix) {
                    return rest.trim().to_owned();
                }
            }
            Err(_) => panic!("no line starting with {prefix:?}; saw {seen:?}"),
        }
    }
}

/// `connect ADDR --hold 300` running, past its `trusted`: the child, its
/// stdout and stderr lines, and the lines seen so far.
fn held(
    device: &Device,
    addr: &str,
) -> (
    Child,
    mpsc::Receiver<String>,
    mpsc::Receiver<String>,
    Vec<String>,
) {
    let mut child = device
        .command(&["connect", addr, "--hold", "300"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let rx = common::lines_of(&mut child);
    let errors = stderr_lines(&mut child);
    let mut seen = Vec::new();
    wait_line(&rx, "trusted", &mut seen);
    (child, rx, errors, seen)
}

/// A child's stderr lines, read on a thread.
fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    use std::io::BufRead;
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn other_pin(pin: &str) -> String {
    let n: u32 = pin.parse().unwrap();
    format!("{:04}", (n + 1) % 10_000)
}

fn devices(console: &Console) -> Vec<Value> {
    console.pairing()["devices"].as_array().unwrap().clone()
}

fn pending(console: &Console) -> Vec<Value> {
    console.pairing()["pending"].as_array().unwrap().clone()
}

/// Polls until a knock is listed.
fn wait_pending(console: &Console) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(p) = pending(console).into_iter().next() {
            return p;
        }
        assert!(Instant::now() < deadline, "no pending request appeared");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn native_addr(host: &Host) -> String {
    host.url("native")
}

#[test]
fn pin_pairing_then_connect_is_trusted() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    let addr = native_addr(&host);
    let ipad = Device::new("Anna's iPad");

    let pin = common::arm(&console);
    ipad.pair(&addr, &pin).ok("paired");

    let state = console.pairing();
    assert_eq!(state["last_attempt"]["result"], "paired", "{state}");
    assert!(state["armed"].is_null(), "the PIN is single use: {state}");
    let devices = state["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1, "{state}");
    assert_eq!(devices[0]["kind"], "native");
    assert_eq!(devices[0]["via"], "pin");
    assert_eq!(devices[0]["name"], "Anna's iPad");
    assert_eq!(
        devices[0]["fingerprint"], state["last_attempt"]["fingerprint"],
        "{state}"
    );

    // Pinned now: no TOFU question, no flag needed.
    ipad.connect(&addr, &[]).ok("trusted");
    ipad.connect(&addr, &[]).ok("trusted");
}

#[test]
fn wrong_pin_then_right_pin_in_the_same_arming_are_both_refused() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    let addr = native_addr(&host);
    let attacker = Device::new("attacker");
    let ipad = Device::new("iPad");

    let pin = common::arm(&console);
    attacker.pair(&addr, &other_pin(&pin)).err("pin_rejected");
    let state = console.pairing();
    assert_eq!(state["last_attempt"]["result"], "pin_rejected", "{state}");
    // The PIN is used; the arming (its link) goes on.
    assert_eq!(state["armed"]["pin_used"], true, "{state}");

    // One online guess per arming: the right PIN is spent too.
    ipad.pair(&addr, &pin).err("not_armed");
    assert!(devices(&console).is_empty());
    assert_eq!(
        console.pairing()["last_attempt"]["result"],
        "pin_rejected",
        "the failure stays visible until re-armed"
    );

    // Re-arming starts over.
    let pin = common::arm(&console);
    assert!(console.pairing()["last_attempt"].is_null());
    ipad.pair(&addr, &pin).ok("paired");
}

#[test]
fn not_armed_is_refused() {
    let host = Host::start(&["--native"]);
    let addr = native_addr(&host);
    Device::new("iPad").pair(&addr, "1234").err("not_armed");
}

#[test]
fn knock_then_approve_then_trusted() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    let addr = native_addr(&host);
    let tv = Device::new("Living Room TV");

    let out = tv.connect(&addr, &["--accept-new-host"]);
    assert_eq!(out.code, Some(2), "{out:#?}");
    assert_eq!(out.last(), "approval_pending", "{out:#?}");

    let knock = wait_pending(&console);
    assert_eq!(knock["kind"], "native");
    assert_eq!(knock["needs"], "approval");
    assert_eq!(knock["name"], "Living Room TV");
    assert!(
        out.stderr
            .contains(&grouped(knock["fingerprint"].as_str().unwrap())),
        "the client shows the fingerprint the console shows: {out:#?}"
    );
    let id = knock["id"].as_str().unwrap();
    let (status, body) = console.send(
        "POST",
        &format!("/api/pending/{id}/approve"),
        Some(serde_json::json!({"label": "TV"})),
    );
    assert_eq!(status, 200, "{body}");
    let devices = devices(&console);
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["via"], "approval");
    assert_eq!(devices[0]["label"], "TV");

    tv.connect(&addr, &["--accept-new-host"]).ok("trusted");
    // Pinned by the trusted connect.
    tv.connect(&addr, &[]).ok("trusted");
}

/// The product promise: after Approve in the console, "the device is
/// paired on the spot: its next connect goes straight through". The
/// fingerprint accepted at the knock (flag or prompt) is remembered, so the
/// plain connect after approval asks nothing (stdin is empty: a question
/// would be answered no) and pins the host.
#[test]
fn approved_knock_then_plain_connect_goes_straight_through() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    let addr = native_addr(&host);
    let host_fp = console.pairing()["host"]["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    let tv = Device::new("Living Room TV");
    let laptop = Device::new("laptop");

    // One knocks with the script flag, one answers yes at the prompt.
    let out = tv.connect(&addr, &["--accept-new-host"]);
    assert_eq!(
        (out.code, out.last()),
        (Some(2), "approval_pending"),
        "{out:#?}"
    );
    let knock = wait_pending(&console);
    approve(&console, &knock);
    let out = laptop.run_with_stdin(&["connect", &addr], "y\n");
    assert_eq!(
        (out.code, out.last()),
        (Some(2), "approval_pending"),
        "{out:#?}"
    );
    assert!(out.stderr.contains("[y/N]"), "{out:#?}");
    let knock = wait_pending(&console);
    approve(&console, &knock);
    assert_eq!(devices(&console).len(), 2);

    for device in [&tv, &laptop] {
        let known_hosts = device.dir.join("known_hosts");
        let text = std::fs::read_to_string(&known_hosts).unwrap();
        assert!(
            text.contains(&format!("{host_fp} accepted")),
            "accepted, not yet pinned: {text}"
        );

        let out = device.connect(&addr, &[]);
        out.ok("trusted");
        assert!(!out.stderr.contains("[y/N]"), "asked again: {out:#?}");
        let text = std::fs::read_to_string(&known_hosts).unwrap();
        assert!(!text.contains("accepted\n"), "pinned now: {text}");
        assert!(text.contains(&host_fp), "{text}");
        device.connect(&addr, &[]).ok("trusted");
    }
}

/// A fingerprint accepted at a knock binds like a pin: another certificate
/// on that address is `host_identity_changed`, with or without the flag,
/// and the accepted fingerprint stays on record.
#[test]
fn a_different_host_than_the_accepted_one_is_host_identity_changed() {
    let first = Host::start(&["--native"]);
    let addr = native_addr(&first);
    let port = addr.rsplit(':').next().unwrap().to_owned();
    let tv = Device::new("TV");
    let out = tv.connect(&addr, &["--accept-new-host"]);
    assert_eq!(
        (out.code, out.last()),
        (Some(2), "approval_pending"),
        "{out:#?}"
    );
    let known_hosts = tv.dir.join("known_hosts");
    let before = std::fs::read_to_string(&known_hosts).unwrap();
    assert!(before.contains(" accepted"), "{before}");
    assert!(first.stop().success());

    // Another host (its own identity; open, so it would let anyone in) on
    // the same address.
    let tmp = tempfile::tempdir().unwrap();
    let second = M3Host::start(&tmp.path().join("b"), &port, &[]);
    assert_eq!(second.addr, addr);
    let out = tv.connect(&addr, &[]);
    out.err("host_identity_changed");
    assert!(!out.stderr.contains("[y/N]"), "{out:#?}");
    tv.connect(&addr, &["--accept-new-host"])
        .err("host_identity_changed");
    assert_eq!(std::fs::read_to_string(&known_hosts).unwrap(), before);
    second.stop();
}

fn approve(console: &Console, knock: &Value) {
    let id = knock["id"].as_str().unwrap();
    let (status, body) = console.send("POST", &format!("/api/pending/{id}/approve"), None);
    assert_eq!(status, 200, "{body}");
}

#[test]
fn knock_then_deny_then_knock_again() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    let addr = native_addr(&host);
    let tv = Device::new("TV");

    assert_eq!(
        tv.connect(&addr, &["--accept-new-host"]).last(),
        "approval_pending"
    );
    let id = wait_pending(&console)["id"].as_str().unwrap().to_owned();
    let (status, _) = console.send("POST", &format!("/api/pending/{id}/deny"), None);
    assert_eq!(status, 200);
    assert!(pending(&console).is_empty());
    assert!(devices(&console).is_empty());

    // Deny is "not now", not a blocklist; and a waiting knock hears it.
    let child = tv
        .command(&["connect", &addr, "--accept-new-host", "--wait"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let id2 = wait_pending(&console)["id"].as_str().unwrap().to_owned();
    assert_ne!(id, id2);
    let (status, _) = console.send("POST", &format!("/api/pending/{id2}/deny"), None);
    assert_eq!(status, 200);
    finish(child, Duration::from_secs(20)).err("denied");
    assert!(devices(&console).is_empty());
}

#[test]
fn knock_with_wait_then_approve_is_trusted_on_the_same_connection() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    let addr = native_addr(&host);
    let tv = Device::new("TV");

    let child = tv
        .command(&["connect", &addr, "--accept-new-host", "--wait"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let id = wait_pending(&console)["id"].as_str().unwrap().to_owned();
    let (status, body) = console.send("POST", &format!("/api/pending/{id}/approve"), None);
    assert_eq!(status, 200, "{body}");
    finish(child, Duration::from_secs(20)).ok("trusted");
    tv.connect(&addr, &[]).ok("trusted");
}

#[test]
fn revoking_a_device_ends_its_open_session_and_refuses_the_next_connect() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    let addr = native_addr(&host);
    let ipad = Device::new("iPad");
    ipad.pair(&addr, &common::arm(&console)).ok("paired");
    let fp = devices(&console)[0]["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();

    let (mut child, _stdout, errors, mut seen) = held(&ipad, &addr);

    let (status, body) = console.send("DELETE", &format!("/api/devices/{fp}"), None);
    assert_eq!(status, 200, "{body}");
    // Ends at once (well before the next ping, 30 s away).
    let line = wait_line(&errors, "error: ", &mut seen);
    assert!(line.starts_with("revoked: "), "{seen:?}");
    let status = wait_timeout(&mut child, Duration::from_secs(10)).expect("client exits");
    assert!(!status.success());

    // Unknown again: the next connect is a knock, not a session.
    let out = ipad.connect(&addr, &[]);
    assert_eq!(out.code, Some(2), "{out:#?}");
    assert_eq!(out.last(), "approval_pending");
}

#[test]
fn open_host_trust_on_first_use() {
    let host = Host::start(&["--native", "--open"]);
    let console = Console::login(&host);
    let addr = native_addr(&host);
    let laptop = Device::new("laptop");

    // Declining the host's fingerprint sends nothing: no device stored.
    let out = laptop.run_with_stdin(&["connect", &addr], "n\n");
    out.err("host_not_accepted");
    assert!(out.stderr.contains("[y/N]"), "{out:#?}");
    let host_fp = console.pairing()["host"]["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        out.stderr.contains(&grouped(&host_fp)),
        "shows the fingerprint, grouped: {out:#?}"
    );
    assert!(devices(&console).is_empty());

    // Accepting it on the prompt: admitted via open.
    laptop.run_with_stdin(&["connect", &addr], "y\n").ok("open");
    let devices = devices(&console);
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["via"], "open");
    // Pinned and registered: trusted, no question asked.
    laptop.connect(&addr, &[]).ok("trusted");

    // Scripts answer yes with the flag.
    Device::new("phone")
        .connect(&addr, &["--accept-new-host"])
        .ok("open");
}

#[test]
fn host_identity_changed_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let first = M3Host::start(&tmp.path().join("a"), "0", &["--allow-pairing"]);
    let port = first.port();
    let ipad = Device::new("iPad");
    ipad.pair(&first.addr, &first.pin.clone().unwrap())
        .ok("paired");
    ipad.connect(&first.addr, &[]).ok("trusted");
    first.stop();

    // A different host (new identity) on the same address.
    let second = M3Host::start(&tmp.path().join("b"), &port, &["--allow-pairing"]);
    assert_eq!(second.addr, format!("tls://127.0.0.1:{port}"));
    ipad.connect(&second.addr, &[]).err("host_identity_changed");
    ipad.connect(&second.addr, &["--accept-new-host"])
        .err("host_identity_changed");
    ipad.pair(&second.addr, &second.pin.clone().unwrap())
        .err("host_identity_changed");
}

#[test]
fn m3_host_allow_and_require_pairing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut host = M3Host::start(
        &tmp.path().join("state"),
        "0",
        &["--allow-pairing", "--require-pairing"],
    );
    let addr = host.addr.clone();
    let pin = host.pin.clone().expect("the PIN is printed at start");
    assert!(pin.len() == 4 && pin.bytes().all(|b| b.is_ascii_digit()));

    let ipad = Device::new("iPad");
    // No console to approve a knock: unknown devices are refused.
    ipad.connect(&addr, &["--accept-new-host"])
        .err("not_paired");
    ipad.pair(&addr, &pin).ok("paired");
    ipad.connect(&addr, &[]).ok("trusted");

    // Re-armed after the success, with the new PIN printed.
    let pin2 = host.next_pin();
    // A failure spends the PIN and is never followed by a new one: the
    // right PIN afterwards finds pairing unarmed.
    let mallory = Device::new("mallory");
    mallory.pair(&addr, &other_pin(&pin2)).err("pin_rejected");
    mallory.pair(&addr, &pin2).err("not_armed");
    ipad.connect(&addr, &[]).ok("trusted");
    assert!(host.stop_status().success());
}

#[test]
fn m3_host_is_open_by_default() {
    let tmp = tempfile::tempdir().unwrap();
    let host = M3Host::start(&tmp.path().join("state"), "0", &[]);
    assert!(host.pin.is_none());
    let dev = Device::new("dev");
    dev.connect(&host.addr, &["--accept-new-host"]).ok("open");
    dev.connect(&host.addr, &[]).ok("trusted");
    Device::new("other")
        .pair(&host.addr, "1234")
        .err("not_armed");
}

/// The host's certificate fingerprint, as `punktfunk fingerprint` prints it.
/// A lowercase hex fingerprint as people are shown it.
fn grouped(hex: &str) -> String {
    hex.parse::<punktfunk_certs::Fingerprint>()
        .unwrap()
        .grouped()
}

fn host_fingerprint(state_dir: &Path) -> String {
    let out = Command::new(BIN)
        .args(["fingerprint", "--hex", "--state-dir"])
        .arg(state_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let fp = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(fp.len(), 64, "{fp}");
    fp
}

fn port_of(addr: &str) -> String {
    addr.trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned()
}

/// A pairing link as § 12.1 writes it. 127.0.0.9 comes first: the host
/// is bound to 127.0.0.1 only, so that address refuses the connection and
/// the client must go on to the next one.
fn pairing_link(fp: &str, secret: &str, port: &str) -> String {
    format!(
        "punktfunk://pair?v=2&fp={fp}&s={secret}&port={port}&a=127.0.0.9&a=127.0.0.1&n=Test%20Host%20%C3%BC"
    )
}

/// Arms pairing; the secret of the link the console shows for it.
fn arm_link(console: &Console) -> String {
    common::link_secret(&common::arm_with_link(console).1)
}

/// § 12: the QR code's link pairs with nothing typed, skipping an address
/// that refuses; afterwards the address that answered is pinned, so a
/// plain connect is `trusted` without any question.
#[test]
fn pairing_link_pairs_then_connect_is_trusted() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    let port = port_of(&native_addr(&host));
    let fp = host_fingerprint(&host.state_dir);
    let ipad = Device::new("Anna's iPad");

    let pin = arm_link(&console);
    let link = pairing_link(&fp, &pin, &port);
    let out = ipad.run(&["pair", "--link", &link]);
    out.ok("paired");
    // The name from the link (decoded) while pairing; then the address
    // that answered, and the link's fingerprint pinned.
    assert!(out.stderr.contains("pairing with Test Host ü"), "{out:#?}");
    assert!(
        out.stderr.contains(&format!(
            "(127.0.0.1:{port}); host fingerprint {} pinned",
            grouped(&fp)
        )),
        "{out:#?}"
    );

    let state = console.pairing();
    assert_eq!(state["last_attempt"]["result"], "paired", "{state}");
    assert!(state["armed"].is_null(), "the PIN is single use: {state}");
    let devices = state["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1, "{state}");
    assert_eq!(devices[0]["via"], "pin");
    assert_eq!(devices[0]["name"], "Anna's iPad");

    let known_hosts = std::fs::read_to_string(ipad.dir.join("known_hosts")).unwrap();
    assert!(
        known_hosts.contains(&format!("127.0.0.1:{port} {fp}\n")),
        "{known_hosts}"
    );
    assert!(!known_hosts.contains("127.0.0.9"), "{known_hosts}");
    // Stdin is empty: a TOFU question would be answered no.
    let out = ipad.connect(&format!("127.0.0.1:{port}"), &[]);
    out.ok("trusted");
    assert!(!out.stderr.contains("[y/N]"), "{out:#?}");
}

/// § 12.3: a link naming another certificate than the host's gets
/// `host_identity_changed` and the host gets nothing: no `pake` reached
/// it, so the PIN stays armed (and still works with the right link), and
/// no device is stored.
#[test]
fn pairing_link_with_another_fingerprint_leaves_the_pin_armed() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    let port = port_of(&native_addr(&host));
    let fp = host_fingerprint(&host.state_dir);
    let impostor_fp = "ab".repeat(32);
    assert_ne!(fp, impostor_fp);
    let ipad = Device::new("iPad");

    let pin = arm_link(&console);
    let out = ipad.run(&["pair", "--link", &pairing_link(&impostor_fp, &pin, &port)]);
    out.err("host_identity_changed");
    let state = console.pairing();
    assert!(!state["armed"].is_null(), "the PIN was not used: {state}");
    assert!(state["last_attempt"].is_null(), "{state}");
    assert!(devices(&console).is_empty());
    let known_hosts = std::fs::read_to_string(ipad.dir.join("known_hosts")).unwrap_or_default();
    assert!(
        !known_hosts.contains(&port),
        "nothing pinned: {known_hosts}"
    );

    ipad.run(&["pair", "--link", &pairing_link(&fp, &pin, &port)])
        .ok("paired");
}

/// `m3-host --allow-pairing` prints the link and its QR code after the
/// PIN; the printed link pairs, and the re-armed PIN comes with a new link.
#[test]
fn m3_host_prints_a_pairing_link_and_its_qr_code() {
    let tmp = tempfile::tempdir().unwrap();
    let state_dir = tmp.path().join("state");
    let mut host = M3Host::start(&state_dir, "0", &["--allow-pairing", "--require-pairing"]);
    let pin = host.pin.clone().expect("PIN line");
    let text = host
        .link
        .clone()
        .expect("a `pairing link:` line after the PIN");
    let link = punktfunk_native::PairingLink::parse(&text).expect("the link parses");
    let _ = pin;
    assert_eq!(link.secret.as_bytes().len(), 16);
    assert_eq!(link.port.to_string(), host.port());
    assert_eq!(link.host_fingerprint.to_hex(), host_fingerprint(&state_dir));
    // Bound to 127.0.0.1: that is the one address.
    assert_eq!(
        link.addresses,
        ["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]
    );

    // The QR code: the lines after the link, drawn in half blocks.
    let after: Vec<&String> = host
        .seen
        .iter()
        .skip_while(|l| !l.starts_with("pairing link: "))
        .skip(1)
        .take_while(|l| *l != "ready")
        .collect();
    let qr: Vec<&String> = after
        .iter()
        .copied()
        .take_while(|l| !l.is_empty() && l.chars().all(|c| " \u{2580}\u{2584}\u{2588}".contains(c)))
        .collect();
    // Version 1 is 21 modules + 8 of quiet zone, two rows per line.
    assert!(qr.len() >= 15, "a QR block after the link: {after:#?}");
    let width = qr[0].chars().count();
    assert!(width >= 29, "{width}");
    assert!(qr.iter().all(|l| l.chars().count() == width), "{qr:#?}");

    let ipad = Device::new("iPad");
    ipad.run(&["pair", "--link", &text]).ok("paired");
    ipad.connect(&host.addr, &[]).ok("trusted");

    // Re-armed after the success: a new PIN, and a new link with it.
    let pin2 = host.next_pin();
    let text2 = wait_line(&host.lines, "pairing link: ", &mut host.seen);
    let link2 = punktfunk_native::PairingLink::parse(&text2).unwrap();
    let _ = pin2;
    assert_ne!(link2.secret, link.secret, "a new arming, a new secret");
    Device::new("laptop")
        .run(&["pair", "--link", &text2])
        .ok("paired");
    assert!(host.stop_status().success());
}

/// A running `m3-host`.
struct M3Host {
    child: Child,
    addr: String,
    pin: Option<String>,
    /// The `pairing link:` printed after the first PIN.
    link: Option<String>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl M3Host {
    fn start(dir: &Path, port: &str, extra: &[&str]) -> M3Host {
        let mut child = Command::new(M3_HOST)
            .args(["--bind", "127.0.0.1", "--port", port, "--state-dir"])
            .arg(dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn m3-host");
        let lines = common::lines_of(&mut child);
        let mut seen = Vec::new();
        let mut addr = None;
        let mut pin = None;
        let mut link = None;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("m3-host not ready; stdout: {seen:?}"));
            seen.push(line.clone());
            if let Some(url) = line.strip_prefix("native listening on ") {
                addr = Some(url.trim_end_matches('/').to_owned());
            }
            if let Some(p) = line.strip_prefix("pairing PIN: ") {
                pin = Some(p.trim().to_owned());
            }
            if let Some(l) = line.strip_prefix("pairing link: ") {
                link = Some(l.trim().to_owned());
            }
            if line == "ready" {
                break;
            }
        }
        M3Host {
            child,
            addr: addr.expect("listening line"),
            pin,
            link,
            lines,
            seen,
        }
    }

    fn port(&self) -> String {
        self.addr.rsplit(':').next().unwrap().to_owned()
    }

    fn next_pin(&mut self) -> String {
        wait_line(&self.lines, "pairing PIN: ", &mut self.seen)
    }

    fn stop_status(mut self) -> std::process::ExitStatus {
        signal(&self.child, "TERM");
        wait_timeout(&mut self.child, Duration::from_secs(20)).expect("m3-host stops on SIGTERM")
    }

    fn stop(self) {
        assert!(self.stop_status().success());
    }
}

impl Drop for M3Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn connect_to_the_console_port_says_it_speaks_http_not_the_punktfunk_protocol() {
    let host = Host::start(&["--native"]);
    let console = host.url("console").replace("https://", "");
    let laptop = Device::new("Laptop");
    let out = laptop.connect(&console, &["--accept-new-host"]);
    out.err("bad_message");
    let said = out.stderr.lines().last().unwrap_or("");
    assert!(
        said.contains("speaks HTTP, not the punktfunk protocol")
            && said.contains("port 47991 by default"),
        "{out:#?}"
    );
    assert!(!out.stderr.contains("1213486160"), "{out:#?}");
    // Moonlight's plain HTTP port: no TLS at all.
    let http = host.url("gamestream-http").replace("http://", "");
    let out = laptop.connect(&http, &["--accept-new-host"]);
    out.err("connection_failed");
    assert!(
        out.stderr.contains("does not speak TLS") && out.stderr.contains("port 47991"),
        "{out:#?}"
    );
}

/// Issue 22 § 3 with the reference client: a guest invite's link pairs the
/// device as Watch for an hour; `connect --hold` prints the grant `welcome`
/// carried, then each change the host sends while connected, and ends with
/// `expired` at the time the owner set.
#[test]
fn a_link_invite_pairs_a_guest_whose_session_follows_its_grant_to_its_end() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    let port = port_of(&native_addr(&host));
    let fp = host_fingerprint(&host.state_dir);
    // The host's first device gets Full whatever is asked: pair one first.
    Device::new("owner")
        .pair(&native_addr(&host), &common::arm(&console))
        .ok("paired");

    let (status, armed) = console.send(
        "POST",
        "/api/pairing/arm",
        Some(serde_json::json!({"guest": {"may": "watch", "for_s": 3600}})),
    );
    assert_eq!(status, 200, "{armed}");
    let secret = common::link_secret(armed["link"].as_str().unwrap());
    let guest = Device::new("guest phone");
    let out = guest.run(&["pair", "--link", &pairing_link(&fp, &secret, &port)]);
    out.ok("paired");
    assert!(
        out.stderr.contains("this device may: list, view; until "),
        "the grant arrives right after the ceremony: {out:#?}"
    );

    let (mut child, rx, errors, mut seen) = held(&guest, &format!("127.0.0.1:{port}"));
    let line = wait_line(&rx, "grant ", &mut seen);
    let (names, until) = line.split_once(" until ").expect("an end");
    assert_eq!(names, "list,view", "{seen:?}");
    let until: u64 = until.parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(until.abs_diff(now + 3600) < 60, "{until} vs {now}");

    let devices = devices(&console);
    let guest_fp = devices.iter().find(|d| d["name"] == "guest phone").unwrap()["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    let access = format!("/api/devices/{guest_fp}/access");
    let (status, body) = console.send(
        "PATCH",
        &access,
        Some(serde_json::json!({"may": ["list", "view", "input_controller"]})),
    );
    assert_eq!(status, 200, "{body}");
    let line = wait_line(&rx, "grant ", &mut seen);
    assert_eq!(
        line,
        format!("input_controller,list,view until {until}"),
        "a change arrives while connected"
    );

    let end_at = now + 3;
    let (status, body) = console.send(
        "PATCH",
        &access,
        Some(serde_json::json!({"expires_at": end_at})),
    );
    assert_eq!(status, 200, "{body}");
    let line = wait_line(&rx, "grant ", &mut seen);
    assert_eq!(line, format!("input_controller,list,view until {end_at}"));
    let line = wait_line(&errors, "error: ", &mut seen);
    let ended = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    assert!(line.starts_with("expired: "), "{seen:?}");
    assert!(
        ended.as_secs_f64() < end_at as f64 + 1.0,
        "ends within 1 s of the time: {ended:?} vs {end_at}"
    );
    let status = wait_timeout(&mut child, Duration::from_secs(10)).expect("client exits");
    assert!(!status.success());
}
