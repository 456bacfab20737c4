//! Grants against the real binary: a version 1 registry written by the
//! last build before grants is upgraded and its client still connects;
//! `punktfunk devices grant|disable|enable|expire` change what a Moonlight
//! client and a native session may do, in the running host, at once.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::moonlight::{self, Device, Door};
use common::raw_native::{self, Raw};
use common::{Console, Host, BIN};
use punktfunk_certs::Identity;
use serde_json::Value;

fn cli(state_dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--state-dir")
        .arg(state_dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn row(state_dir: &Path, fp: &str) -> Value {
    let out = ok(&cli(state_dir, &["devices", "list", "--json"]));
    let list: Value = serde_json::from_str(&out).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|d| d["fingerprint"] == fp)
        .cloned()
        .unwrap_or_else(|| panic!("{fp} not listed: {out}"))
}

fn events(state_dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(state_dir.join("audit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Copies `from` into a new dir `to` with the host's own modes.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() == "README.md" {
            continue;
        }
        let dest = to.join(entry.file_name());
        std::fs::copy(entry.path(), &dest).unwrap();
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/v1");

#[test]
fn a_version_1_registry_is_upgraded_kept_and_its_client_still_connects() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let client = tmp.path().join("client");
    copy_dir(&Path::new(FIXTURE).join("host"), &state);
    copy_dir(&Path::new(FIXTURE).join("client"), &client);
    let old = std::fs::read(state.join("trust.json")).unwrap();

    let host = Host::start_in(&state, &["--native"]);
    let native = raw_native::addr(&host);
    // The client pinned the host at the port it had when the fixture was
    // made; the host's identity is the same.
    let known = client.join("known_hosts");
    let pinned = std::fs::read_to_string(&known)
        .unwrap()
        .replace("127.0.0.1:48191", &format!("127.0.0.1:{}", native.port()));
    std::fs::write(&known, pinned).unwrap();
    let out = Command::new(BIN)
        .args(["connect", &format!("127.0.0.1:{}", native.port())])
        .arg("--client-dir")
        .arg(&client)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(ok(&out).trim(), "trusted", "a paired device stays paired");

    // The old file is kept byte for byte, the new one is version 2, and
    // every device may do everything, as before.
    assert_eq!(std::fs::read(state.join("trust.v1.json")).unwrap(), old);
    let now: Value =
        serde_json::from_slice(&std::fs::read(state.join("trust.json")).unwrap()).unwrap();
    assert_eq!(now["version"], 2);
    let ipad = row(
        &state,
        "ad3603e41b25182c96625959e5655d4529bfdf1822d951caccb1943b19727c63",
    );
    assert_eq!(ipad["preset"], "full", "{ipad}");
    assert_eq!(ipad["enabled"], true);
    assert_eq!(ipad["expires_at"], Value::Null);
    let tv = row(
        &state,
        "8c372a028eaf1a07bd93113f4adc0b8c822c7334232a599beb5928502874333b",
    );
    assert_eq!(tv["label"], "TV");
    assert_eq!(tv["permissions"].as_array().unwrap().len(), 13);

    // Recorded, and the trail goes on counting where the old build stopped.
    let trail = events(&state);
    let upgraded = trail
        .iter()
        .find(|e| e["event"] == "registry_upgraded")
        .expect("the upgrade is recorded");
    assert_eq!(upgraded["seq"], 5, "{upgraded}");
    assert!(upgraded["detail"]
        .as_str()
        .unwrap()
        .contains("trust.v1.json"));
    drop(host);
}

/// A native device that knocked and was approved in the console, its
/// session still open.
fn approved_session(host: &Host, console: &Console, src: &str, name: &str) -> (Raw, Identity) {
    let (mut raw, id, answer) = raw_native::knock(src, raw_native::addr(host), name);
    assert_eq!(answer["status"], "approval_pending", "{answer}");
    let fp = id.fingerprint().to_string();
    let pending = moonlight::pending(console, &fp);
    let (status, body) = console.send(
        "POST",
        &format!("/api/pending/{}/approve", pending["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(raw.recv().unwrap()["outcome"], "approved");
    (raw, id)
}

/// A fresh connection of `id` saying `hello{connect}`: its answer.
fn reconnect(host: &Host, src: &str, id: &Identity) -> Value {
    let mut raw = Raw::connect(src, raw_native::addr(host), id);
    raw.hello("again", "connect")
}

#[test]
fn grant_disable_and_expire_apply_at_every_door_at_once() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    let door = Door::of(&host);
    let state = host.state_dir.clone();
    // The host's first device may do everything; later ones get Play.
    let deck = Device::new();
    moonlight::pair(&console, door, &deck);
    assert_eq!(row(&state, &deck.fingerprint)["preset"], "full");
    let (mut tv, tv_id) = approved_session(&host, &console, "127.0.0.8", "Living Room TV");
    let tv_fp = tv_id.fingerprint().to_string();
    let tv_row = row(&state, &tv_fp);
    assert_eq!(tv_row["preset"], "play", "{tv_row}");
    let table = ok(&cli(&state, &["devices", "list"]));
    assert!(
        table.contains("ACCESS") && table.contains("Play"),
        "{table}"
    );

    // Permissions, as Moonlight meets them.
    let out = ok(&cli(
        &state,
        &["devices", "grant", &deck.fingerprint[..8], "-list"],
    ));
    assert!(out.contains("may now"), "{out}");
    let applist = deck.https(door, "applist");
    assert_eq!(applist["status_code"], "403", "{applist}");
    assert!(
        applist["status_message"]
            .as_str()
            .unwrap()
            .contains("list apps"),
        "{applist}"
    );
    ok(&cli(
        &state,
        &["devices", "grant", &deck.fingerprint[..8], "watch"],
    ));
    assert_eq!(deck.https(door, "applist")["status_code"], "200");
    // Watch may view, not launch: /launch names what is missing; /resume
    // gets past the check to the host's documented "does not stream".
    let launch = deck.https_with(door, "launch", "appid=1");
    assert_eq!(launch["status_code"], "403", "{launch}");
    assert!(
        launch["status_message"]
            .as_str()
            .unwrap()
            .contains("launch or quit apps"),
        "{launch}"
    );
    assert_eq!(deck.https(door, "resume")["status_code"], "503");
    ok(&cli(
        &state,
        &["devices", "grant", &deck.fingerprint[..8], "-view"],
    ));
    let resume = deck.https(door, "resume");
    assert_eq!(resume["status_code"], "403", "{resume}");
    let bad = cli(
        &state,
        &["devices", "grant", &deck.fingerprint[..8], "+teleport"],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("not a permission"),
        "{bad:?}"
    );

    // Disable: Moonlight is told so (not "not paired"); the open native
    // session ends at once with `disabled`, and a new one is refused so.
    ok(&cli(
        &state,
        &["devices", "disable", &deck.fingerprint[..8]],
    ));
    let info = deck.https(door, "serverinfo");
    assert_eq!(info["status_code"], "403", "{info}");
    assert!(
        info["status_message"]
            .as_str()
            .unwrap()
            .contains("disabled"),
        "{info}"
    );
    let started = Instant::now();
    ok(&cli(&state, &["devices", "disable", &tv_fp[..8]]));
    assert_eq!(tv.recv().expect("told why")["code"], "disabled");
    assert!(tv.recv().is_none(), "closed");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(reconnect(&host, "127.0.0.8", &tv_id)["code"], "disabled");
    assert_eq!(row(&state, &tv_fp)["enabled"], false);
    ok(&cli(&state, &["devices", "enable", &tv_fp[..8]]));
    let mut tv = Raw::connect("127.0.0.8", raw_native::addr(&host), &tv_id);
    assert_eq!(tv.hello("again", "connect")["status"], "trusted");
    ok(&cli(&state, &["devices", "enable", &deck.fingerprint[..8]]));
    assert_eq!(deck.https(door, "serverinfo")["status_code"], "200");

    // Expiry: the open session ends within a second of the time; the
    // device stays listed as expired until renewed.
    let out = ok(&cli(
        &state,
        &["devices", "expire", &tv_fp[..8], "--in", "2s"],
    ));
    assert!(out.contains("access until"), "{out}");
    let set = Instant::now();
    assert_eq!(tv.recv().expect("told why")["code"], "expired");
    let took = set.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(4),
        "{took:?}"
    );
    let expired = row(&state, &tv_fp);
    assert_eq!(expired["expired"], true, "{expired}");
    assert_eq!(reconnect(&host, "127.0.0.8", &tv_id)["code"], "expired");
    let table = ok(&cli(&state, &["devices", "list"]));
    assert!(table.contains("expired"), "{table}");
    ok(&cli(&state, &["devices", "expire", &tv_fp[..8], "--never"]));
    assert_eq!(row(&state, &tv_fp)["expired"], false);
    let mut tv = Raw::connect("127.0.0.8", raw_native::addr(&host), &tv_id);
    assert_eq!(tv.hello("again", "connect")["status"], "trusted");
    let bad = cli(&state, &["devices", "expire", &tv_fp[..8], "--in", "soon"]);
    assert_eq!(bad.status.code(), Some(2), "clap refuses it: {bad:?}");

    // Every change is recorded, the end of access by the host itself.
    let trail = events(&state);
    let access: Vec<(&str, &str)> = trail
        .iter()
        .filter(|e| {
            matches!(
                e["event"].as_str(),
                Some("grant_changed" | "disabled" | "enabled" | "access_expired")
            )
        })
        .map(|e| (e["event"].as_str().unwrap(), e["door"].as_str().unwrap()))
        .collect();
    assert_eq!(
        access,
        [
            ("grant_changed", "cli"),
            ("grant_changed", "cli"),
            ("grant_changed", "cli"),
            ("disabled", "cli"),
            ("disabled", "cli"),
            ("enabled", "cli"),
            ("enabled", "cli"),
            ("grant_changed", "cli"),
            ("access_expired", "host"),
            ("grant_changed", "cli"),
        ]
    );
}

#[test]
fn the_console_changes_access_recorded_as_its_own_and_refuses_bad_changes_clearly() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    let (mut tv, tv_id) = approved_session(&host, &console, "127.0.0.9", "TV");
    let fp = tv_id.fingerprint().to_string();
    let path = format!("/api/devices/{fp}/access");

    let (status, body) = console.send("PATCH", &path, Some(serde_json::json!({"may": "gamepad"})));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["preset"], "gamepad");
    assert_eq!(
        body["permissions"],
        serde_json::json!(["input_controller", "list", "view", "launch"])
    );
    let (status, body) = console.send(
        "PATCH",
        &path,
        Some(serde_json::json!({"may": ["list", "input_kbd"], "expires_at": 4_000_000_000u64})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["preset"], Value::Null, "custom");
    assert_eq!(body["expires_at"], 4_000_000_000u64);
    let (status, body) = console.send(
        "PATCH",
        &path,
        Some(serde_json::json!({"expires_at": null})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_at"], Value::Null);
    // Until its first session ends: no time, and the flag.
    let (status, body) = console.send(
        "PATCH",
        &path,
        Some(serde_json::json!({"expires_at": "first_session"})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["expires_at"], &body["until_first_session"]),
        (&Value::Null, &Value::Bool(true))
    );
    // The CLI's way back to a time, and to it again.
    ok(&cli(
        &host.state_dir,
        &["devices", "expire", &fp[..8], "--in", "2h"],
    ));
    assert!(row(&host.state_dir, &fp)["expires_at"].is_string());
    let said = ok(&cli(
        &host.state_dir,
        &["devices", "expire", &fp[..8], "--first-session"],
    ));
    assert!(said.contains("until its first session ends"), "{said}");
    let listed = row(&host.state_dir, &fp);
    assert_eq!(listed["until_first_session"], true, "{listed}");
    assert_eq!(listed["expires_at"], Value::Null, "{listed}");

    for (bad, code) in [
        (serde_json::json!({}), "bad_request"),
        (
            serde_json::json!({"may": {"preset": "watch"}}),
            "bad_request",
        ),
        (serde_json::json!({"may": ["list", "teleport"]}), "invalid"),
        (serde_json::json!({"may": "everything"}), "bad_request"),
        (serde_json::json!({"enabled": "no"}), "bad_request"),
        (serde_json::json!({"expires_at": "tomorrow"}), "bad_request"),
    ] {
        let (status, body) = console.send("PATCH", &path, Some(bad.clone()));
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], code, "{bad}: {body}");
    }
    // A grant for a time, or until its first session ends: not both.
    let (status, body) = console.send(
        "POST",
        "/api/pairing/arm",
        Some(serde_json::json!({"guest": {"for_s": 60, "first_session": true}})),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
    let unknown = format!("/api/devices/{}/access", "ab".repeat(32));
    let (status, body) = console.send(
        "PATCH",
        &unknown,
        Some(serde_json::json!({"enabled": false})),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_device"))
    );

    // Disabling ends the session at once; it is the console's doing.
    let (status, _) = console.send("PATCH", &path, Some(serde_json::json!({"enabled": false})));
    assert_eq!(status, 200);
    assert_eq!(tv.recv().expect("told why")["code"], "disabled");
    let trail = events(&host.state_dir);
    let by_console: Vec<&str> = trail
        .iter()
        .filter(|e| e["door"] == "console" && e["device"]["fingerprint"] == fp.as_str())
        .filter_map(|e| e["event"].as_str())
        .filter(|e| *e != "request_approved")
        .collect();
    assert_eq!(
        by_console,
        [
            "grant_changed",
            "grant_changed",
            "grant_changed",
            "grant_changed",
            "grant_changed",
            "disabled"
        ]
    );
}

#[test]
fn a_moonlight_guest_invite_pairs_with_its_one_time_pin_as_watch_until_its_time() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    let door = Door::of(&host);
    // The owner's own device first: the host's first device gets Full.
    let _owner = approved_session(&host, &console, "127.0.0.12", "Owner's PC");
    let (status, otp) = console.send(
        "POST",
        "/api/otp",
        Some(serde_json::json!({"guest": {"may": "watch", "for_s": 3}})),
    );
    assert_eq!(status, 200, "{otp}");
    assert!(
        otp["expires_in_s"].as_u64().unwrap() > 14 * 60,
        "the invite lasts 15 minutes: {otp}"
    );
    let guest = Device::from("127.0.8.9");
    let run = guest.pair_otp(
        door,
        otp["pin"].as_str().unwrap(),
        otp["passphrase"].as_str().unwrap(),
    );
    let result = run.next();
    assert_eq!(result["result"], "paired", "{result}");
    run.wait();
    let paired = Instant::now();
    let stored = row(&host.state_dir, &guest.fingerprint);
    assert_eq!(stored["preset"], "watch", "{stored}");
    assert!(stored["expires_at"].is_string(), "{stored}");
    assert_eq!(stored["guest"], true, "{stored}");

    // Watch: apps listed; launching names what is missing.
    assert_eq!(guest.https(door, "applist")["status_code"], "200");
    let launch = guest.https_with(door, "launch", "appid=1");
    assert_eq!(launch["status_code"], "403", "{launch}");
    assert!(
        launch["status_message"]
            .as_str()
            .unwrap()
            .contains("launch or quit apps"),
        "{launch}"
    );
    // Its time comes 3 s after pairing: refused as expired, not unpaired.
    let mut refused = None;
    while paired.elapsed() < Duration::from_secs(8) {
        let info = guest.https(door, "serverinfo");
        if info["status_code"] == "403" {
            refused = Some((paired.elapsed(), info));
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (after, info) = refused.expect("refused once its time came");
    assert!(
        info["status_message"].as_str().unwrap().contains("expired"),
        "{info}"
    );
    eprintln!("guest refused {after:?} after pairing (its access: 3 s)");
    assert!(
        after >= Duration::from_secs(2),
        "not before its time: {after:?}"
    );

    let trail = events(&host.state_dir);
    let names: Vec<&str> = trail.iter().filter_map(|e| e["event"].as_str()).collect();
    let created = names.iter().position(|e| *e == "invite_created").unwrap();
    let used = names.iter().position(|e| *e == "invite_used").unwrap();
    assert!(created < used && names[used - 1] == "paired", "{names:?}");
    assert!(names.contains(&"access_expired"), "{names:?}");
}

#[test]
fn approve_and_the_moonlight_pin_take_a_grant_from_the_picker() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    let door = Door::of(&host);
    let _owner = approved_session(&host, &console, "127.0.0.13", "Owner's PC");
    // Approve, as Gamepad only for an hour.
    let (mut raw, id, answer) =
        raw_native::knock("127.0.0.14", raw_native::addr(&host), "Kid's Tablet");
    assert_eq!(answer["status"], "approval_pending", "{answer}");
    let fp = id.fingerprint().to_string();
    let pending = moonlight::pending(&console, &fp)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/pending/{pending}/approve");
    let (status, body) = console.send(
        "POST",
        &path,
        Some(serde_json::json!({"grant": {"may": ["list", "fly"]}})),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid"))
    );
    let (status, body) = console.send(
        "POST",
        &path,
        Some(serde_json::json!({"label": "Tablet", "grant": {"may": "gamepad", "for_s": 3600}})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["preset"], "gamepad");
    assert!(body["expires_at"].is_u64(), "{body}");
    assert_eq!(raw.recv().unwrap()["outcome"], "approved");

    // A Moonlight PIN entered with Watch.
    let deck = Device::from("127.0.8.10");
    let run = deck.pair(door, "4321");
    let id = moonlight::pending(&console, &deck.fingerprint)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = console.send(
        "POST",
        &format!("/api/pending/{id}/pin"),
        Some(serde_json::json!({"pin": "4321", "grant": {"may": "watch"}})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "paired");
    run.wait();
    let stored = row(&host.state_dir, &deck.fingerprint);
    assert_eq!(stored["preset"], "watch", "{stored}");
    assert_eq!(stored["expires_at"], Value::Null);
    // The owner's picks make no guests, and use no invite.
    assert_eq!(stored["guest"], false, "{stored}");
    let names: Vec<Value> = events(&host.state_dir)
        .iter()
        .map(|e| e["event"].clone())
        .collect();
    assert!(!names.contains(&Value::from("invite_used")), "{names:?}");
}

/// One line of `punktfunk invite`'s output: the text after `prefix`.
fn said<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in {out}"))
        .trim()
}

#[test]
fn punktfunk_invite_hands_out_a_link_or_a_one_time_pin_that_admits_a_guest() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    let door = Door::of(&host);
    let _owner = approved_session(&host, &console, "127.0.0.15", "Owner's PC");

    // For the punktfunk app: a link (and its QR code) that pairs one
    // device as Gamepad for 4 h.
    let out = ok(&cli(
        &host.state_dir,
        &["invite", "--preset", "gamepad", "--for", "4h"],
    ));
    assert!(out.contains("Gamepad only"), "{out}");
    let link = said(&out, "pairing link: ");
    assert!(link.starts_with("punktfunk://pair?"), "{out}");
    assert!(out.contains('█'), "a QR code in the terminal: {out}");
    let dir = tempfile::tempdir().unwrap();
    let client_dir = dir.path().join("client");
    let paired = Command::new(BIN)
        .args([
            "pair",
            "--link",
            link,
            "--name",
            "Guest Phone",
            "--client-dir",
        ])
        .arg(&client_dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(ok(&paired).trim(), "paired");
    let stderr = String::from_utf8_lossy(&paired.stderr);
    assert!(
        stderr.contains("this device may: input_controller, list, view, launch; until "),
        "{stderr}"
    );
    let list: Value =
        serde_json::from_str(&ok(&cli(&host.state_dir, &["devices", "list", "--json"]))).unwrap();
    let guest = list
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "Guest Phone")
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(guest["preset"], "gamepad", "{guest}");
    assert!(guest["expires_at"].is_string(), "{guest}");
    assert_eq!(guest["guest"], true, "{guest}");
    // Single use: the link pairs nobody else.
    let again = Command::new(BIN)
        .args(["pair", "--link", link, "--name", "Second", "--client-dir"])
        .arg(dir.path().join("second"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not_armed"));

    // For Moonlight: a one-time PIN, its passphrase and the art:// link.
    let out = ok(&cli(
        &host.state_dir,
        &["invite", "--preset", "watch", "--for", "90m", "--moonlight"],
    ));
    let pin = said(&out, "one-time PIN: ");
    let passphrase = said(&out, "passphrase: ");
    let art = said(&out, "link: ");
    assert!(
        art.starts_with("art://127.0.0.1:") && art.contains(&format!("pin={pin}")),
        "{out}"
    );
    let moonlight = Device::from("127.0.8.10");
    let run = moonlight.pair_otp(door, pin, passphrase);
    assert_eq!(run.next()["result"], "paired");
    run.wait();
    let stored = row(&host.state_dir, &moonlight.fingerprint);
    assert_eq!(stored["preset"], "watch", "{stored}");
    let names: Vec<String> = events(&host.state_dir)
        .iter()
        .filter(|e| e["event"] == "invite_created")
        .map(|e| e["by"].to_string())
        .collect();
    assert_eq!(names.len(), 2, "both invites recorded: {names:?}");

    // Refused clearly: a duration out of bounds, a preset that is none, no
    // host running.
    let bad = cli(
        &host.state_dir,
        &["invite", "--preset", "admin", "--for", "1h"],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("full, play, gamepad, watch"));
    let bad = cli(&host.state_dir, &["invite", "--for", "400d"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("366 days"),
        "{bad:?}"
    );
    // A state dir no host runs on (the v1 fixture's, copied).
    let idle = tempfile::tempdir().unwrap();
    let idle_state = idle.path().join("state");
    copy_dir(&Path::new(FIXTURE).join("host"), &idle_state);
    let stopped = cli(&idle_state, &["invite", "--for", "1h"]);
    assert!(!stopped.status.success());
    assert!(
        String::from_utf8_lossy(&stopped.stderr).contains("no host runs"),
        "{stopped:?}"
    );
}
