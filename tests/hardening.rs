//! Hardening, tried as an attacker on the same LAN would (the whole of
//! 127/8 is loopback, so each source address below is another machine):
//! login floods, a noisy address filling the waiting list, a stalled or
//! burned PIN pairing, a password change, internal errors, loose state-file
//! permissions, and names that try to hide or reorder text.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::raw_native::{self, Raw};
use common::{moonlight, Console, Host, BIN};
use openssl::ssl::{Ssl, SslContext, SslMethod, SslVerifyMode};
use punktfunk_certs::Identity;
use serde_json::{json, Value};

// ---- the console login ---------------------------------------------------------

/// The console's address (127.0.0.1:PORT).
fn console_addr(host: &Host) -> SocketAddr {
    let port: u16 = host.console.rsplit(':').next().unwrap().parse().unwrap();
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// One answer to `POST /api/login`.
#[derive(Debug)]
struct Login {
    status: u16,
    retry_after: Option<u64>,
    body: String,
}

/// A login whose connection the console closed without an answer: a door
/// that is full closes its oldest idle connections to make room (docs/limits.md
/// § Limits, "Connections"), a refusal like 429 and 503.
const CLOSED: u16 = 0;

/// `POST /api/login` from the loopback address `src`, on a new connection.
fn login_from(src: &str, console: SocketAddr, password: &str) -> Login {
    let mut b = SslContext::builder(SslMethod::tls_client()).unwrap();
    b.set_verify(SslVerifyMode::NONE);
    let ctx = b.build();
    let tcp = raw_native::tcp_from(src, console);
    tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let closed = Login {
        status: CLOSED,
        retry_after: None,
        body: String::new(),
    };
    let Ok(mut tls) = Ssl::new(&ctx).unwrap().connect(tcp) else {
        return closed;
    };
    let body = json!({ "password": password }).to_string();
    let sent = write!(
        tls,
        "POST /api/login HTTP/1.1\r\nHost: {console}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut raw = Vec::new();
    // The host may close without a TLS close_notify; what arrived counts.
    let _ = tls.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    if raw.is_empty() {
        return closed;
    }
    sent.unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let retry_after = text
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("retry-after: ")
                .map(str::to_owned)
        })
        .and_then(|v| v.trim().parse().ok());
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    Login {
        status,
        retry_after,
        body,
    }
}

