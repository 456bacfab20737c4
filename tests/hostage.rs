//! Native PIN pairing cannot be held hostage (docs/native-protocol.md § 6.5,
//! § 12): the real `punktfunk serve --native`, the real reference client
//! (`punktfunk pair`), and attackers at other loopback addresses (the whole
//! of 127/8 is loopback: another address is another machine on the LAN).
//!
//! - A staller says `hello{intent: pair}` and goes silent, reconnecting at
//!   once whenever the host closes it: a PIN pairing from another address
//!   still goes through, and the host records who stalled.
//! - A sniper guesses wrong at the typed PIN and at the link's secret, over
//!   and over: a link (QR) pairing still goes through.

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::raw_native::{self, Raw};
use common::{wait_timeout, Console, Host, BIN};
use punktfunk_certs::Identity;
use serde_json::json;

/// § 10's `msg_a`: side A, a valid point; with a made-up `confirm` it is a
/// wrong guess the host can only tell after it answered.
const MSG_A: &str = "QXm+2vNp+im+xPCBIYGVAdqpfKiXDjjMEvodoJZhsLUk";

/// `punktfunk pair ARGS` as a fresh device; its last stdout line and exit
/// status.
fn pair(args: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .arg("pair")
        .args(args)
        .arg("--client-dir")
        .arg(dir.path().join("client"))
        .args(["--name", "Anna's iPad"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(30));
    if status.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stdout.lines().last().unwrap_or("").to_owned();
    (out.status.success(), format!("{last}\nstderr: {stderr}"))
}

/// Runs `attack(n)` on `threads` threads from 127.0.<net>.<1..>,
/// `per_address` threads to an address, until the returned flag is set.
fn attackers(
    threads: u8,
    per_address: u8,
    net: u8,
    attack: impl Fn(&str, &AtomicBool) + Send + Sync + 'static,
) -> (Arc<AtomicBool>, Vec<std::thread::JoinHandle<()>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let attack = Arc::new(attack);
    let handles = (0..threads)
        .map(|i| {
            let (stop, attack) = (stop.clone(), attack.clone());
            std::thread::spawn(move || {
                let src = format!("127.0.{net}.{}", 1 + i / per_address);
                while !stop.load(Ordering::Relaxed) {
                    attack(&src, &stop);
                }
            })
        })
        .collect();
    (stop, handles)
}

fn wait_for(what: &str, count: &AtomicUsize, at_least: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while count.load(Ordering::Relaxed) < at_least {
        assert!(Instant::now() < deadline, "no {what} within 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn audit_lines(host: &Host) -> String {
    std::fs::read_to_string(host.state_dir.join("audit.jsonl")).unwrap_or_default()
}

#[test]
fn a_staller_cannot_stop_a_pin_pairing_from_another_address() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    let dst = raw_native::addr(&host);
    let pin = common::arm(&console);

    // Four addresses: hello{pair}, then silence until the host closes the
    // connection after its step deadline; on odd addresses the staller
    // hangs up at once instead. Either way it reconnects at once.
    let welcomed = Arc::new(AtomicUsize::new(0));
    let w = welcomed.clone();
    let id = Identity::generate_p256("staller").unwrap();
    let fp = id.fingerprint().to_hex();
    let (stop, handles) = attackers(4, 1, 2, move |src, _| {
        let Some(mut raw) = raw_native::welcomed_to_pair(src, dst, &id) else {
            return;
        };
        w.fetch_add(1, Ordering::Relaxed);
        if src.ends_with(".1") || src.ends_with(".3") {
            return;
        }
        // The host's error{timeout} after 5 s, then its close.
        let _ = raw.recv();
    });
    wait_for("stalled welcome{pairing}", &welcomed, 2);

    let port = dst.port().to_string();
    let (ok, out) = pair(&[&format!("127.0.0.1:{port}"), "--pin", &pin]);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    println!(
        "PIN pairing through {} stalled welcome{{pairing}}",
        welcomed.load(Ordering::Relaxed)
    );
    assert!(ok && out.starts_with("paired"), "{out}");
    let state = console.pairing();
    assert_eq!(state["last_attempt"]["result"], "paired", "{state}");
    assert_eq!(state["devices"][0]["name"], "Anna's iPad", "{state}");

    // Who stalled is on record: address, name and fingerprint.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let audit = audit_lines(&host);
        let stalled = audit
            .lines()
            .find(|l| l.contains("\"pairing_stalled\"") && l.contains("127.0.2."));
        if let Some(line) = stalled {
            assert!(line.contains("staller"), "{line}");
            assert!(line.contains(&fp), "{line}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no pairing_stalled entry: {audit}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stallers from 20 addresses, 4 each (80 for the host's 64 places of
/// connections waiting for their `pake`), each reconnecting as soon as the
/// host closes it: a PIN pairing from another address still goes through,
/// because the oldest staller gives way to a newcomer. Before, every place
/// stayed taken and the real client got `pairing_busy` for its whole retry
/// window.
#[test]
fn stallers_from_many_addresses_cannot_fill_the_pairing_places() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    let dst = raw_native::addr(&host);
    let pin = common::arm(&console);

    let welcomed = Arc::new(AtomicUsize::new(0));
    let w = welcomed.clone();
    let id = Identity::generate_p256("staller").unwrap();
    let (stop, handles) = attackers(80, 4, 3, move |src, _| {
        match raw_native::welcomed_to_pair(src, dst, &id) {
            Some(mut raw) => {
                w.fetch_add(1, Ordering::Relaxed);
                // Silent until the host closes it (its step deadline, or
                // to make room).
                let _ = raw.recv();
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    });
    wait_for("64 stalled welcome{pairing}", &welcomed, 64);

    let port = dst.port().to_string();
    let (ok, out) = pair(&[&format!("127.0.0.1:{port}"), "--pin", &pin]);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    println!(
        "PIN pairing through {} stalled welcome{{pairing}} from 20 addresses",
        welcomed.load(Ordering::Relaxed)
    );
    assert!(ok && out.starts_with("paired"), "{out}");
    let state = console.pairing();
    assert_eq!(state["last_attempt"]["result"], "paired", "{state}");
}

/// One wrong guess: `hello{pair}` (with `via: link` if `link`), a valid
/// `pake`, a made-up `confirm`. Whether the host got as far as rejecting
/// it (`pin_rejected`).
fn wrong_guess(src: &str, dst: std::net::SocketAddr, id: &Identity, link: bool) -> bool {
    let mut raw = Raw::connect(src, dst, id);
    let mut hello =
        json!({"type": "hello", "protocol": 1, "device_name": "sniper", "intent": "pair"});
    if link {
        hello["via"] = json!("link");
    }
    raw.send(&hello);
    match raw.recv() {
        Some(w) if w["status"] == "pairing" => {}
        _ => return false,
    }
    raw.send(&json!({"type": "pake", "msg": MSG_A}));
    match raw.recv() {
        Some(p) if p["type"] == "pake" => {}
        _ => return false,
    }
    raw.send(&json!({"type": "confirm", "mac": base64_of([7u8; 32])}));
    matches!(raw.recv(), Some(e) if e["code"] == "pin_rejected")
}

fn base64_of(bytes: [u8; 32]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn a_sniper_cannot_stop_a_link_pairing() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    let dst = raw_native::addr(&host);
    let (_, shown) = common::arm_with_link(&console);
    let secret = common::link_secret(&shown);

    // Wrong guesses from six addresses, at the typed PIN and at the link,
    // as fast as the host answers.
    let (pin_guesses, link_guesses) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (p, l) = (pin_guesses.clone(), link_guesses.clone());
    let id = Identity::generate_p256("sniper").unwrap();
    let (stop, handles) = attackers(6, 1, 3, move |src, _| {
        if wrong_guess(src, dst, &id, false) {
            p.fetch_add(1, Ordering::Relaxed);
        }
        if wrong_guess(src, dst, &id, true) {
            l.fetch_add(1, Ordering::Relaxed);
        }
    });
    wait_for("wrong guess at the typed PIN", &pin_guesses, 1);
    wait_for("wrong guesses at the link", &link_guesses, 6);

    // The QR code's link, with the address the test host listens on.
    let fp = console.pairing()["host"]["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    let link = format!(
        "punktfunk://pair?v=2&fp={fp}&s={secret}&port={}&a=127.0.0.1&n=Test",
        dst.port()
    );
    let (ok, out) = pair(&["--link", &link]);
    let guesses_meanwhile = link_guesses.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    println!(
        "link pairing through {} wrong typed-PIN and {guesses_meanwhile} wrong link guesses",
        pin_guesses.load(Ordering::Relaxed)
    );
    assert!(ok && out.starts_with("paired"), "{out}");
    assert!(guesses_meanwhile >= 6, "{guesses_meanwhile}");
    let state = console.pairing();
    assert_eq!(state["last_attempt"]["result"], "paired", "{state}");
    assert_eq!(state["devices"][0]["name"], "Anna's iPad", "{state}");
    // The success ended the arming: link and PIN.
    assert!(state["armed"].is_null(), "{state}");
    assert!(audit_lines(&host).contains("\"link_rejected\""));
}
