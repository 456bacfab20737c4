//! `serve` as a service runs it: with no `--bind` it listens dual-stack
//! (every door over IPv4 and IPv6), it says where to open the console, and
//! it reads its settings from a file that flags override and whose typos are
//! errors.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{client, Host, BIN};
use serde_json::Value;

/// `serve` on free ports, no mDNS, with `extra` (no `--bind`).
fn serve(state_dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .args(extra)
        .arg("--state-dir")
        .arg(state_dir)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
}

const FREE_PORTS: &[&str] = &[
    "--http-port",
    "0",
    "--https-port",
    "0",
    "--console-port",
    "0",
    "--native-port",
    "0",
    "--no-mdns",
];

fn port(host: &Host, what: &str) -> u16 {
    host.url(what).rsplit(':').next().unwrap().parse().unwrap()
}

fn reaches(ip: &str, port: u16) -> bool {
    let to = SocketAddr::new(ip.parse().unwrap(), port);
    TcpStream::connect_timeout(&to, Duration::from_secs(3)).is_ok()
}

#[test]
fn with_no_bind_every_door_answers_over_ipv4_and_ipv6_and_the_console_urls_are_printed() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut args = vec!["--native"];
    args.extend_from_slice(FREE_PORTS);
    let host = Host::start_with(serve(&state, &args), &state);
    for what in ["console", "gamestream-http", "gamestream-https", "native"] {
        let p = port(&host, what);
        for ip in ["127.0.0.1", "::1"] {
            assert!(reaches(ip, p), "{what} on {ip} port {p}");
        }
    }
    // Real requests over both families.
    let http = port(&host, "gamestream-http");
    let console = port(&host, "console");
    let mut replies = Vec::new();
    for base in ["127.0.0.1", "[::1]"] {
        let xml = client()
            .get(format!(
                "http://{base}:{http}/serverinfo?uniqueid=0123456789ABCDEF"
            ))
            .send()
            .unwrap();
        assert_eq!(xml.status(), 200);
        assert!(xml.text().unwrap().contains("<hostname>"));
        let about: Value = client()
            .get(format!("https://{base}:{console}/api/host"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        replies.push(about);
    }
    assert_eq!(replies[0], replies[1]);
    // The console's URLs: one per LAN address, on the console's port, the
    // same on stdout and in /api/host, with the grouped fingerprint.
    let urls: Vec<&str> = replies[0]["console_urls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    assert!(!urls.is_empty(), "{}", replies[0]);
    for url in &urls {
        assert!(
            url.starts_with("https://") && url.ends_with(&format!(":{console}/")),
            "{url}"
        );
        assert!(
            host.lines.iter().any(|l| l.trim() == *url),
            "{url} not printed: {:?}",
            host.lines
        );
    }
    let grouped = replies[0]["fingerprint_grouped"].as_str().unwrap();
    assert!(
        host.lines
            .iter()
            .any(|l| l.trim_start().starts_with("host fingerprint") && l.ends_with(grouped)),
        "{:?}",
        host.lines
    );
}

#[test]
fn a_settings_file_is_read_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = dir.path().join("settings.toml");
    std::fs::write(
        &file,
        "bind = \"127.0.0.1\"\nnative = true\nmdns = false\n\
         http_port = 0\nhttps_port = 0\nconsole_port = 0\nnative_port = 0\n",
    )
    .unwrap();
    let config = file.to_str().unwrap();
    // From the file: the native door, IPv4 loopback only.
    let host = Host::start_with(serve(&state, &["--config", config]), &state);
    let native = port(&host, "native");
    assert!(reaches("127.0.0.1", native));
    assert!(!reaches("::1", native), "bound to 127.0.0.1 by the file");
    drop(host);
    // A flag wins over the file's key.
    let host = Host::start_with(
        serve(&state, &["--config", config, "--bind", "::1"]),
        &state,
    );
    let console = port(&host, "console");
    assert!(reaches("::1", console));
    // What it says it listens on, not a connection to 127.0.0.1 at the same
    // port number: another test's host may hold that one.
    assert!(
        host.lines
            .iter()
            .any(|l| l.trim() == "listening on [::1] only:"),
        "--bind ::1 overrides the file: {:?}",
        host.lines
    );
    drop(host);

    // Without --config: the state dir's punktfunk.toml (when there is no
    // system-wide /etc/punktfunk/punktfunk.toml, which comes first).
    if !Path::new("/etc/punktfunk/punktfunk.toml").exists() {
        std::fs::copy(&file, state.join("punktfunk.toml")).unwrap();
        let host = Host::start_with(serve(&state, &[]), &state);
        assert!(
            reaches("127.0.0.1", port(&host, "native")),
            "native from the state dir's file"
        );
    }
}

#[test]
fn a_bad_settings_file_is_an_error_that_names_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let run = |contents: Option<&str>, extra: &[&str]| {
        let file = dir.path().join("bad.toml");
        if let Some(c) = contents {
            std::fs::write(&file, c).unwrap();
        } else {
            let _ = std::fs::remove_file(&file);
        }
        let mut args = vec!["--config", file.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = serve(&state, &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        (String::from_utf8_lossy(&out.stderr).into_owned(), file)
    };
    let (e, file) = run(Some("native = true\nconsle_port = 8080\n"), &[]);
    assert!(e.contains("unknown key `consle_port`"), "{e}");
    assert!(e.contains(&file.display().to_string()), "{e}");
    let (e, _) = run(Some("http_port = \"47989\"\n"), &[]);
    assert!(e.contains("http_port") || e.contains("line 1"), "{e}");
    let (e, file) = run(None, &[]);
    assert!(
        e.contains(&format!("cannot read the settings file {}", file.display())),
        "{e}"
    );
    let (e, _) = run(Some("open = true\n"), &[]);
    assert!(e.contains("needs the native endpoint"), "{e}");
    assert!(!state.exists(), "nothing was started");
}
