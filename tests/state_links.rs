//! No file in the state dir is ever reached through a symbolic link: the
//! dir's owner can put one in place of any file there at any moment, and
//! root (`console set-password`) or the host following it would write,
//! `chown` or `chmod` the file it points at. Against the real binary.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{serve_command, wait_timeout};

/// The unprivileged owner of the state dir in these tests.
const NOBODY: u32 = 65534;

/// Content, mode and owner of a file.
fn snapshot(path: &Path) -> (Vec<u8>, u32, u32, u32) {
    let meta = fs::symlink_metadata(path).unwrap();
    assert!(
        meta.file_type().is_file(),
        "{} stays a file",
        path.display()
    );
    (
        fs::read(path).unwrap(),
        meta.permissions().mode() & 0o7777,
        meta.uid(),
        meta.gid(),
    )
}

/// A root-owned 0600 file outside the state dir: what a link would aim at.
fn precious(dir: &Path) -> PathBuf {
    let target = dir.join("root-only");
    fs::write(&target, b"root's secret\n").unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).unwrap();
    target
}

#[test]
fn set_password_as_root_never_touches_what_a_racing_link_points_at() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root (the attack is on root's set-password)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let target = precious(tmp.path());
    let before = snapshot(&target);
    let state = tmp.path().join("state");
    fs::create_dir(&state).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&state, Some(NOBODY), Some(NOBODY)).unwrap();

    // The dir's owner swaps the password file and its temp file for links
    // to the target, as fast as it can, while root sets the password.
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let swapper = std::thread::spawn({
        let (stop, swaps, state, target) =
            (stop.clone(), swaps.clone(), state.clone(), target.clone());
        move || {
            let names = [
                state.join("console.passwd"),
                state.join("console.passwd.tmp"),
            ];
            while !stop.load(Ordering::Relaxed) {
                for name in &names {
                    let _ = fs::remove_file(name);
                    if symlink(&target, name).is_ok() {
                        swaps.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(4);
    let (mut runs, mut refused) = (0, 0);
    while Instant::now() < deadline {
        let out = common::set_password(&state, "correct horse battery");
        runs += 1;
        if !out.status.success() {
            refused += 1;
        }
        assert_eq!(snapshot(&target), before, "run {runs}: {out:?}");
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    eprintln!(
        "{runs} set-password runs ({refused} failed) against {} swaps",
        swaps.load(Ordering::Relaxed)
    );
    assert!(runs >= 3 && swaps.load(Ordering::Relaxed) > 100);
    assert_eq!(snapshot(&target), before);

    // Without the swapper: the file is the dir owner's, private, and never
    // a link's target.
    for name in ["console.passwd", "console.passwd.tmp"] {
        let _ = fs::remove_file(state.join(name));
    }
    let out = common::set_password(&state, "correct horse battery");
    assert!(out.status.success(), "{out:?}");
    let (hash, mode, uid, gid) = snapshot(&state.join("console.passwd"));
    assert!(String::from_utf8(hash).unwrap().starts_with("$argon2id$"));
    assert_eq!((mode, uid, gid), (0o600, NOBODY, NOBODY));
    // And a link left in its place is replaced, its target untouched.
    fs::remove_file(state.join("console.passwd")).unwrap();
    symlink(&target, state.join("console.passwd")).unwrap();
    let out = common::set_password(&state, "correct horse battery");
    assert!(out.status.success(), "{out:?}");
    assert!(fs::symlink_metadata(state.join("console.passwd"))
        .unwrap()
        .is_file());
    assert_eq!(snapshot(&target), before);
}

#[test]
fn the_host_refuses_a_state_file_that_is_a_link_and_leaves_its_target_alone() {
    // A first start makes the files; then each in turn becomes a link to a
    // file outside (0644, so making it private would show as a chmod).
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let host = common::Host::start_in(&state, &[]);
    host.stop();
    for name in [
        "audit.jsonl",
        "audit.1.jsonl",
        "trust.json",
        "console.passwd",
        "host.key",
        "host.crt",
        "punktfunk.lock",
        "punktfunk.toml",
    ] {
        let target = tmp.path().join(format!("outside-{name}"));
        let original = state.join(name);
        let content = fs::read(&original).unwrap_or_else(|_| b"\n".to_vec());
        fs::write(&target, &content).unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
        let before = snapshot(&target);
        let _ = fs::rename(&original, tmp.path().join("kept"));
        symlink(&target, &original).unwrap();

        let mut child = serve_command(&state, &[])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_timeout(&mut child, Duration::from_secs(20));
        if status.is_none() {
            let _ = child.kill();
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            status.is_some_and(|s| !s.success()),
            "{name}: the host started on a link ({stderr})"
        );
        assert!(
            stderr.contains(&format!("{name} is a symbolic link")),
            "{name}: {stderr}"
        );
        assert_eq!(snapshot(&target), before, "{name}: the target changed");

        fs::remove_file(&original).unwrap();
        let _ = fs::rename(tmp.path().join("kept"), &original);
    }
}
