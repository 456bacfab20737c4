//! The console API's authentication through the real HTTPS server: no
//! session, bad CSRF, cross-site origin, wrong password, rate limit; and the
//! shape of the Pairing state.

mod common;

use common::{client, Console, Host};
use serde_json::{json, Value};

/// Every route that needs a session, with a method and a body.
fn routes(fp: &str) -> Vec<(&'static str, String, Option<Value>)> {
    vec![
        ("GET", "/api/pairing".into(), None),
        ("GET", "/api/session".into(), None),
        ("POST", "/api/logout".into(), None),
        ("POST", "/api/pairing/arm".into(), None),
        ("POST", "/api/pairing/disarm".into(), None),
        (
            "POST",
            "/api/pending/1/approve".into(),
            Some(json!({"label": "x"})),
        ),
        ("POST", "/api/pending/1/deny".into(), None),
        (
            "POST",
            "/api/pending/1/pin".into(),
            Some(json!({"pin": "1234"})),
        ),
        (
            "PATCH",
            format!("/api/devices/{fp}"),
            Some(json!({"label": "x"})),
        ),
        ("DELETE", format!("/api/devices/{fp}"), None),
    ]
}

fn assert_error(resp: reqwest::blocking::Response, status: u16, code: &str) {
    assert_eq!(resp.status().as_u16(), status);
    let body: Value = resp.json().unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

#[test]
fn every_route_needs_a_session_and_changes_need_csrf() {
    let host = Host::start(&[]);
    let fp = "0".repeat(64);
    let anon = client();
    for (method, path, body) in routes(&fp) {
        let mut req = anon.request(method.parse().unwrap(), format!("{}{path}", host.console));
        if let Some(b) = &body {
            req = req.json(b);
        }
        assert_error(req.send().unwrap(), 401, "unauthorized");
    }

    let console = Console::login(&host);
    for (method, path, body) in routes(&fp) {
        if method == "GET" {
            continue;
        }
        for token in [None, Some("wrong"), Some("")] {
            let mut req = console
                .http
                .request(method.parse().unwrap(), format!("{}{path}", host.console));
            if let Some(t) = token {
                req = req.header("X-CSRF-Token", t);
            }
            if let Some(b) = &body {
                req = req.json(b);
            }
            assert_error(req.send().unwrap(), 403, "csrf");
        }
        // The right token from another site is refused too.
        let mut req = console
            .http
            .request(method.parse().unwrap(), format!("{}{path}", host.console))
            .header("X-CSRF-Token", &console.csrf)
            .header("Origin", "https://evil.example");
        if let Some(b) = &body {
            req = req.json(b);
        }
        assert_error(req.send().unwrap(), 403, "cross_origin");
        let req = console
            .http
            .request(method.parse().unwrap(), format!("{}{path}", host.console))
            .header("X-CSRF-Token", &console.csrf)
            .header("Sec-Fetch-Site", "cross-site");
        assert_error(req.send().unwrap(), 403, "cross_origin");
    }
    // Nothing of the above changed anything.
    let state = console.pairing();
    assert!(state["armed"].is_null());
    assert_eq!(state["devices"], json!([]));
}

#[test]
fn login_cookie_is_strict_and_logout_ends_the_session() {
    let host = Host::start(&[]);
    let http = client();
    let resp = common::logged_in(&http, &host);
    let cookie = resp
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let csrf = resp.json::<Value>().unwrap()["csrf"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(csrf.len() >= 32);
    let again = http
        .get(format!("{}/api/session", host.console))
        .send()
        .unwrap();
    assert_eq!(again.json::<Value>().unwrap()["csrf"], csrf.as_str());
    let out = http
        .post(format!("{}/api/logout", host.console))
        .header("X-CSRF-Token", &csrf)
        .send()
        .unwrap();
    assert_eq!(out.status(), 200);
    assert_error(
        http.get(format!("{}/api/pairing", host.console))
            .send()
            .unwrap(),
        401,
        "unauthorized",
    );
}

#[test]
fn wrong_passwords_are_refused_then_rate_limited() {
    let host = Host::start(&[]);
    let http = client();
    let login = |pw: &str| {
        http.post(format!("{}/api/login", host.console))
            .json(&json!({"password": pw}))
            .send()
            .unwrap()
    };
    for _ in 0..5 {
        assert_error(login("nope"), 401, "wrong_password");
    }
    let limited = login(host.password());
    assert_eq!(
        limited.status(),
        429,
        "even the right password waits once limited"
    );
    assert!(limited.headers().get("retry-after").is_some());
    assert_error(limited, 429, "rate_limited");
    // Malformed bodies are clear 400s, not 500s.
    let resp = http
        .post(format!("{}/api/login", host.console))
        .body("{")
        .header("content-type", "application/json")
        .send()
        .unwrap();
    assert_error(resp, 400, "bad_request");
}

#[test]
fn pairing_state_arm_disarm_and_unknown_ids() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    let state = console.pairing();
    let fp = std::process::Command::new(common::BIN)
        .args(["fingerprint", "--hex", "--state-dir"])
        .arg(&host.state_dir)
        .output()
        .unwrap();
    let fp = String::from_utf8(fp.stdout).unwrap();
    assert_eq!(state["host"]["fingerprint"], fp.trim());
    assert!(state["host"]["name"]
        .as_str()
        .is_some_and(|n| !n.is_empty()));
    assert!(state["armed"].is_null());
    assert_eq!(state["pending"], json!([]));

    let (status, armed) = console.send("POST", "/api/pairing/arm", None);
    assert_eq!(status, 200);
    let pin = armed["pin"].as_str().unwrap();
    assert!(
        pin.len() == 4 && pin.bytes().all(|b| b.is_ascii_digit()),
        "{pin}"
    );
    let secs = armed["expires_in_s"].as_u64().unwrap();
    assert!((170..=180).contains(&secs), "{secs}");
    assert_eq!(console.pairing()["armed"]["pin"], pin);
    let (_, rearmed) = console.send("POST", "/api/pairing/arm", None);
    assert_eq!(console.pairing()["armed"]["pin"], rearmed["pin"]);
    assert_eq!(console.send("POST", "/api/pairing/disarm", None).0, 200);
    assert!(console.pairing()["armed"].is_null());

    for (method, path, body) in [
        ("POST", "/api/pending/999/approve".to_string(), None),
        ("POST", "/api/pending/999/deny".into(), None),
        (
            "POST",
            "/api/pending/999/pin".into(),
            Some(json!({"pin": "1234"})),
        ),
        ("POST", "/api/pending/abc/deny".into(), None),
        ("DELETE", format!("/api/devices/{}", "ab".repeat(32)), None),
        ("DELETE", "/api/devices/not-a-fingerprint".into(), None),
        (
            "PATCH",
            format!("/api/devices/{}", "ab".repeat(32)),
            Some(json!({"label": "x"})),
        ),
    ] {
        let (status, body) = console.send(method, &path, body);
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert!(body["error"]["code"].is_string());
    }
    // A path segment that cannot be an id or a fingerprint is answered like
    // one that is not there, with the parse error as the message.
    for (method, path, code, message) in [
        (
            "POST",
            "/api/pending/abc/deny",
            "unknown_request",
            punktfunk_certs::GateError::UnknownRequest.to_string(),
        ),
        (
            "DELETE",
            "/api/devices/not-a-fingerprint",
            "unknown_device",
            "not-a-fingerprint"
                .parse::<punktfunk_certs::Fingerprint>()
                .unwrap_err()
                .to_string(),
        ),
    ] {
        let (status, body) = console.send(method, path, None);
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert_eq!(body, json!({"error": {"code": code, "message": message}}));
    }
    let (status, body) = console.send("POST", "/api/pending/1/pin", Some(json!({"pin": "12x4"})));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_pin"))
    );
}

