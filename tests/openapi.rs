//! The console API against its OpenAPI 3.1 document (`docs/console-api.json`,
//! issue 20): the real host serves it at `GET /api/openapi.json`, every
//! operation it secures needs the session (and, unless a GET, the CSRF
//! header), and schemathesis (PyPI, the version in tests/requirements.txt)
//! fuzzes the live host for a bounded time: no 500, every reply's status,
//! content type, headers and body as documented.
//!
//! That the document lists exactly the routes the server registers is a unit
//! test next to the route table (`src/console/api.rs`).
//!
//! Needs the test venv (`$PUNKTFUNK_PYTHON`, or `.venv`: scripts/test makes
//! it from tests/requirements.txt); without it these tests fail.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{client, Console, Host};
use serde_json::Value;

fn document() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/console-api.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every operation: (method, path with sample parameters, secured).
fn operations(doc: &Value) -> Vec<(String, String, bool)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let path = path
            .replace("{id}", "1")
            .replace("{fingerprint}", &"ab".repeat(32))
            .replace("{address}", "192.0.2.1");
        for (method, op) in item.as_object().unwrap() {
            let secured = op["security"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|r| r.as_object().is_some_and(|r| !r.is_empty()))
            });
            ops.push((method.to_uppercase(), path.clone(), secured));
        }
    }
    ops
}

#[test]
fn the_host_serves_its_openapi_document_to_anyone() {
    let host = Host::start(&[]);
    let resp = client()
        .get(format!("{}/api/openapi.json", host.console))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let served: Value = resp.json().unwrap();
    assert_eq!(served, document());
    assert_eq!(served["openapi"], "3.1.0");
}

/// The document's `security` is what the host enforces: a secured operation
/// answers 401 without a session, and one that is not a GET 403 without the
/// CSRF header; an open one answers without either.
#[test]
fn every_operation_the_document_secures_needs_a_session_and_csrf() {
    let host = Host::start(&[]);
    let doc = document();
    let anon = client();
    let console = Console::login(&host);
    let ops = operations(&doc);
    assert!(ops.len() > 20, "{ops:?}");
    for (method, path, secured) in ops {
        let url = format!("{}{path}", host.console);
        let m: reqwest::Method = method.parse().unwrap();
        let resp = anon.request(m.clone(), &url).send().unwrap();
        let status = resp.status().as_u16();
        if !secured {
            assert_ne!(status, 401, "{method} {path} is open in the document");
            continue;
        }
        let body: Value = resp.json().unwrap();
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("unauthorized")),
            "{method} {path}: {body}"
        );
        if method != "GET" {
            let body: Value = console
                .http
                .request(m, &url)
                .send()
                .unwrap()
                .json()
                .unwrap();
            assert_eq!(body["error"]["code"], "csrf", "{method} {path}: {body}");
        }
    }
}

/// A method a documented path does not take is 405 with `Allow` (what the
/// document lists for it), before and after login; a path it lacks is 404.
#[test]
fn a_method_the_document_lacks_is_405_with_allow() {
    let host = Host::start(&[]);
    let console = Console::login(&host);
    for http in [&client(), &console.http] {
        for (method, path, allow) in [
            ("PUT", "/api/pairing", "GET"),
            ("GET", "/api/login", "POST"),
            ("POST", "/api/devices/x", "GET, PATCH, DELETE"),
            ("HEAD", "/api/otp", "POST, DELETE"),
        ] {
            let resp = http
                .request(method.parse().unwrap(), format!("{}{path}", host.console))
                .send()
                .unwrap();
            assert_eq!(resp.status(), 405, "{method} {path}");
            assert_eq!(resp.headers()["allow"], allow, "{method} {path}");
            if method != "HEAD" {
                let body: Value = resp.json().unwrap();
                assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
            }
        }
        let resp = http
            .get(format!("{}/api/no-such-route", host.console))
            .send()
            .unwrap();
        assert_eq!(resp.status(), 404);
        let body: Value = resp.json().unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{body}");
    }
}

/// The schemathesis command of the test venv.
fn schemathesis() -> PathBuf {
    let python = common::moonlight::python();
    let bin = python.with_file_name("schemathesis");
    assert!(
        bin.exists(),
        "{} is missing: pip install -r tests/requirements.txt into the venv of {}",
        bin.display(),
        python.display()
    );
    bin
}

/// schemathesis against the live host, logged in (the session cookie and the
/// CSRF header on every request), for at most about a minute.
///
/// Left out: `POST /api/logout`, which would end the session the run uses,
/// and `GET /api/events`, a stream that stays open as long as the session
/// does (the document describes both; the test above checks their security).
/// Checks: no 5xx; status code, content type, headers and body as the
/// document says; data the document allows is accepted; a method a path
/// lacks is 405; a secured operation refuses a request without the session.
/// Not checked: that data the document does not allow is refused
/// (`negative_data_rejection`): the host ignores unknown fields and trims
/// text before its rules apply, which the document leaves out.
#[test]
fn schemathesis_finds_no_server_error_and_no_reply_off_the_document() {
    let host = Host::start(&[]);
    // A paired device, so that the device routes reach more than 404.
    let console = Console::login(&host);
    let moonlight = common::moonlight::Device::new();
    common::moonlight::pair(&console, common::moonlight::Door::of(&host), &moonlight);
    let http = client();
    let resp = common::logged_in(&http, &host);
    let session = resp
        .cookies()
        .find(|c| c.name() == "pf_session")
        .expect("a session cookie")
        .value()
        .to_owned();
    let csrf = resp.json::<Value>().unwrap()["csrf"]
        .as_str()
        .unwrap()
        .to_owned();
    // The session as the document's security schemes name it, so that
    // schemathesis knows which requests it sent without (`ignored_auth`).
    let report = tempfile::tempdir().unwrap();
    let config = report.path().join("schemathesis.toml");
    let settings = format!(
        "[auth.openapi.session]\napi_key = \"{session}\"\n\
         [auth.openapi.csrf]\napi_key = \"{csrf}\"\n\
         [parameters]\n\"path.fingerprint\" = \"{}\"\n",
        moonlight.fingerprint
    );
    std::fs::write(&config, settings).unwrap();
    let output = Command::new(schemathesis())
        .arg("--config-file")
        .arg(&config)
        .args(["run", &format!("{}/api/openapi.json", host.console)])
        .args(["--url", &host.console])
        .args(["--tls-verify", "false"])
        .args(["--exclude-path", "/api/logout"])
        .args(["--exclude-path", "/api/events"])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance,\
             positive_data_acceptance,unsupported_method,ignored_auth",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-time", "50"])
        .args(["--request-timeout", "20"])
        .args(["--workers", "2"])
        .arg("--report-dir")
        .arg(report.path())
        // Its cache of crashes goes there too, not into the work tree.
        .current_dir(report.path())
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "schemathesis found problems (above); exit status {}",
        output.status
    );
    // It really ran the operations (and not zero of them).
    assert!(stdout.contains("passed"), "{stdout}");
    // The session the run used is still good: nothing logged it out.
    let csrf_now: Value = http
        .get(format!("{}/api/session", host.console))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(csrf_now["csrf"], csrf.as_str());
}
