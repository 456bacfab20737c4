//! The `punktfunk` binary's promises about its state dir: identity created
//! once and kept byte for byte, one host per dir, a corrupt registry stops
//! the host and is left untouched, clean shutdown on SIGTERM.

mod common;

use std::fs;
use std::process::Command;

use common::{serve_command, Host, BIN};

fn sha256_of_der(pem: &[u8]) -> String {
    let der = openssl::x509::X509::from_pem(pem)
        .unwrap()
        .to_der()
        .unwrap();
    hex::encode(openssl::sha::sha256(&der))
}

#[test]
fn first_start_creates_identity_and_restarts_keep_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let host = Host::start_in(&dir, &[]);
    assert!(host.password.is_some(), "first start prints a password");
    assert!(host.stop().success());

    let crt = fs::read(dir.join("host.crt")).unwrap();
    let key = fs::read(dir.join("host.key")).unwrap();
    let id = fs::read(dir.join("host.id")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["host.key", "console.passwd"] {
            assert_eq!(
                fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777,
                0o600,
                "{f}"
            );
        }
    }
    let hash = fs::read_to_string(dir.join("console.passwd")).unwrap();
    assert!(hash.starts_with("$argon2id$"));

    let host = Host::start_in(&dir, &[]);
    assert!(host.stop().success());
    assert_eq!(fs::read(dir.join("host.crt")).unwrap(), crt);
    assert_eq!(fs::read(dir.join("host.key")).unwrap(), key);
    assert_eq!(fs::read(dir.join("host.id")).unwrap(), id);

    let fingerprint = |extra: &[&str]| {
        let out = Command::new(BIN)
            .arg("fingerprint")
            .args(extra)
            .arg("--state-dir")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let hex = sha256_of_der(&crt);
    assert_eq!(fingerprint(&["--hex"]), format!("{hex}\n"));
    // For people: the grouped form the console and the start-up block show.
    let grouped = hex
        .parse::<punktfunk_certs::Fingerprint>()
        .unwrap()
        .grouped();
    assert_eq!(fingerprint(&[]), format!("{grouped}\n"));
    assert!(
        host_lines(&dir)
            .iter()
            .any(|l| l.trim() == format!("host fingerprint  {grouped}")),
        "the start-up block shows the same"
    );
}

/// What a start on `dir` printed up to "ready" (then it is stopped).
fn host_lines(dir: &std::path::Path) -> Vec<String> {
    let host = Host::start_in(dir, &[]);
    let lines = host.lines.clone();
    assert!(host.stop().success());
    lines
}

/// A start whose console port is taken: it fails, and prints what it
/// printed (stdout, stderr).
fn failed_start(dir: &std::path::Path) -> (String, String) {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--bind",
            "127.0.0.1",
            "--no-mdns",
            "--console-port",
            &port,
        ])
        .args(["--http-port", "0", "--https-port", "0", "--state-dir"])
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_console_password_is_shown_at_every_start_until_someone_logs_in() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    // The very first start fails (its console port is taken) after making
    // the password: it still says the password, and no false "ready" block.
    let (stdout, stderr) = failed_start(&dir);
    let first = stdout
        .lines()
        .find_map(common::generated_password)
        .unwrap_or_else(|| panic!("no password on a failed start: {stdout}"));
    assert!(!stdout.contains("open the console"), "{stdout}");
    assert!(!stdout.contains("ready"), "{stdout}");
    assert!(stderr.contains("cannot listen on"), "{stderr}");
    // The generated password is kept private until it is used.
    use std::os::unix::fs::PermissionsExt;
    let kept = dir.join("console.generated-password");
    assert_eq!(
        fs::metadata(&kept).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Every start says it again, the same one.
    for _ in 0..2 {
        let host = Host::start_in(&dir, &[]);
        assert_eq!(host.password.as_deref(), Some(first.as_str()));
        assert!(host.stop().success());
    }
    // Someone logs in: from then on no start prints it, and the kept copy
    // is gone.
    let host = Host::start_in(&dir, &[]);
    common::logged_in(&common::client(), &host);
    assert!(host.stop().success());
    assert!(!kept.exists());
    let lines = host_lines(&dir);
    assert!(
        !lines.iter().any(|l| l.starts_with("console password")),
        "{lines:?}"
    );

    // A host whose owner chose a password before anyone logged in: each
    // start names the command (a lost password is set anew with it).
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    failed_start(&dir);
    assert!(common::set_password(&dir, "correct horse battery")
        .status
        .success());
    assert!(!dir.join("console.generated-password").exists());
    let (stdout, _) = failed_start(&dir);
    let want = format!(
        "console password: the one set with `punktfunk console set-password --state-dir {}`",
        dir.display()
    );
    assert!(stdout.contains(&want), "{stdout}");
    let host = Host::start_in(&dir, &[]);
    assert!(host.password.is_none());
    assert!(
        host.lines.iter().any(|l| l.starts_with(&want)),
        "{:?}",
        host.lines
    );
}

