//! The Moonlight client for tests: PyPI `moonlight-python` (a byte-exact
//! port of moonlight-qt's pairing), driven by `tests/moonlight/client.py`,
//! plus the console steps a person takes for a Moonlight request.
//!
//! Needs a Python with `moonlight-python`: `$PUNKTFUNK_PYTHON`, or the
//! repository's `.venv` (`scripts/test` creates both). Without one the tests
//! that use it fail; they do not skip.

#![allow(dead_code)] // each test binary uses a different part of this

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{Console, Host};

// ---- the Moonlight client ----------------------------------------------------

pub fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let candidates = std::env::var_os("PUNKTFUNK_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([venv]);
    for python in candidates {
        let found = Command::new(&python)
            .args([
                "-c",
                "import importlib.util, sys; sys.exit(importlib.util.find_spec('moonlight_python') is None)",
            ])
            .status()
            .is_ok_and(|s| s.success());
        if found {
            return python;
        }
    }
    panic!(
        "these tests need the Moonlight client: set PUNKTFUNK_PYTHON to a python with \
         `pip install -r tests/requirements.txt`, or create <repo>/.venv (scripts/test does)"
    );
}

pub fn driver() -> Command {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/moonlight/client.py");
    let mut cmd = Command::new(python());
    cmd.arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
}

/// A running driver: its stdout, one JSON object a line.
pub struct Run {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub lines: mpsc::Receiver<Value>,
}

impl Run {
    pub fn spawn(args: &[&str]) -> Run {
        let mut child = driver()
            .args(args)
            .spawn()
            .expect("spawn the Moonlight driver");
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("driver printed {line:?}: {e}"));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        Run {
            child,
            stdin,
            lines: rx,
        }
    }

    pub fn next(&self) -> Value {
        self.lines
            .recv_timeout(Duration::from_secs(180))
            .expect("the Moonlight driver said nothing more")
    }

    /// Sends a line to the driver (its cue to go on).
    pub fn cue(&mut self) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(b"go\n").unwrap();
        stdin.flush().unwrap();
    }

    pub fn wait(mut self) {
        drop(self.stdin.take());
        let status = super::wait_timeout(&mut self.child, Duration::from_secs(60))
            .expect("the Moonlight driver did not exit");
        assert!(status.success(), "the Moonlight driver failed: {status}");
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The host's GameStream ports.
#[derive(Clone, Copy)]
pub struct Door {
    pub http: u16,
    pub https: u16,
}

impl Door {
    pub fn of(host: &Host) -> Door {
        let port = |what| {
            host.url(what)
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("no port in {}", host.url(what)))
        };
        Door {
            http: port("gamestream-http"),
            https: port("gamestream-https"),
        }
    }
}

/// One Moonlight device: its identity (key, certificate) in its own dir,
/// and the loopback address it connects from.
pub struct Device {
    pub _tmp: tempfile::TempDir,
    pub dir: String,
    pub fingerprint: String,
    pub source: &'static str,
    /// The host's address as the driver's URLs take it (`[v6]` in brackets).
    pub host: String,
}

impl Device {
    pub fn new() -> Device {
        Device::from("127.0.0.1")
    }

    /// A device at another address (the whole of 127/8 is loopback).
    pub fn from(source: &'static str) -> Device {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("moonlight").to_string_lossy().into_owned();
        let mut run = Run::spawn(&["identity", &dir]);
        let fingerprint = run.next()["fingerprint"].as_str().unwrap().to_owned();
        run.stdin.take();
        Device {
            _tmp: tmp,
            dir,
            fingerprint,
            source,
            host: "127.0.0.1".into(),
        }
    }

    /// A device at `source` for the host at `host` (an IPv6 address, e.g.
    /// in a [`super::netns::Netns`]).
    pub fn at(source: &'static str, host: std::net::IpAddr) -> Device {
        let mut dev = Device::from(source);
        dev.host = match host {
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            v4 => v4.to_string(),
        };
        dev
    }

    /// Starts `pairing.pair()`; the first line is the identity, the second the result.
    pub fn pair(&self, door: Door, pin: &str) -> Run {
        self.spawn_pair(door, pin, &[])
    }

    /// Pairs with an Apollo one-time PIN and passphrase, the way Artemis
    /// does (`otpauth` in phase 1): nobody types anything on the host.
    pub fn pair_otp(&self, door: Door, pin: &str, passphrase: &str) -> Run {
        self.spawn_pair(door, pin, &["--otp", passphrase])
    }

    /// Pairs showing `pin` while the host is told `entered`, with a salt
    /// for which `entered` cannot meet moonlight-qt's key bug: a plain
    /// wrong PIN, every time (`pin_rejected`).
    pub fn pair_wrong(&self, door: Door, pin: &str, entered: &str) -> Run {
        self.spawn_pair(door, pin, &["--salt-clean", entered])
    }