/// Logs in with the right password, waiting out 429/503 as a person
/// pressing the button again would.
fn login_eventually(src: &str, console: SocketAddr, password: &str) -> Login {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = login_from(src, console, password);
        if r.status == 200 || Instant::now() > deadline {
            return r;
        }
        assert!(matches!(r.status, 429 | 503 | CLOSED), "{r:?}");
        let wait = r.retry_after.unwrap_or(1);
        std::thread::sleep(Duration::from_secs(wait.min(5)));
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Sends one wrong login per `(source, _)` at once, from as many threads;
/// returns the statuses.
fn flood(console: SocketAddr, sources: Vec<String>) -> Vec<u16> {
    let barrier = Arc::new(Barrier::new(sources.len()));
    let threads: Vec<_> = sources
        .into_iter()
        .map(|src| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                login_from(&src, console, "not the password").status
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// The memory bound a login flood must stay under (docs/limits.md): one
/// argon2 check at a time in one reused 19 MiB buffer, plus the host and
/// the flood's connections.
const LOGIN_FLOOD_RSS_MIB: u64 = 64;

#[test]
fn a_login_flood_stays_bounded_in_memory_and_the_right_password_still_logs_in() {
    let host = Host::start(&[]);
    let console = console_addr(&host);
    let pid = host.child.id();
    let before = rss_kib(pid);
    // Sample the peak while 400 wrong logins from 40 addresses arrive at once.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };
    let sources = (0..400)
        .map(|i| format!("127.0.1.{}", i % 40 + 1))
        .collect();
    let started = Instant::now();
    let statuses = flood(console, sources);
    let took = started.elapsed();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap().max(rss_kib(pid));
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| matches!(s, 429 | 503)).count();
    let closed = statuses.iter().filter(|s| **s == CLOSED).count();
    println!(
        "400 wrong logins from 40 addresses in {took:?}: {checked} checked, {refused} refused \
         unchecked, {closed} closed unanswered to make room; RSS {} KiB before, peak {} KiB",
        before, peak
    );
    assert_eq!(checked + refused + closed, 400, "{statuses:?}");
    assert!(
        peak < LOGIN_FLOOD_RSS_MIB * 1024,
        "peak RSS {peak} KiB over {LOGIN_FLOOD_RSS_MIB} MiB"
    );
    let ok = login_eventually("127.0.0.1", console, host.password());
    assert_eq!(ok.status, 200, "{ok:?}");
}

#[test]
fn sixty_concurrent_wrong_passwords_from_one_address_get_at_most_five_checks() {
    let host = Host::start(&[]);
    let console = console_addr(&host);
    let statuses = flood(console, vec!["127.0.2.1".to_owned(); 60]);
    let mut checked = statuses.iter().filter(|s| **s == 401).count();
    println!("60 at once from one address: {checked} checked");
    assert!((1..=5).contains(&checked), "{statuses:?}");
    assert!(statuses
        .iter()
        .all(|s| matches!(*s, 401 | 429 | 503 | CLOSED)));
    // Going on one at a time, the address gets the rest of its five, then
    // waits out its window.
    let blocked = loop {
        let r = login_from("127.0.2.1", console, "still wrong");
        match r.status {
            401 => checked += 1,
            429 if r.retry_after.unwrap() > 1 => break r,
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
        assert!(checked <= 5, "{checked} checks from one address");
    };
    assert!(blocked.body.contains("127.0.2.1"), "{blocked:?}");
    let again = login_from("127.0.2.1", console, host.password());
    assert_eq!(again.status, 429, "the right password waits too: {again:?}");
    // Another address gets in at once.
    assert_eq!(
        login_from("127.0.2.2", console, host.password()).status,
        200
    );
}

#[test]
fn five_thousand_source_addresses_cannot_outrun_the_global_budget() {
    let host = Host::start(&[]);
    let console = console_addr(&host);
    // 5,000 distinct addresses, one wrong password each, 16 at a time.
    let started = Instant::now();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..16u32)
            .map(|w| {
                s.spawn(move || {
                    (0..5000u32)
                        .filter(|i| i % 16 == w)
                        .map(|i| {
                            let src = format!("127.3.{}.{}", i / 250, i % 250 + 1);
                            login_from(&src, console, "guess").status
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let took = started.elapsed().as_secs_f64();
    let checked = statuses.iter().filter(|s| **s == 401).count() as f64;
    println!(
        "5,000 addresses in {took:.1} s: {checked} password checks ({:.1}/s), {} refused unchecked",
        checked / took,
        5000 - checked as usize
    );
    assert!(statuses
        .iter()
        .all(|s| matches!(*s, 401 | 429 | 503 | CLOSED)));
    // The budget: 10 checks a second and a burst of 10, whatever the table.
    assert!(
        checked <= 10.0 * took + 10.0 + 2.0,
        "{checked} checks in {took} s"
    );
    // The person with the right password gets in on a later try.
    let ok = login_eventually("127.0.0.1", console, host.password());
    assert_eq!(ok.status, 200, "{ok:?}");
}

#[test]
fn a_new_password_ends_every_session() {
    let host = Host::start(&[]);
    let console = Console::login(&host);
    assert_eq!(console.pairing()["armed"], Value::Null);
    assert!(
        common::set_password(&host.state_dir, "a brand new password")
            .status
            .success()
    );
    let old = console
        .http
        .get(format!("{}/api/pairing", console.base))
        .send()
        .unwrap();
    assert_eq!(old.status(), 401);
    let (status, _) = console.send("POST", "/api/pairing/arm", None);
    assert_eq!(status, 401);
    let addr = console_addr(&host);
    assert_eq!(login_from("127.0.0.1", addr, host.password()).status, 401);
    assert_eq!(
        login_from("127.0.0.1", addr, "a brand new password").status,
        200
    );
}

#[test]
fn an_internal_error_names_no_path() {
    let host = Host::start(&[]);
    // The password file cannot be read (a directory stands in its place:
    // unlike chmod 000, that also stops root).
    let file = host.state_dir.join("console.passwd");
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();
    let r = login_from("127.0.0.1", console_addr(&host), "whatever");
    assert_eq!(r.status, 500, "{r:?}");
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["error"]["code"], "internal");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("internal error (id "), "{message}");
    for secret in [host.state_dir.to_str().unwrap(), "console.passwd", "/"] {
        assert!(!message.contains(secret), "{message} names {secret}");
    }
}

#[test]
fn loose_state_file_permissions_are_tightened_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let host = Host::start_in(&dir, &["--native"]);
    let console = Console::login(&host);
    let (_raw, _, _) = raw_native::knock("127.0.0.1", raw_native::addr(&host), "tablet");
    let id = console.pairing()["pending"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = console.send("POST", &format!("/api/pending/{id}/approve"), None);
    assert_eq!(status, 200);
    assert!(host.stop().success());
    let set = |p: &std::path::Path, mode| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let private = ["host.key", "trust.json", "console.passwd"].map(|f| dir.join(f));
    for f in &private {
        set(f, 0o644);
    }
    set(&dir, 0o755);
    let host = Host::start_in(&dir, &[]);
    assert_eq!(mode(&dir), 0o700);
    for f in &private {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    drop(host);
}

// ---- the waiting list ------------------------------------------------------------

fn pending(console: &Console) -> Vec<Value> {
    console.pairing()["pending"].as_array().unwrap().clone()
}

#[test]
fn one_address_cannot_fill_the_waiting_list_and_deny_all_clears_it() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    let native = raw_native::addr(&host);
    // Six knocks, each with a fresh certificate, from one machine.
    let mut held = Vec::new();
    let mut answers = Vec::new();
    for i in 0..6 {
        let (raw, _, answer) = raw_native::knock("127.0.4.1", native, &format!("knock {i}"));
        answers.push(
            answer["status"]
                .as_str()
                .or(answer["code"].as_str())
                .unwrap()
                .to_owned(),
        );
        held.push(raw);
    }
    assert_eq!(
        answers,
        [
            "approval_pending",
            "approval_pending",
            "approval_pending",
            "approval_pending",
            "pairing_busy",
            "pairing_busy"
        ]
    );
    assert_eq!(pending(&console).len(), 4);
    // Another machine still knocks...
    let (_other, other_id, answer) = raw_native::knock("127.0.4.2", native, "other");
    assert_eq!(answer["status"], "approval_pending", "{answer}");
    // ...and a real Moonlight on a third pairs through the console.
    let door = moonlight::Door::of(&host);
    let moon = moonlight::Device::from("127.0.4.3");
    moonlight::pair(&console, door, &moon);
    let list = pending(&console);
    assert_eq!(list.len(), 5);
    assert!(list
        .iter()
        .any(|p| p["fingerprint"] == other_id.fingerprint().to_string()));
    // One click dismisses all of them; the knocks hear `denied`.
    let (status, body) = console.send("POST", "/api/pending/deny-all", None);
    assert_eq!((status, body), (200, json!({"denied": 5})));
    assert!(pending(&console).is_empty());
    assert_eq!(
        held[0].recv().unwrap(),
        json!({"type": "decision", "outcome": "denied"})
    );
    // The address can knock again (deny is not a blocklist).
    let (_again, _, answer) = raw_native::knock("127.0.4.1", native, "again");
    assert_eq!(answer["status"], "approval_pending", "{answer}");
}

#[test]
fn a_certificate_replayed_from_another_address_does_not_replace_the_waiting_request() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    // Native: the victim knocks; its (public) certificate is replayed
    // from another machine (the attacker cannot finish TLS with it, so
    // here the test holds the key; the host must still refuse).
    let native = raw_native::addr(&host);
    let (_victim, id, answer) = raw_native::knock("127.0.5.1", native, "victim");
    assert_eq!(answer["status"], "approval_pending");
    let mut replay = Raw::connect("127.0.5.2", native, &id);
    let answer = replay.hello("victim", "connect");
    assert_eq!(answer["code"], "pairing_busy", "{answer}");
    let list = pending(&console);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["address"], "127.0.5.1");

    // GameStream: a Moonlight waits for its PIN; the same certificate in
    // a getservercert from another address is refused and the victim's
    // request stays, and then pairs.
    let door = moonlight::Door::of(&host);
    let moon = moonlight::Device::from("127.0.5.3");
    let run = moon.pair(door, "7319");
    let waiting = moonlight::pending(&console, &moon.fingerprint);
    let pem = std::fs::read(format!("{}/cert.pem", moon.dir)).unwrap();
    let query = format!(
        "devicename=roth&updateState=1&phrase=getservercert&salt={}&clientcert={}",
        "00".repeat(16),
        hex::encode(pem)
    );
    let reply = moonlight::http(door, "pair", &query, "127.0.5.4");
    assert_ne!(reply["status_code"], "200", "{reply}");
    let still = moonlight::pending(&console, &moon.fingerprint);
    assert_eq!(still["id"], waiting["id"]);
    assert_eq!(still["address"], "127.0.5.3");
    let (status, body) = moonlight::enter_pin(&console, &moon.fingerprint, "7319", None);
    assert_eq!((status, body), (200, json!({"result": "paired"})));
    assert_eq!(run.next()["result"], "paired");
    run.wait();
}

// ---- native PIN pairing ----------------------------------------------------------

#[test]
fn a_stalled_pairing_holds_nothing_is_cut_at_the_deadline_and_is_recorded() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    let pin = common::arm(&console);
    let native = raw_native::addr(&host);
    // The attacker asks to pair and then sends nothing.
    let stall_id = Identity::generate_p256("staller").unwrap();
    let mut stall = Raw::connect("127.0.6.1", native, &stall_id);
    let welcome = stall.hello("staller", "pair");
    assert_eq!(welcome["status"], "pairing", "{welcome}");
    let started = Instant::now();
    // Waiting for `pake` holds nothing: no exchange is shown.
    assert_eq!(console.pairing()["exchange"], Value::Null);
    // The real user, racing the stalled attacker.
    let client_dir = tempfile::tempdir().unwrap();
    let user = Command::new(BIN)
        .args([
            "pair",
            &format!("127.0.0.1:{}", native.port()),
            "--pin",
            &pin,
            "--name",
            "Anna's laptop",
            "--client-dir",
        ])
        .arg(client_dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The host cuts the staller off at the documented 5 s step deadline.
    let cut = stall.recv();
    let held_for = started.elapsed();
    println!("stalled pairing cut off after {held_for:?}: {cut:?}");
    assert_eq!(
        cut.as_ref().map(|m| m["code"].clone()),
        Some(json!("timeout"))
    );
    assert!(held_for < Duration::from_secs(8), "{held_for:?}");
    let out = user.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("paired"), "{stdout}");
    // The arming was not spent by the staller: the user's pairing used it.
    let state = console.pairing();
    assert_eq!(state["last_attempt"]["result"], "paired", "{state}");
    assert_eq!(state["exchange"], Value::Null);
    // The audit trail names who stalled.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let audit = std::fs::read_to_string(host.state_dir.join("audit.jsonl")).unwrap_or_default();
        if let Some(line) = audit.lines().find(|l| l.contains("\"pairing_stalled\"")) {
            assert!(
                line.contains("127.0.6.1") && line.contains("staller"),
                "{line}"
            );
            assert!(line.contains(&stall_id.fingerprint().to_string()), "{line}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no pairing_stalled entry: {audit}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_console_names_who_burned_an_arming() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    common::arm(&console);
    let native = raw_native::addr(&host);
    let id = Identity::generate_p256("guesser").unwrap();
    let mut raw = Raw::connect("127.0.6.2", native, &id);
    assert_eq!(raw.hello("Guesser\u{202E}", "pair")["status"], "pairing");
    // A well-formed 33-byte SPAKE2 message that is not a valid point for
    // side A: the host takes the PIN, then the exchange fails.
    let msg = openssl::base64::encode_block(&[0x42u8; 33]);
    raw.send(&json!({"type": "pake", "msg": msg}));
    let answer = raw.recv();
    assert!(
        answer.as_ref().is_none_or(|a| a["type"] == "error"),
        "{answer:?}"
    );
    let state = console.pairing();
    assert_eq!(
        state["armed"]["pin_used"], true,
        "the typed PIN is used up: {state}"
    );
    let last = &state["last_attempt"];
    assert_eq!(last["result"], "pin_rejected", "{state}");
    assert_eq!(last["by"]["address"], "127.0.6.2");
    assert_eq!(last["by"]["name"], "Guesser");
    assert_eq!(last["by"]["fingerprint"], id.fingerprint().to_string());
}

// ---- one name rule ------------------------------------------------------------------

#[test]
fn every_door_and_the_console_apply_one_name_rule() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    // Native door: bidi override, zero-width, tabs, over-long.
    let native = raw_native::addr(&host);
    let (_a, a, _) = raw_native::knock("127.0.7.1", native, "Living Room\u{202E}\u{200B}\t\tTV ");
    let long = format!("{}\u{2066}", "é".repeat(100));
    let (_b, b, _) = raw_native::knock("127.0.7.2", native, &long);
    let names: Vec<(String, String)> = pending(&console)
        .iter()
        .map(|p| {
            (
                p["fingerprint"].as_str().unwrap().to_owned(),
                p["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        names.contains(&(a.fingerprint().to_string(), "Living Room TV".to_owned())),
        "{names:?}"
    );
    assert!(
        names.contains(&(b.fingerprint().to_string(), "é".repeat(64))),
        "{names:?}"
    );
    console.send("POST", "/api/pending/deny-all", None);

    // GameStream door: a Moonlight-family client that names itself.
    let door = moonlight::Door::of(&host);
    let gs = Identity::generate("NVIDIA GameStream Client").unwrap();
    let query = format!(
        "devicename={}&updateState=1&phrase=getservercert&salt={}&clientcert={}",
        "Den%E2%80%AE%E2%80%8B%09%09Deck",
        "00".repeat(16),
        hex::encode(gs.cert_pem())
    );
    let held = std::thread::spawn(move || moonlight::http(door, "pair", &query, "127.0.7.3"));
    let request = moonlight::pending(&console, &gs.fingerprint().to_string());
    assert_eq!(request["name"], "Den Deck", "{request}");
    console.send("POST", "/api/pending/deny-all", None);
    held.join().unwrap();

    // Stock Moonlight says "roth": the console shows where it is instead.
    let moon = moonlight::Device::from("127.0.7.4");
    let run = moon.pair(door, "1357");
    assert_eq!(
        moonlight::pending(&console, &moon.fingerprint)["name"],
        "Moonlight on 127.0.7.4"
    );
    // The PIN entry's label follows the same rule.
    let (status, body) = moonlight::enter_pin(
        &console,
        &moon.fingerprint,
        "1357",
        Some(" Den\u{202E}\t TV "),
    );
    assert_eq!((status, body), (200, json!({"result": "paired"})));
    assert_eq!(run.next()["result"], "paired");
    run.wait();
    let device = moonlight::device(&console, &moon.fingerprint).unwrap();
    assert_eq!(device["label"], "Den TV");
    assert_eq!(device["name"], "Moonlight on 127.0.7.4");

    // Console labels: cleaned, and an over-long one is refused.
    let path = format!("/api/devices/{}", moon.fingerprint);
    let (status, body) = console.send(
        "PATCH",
        &path,
        Some(json!({"label": "\u{200B}Kitchen\u{2067} \n"})),
    );
    assert_eq!((status, &body["label"]), (200, &json!("Kitchen")), "{body}");
    let (status, body) = console.send("PATCH", &path, Some(json!({"label": "x".repeat(65)})));
    assert_eq!(status, 400, "{body}");
    let (status, body) = console.send("PATCH", &path, Some(json!({"label": "\u{200B} "})));
    assert_eq!((status, &body["label"]), (200, &Value::Null), "{body}");
}
