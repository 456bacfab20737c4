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
    assert!(host.password.is_none(), "the password is shown only once");
    assert!(host.stop().success());
    assert_eq!(fs::read(dir.join("host.crt")).unwrap(), crt);
    assert_eq!(fs::read(dir.join("host.key")).unwrap(), key);
    assert_eq!(fs::read(dir.join("host.id")).unwrap(), id);

    let out = Command::new(BIN)
        .arg("fingerprint")
        .arg("--state-dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(printed, format!("{}\n", sha256_of_der(&crt)));
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
