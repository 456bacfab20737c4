//! A slow disk stalls only the decision that waits on it. The real binary
//! runs under `strace`, which delays every `fsync`/`fdatasync` it makes by
//! seconds (a disk that is really slow, not a mock). While the console's
//! Approve writes the device, the gate is not locked: the console still
//! lists what waits (showing that request as being stored) and a native
//! `hello{pair}`, which consults the gate, is answered.

mod common;

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{raw_native, serve_command, Console, Host};
use serde_json::Value;

/// Each fsync takes this long. The registry's write makes two (file and
/// directory), so the approval is in flight for at least twice this.
const FSYNC_DELAY: Duration = Duration::from_millis(1500);

/// `cmd` under strace, with every fsync delayed by [`FSYNC_DELAY`].
fn with_slow_fsync(cmd: &Command) -> Command {
    let mut slow = Command::new("strace");
    slow.args(["-f", "-qq", "--seccomp-bpf", "-o", "/dev/null"])
        .args(["-e", "trace=fsync,fdatasync", "-e"])
        .arg(format!(
            "inject=fsync,fdatasync:delay_enter={}",
            FSYNC_DELAY.as_micros()
        ))
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            slow.env(key, value);
        }
    }
    slow.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    slow
}

/// The traced `punktfunk` under the `strace` child, killed when dropped
/// (a failing test included): killing strace alone would leave it running,
/// detached.
struct Tracee(u32);

impl Tracee {
    fn of(host: &Host) -> Tracee {
        let strace = host.child.id();
        let children = std::fs::read_to_string(format!("/proc/{strace}/task/{strace}/children"))
            .expect("strace's children");
        let pid = children
            .split_whitespace()
            .next()
            .and_then(|pid| pid.parse().ok())
            .expect("strace runs punktfunk");
        Tracee(pid)
    }
}

impl Drop for Tracee {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

fn pending(console: &Console) -> Vec<Value> {
    console.pairing()["pending"].as_array().unwrap().clone()
}

#[test]
fn a_slow_registry_write_does_not_stall_the_console_or_a_native_hello() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let host = Host::start_with(with_slow_fsync(&serve_command(&dir, &["--native"])), &dir);
    let punktfunk = Tracee::of(&host);
    let console = Console::login(&host);
    let native = raw_native::addr(&host);

    // A device knocks and waits for approval.
    let (_knock, _, answer) = raw_native::knock("127.0.0.1", native, "Living Room TV");
    assert_eq!(answer["status"], "approval_pending", "{answer}");
    let waiting = pending(&console);
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert_eq!(waiting[0]["storing"], false);
    let id = waiting[0]["id"].as_str().unwrap().to_owned();
    let (status, armed) = console.send("POST", "/api/pairing/arm", None);
    assert_eq!(status, 200, "{armed}");

    // Approve: the write takes at least two delayed fsyncs.
    let approving = {
        let console = Console {
            http: console.http.clone(),
            base: console.base.clone(),
            csrf: console.csrf.clone(),
        };
        let (done, approved) = mpsc::channel();
        std::thread::spawn(move || {
            let answer = console.send("POST", &format!("/api/pending/{id}/approve"), None);
            let _ = done.send(answer);
        });
        approved
    };

    // The console keeps answering, and shows the request being stored
    // (with the gate locked across the write it could only answer after).
    let deadline = Instant::now() + 2 * FSYNC_DELAY;
    loop {
        let listed = pending(&console);
        assert_eq!(listed.len(), 1, "still listed while stored: {listed:?}");
        if listed[0]["storing"] == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the request never showed as being stored: {listed:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        approving.try_recv().is_err(),
        "the approval is still writing"
    );

    // A native hello that asks the gate (is pairing armed?) is answered.
    let pairer = punktfunk_certs::Identity::generate_p256("pairer").unwrap();
    let mut pair = raw_native::Raw::connect("127.0.0.2", native, &pairer);
    let welcome = pair.hello("Anna's iPad", "pair");
    assert_eq!(welcome["status"], "pairing", "{welcome}");
    let listed = pending(&console);
    assert_eq!(
        listed[0]["storing"], true,
        "answered while the write was still in flight: {listed:?}"
    );
    drop(pair);

    // The approval lands, and the request ends as approved.
    let (status, body) = approving
        .recv_timeout(Duration::from_secs(120))
        .expect("the approval finished");
    assert_eq!(status, 200, "{body}");
    assert!(pending(&console).is_empty());
    let devices = console.pairing()["devices"].as_array().unwrap().clone();
    assert_eq!(devices.len(), 1, "{devices:?}");
    assert_eq!(devices[0]["via"], "approval");

    common::signal_pid(punktfunk.0, "TERM");
    let mut host = host;
    common::wait_timeout(&mut host.child, Duration::from_secs(60)).expect("punktfunk stopped");
    std::mem::forget(punktfunk);
}
