//! The audit trail end to end, against the real binary: a full scenario
//! through both doors and the console is in `audit.jsonl` and in
//! `GET /api/audit`, exactly and in order, with no secret in the file; a
//! SIGKILL in the middle of a burst of decisions loses none that was
//! acknowledged.

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::moonlight::{self, Device, Door};
use common::raw_native;
use common::{client, Console, Host, BIN};
use serde_json::{json, Value};

/// The records in the state dir's audit file, oldest first.
fn trail(state_dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(state_dir.join("audit.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Logs in and returns the console with its session token (a secret the
/// file must not contain).
fn login_capturing_token(host: &Host) -> (Console, String) {
    let http = client();
    let resp = common::logged_in(&http, host);
    let token = resp
        .cookies()
        .find(|c| c.name() == "pf_session")
        .map(|c| c.value().to_owned())
        .expect("a session cookie");
    let body: Value = resp.json().unwrap();
    let console = Console {
        http,
        base: host.console.clone(),
        csrf: body["csrf"].as_str().unwrap().to_owned(),
    };
    (console, token)
}

/// `punktfunk pair` (the native reference client) with its own identity.
fn native_pair(client_dir: &Path, addr: &str, pin: &str, name: &str) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .args(["pair", addr, "--pin", pin, "--name", name, "--client-dir"])
        .arg(client_dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn native_fingerprint(client_dir: &Path) -> String {
    let pem = std::fs::read_to_string(client_dir.join(punktfunk_native::client::CLIENT_CERT_FILE))
        .unwrap();
    moonlight::sha256_hex_of_pem(&pem)
}

fn pending_id(console: &Console, fp: &str) -> String {
    moonlight::pending(console, fp)["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// (event, door, outcome, device fingerprint) of a record, for comparing.
fn shape(r: &Value) -> (String, String, String, String) {
    let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
    (
        s(&r["event"]),
        s(&r["door"]),
        s(&r["outcome"]),
        s(&r["device"]["fingerprint"]),
    )
}

#[test]
fn a_full_scenario_is_recorded_exactly_in_order_with_no_secret() {
    let host = Host::start(&["--native"]);
    let door = Door::of(&host);
    let native = host.url("native");
    let native = native.as_str();
    let loopback: IpAddr = [127, 0, 0, 1].into();
    let mut expected: Vec<(&str, &str, &str, String)> = Vec::new();
    let mut push = |e: &'static str, d: &'static str, o: &'static str, fp: &str| {
        expected.push((e, d, o, fp.to_owned()))
    };
    push("host_identity_created", "host", "ok", "");

    // A failed login, then the right one.
    let wrong_password = "not the password at all";
    let resp = client()
        .post(format!("{}/api/login", host.console))
        .json(&json!({ "password": wrong_password }))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 401);
    push("login", "console", "failed", "");
    let (console, token) = login_capturing_token(&host);
    push("login", "console", "ok", "");

    // Native: a wrong PIN spends the arming, the right PIN pairs.
    let tmp = tempfile::tempdir().unwrap();
    let ipad = tmp.path().join("ipad");
    let pin1 = common::arm(&console);
    push("pairing_armed", "console", "ok", "");
    let wrong = format!("{:04}", (pin1.parse::<u32>().unwrap() + 1) % 10_000);
    let (code, out) = native_pair(&ipad, native, &wrong, "Anna's iPad");
    assert_ne!(code, Some(0), "{out}");
    let ipad_fp = native_fingerprint(&ipad);
    push("pin_rejected", "native", "failed", &ipad_fp);
    let pin2 = common::arm(&console);
    push("pairing_armed", "console", "ok", "");
    let (code, out) = native_pair(&ipad, native, &pin2, "Anna's iPad");
    assert_eq!(code, Some(0), "{out}");
    push("paired", "native", "ok", &ipad_fp);

    // Moonlight: the PIN typed into the console pairs; a wrong one does not.
    let deck = Device::new();
    moonlight::pair(&console, door, &deck);
    push("request_waiting", "gamestream", "ok", &deck.fingerprint);
    push("pin_entered", "console", "ok", &deck.fingerprint);
    push("paired", "gamestream", "ok", &deck.fingerprint);
    let laptop = Device::from("127.0.0.2");
    let run = laptop.pair_wrong(door, "4242", "2424");
    let (status, body) = moonlight::enter_pin(&console, &laptop.fingerprint, "2424", None);
    assert_eq!((status, &body), (200, &json!({"result": "pin_rejected"})));
    let _ = run.next();
    run.wait();
    push("request_waiting", "gamestream", "ok", &laptop.fingerprint);
    push("pin_entered", "console", "ok", &laptop.fingerprint);
    push("pin_rejected", "gamestream", "failed", &laptop.fingerprint);

    // A one-time PIN: nobody types.
    let (status, otp) = console.send("POST", "/api/otp", Some(json!({"name": "Steam Deck"})));
    assert_eq!(status, 200, "{otp}");
    push("otp_created", "console", "ok", "");
    let (otp_pin, passphrase) = (
        otp["pin"].as_str().unwrap().to_owned(),
        otp["passphrase"].as_str().unwrap().to_owned(),
    );
    let artemis = Device::from("127.0.0.3");
    let run = artemis.pair_otp(door, &otp_pin, &passphrase);
    assert_eq!(run.next()["result"], "paired");
    run.wait();
    push("otp_used", "gamestream", "ok", "");
    push("request_waiting", "gamestream", "ok", &artemis.fingerprint);
    push("paired", "gamestream", "ok", &artemis.fingerprint);

    // Native knocks: one approved with a label, one denied.
    let dst = raw_native::addr(&host);
    let (mut tv, tv_id, answer) = raw_native::knock("127.0.0.5", dst, "Living Room TV");
    assert_eq!(answer["status"], "approval_pending", "{answer}");
    let tv_fp = tv_id.fingerprint().to_string();
    push("request_waiting", "native", "ok", &tv_fp);
    let id = pending_id(&console, &tv_fp);
    let (status, body) = console.send(
        "POST",
        &format!("/api/pending/{id}/approve"),
        Some(json!({"label": "TV"})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(tv.recv().unwrap()["outcome"], "approved");
    push("request_approved", "console", "ok", &tv_fp);
    push("paired", "native", "ok", &tv_fp);
    let (mut stranger, stranger_id, _) = raw_native::knock("127.0.0.6", dst, "Stranger");
    let stranger_fp = stranger_id.fingerprint().to_string();
    push("request_waiting", "native", "ok", &stranger_fp);
    let id = pending_id(&console, &stranger_fp);
    let (status, body) = console.send("POST", &format!("/api/pending/{id}/deny"), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(stranger.recv().unwrap()["outcome"], "denied");
    push("request_denied", "console", "ok", &stranger_fp);

    // Rename, revoke, log out.
    let (status, body) = console.send(
        "PATCH",
        &format!("/api/devices/{tv_fp}"),
        Some(json!({"label": "Bedroom TV"})),
    );
    assert_eq!(status, 200, "{body}");
    push("renamed", "console", "ok", &tv_fp);
    let (status, body) = console.send(
        "DELETE",
        &format!("/api/devices/{}", deck.fingerprint),
        None,
    );
    assert_eq!(status, 200, "{body}");
    push("revoked", "console", "ok", &deck.fingerprint);
    // Read the API before logging out (newest first, paged).
    let mut api = Vec::new();
    let mut cursor: Option<u64> = None;
    loop {
        let path = match cursor {
            Some(c) => format!("/api/audit?limit=7&before={c}"),
            None => "/api/audit?limit=7".to_owned(),
        };
        let page = console.get(&path);
        api.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next"].as_u64() {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let by_device = console.get(&format!("/api/audit?device={tv_fp}"));
    let (status, _) = console.send("POST", "/api/logout", None);
    assert_eq!(status, 200);
    push("logout", "console", "ok", "");
    drop(tv);

    // Exactly those events, in order.
    let records = trail(&host.state_dir);
    let got: Vec<_> = records.iter().map(shape).collect();
    let want: Vec<_> = expected
        .iter()
        .map(|(e, d, o, fp)| (e.to_string(), d.to_string(), o.to_string(), fp.clone()))
        .collect();
    assert_eq!(got, want, "the audit file: {records:#?}");
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=records.len() as u64).collect::<Vec<_>>());
    // The API lists the same records, newest first (all but the logout,
    // which came after the read).
    let mut api_oldest_first = api.clone();
    api_oldest_first.reverse();
    assert_eq!(api_oldest_first, records[..records.len() - 1].to_vec());
    let tv_events: Vec<&str> = by_device["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        tv_events,
        ["renamed", "paired", "request_approved", "request_waiting"]
    );

    // The right fields.
    let find = |event: &str, fp: &str| {
        records
            .iter()
            .find(|r| r["event"] == event && r["device"]["fingerprint"] == fp)
            .unwrap_or_else(|| panic!("no {event} for {fp}"))
            .clone()
    };
    for r in &records {
        let at = r["at"].as_str().unwrap();
        assert!(
            at.len() == 20 && at.ends_with('Z') && at.as_bytes()[10] == b'T',
            "{at}"
        );
    }
    let tv_paired = find("paired", &tv_fp);
    assert_eq!(tv_paired["via"], "approval");
    assert_eq!(tv_paired["address"], "127.0.0.5");
    assert_eq!(tv_paired["device"]["name"], "Living Room TV");
    assert_eq!(tv_paired["device"]["label"], "TV");
    let approved = find("request_approved", &tv_fp);
    assert_eq!(
        approved["address"],
        loopback.to_string(),
        "who approved: the console user"
    );
    assert_eq!(find("renamed", &tv_fp)["device"]["label"], "Bedroom TV");
    assert_eq!(find("paired", &ipad_fp)["via"], "pin");
    assert_eq!(find("paired", &ipad_fp)["device"]["name"], "Anna's iPad");
    assert_eq!(find("paired", &artemis.fingerprint)["via"], "otp");
    assert_eq!(
        find("paired", &artemis.fingerprint)["device"]["name"],
        "Steam Deck"
    );
    assert_eq!(find("paired", &deck.fingerprint)["via"], "pin");
    assert_eq!(
        find("pin_rejected", &laptop.fingerprint)["address"],
        "127.0.0.2"
    );
    assert_eq!(
        find("request_denied", &stranger_fp)["detail"],
        "punktfunk app request from 127.0.0.6"
    );
    assert_eq!(records[1]["address"], "127.0.0.1");

    // No secret: not the password (right or wrong), a PIN, the one-time
    // passphrase, the session token, the CSRF token or the host key.
    let file = std::fs::read_to_string(host.state_dir.join("audit.jsonl")).unwrap();
    let key = std::fs::read_to_string(host.state_dir.join("host.key")).unwrap();
    let key_body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut secrets = vec![
        host.password().to_owned(),
        wrong_password.to_owned(),
        passphrase.clone(),
        token.clone(),
        console.csrf.clone(),
    ];
    secrets.extend(
        key_body
            .as_bytes()
            .chunks(24)
            .map(|c| String::from_utf8_lossy(c).into_owned()),
    );
    for secret in &secrets {
        assert!(
            !file.contains(secret.as_str()),
            "the audit file contains a secret: {secret}"
        );
    }
    // PINs are four digits, which a fingerprint or time may contain by
    // chance: look for them in every field a person reads instead.
    let pins = [
        pin1,
        wrong,
        pin2,
        "4242".into(),
        "2424".into(),
        "5170".into(),
        otp_pin,
    ];
    for r in &records {
        for field in ["detail", "outcome", "event"] {
            let text = r[field].as_str().unwrap_or("");
            for pin in &pins {
                assert!(!text.contains(pin.as_str()), "{field} holds a PIN: {r}");
            }
        }
        for name in ["name", "label"] {
            let text = r["device"][name].as_str().unwrap_or("");
            for pin in &pins {
                assert!(
                    !text.contains(pin.as_str()),
                    "a device {name} holds a PIN: {r}"
                );
            }
        }
    }
    // Private to the host's user.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(host.state_dir.join("audit.jsonl"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_sigkill_during_a_burst_of_decisions_loses_no_acknowledged_one() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    let host = Host::start_in(&state_dir, &["--native"]);
    let console = Arc::new(common::Console::login(&host));
    // One paired device to rename, many times over.
    let tmp = tempfile::tempdir().unwrap();
    let ipad = tmp.path().join("ipad");
    let native = host.url("native");
    let native = native.as_str();
    let pin = common::arm(&console);
    let (code, out) = native_pair(&ipad, native, &pin, "iPad");
    assert_eq!(code, Some(0), "{out}");
    let fp = native_fingerprint(&ipad);

    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let (console, acked, stop, fp) =
                (console.clone(), acked.clone(), stop.clone(), fp.clone());
            std::thread::spawn(move || {
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let label = format!("label {w}-{i}");
                    let sent = console
                        .http
                        .patch(format!("{}/api/devices/{fp}", console.base))
                        .header("X-CSRF-Token", &console.csrf)
                        .json(&json!({ "label": label }))
                        .timeout(Duration::from_secs(5))
                        .send();
                    match sent {
                        Ok(r) if r.status() == 200 => {
                            acked.lock().unwrap().insert(label);
                        }
                        // The host is gone: what was not acknowledged may
                        // or may not be in the trail.
                        _ => break,
                    }
                }
            })
        })
        .collect();
    // Let the burst run, then kill the host without warning.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < 150 {
        assert!(
            std::time::Instant::now() < deadline,
            "the burst did not get going"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SIGKILL; the state dir is this test's, so it stays.
    let password = host.password().to_owned();
    host.kill();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    // Every acknowledged rename is in the file; a torn last line, if the
    // kill caught one, is the only line that may not parse.
    let text = std::fs::read_to_string(state_dir.join("audit.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut recorded = BTreeSet::new();
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str::<Value>(line) {
            Ok(r) if r["event"] == "renamed" => {
                recorded.insert(r["device"]["label"].as_str().unwrap().to_owned());
            }
            Ok(_) => {}
            Err(e) => assert_eq!(i, lines.len() - 1, "only the last line may be torn: {e}"),
        }
    }
    let lost: Vec<_> = acked.difference(&recorded).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged renames are not in the trail: {lost:?}",
        lost.len()
    );
    assert!(acked.len() >= 150);

    // A restart reads the trail (skipping a torn line) and continues it.
    let mut host = Host::start_in(&state_dir, &["--native"]);
    host.password = Some(password);
    let console = Console::login(&host);
    let page = console.get("/api/audit?limit=1");
    assert_eq!(page["events"][0]["event"], "login");
    let seq = page["events"][0]["seq"].as_u64().unwrap();
    let last_before = lines
        .iter()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap()["seq"]
        .as_u64()
        .unwrap();
    assert_eq!(seq, last_before + 1);
}

#[test]
fn the_audit_api_needs_a_session_and_checks_its_parameters() {
    let host = Host::start(&[]);
    let resp = client()
        .get(format!("{}/api/audit", host.console))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 401);
    let console = Console::login(&host);
    let resp = console
        .http
        .get(format!("{}/api/audit?device=nothex", host.console))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = console
        .http
        .get(format!("{}/api/audit?limit=-1", host.console))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
    // The limit is capped, not refused.
    let page = console.get("/api/audit?limit=100000");
    assert_eq!(page["events"].as_array().unwrap().len(), 2, "{page}");
    assert_eq!(page["next"], Value::Null);
}