#[test]
fn a_second_host_on_the_same_state_dir_is_refused() {
    let host = Host::start(&[]);
    let out = serve_command(&host.state_dir, &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another punktfunk host is already running"),
        "{err}"
    );
    assert!(err.contains(&host.state_dir.display().to_string()), "{err}");
    // The first host is unharmed.
    let resp = common::client()
        .get(format!("{}/api/pairing", host.console))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[test]
fn a_corrupt_registry_stops_the_host_and_is_left_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    Host::start_in(&dir, &[]).stop();
    let path = dir.join("trust.json");
    for bad in [
        &b"{\"version\":1,\"devices\":[{\"truncated"[..],
        b"{\"version\":9,\"devices\":[]}",
    ] {
        fs::write(&path, bad).unwrap();
        let out = serve_command(&dir, &[])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&path.display().to_string()),
            "error names the file: {err}"
        );
        assert_eq!(fs::read(&path).unwrap(), bad, "the file is left as it was");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("listening"),
            "nothing was served"
        );
    }
}

#[test]
fn sigint_and_sigterm_stop_the_host_cleanly() {
    let host = Host::start(&[]);
    assert!(host.stop().success());
    let mut host = Host::start(&[]);
    common::signal(&host.child, "INT");
    let status = common::wait_timeout(&mut host.child, std::time::Duration::from_secs(20)).unwrap();
    assert!(status.success());
}

#[test]
fn console_set_password_replaces_the_password() {
    let host = Host::start(&[]);
    let mut cmd = Command::new(BIN);
    cmd.args(["console", "set-password", "--state-dir"])
        .arg(&host.state_dir)
        .stdin(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse battery\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    let login = |pw: &str| {
        common::client()
            .post(format!("{}/api/login", host.console))
            .json(&serde_json::json!({ "password": pw }))
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(login("correct horse battery"), 200);
    assert_eq!(login(host.password()), 401);

    let mut short = Command::new(BIN);
    short
        .args(["console", "set-password", "--state-dir"])
        .arg(&host.state_dir)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = short.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"short\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert_eq!(login("correct horse battery"), 200);
}

/// Reads `from` until `want` appears (or it ends); what was read.
fn read_until(from: &mut impl std::io::Read, want: &str, got: &mut String) {
    let mut buf = [0u8; 256];
    while !got.contains(want) {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => got.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
}

#[test]
fn set_password_in_a_terminal_asks_twice_without_echo() {
    // util-linux `script` gives the command a real terminal (a pty) and
    // copies this test's pipe into it, as keystrokes.
    if !std::path::Path::new("/usr/bin/script").exists() {
        eprintln!("skipped: needs util-linux `script` for a terminal");
        return;
    }
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let run = |first: &str, second: &str| {
        let command = format!("{BIN} console set-password --state-dir {}", dir.display());
        let mut child = Command::new("/usr/bin/script")
            .args(["-qefc", &command, "/dev/null"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut seen = String::new();
        // Typed only once asked: echo is off by then.
        read_until(&mut stdout, "not shown): ", &mut seen);
        stdin.write_all(format!("{first}\r").as_bytes()).unwrap();
        read_until(&mut stdout, "again: ", &mut seen);
        stdin.write_all(format!("{second}\r").as_bytes()).unwrap();
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut rest);
        seen.push_str(&rest);
        let status = child.wait().unwrap();
        drop(stdin);
        (status, seen)
    };
    let (status, seen) = run("a living room password", "a living room pasword");
    assert!(!status.success(), "{seen}");
    assert!(seen.contains("the two passwords differ"), "{seen}");
    assert!(!dir.join("console.passwd").exists(), "nothing set: {seen}");

    let (status, seen) = run("a living room password", "a living room password");
    assert!(status.success(), "{seen}");
    assert!(
        seen.contains("The same password again: "),
        "asked twice: {seen}"
    );
    assert!(!seen.contains("living room"), "echoed: {seen}");
    assert!(seen.contains("console password set in"), "{seen}");
    let mut host = Host::start_in(&dir, &[]);
    host.password = Some("a living room password".into());
    common::logged_in(&common::client(), &host);
}
