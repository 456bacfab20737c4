//! The console, tried as an attacker on the same LAN would (the whole of
//! 127/8 is loopback, so each source address below is another machine),
//! against the real binary: the owner logs in during a login flood (the
//! known-browser cookie), a login takes effect on a full disk, every body
//! over 4 KiB is refused, and open mode is warned about.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{raw_native, Console, Host};
use openssl::ssl::{Ssl, SslContext, SslMethod, SslVerifyMode};
use serde_json::{json, Value};

/// The console's address (127.0.0.1:PORT).
fn console_addr(host: &Host) -> SocketAddr {
    let port: u16 = host.console.rsplit(':').next().unwrap().parse().unwrap();
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// One answer to `POST /api/login`.
#[derive(Debug)]
struct Login {
    status: u16,
    /// `pf_known`, if the answer set it.
    known: Option<String>,
    /// `pf_session`, if the answer set it.
    session: Option<String>,
    body: String,
}

impl Login {
    fn code(&self) -> String {
        serde_json::from_str::<Value>(&self.body)
            .ok()
            .and_then(|b| b["error"]["code"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// `request` (everything after the request line's path: headers and body)
/// over a new TLS connection from the loopback address `src`; the raw answer.
fn raw_request(src: &str, console: SocketAddr, head: &str, body: &[u8]) -> String {
    let mut b = SslContext::builder(SslMethod::tls_client()).unwrap();
    b.set_verify(SslVerifyMode::NONE);
    let ctx = b.build();
    let tcp = raw_native::tcp_from(src, console);
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut tls = Ssl::new(&ctx).unwrap().connect(tcp).unwrap();
    tls.write_all(head.as_bytes()).unwrap();
    // The host may answer (and close) before the whole body is sent.
    let _ = tls.write_all(body);
    let mut raw = Vec::new();
    // The host may close without a TLS close_notify; what arrived counts.
    let _ = tls.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw).into_owned()
}

/// `POST /api/login` from `src`, with the known-browser cookie `known` if given.
fn login_from(src: &str, console: SocketAddr, password: &str, known: Option<&str>) -> Login {
    let body = json!({ "password": password }).to_string();
    let cookie = known
        .map(|k| format!("Cookie: pf_known={k}\r\n"))
        .unwrap_or_default();
    let text = raw_request(
        src,
        console,
        &format!(
            "POST /api/login HTTP/1.1\r\nHost: {console}\r\nContent-Type: application/json\r\n\
             {cookie}Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        ),
        body.as_bytes(),
    );
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let set_cookie = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            if !k.eq_ignore_ascii_case("set-cookie") {
                return None;
            }
            let v = v.trim().strip_prefix(name)?.strip_prefix('=')?;
            Some(v.split(';').next().unwrap_or_default().to_owned())
        })
    };
    Login {
        status,
        known: set_cookie("pf_known"),
        session: set_cookie("pf_session"),
        body: body.to_owned(),
    }
}

/// How a flood of wrong logins went.
#[derive(Debug, Default)]
struct FloodCount {
    sent: usize,
    /// Password checks the flood got (401).
    checked: usize,
    /// Refused unchecked (429, 503).
    refused: usize,
}

// ---- the owner during a login flood (known browsers) ---------------------------

#[test]
fn a_known_browser_logs_in_at_once_during_a_login_flood_and_its_wrong_passwords_stay_limited() {
    let host = Host::start(&[]);
    let console = console_addr(&host);
    // The owner's browser logged in before: it holds a known-browser cookie.
    let first = login_from("127.0.0.1", console, host.password(), None);
    assert_eq!(first.status, 200, "{first:?}");
    let mut known = first.known.expect("a login sets the known-browser cookie");
    // A second browser that logged in before, for the wrong passwords below.
    let other = login_from("127.0.0.9", console, host.password(), None)
        .known
        .unwrap();

    // Wrong passwords from rotating addresses (each thread its own /16),
    // as fast as 8 threads get them answered.
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(Mutex::new(FloodCount::default()));
    let flood_started = Instant::now();
    let flooders: Vec<_> = (0..8u32)
        .map(|t| {
            let (stop, count) = (stop.clone(), count.clone());
            std::thread::spawn(move || {
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let src = format!("127.{}.{}.{}", 10 + t, i / 250 % 250, i % 250 + 1);
                    i += 1;
                    let status = login_from(&src, console, "a wrong guess", None).status;
                    let mut c = count.lock().unwrap();
                    c.sent += 1;
                    match status {
                        401 => c.checked += 1,
                        429 | 503 => c.refused += 1,
                        other => panic!("the flood got {other}"),
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));

    // The owner, every second: the known browser, with the right password,
    // and (what every browser got before known-browser cookies) a new one.
    const TRIES: usize = 8;
    let (mut known_first_try, mut new_browser) = (0, 0);
    for i in 0..TRIES {
        let r = login_from("127.0.0.1", console, host.password(), Some(&known));
        if r.status == 200 {
            known_first_try += 1;
            assert!(r.session.is_some(), "{r:?}");
            known = r.known.expect("each login renews the known-browser cookie");
        } else {
            println!("known browser, try {i}: {} {}", r.status, r.body);
        }
        let fresh = login_from(
            &format!("127.0.0.{}", 100 + i),
            console,
            host.password(),
            None,
        );
        if fresh.status == 200 {
            new_browser += 1;
        }
        std::thread::sleep(Duration::from_secs(1));
    }

    // A wrong password with a known-browser cookie is limited like any:
    // five checks a minute for that browser, then 429 naming the browser.
    let mut wrong = Vec::new();
    for _ in 0..6 {
        wrong.push(login_from("127.0.0.9", console, "not it", Some(&other)));
    }
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        f.join().unwrap();
    }
    let took = flood_started.elapsed().as_secs_f64();
    let c = count.lock().unwrap();
    println!(
        "during {took:.1} s of {} wrong logins from rotating addresses ({:.0}/s; {} checked = \
         {:.1} checks/s, {} refused unchecked): the known browser logged in on its first try \
         {known_first_try} of {TRIES} times, a new browser {new_browser} of {TRIES}",
        c.sent,
        c.sent as f64 / took,
        c.checked,
        c.checked as f64 / took,
        c.refused
    );
    assert_eq!(known_first_try, TRIES, "the known browser was turned away");
    // It was a flood: over the budget, most wrong logins went unchecked...
    assert!(c.refused > c.checked, "{c:?}");
    // ...and the known browser's way in did not widen the flood's budget
    // (10 checks a second and a burst of 10).
    assert!(
        (c.checked as f64) <= 10.0 * took + 10.0 + 2.0,
        "{} checks in {took} s",
        c.checked
    );
    let statuses: Vec<u16> = wrong.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429], "{wrong:?}");
    assert!(wrong[5].body.contains("this browser"), "{:?}", wrong[5]);
    // The right password from that browser waits its window out too.
    let locked = login_from("127.0.0.9", console, host.password(), Some(&other));
    assert_eq!(locked.status, 429, "{locked:?}");
}

#[test]
fn a_new_password_voids_every_known_browser_cookie_and_forged_ones_count_for_nothing() {
    let host = Host::start(&[]);
    let console = console_addr(&host);
    let old = login_from("127.0.4.1", console, host.password(), None)
        .known
        .unwrap();
    // Address 127.0.4.2 uses up its five attempts.
    for _ in 0..5 {
        assert_eq!(login_from("127.0.4.2", console, "wrong", None).status, 401);
    }
    let limited = login_from("127.0.4.2", console, host.password(), None);
    assert_eq!(limited.status, 429, "{limited:?}");
    // A cookie it forged (or took from another host) is no way past that.
    let forged = "A".repeat(old.len());
    let r = login_from("127.0.4.2", console, host.password(), Some(&forged));
    assert_eq!(r.status, 429, "{r:?}");
    assert!(r.body.contains("127.0.4.2"), "{r:?}");
    // A known browser at that address is: it gets in.
    let r = login_from("127.0.4.2", console, host.password(), Some(&old));
    assert_eq!(r.status, 200, "{r:?}");

    assert!(
        common::set_password(&host.state_dir, "a brand new password")
            .status
            .success()
    );
    // Address 127.0.4.3 uses up its attempts; the cookie from before the
    // new password counts for nothing there any more.
    for _ in 0..5 {
        assert_eq!(login_from("127.0.4.3", console, "wrong", None).status, 401);
    }
    let r = login_from("127.0.4.3", console, "a brand new password", Some(&old));
    assert_eq!(r.status, 429, "{r:?}");
    assert!(r.body.contains("127.0.4.3"), "{r:?}");
    // A browser that logs in with the new password is known again.
    let new = login_from("127.0.4.4", console, "a brand new password", None)
        .known
        .unwrap();
    let r = login_from("127.0.4.3", console, "a brand new password", Some(&new));
    assert_eq!(r.status, 200, "{r:?}");
}

#[test]
fn the_known_browser_cookie_is_http_only_secure_strict_and_long_lived() {
    let host = Host::start(&[]);
    let http = common::client();
    let resp = common::logged_in(&http, &host);
    let cookies: Vec<String> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let known = cookies
        .iter()
        .find(|c| c.starts_with("pf_known="))
        .unwrap_or_else(|| panic!("no known-browser cookie in {cookies:?}"));
    for attr in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/api/login",
        "Max-Age=31536000",
    ] {
        assert!(known.split("; ").any(|a| a == attr), "{attr} in {known}");
    }
}

// ---- a full disk ------------------------------------------------------------------

/// A tmpfs mounted on a fresh directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes until the file system is full.
    fn fill(&self) {
        let mut f = std::fs::File::create(self.path().join("filler")).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        loop {
            match f.write(&chunk) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        // The last partial pages too.
        while f.write(&[0u8]).is_ok_and(|n| n == 1) {}
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_login_takes_effect_when_the_audit_trail_cannot_be_written() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root to mount a small tmpfs as the state dir");
        return;
    }
    let fs = Tmpfs::mount("4m").expect("mount a tmpfs");
    let dir = fs.path().join("state");
    // Declared after the mount: dropped (killed) before it is unmounted.
    let host = Host::start_in(&dir, &["--native"]);
    let console = Console::login(&host);
    fs.fill();
    // Decisions until the trail says it could not record one: the disk
    // is full for the audit writer too (its file's last page had room).
    let mut not_recorded = None;
    for i in 0..400 {
        let path = if i % 2 == 0 {
            "/api/pairing/arm"
        } else {
            "/api/pairing/disarm"
        };
        let (status, body) = console.send("POST", path, None);
        if status != 200 {
            not_recorded = Some((status, body));
            break;
        }
    }
    let (status, body) = not_recorded.expect("the audit trail never failed on a full disk");
    assert_eq!(
        (status, &body["error"]["code"]),
        (500, &json!("not_recorded"))
    );

    // The owner logs in: the session is made and works; the answer says the
    // trail could not record it, as it does for every other decision.
    let r = login_from("127.0.5.1", console_addr(&host), host.password(), None);
    assert_eq!((r.status, r.code()), (500, "not_recorded".into()), "{r:?}");
    let session = r.session.expect("the session cookie is set");
    let http = common::client();
    let resp = http
        .get(format!("{}/api/session", host.console))
        .header("Cookie", format!("pf_session={session}"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let csrf: Value = resp.json().unwrap();
    assert!(
        csrf["csrf"].as_str().is_some_and(|c| c.len() > 20),
        "{csrf}"
    );
    let pairing = http
        .get(format!("{}/api/pairing", host.console))
        .header("Cookie", format!("pf_session={session}"))
        .send()
        .unwrap();
    assert_eq!(pairing.status(), 200);
    // A wrong password is still just that.
    let r = login_from("127.0.5.2", console_addr(&host), "wrong", None);
    assert_eq!(
        (r.status, r.code()),
        (401, "wrong_password".into()),
        "{r:?}"
    );
    drop(console);
    drop(host);
}

// ---- request bodies ---------------------------------------------------------------

/// `method path` with `body` and the session and CSRF of `console`.
fn send_body(console: &Console, method: &str, path: &str, body: Vec<u8>) -> (u16, Value) {
    let resp = console
        .http
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", console.base),
        )
        .header("X-CSRF-Token", &console.csrf)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

/// A JSON object of exactly `len` bytes: `fields` padded with spaces.
fn json_of_len(fields: &Value, len: usize) -> Vec<u8> {
    let mut text = fields.to_string().into_bytes();
    assert!(text.len() < len);
    text.resize(len, b' ');
    text
}

#[test]
fn every_console_body_over_4_kib_is_refused_the_same_way() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    let (_raw, _, _) = raw_native::knock("127.0.6.1", raw_native::addr(&host), "tablet");
    let id = console.pairing()["pending"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let fp = "0".repeat(64);
    let routes = [
        ("POST", "/api/login".to_owned()),
        ("POST", "/api/logout".to_owned()),
        ("POST", "/api/pairing/arm".to_owned()),
        ("POST", "/api/pairing/disarm".to_owned()),
        ("POST", "/api/pending/deny-all".to_owned()),
        ("POST", "/api/otp".to_owned()),
        ("DELETE", "/api/otp".to_owned()),
        ("POST", format!("/api/pending/{id}/approve")),
        ("POST", format!("/api/pending/{id}/deny")),
        ("POST", format!("/api/pending/{id}/pin")),
        ("PATCH", format!("/api/devices/{fp}")),
        ("DELETE", format!("/api/devices/{fp}")),
    ];
    for (method, path) in &routes {
        let (status, body) = send_body(&console, method, path, json_of_len(&json!({}), 4097));
        assert_eq!(
            (status, &body["error"]["code"]),
            (400, &json!("bad_request")),
            "{method} {path}: {body}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("(4097 bytes) is larger than allowed (limit: 4096 bytes)"),
            "{method} {path}: {message}"
        );
    }
    // Sent in chunks, with no length announced: the same answer.
    let resp = console
        .http
        .post(format!("{}/api/otp", console.base))
        .header("X-CSRF-Token", &console.csrf)
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(
            json_of_len(&json!({}), 5000),
        )))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is larger than allowed (limit: 4096 bytes)"),
        "{body}"
    );
    // Nothing was done, and 4 KiB exactly is read as ever.
    let state = console.pairing();
    assert_eq!(state["pending"].as_array().unwrap().len(), 1, "{state}");
    assert_eq!(state["otp"], Value::Null);
    let (status, body) = send_body(
        &console,
        "POST",
        "/api/otp",
        json_of_len(&json!({"name": "TV"}), 4096),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = send_body(
        &console,
        "POST",
        &format!("/api/pending/{id}/approve"),
        json_of_len(&json!({"label": "Tablet"}), 4096),
    );
    assert_eq!((status, &body["label"]), (200, &json!("Tablet")), "{body}");
}

// ---- open mode ----------------------------------------------------------------------

#[test]
fn open_mode_is_warned_about_at_start_in_the_log_and_in_the_console() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let settings = tmp.path().join("punktfunk.toml");
    std::fs::write(&settings, "native = true\nopen = true\n").unwrap();
    let mut cmd = common::serve_command(&dir, &[]);
    cmd.arg("--config").arg(&settings).stderr(Stdio::piped());
    let mut host = Host::start_with(cmd, &dir);
    let warning = host
        .lines
        .iter()
        .position(|l| l.starts_with("WARNING: open mode is on"))
        .unwrap_or_else(|| panic!("no open-mode warning in {:?}", host.lines));
    // Near the other start lines: before "ready".
    let ready = host.lines.iter().position(|l| l == "ready").unwrap();
    assert!(warning < ready);
    assert!(host.lines[warning].contains("without pairing"));
    let http = common::client();
    let reply: Value = http
        .get(format!("{}/api/host", host.console))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(reply["open"], true, "{reply}");
    let console = Console::login(&host);
    assert_eq!(console.pairing()["host"]["open"], true);
    let mut stderr = host.child.stderr.take().unwrap();
    let status = host.stop();
    assert!(status.success());
    let mut log = String::new();
    stderr.read_to_string(&mut log).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("open mode is on")),
        "no warning in the log: {log}"
    );

    // Not open: no warning, and the console says so.
    let host = Host::start(&["--native"]);
    assert!(
        !host.lines.iter().any(|l| l.contains("open mode")),
        "{:?}",
        host.lines
    );
    let reply: Value = http
        .get(format!("{}/api/host", host.console))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(reply["open"], false, "{reply}");
}