#[test]
fn arming_needs_the_punktfunk_apps_endpoint() {
    // Without --native nothing listens for an armed PIN or its link: the
    // console says so instead of showing a PIN.
    let host = Host::start(&[]);
    let console = Console::login(&host);
    assert_eq!(console.get("/api/host")["native"], false);
    assert_eq!(console.pairing()["host"]["native"], false);
    let (status, body) = console.send("POST", "/api/pairing/arm", None);
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("no_native")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--native"),
        "{body}"
    );
    assert!(console.pairing()["armed"].is_null());
    drop(console);
    drop(host);

    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    assert_eq!(console.get("/api/host")["native"], true);
    assert_eq!(console.pairing()["host"]["native"], true);
    // The pairing link lists the address the browser used first.
    let (status, armed) = console.send("POST", "/api/pairing/arm", None);
    assert_eq!(status, 200, "{armed}");
    let resp = console
        .http
        .get(format!("{}/api/pairing", console.base))
        .header("Host", "192.0.2.9:47990")
        .send()
        .unwrap();
    let state: Value = resp.json().unwrap();
    let link = punktfunk_native::PairingLink::parse(state["armed"]["link"].as_str().unwrap())
        .expect("the link parses");
    assert_eq!(
        link.addresses[0],
        "192.0.2.9".parse::<std::net::IpAddr>().unwrap()
    );
    assert!(
        link.addresses.contains(&"127.0.0.1".parse().unwrap()),
        "{link:?}"
    );
}

/// `GET /api/devices` lists what `/api/pairing` lists as `devices`, and
/// `GET /api/devices/{fingerprint}` one of them; a device that is not paired
/// is 404 with the usual error body (issue 20: REST clients try these first).
#[test]
fn devices_are_listed_and_read_one_at_a_time() {
    use common::moonlight::{self, Device, Door};

    let host = Host::start(&[]);
    let console = Console::login(&host);
    assert_eq!(console.get("/api/devices"), json!({"devices": []}));

    let dev = Device::new();
    moonlight::pair(&console, Door::of(&host), &dev);
    let listed = console.get("/api/devices");
    assert_eq!(listed["devices"], console.pairing()["devices"]);
    let devices = listed["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1, "{listed}");
    assert_eq!(devices[0]["fingerprint"], dev.fingerprint.as_str());

    let one = console.get(&format!("/api/devices/{}", dev.fingerprint));
    assert_eq!(one, devices[0]);
    // Either case names the device.
    let upper = console.get(&format!("/api/devices/{}", dev.fingerprint.to_uppercase()));
    assert_eq!(upper, devices[0]);

    for path in [
        format!("/api/devices/{}", "ab".repeat(32)),
        "/api/devices/not-a-fingerprint".to_owned(),
    ] {
        let resp = console
            .http
            .get(format!("{}{path}", host.console))
            .send()
            .unwrap();
        assert_error(resp, 404, "unknown_device");
    }
    // Without a session, neither says anything.
    for path in [
        "/api/devices".to_owned(),
        format!("/api/devices/{}", dev.fingerprint),
    ] {
        let resp = client()
            .get(format!("{}{path}", host.console))
            .send()
            .unwrap();
        assert_error(resp, 401, "unauthorized");
    }
}