    /// Pairs with `extra` options of the driver's `pair` (`--salt-zero P`,
    /// `--salt-clean P`, `--qt-key`: moonlight-qt's key bug, see client.py).
    pub fn pair_with(&self, door: Door, pin: &str, extra: &[&str]) -> Run {
        self.spawn_pair(door, pin, extra)
    }

    fn spawn_pair(&self, door: Door, pin: &str, extra: &[&str]) -> Run {
        let port = door.http.to_string();
        let mut args = vec![
            "pair",
            &self.dir,
            &self.host,
            &port,
            pin,
            "--source",
            self.source,
        ];
        args.extend_from_slice(extra);
        let run = Run::spawn(&args);
        assert_eq!(run.next()["fingerprint"], self.fingerprint.as_str());
        run
    }

    pub fn https(&self, door: Door, path: &str) -> Value {
        self.https_with(door, path, "")
    }

    /// One HTTPS GET of `path?uniqueid=…&uuid=…&query`, as Moonlight sends it.
    pub fn https_with(&self, door: Door, path: &str, query: &str) -> Value {
        let run = Run::spawn(&[
            "https",
            &self.dir,
            "127.0.0.1",
            &door.https.to_string(),
            path,
            query,
        ]);
        let reply = run.next();
        run.wait();
        assert_eq!(reply["http_status"], 200, "{reply}");
        reply
    }

    pub fn pair_status(&self, door: Door) -> Option<String> {
        let reply = self.https(door, "serverinfo");
        reply["fields"]["PairStatus"].as_str().map(str::to_owned)
    }

    /// Requests over both ports; every reply must be HTTP 200 with XML.
    pub fn probe(&self, door: Door, items: &[&str]) -> Vec<Value> {
        let mut args = vec![
            "probe".to_owned(),
            self.dir.clone(),
            "127.0.0.1".into(),
            door.http.to_string(),
            door.https.to_string(),
        ];
        args.extend(items.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = Run::spawn(&args);
        let replies: Vec<Value> = items.iter().map(|_| run.next()).collect();
        run.wait();
        for reply in &replies {
            assert_eq!(reply["http_status"], 200, "{reply}");
            assert!(
                reply["status_code"].is_string(),
                "not well-formed XML with a status_code: {reply}"
            );
        }
        replies
    }
}

/// A plain-HTTP request from `source`.
pub fn http(door: Door, path: &str, query: &str, source: &str) -> Value {
    let run = Run::spawn(&[
        "http",
        "127.0.0.1",
        &door.http.to_string(),
        path,
        query,
        "--source",
        source,
    ]);
    let reply = run.next();
    run.wait();
    assert_eq!(reply["http_status"], 200, "{reply}");
    assert!(reply["status_code"].is_string(), "{reply}");
    reply
}

// ---- the console ----------------------------------------------------------------

/// Waits until the request of the certificate `fp` is listed, and returns it.
pub fn pending(console: &Console, fp: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = console.pairing();
        let found = state["pending"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["fingerprint"] == fp)
            .cloned();
        if let Some(p) = found {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "no pending request for {fp}: {state}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn pending_ids(console: &Console) -> Vec<String> {
    console.pairing()["pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["fingerprint"].as_str().unwrap().to_owned())
        .collect()
}

/// Types `pin` for the request of `fp`; returns the console's answer.
pub fn enter_pin(console: &Console, fp: &str, pin: &str, label: Option<&str>) -> (u16, Value) {
    let id = pending(console, fp)["id"].as_str().unwrap().to_owned();
    console.send(
        "POST",
        &format!("/api/pending/{id}/pin"),
        Some(json!({"pin": pin, "label": label})),
    )
}

pub fn device(console: &Console, fp: &str) -> Option<Value> {
    console.pairing()["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["fingerprint"] == fp)
        .cloned()
}

/// Pairs `dev` the whole way: client started, PIN typed, both sides agree.
pub fn pair(console: &Console, door: Door, dev: &Device) {
    let run = dev.pair(door, "5170");
    let (status, body) = enter_pin(console, &dev.fingerprint, "5170", None);
    assert_eq!((status, &body), (200, &json!({"result": "paired"})));
    let result = run.next();
    assert_eq!(result["result"], "paired", "{result}");
    run.wait();
}

pub fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

pub fn sha256_hex_of_pem(pem: &str) -> String {
    let cert = openssl::x509::X509::from_pem(pem.as_bytes()).unwrap();
    let digest = openssl::sha::sha256(&cert.to_der().unwrap());
    hex::encode(digest)
}
