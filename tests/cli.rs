//! `punktfunk devices …` and `punktfunk audit` against the real binary:
//! with a host running (through its control socket, taking effect in it at
//! once) and without one (on the files, under the state dir's lock).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::moonlight::{self, Device, Door};
use common::raw_native::{self, Raw};
use common::{Console, Host, BIN};
use punktfunk_certs::{GateConfig, Identity, SystemClock, Trust};
use serde_json::{json, Value};

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

fn err(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn list(state_dir: &Path) -> Vec<Value> {
    let out = ok(&cli(state_dir, &["devices", "list", "--json"]));
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn trail(state_dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(state_dir.join("audit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
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

#[test]
fn while_the_host_runs_the_cli_lists_renames_and_revokes_and_the_session_ends_at_once() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    let door = Door::of(&host);
    let (mut tv, tv_id) = approved_session(&host, &console, "127.0.0.7", "Living Room TV");
    let tv_fp = tv_id.fingerprint().to_string();
    let deck = Device::new();
    moonlight::pair(&console, door, &deck);

    // The socket is private.
    let socket = host.state_dir.join("control.sock");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let devices = list(&host.state_dir);
    assert_eq!(devices.len(), 2, "{devices:?}");
    let tv_row = devices
        .iter()
        .find(|d| d["fingerprint"] == tv_fp.as_str())
        .unwrap();
    assert_eq!(tv_row["kind"], "native");
    assert_eq!(tv_row["via"], "approval");
    assert_eq!(tv_row["name"], "Living Room TV");
    assert!(tv_row["paired"].as_str().unwrap().ends_with('Z'));
    let table = ok(&cli(&host.state_dir, &["devices", "list"]));
    assert!(table.starts_with("FINGERPRINT"), "{table}");
    // The shared forms: the first four groups of the fingerprint and `…`,
    // dates as YYYY-MM-DD HH:MM; `--long` shows the whole fingerprint.
    let grouped = tv_id.fingerprint().grouped();
    assert!(
        table.contains(&format!("{}…", &grouped[..19])) && table.contains("Living Room TV"),
        "{table}"
    );
    assert!(!table.contains(&tv_fp[..16]), "no lowercase hex: {table}");
    let today = tv_row["paired"].as_str().unwrap();
    assert!(!table.contains(today), "not RFC 3339: {table}");
    let long = ok(&cli(&host.state_dir, &["devices", "list", "--long"]));
    assert!(long.contains(&grouped), "{long}");

    // Rename by a prefix, in grouped upper case as the console shows it.
    let prefix = tv_id.fingerprint().grouped()[..14].to_owned();
    let out = ok(&cli(
        &host.state_dir,
        &["devices", "rename", &prefix, "Den TV"],
    ));
    assert!(out.contains("Den TV"), "{out}");
    let shown = moonlight::device(&console, &tv_fp).unwrap();
    assert_eq!(
        shown["label"], "Den TV",
        "the running host has the new label"
    );

    // Revoke: the open session hears `revoked` at once and ends.
    let started = Instant::now();
    let out = ok(&cli(&host.state_dir, &["devices", "revoke", &tv_fp[..12]]));
    assert!(out.starts_with(&format!("revoked {grouped}")), "{out}");
    let last = tv.recv().expect("the host closed without a word");
    assert_eq!(last["code"], "revoked", "{last}");
    assert!(tv.recv().is_none(), "the session is closed");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(moonlight::device(&console, &tv_fp).is_none());

    // Moonlight: "not paired" (GFE's 401) on its next request.
    assert_eq!(deck.pair_status(door).as_deref(), Some("1"));
    ok(&cli(
        &host.state_dir,
        &["devices", "revoke", &deck.fingerprint],
    ));
    assert_eq!(deck.https(door, "serverinfo")["status_code"], "401");

    // Recorded as the CLI's doing.
    let records = trail(&host.state_dir);
    let by_cli: Vec<(&str, &str)> = records
        .iter()
        .filter(|r| r["door"] == "cli")
        .map(|r| {
            (
                r["event"].as_str().unwrap(),
                r["device"]["fingerprint"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        by_cli,
        [
            ("renamed", tv_fp.as_str()),
            ("revoked", tv_fp.as_str()),
            ("revoked", deck.fingerprint.as_str())
        ]
    );
}

#[test]
fn with_no_host_running_the_cli_changes_the_files_under_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let host = Host::start_in(&state, &["--native"]);
    let console = Console::login(&host);
    let (_tv, tv_id) = approved_session(&host, &console, "127.0.0.8", "TV");
    let (_pad, pad_id) = approved_session(&host, &console, "127.0.0.9", "Pad");
    assert!(host.stop().success());
    assert!(
        !state.join("control.sock").exists(),
        "the host removes its socket"
    );

    let tv_fp = tv_id.fingerprint().to_string();
    assert_eq!(list(&state).len(), 2);
    ok(&cli(&state, &["devices", "rename", &tv_fp[..8], "Kitchen"]));
    ok(&cli(
        &state,
        &["devices", "revoke", &pad_id.fingerprint().to_string()[..8]],
    ));
    let devices = list(&state);
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["label"], "Kitchen");
    // An empty label clears it.
    ok(&cli(&state, &["devices", "rename", &tv_fp[..8], ""]));
    assert_eq!(list(&state)[0]["label"], Value::Null);
    let records = trail(&state);
    let tail: Vec<_> = records[records.len() - 3..]
        .iter()
        .map(|r| (r["event"].as_str().unwrap(), r["door"].as_str().unwrap()))
        .collect();
    assert_eq!(
        tail,
        [("renamed", "cli"), ("revoked", "cli"), ("renamed", "cli")]
    );

    // The host starts again on what the CLI wrote.
    let _host = Host::start_in(&state, &["--native"]);
    let out = ok(&cli(&state, &["devices", "list", "--json"]));
    assert!(out.contains(&tv_fp), "{out}");
}

#[test]
fn unknown_ambiguous_and_malformed_prefixes_and_a_missing_state_dir_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    // Two devices whose fingerprints share their first four digits.
    let trust = Trust::open(
        &state,
        GateConfig::default(),
        std::sync::Arc::new(SystemClock),
    )
    .unwrap();
    let mut seen = std::collections::HashMap::new();
    let (a, b) = loop {
        let id = Identity::generate_p256("twin").unwrap();
        let key = id.fingerprint().to_hex()[..4].to_owned();
        if let Some(first) = seen.remove(&key) {
            break (first, id);
        }
        seen.insert(key, id);
    };
    for id in [&a, &b] {
        let device = punktfunk_certs::Device::from_der(
            id.cert_der(),
            punktfunk_certs::FrontDoor::Native,
            punktfunk_certs::DisplayName::sanitize_or("twin", "twin"),
            punktfunk_certs::Via::Pin,
            1_800_000_000,
        )
        .unwrap();
        trust
            .admit(device, [127, 0, 0, 1].into())
            .unwrap()
            .durable_blocking()
            .unwrap();
    }
    drop(trust);
    let shared = &a.fingerprint().to_hex()[..4];
    let e = err(&cli(&state, &["devices", "revoke", shared]));
    assert!(
        e.contains(&format!("{shared} matches 2 devices; give more digits")),
        "{e}"
    );
    let absent = (0..=0xffffu32)
        .map(|n| format!("{n:04x}"))
        .find(|p| {
            !a.fingerprint().to_hex().starts_with(p) && !b.fingerprint().to_hex().starts_with(p)
        })
        .unwrap();
    let e = err(&cli(&state, &["devices", "revoke", &absent]));
    assert!(
        e.contains("no paired device has a fingerprint starting with"),
        "{e}"
    );
    let e = err(&cli(&state, &["devices", "rename", "xyz!", "TV"]));
    assert!(e.contains("is not a fingerprint or a prefix of one"), "{e}");
    let e = err(&cli(
        &state,
        &[
            "devices",
            "rename",
            &a.fingerprint().to_hex(),
            &"x".repeat(65),
        ],
    ));
    assert!(e.contains("64"), "{e}");
    assert_eq!(list(&state).len(), 2, "nothing changed");

    let missing = dir.path().join("nowhere");
    for args in [&["devices", "list"][..], &["audit"][..]] {
        let e = err(&cli(&missing, args));
        assert!(e.contains("no state dir at"), "{e}");
    }
    assert!(!missing.exists(), "the CLI does not create a state dir");
}

#[test]
fn audit_prints_the_newest_records_and_follows_new_ones() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    for _ in 0..3 {
        let (status, _) = console.send("POST", "/api/pairing/arm", None);
        assert_eq!(status, 200);
    }
    let out = ok(&cli(&host.state_dir, &["audit", "--json", "--limit", "3"]));
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let events: Vec<&str> = lines.iter().map(|r| r["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["pairing_armed", "pairing_armed", "pairing_armed"]);
    assert!(lines
        .windows(2)
        .all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64()));
    let human = ok(&cli(&host.state_dir, &["audit"]));
    assert!(
        human
            .lines()
            .next()
            .unwrap()
            .contains("host_identity_created  host  ok"),
        "{human}"
    );
    assert!(
        human.contains("login  console  ok from 127.0.0.1"),
        "{human}"
    );

    // --follow: a record written after it started is printed.
    let mut follow = Command::new(BIN)
        .args(["audit", "--follow", "--json", "--limit", "0", "--state-dir"])
        .arg(&host.state_dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    std::thread::sleep(Duration::from_millis(700));
    let (status, _) = console.send("POST", "/api/pairing/disarm", None);
    assert_eq!(status, 200);
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("--follow printed nothing");
    let _ = follow.kill();
    let _ = follow.wait();
    let record: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(record["event"], "pairing_disarmed");
}

#[test]
fn the_control_socket_answers_bad_requests_with_errors_not_hangs() {
    let host = Host::start(&[]);
    let socket = host.state_dir.join("control.sock");
    let ask = |bytes: &[u8]| {
        let mut s = UnixStream::connect(&socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(bytes);
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        serde_json::from_str::<Value>(reply.trim()).unwrap_or(Value::Null)
    };
    // Over 64 KiB with no newline.
    let reply = ask(&vec![b'a'; 70 * 1024]);
    assert_eq!(reply["error"]["code"], "too_large", "{reply}");
    let reply = ask(b"{\"op\":\"drop\"}\n");
    assert_eq!(reply["error"]["code"], "bad_request", "{reply}");
    let reply = ask(b"{\"op\":\"list\"}\n");
    assert_eq!(reply, json!({"ok": []}));
    // A client that sends nothing is cut off after 5 s with an error.
    let started = Instant::now();
    let reply = ask(b"");
    assert_eq!(reply["error"]["code"], "timeout", "{reply}");
    assert!(started.elapsed() < Duration::from_secs(9));
}

/// Runs the CLI as `nobody` (uid 65534); `None` unless these tests run as
/// root (only root can switch users).
fn as_nobody(state_dir: &Path, args: &[&str]) -> Option<Output> {
    if !rustix::process::geteuid().is_root() || !Path::new("/usr/bin/setpriv").exists() {
        eprintln!("skipped: needs root and setpriv to run the CLI as another user");
        return None;
    }
    Some(
        Command::new("/usr/bin/setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
            .args(args)
            .arg("--state-dir")
            .arg(state_dir)
            .stdin(Stdio::null())
            .output()
            .unwrap(),
    )
}

#[test]
fn another_user_is_refused_by_the_permissions_and_by_the_peer_check() {
    let host = Host::start(&["--native"]);
    let dir = host.state_dir.clone();
    let Some(out) = as_nobody(&dir, &["devices", "list"]) else {
        return;
    };
    let e = err(&out);
    assert!(
        e.contains(&format!(
            "cannot open {}: permission denied; run this as the user that runs the host",
            dir.display()
        )),
        "{e}"
    );
    let e = err(&as_nobody(&dir, &["audit"]).unwrap());
    assert!(e.contains("permission denied"), "{e}");
    // With the dir and the socket opened up by hand, the host still checks
    // who is calling.
    let mode =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    mode(dir.parent().unwrap(), 0o711);
    mode(&dir, 0o711);
    mode(&dir.join("control.sock"), 0o666);
    let e = err(&as_nobody(&dir, &["devices", "list"]).unwrap());
    assert!(e.contains("uid 65534 may not control this host"), "{e}");
    // Root may.
    assert!(ok(&cli(&dir, &["devices", "list", "--json"])).starts_with('['));
}

#[test]
fn a_pairing_link_that_does_not_parse_is_not_echoed() {
    let fp = "ab".repeat(32);
    let secret = "9f3c5e7a1b2d4f60718293a4b5c6d7e8";
    // Well-formed version-2 links, each damaged in one place: the error
    // names what is wrong, never the link or its secret.
    for (link, says) in [
        (
            format!("punktfunk://pair?v=2&fp={fp}&s={secret}&port=0&a=10.0.0.5"),
            "`port` is not valid",
        ),
        (
            format!("punktfunk://pair?v=2&fp={fp}&s={secret}&port=47991"),
            "no `a` parameter",
        ),
        (
            format!("punktfunk://pair?v=2&fp={fp}&s={secret}&port=47991&a=10.0.0.5 x"),
            "is damaged",
        ),
        (
            format!(
                "punktfunk://pair?v=2&fp={fp}&s={}&port=47991&a=10.0.0.5",
                &secret[..31]
            ),
            "`s` is not valid",
        ),
    ] {
        let out = Command::new(BIN)
            .args(["pair", "--link", &link])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{out:?}");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("--link"), "{text}");
        assert!(text.contains("pairing link"), "{text}");
        assert!(text.contains(says), "{link}: {text}");
        for part in [&secret[..16], &fp[..16], "punktfunk://", "10.0.0.5 x"] {
            assert!(!text.contains(part), "{part} echoed: {text}");
        }
    }
}

/// `serve` with `args` (no ports of its own: they come from the caller or
/// a settings file); what it printed, after it failed.
fn failed_serve(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("serve")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    err(&out)
}

#[test]
fn a_bad_settings_file_names_the_file_the_line_the_key_and_what_it_takes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("punktfunk.toml");
    let config = file.to_str().unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    for (text, line, says) in [
        (
            "# mine\nmdns = yes\n",
            2,
            "`mdns` cannot be yes: it takes true or false, without quotes",
        ),
        (
            "http_port = 70000\n",
            1,
            "`http_port` cannot be 70000: it takes a port number from 0 to 65535",
        ),
        (
            "console_prot = 1\n",
            1,
            "unknown key `console_prot`; the keys are bind, http_port",
        ),
        (
            "bind = \"my-pc\"\n",
            1,
            "`bind` cannot be \"my-pc\": it takes an IP address in quotes",
        ),
        (
            "advertise = [\"0.0.0.0\"]\n",
            1,
            "`advertise` cannot hold 0.0.0.0: it takes addresses clients can reach",
        ),
    ] {
        std::fs::write(&file, text).unwrap();
        let e = failed_serve(&["--config", config, "--state-dir", state]);
        assert!(
            e.contains(&format!("the settings file {config}, line {line}: {says}")),
            "{text}: {e}"
        );
        assert!(e.contains("fix or remove that line"), "{e}");
        for toml_words in ["expected u16", "invalid string", "expected `\"`"] {
            assert!(!e.contains(toml_words), "{e}");
        }
    }
}

#[test]
fn a_state_dir_the_host_cannot_write_says_whose_it_is_and_what_to_run() {
    if !rustix::process::geteuid().is_root() || !Path::new("/usr/bin/setpriv").exists() {
        eprintln!("skipped: needs root and setpriv to run the host as another user");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let ports = [
        "--bind",
        "127.0.0.1",
        "--no-mdns",
        "--http-port",
        "0",
        "--https-port",
        "0",
        "--console-port",
        "0",
    ];
    let as_nobody = |state: &Path| {
        let out = Command::new("/usr/bin/setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                BIN,
                "serve",
            ])
            .args(ports)
            .arg("--state-dir")
            .arg(state)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        err(&out)
    };
    // Root's dir, as nobody.
    let roots = dir.path().join("roots");
    std::fs::create_dir(&roots).unwrap();
    std::fs::set_permissions(&roots, std::fs::Permissions::from_mode(0o755)).unwrap();
    let e = as_nobody(&roots);
    assert!(
        e.contains(&format!(
            "cannot use the state dir {}: permission denied; ",
            roots.display()
        )),
        "{e}"
    );
    assert!(e.contains("belongs to the user root"), "{e}");
    assert!(
        e.contains("or pass --state-dir with a dir of your own"),
        "{e}"
    );
    assert_eq!(
        e.to_lowercase().matches("permission denied").count(),
        1,
        "the cause once: {e}"
    );
    // nobody's own dir, read-only.
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::os::unix::fs::chown(&ro, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o500)).unwrap();
    let e = as_nobody(&ro);
    assert!(
        e.contains("is yours but not writable (mode 0500): `chmod u+rwx"),
        "{e}"
    );

    // Root on nobody's dir: refused before anything is written, with the
    // command to use.
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut args = ports.to_vec();
    args.extend(["--state-dir", ro.to_str().unwrap()]);
    let e = failed_serve(&args);
    assert!(
        e.contains(&format!(
            "{} belongs to the user nobody: root does not run the host on another user's state dir",
            ro.display()
        )),
        "{e}"
    );
    assert!(
        e.contains(&format!(
            "`sudo -u nobody punktfunk serve --state-dir {}`",
            ro.display()
        )),
        "{e}"
    );
    assert_eq!(
        std::fs::read_dir(&ro).unwrap().count(),
        0,
        "nothing written"
    );
}

#[test]
fn the_start_up_block_says_the_state_dir_and_why_and_the_log_repeats_no_url() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("from-settings");
    let settings = dir.path().join("punktfunk.toml");
    std::fs::write(
        &settings,
        format!(
            "state_dir = \"{}\"\nbind = \"::\"\nmdns = false\nhttp_port = 0\nhttps_port = 0\nconsole_port = 0\n",
            state.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("stderr.log");
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--config", settings.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap());
    let host = Host::start_with(cmd, &state);
    let block = host.lines.join("\n");
    assert!(
        block.contains(&format!(
            "  state dir         {} (`state_dir` in {})",
            state.display(),
            settings.display()
        )),
        "{block}"
    );
    assert!(
        block.contains("listening on every IPv4 and IPv6 address ([::]):"),
        "{block}"
    );
    assert!(block.contains("  mDNS: off"), "{block}");
    assert!(state.join("host.crt").exists());
    // The console's URL is said once, in the block; the log has none.
    let console = common::listener(
        host.lines
            .iter()
            .find(|l| common::listener(l).is_some_and(|(w, _, _)| w == "console"))
            .unwrap(),
    )
    .unwrap()
    .2;
    let url = format!("https://127.0.0.1:{console}/");
    assert_eq!(block.matches(&url).count(), 1, "{block}");
    assert!(host.stop().success());
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(!logged.contains("https://"), "{logged}");
    assert!(!logged.contains("http://"), "{logged}");
}
