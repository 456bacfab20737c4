//! Until someone has logged in to the console, every start says how to get
//! in: the generated password again (kept for that in a private file of
//! the state dir), or, once the owner chose one with `console
//! set-password`, that command. The first successful login leaves a
//! marker and deletes the kept password.
//!
//! Why keeping the generated password in a file is fine: it sits next to
//! the host key (more valuable, same 0600 mode, same dir) and goes away at
//! the first login or the first `set-password`; a password printed once
//! and lost (a start that then failed on a busy port, a journal rotated)
//! left the owner locked out of a fresh host.

use std::io;
use std::path::Path;

use punktfunk_certs::fsutil;

/// Written at the first successful console login.
pub(crate) const LOGGED_IN_FILE: &str = "console.logged-in";
/// A generated password is 20 characters; anything much bigger is not one.
const MAX_BYTES: u64 = 256;

/// Keeps the generated `password` (0600, never through a link).
pub(crate) fn keep_generated(dir: &Path, password: &str) -> io::Result<()> {
    fsutil::write_atomic(
        &dir.join(crate::startup::GENERATED_FILE),
        format!("{password}\n").as_bytes(),
    )
}

/// The generated password, while it is still the one in use.
pub(crate) fn generated(dir: &Path) -> Option<String> {
    let bytes = fsutil::read_limited(&dir.join(crate::startup::GENERATED_FILE), MAX_BYTES).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let password = text.trim();
    (!password.is_empty()).then(|| password.to_owned())
}

/// The generated password is no longer the one (`set-password` ran, or
/// someone logged in with it).
pub(crate) fn forget_generated(dir: &Path) -> io::Result<()> {
    match std::fs::remove_file(dir.join(crate::startup::GENERATED_FILE)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whether anyone has logged in to the console of the host on `dir`.
pub(crate) fn logged_in(dir: &Path) -> bool {
    dir.join(LOGGED_IN_FILE).symlink_metadata().is_ok()
}

/// Records the first successful login (blocking: it fsyncs).
pub(crate) fn note_login(dir: &Path) -> io::Result<()> {
    if logged_in(dir) {
        return Ok(());
    }
    fsutil::write_atomic(&dir.join(LOGGED_IN_FILE), b"")?;
    forget_generated(dir)
}

/// The line a start prints before any port is bound, so a start that then
/// fails still says how to get in; `None` once someone logged in.
pub(crate) fn how_to_get_in(dir: &Path) -> Option<String> {
    if logged_in(dir) {
        return None;
    }
    let set = set_password_command(dir);
    Some(match generated(dir) {
        Some(pw) => format!(
            "console password: {pw}  (generated; shown at every start until someone logs in; \
             choose your own with `{set}`)"
        ),
        None => format!(
            "console password: the one set with `{set}` (nobody has logged in yet; \
             forgot it? run that command again)"
        ),
    })
}

/// `console set-password` as the person should type it for `dir`.
pub(crate) fn set_password_command(dir: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(dir).map(|m| m.uid()).ok();
    let me = rustix::process::geteuid().as_raw();
    let sudo = match owner {
        Some(uid) if uid != me && uid != 0 => {
            format!("sudo -u {} ", crate::startup::user_name(uid))
        }
        // The system service reads this in the journal as an admin: root
        // sets it (the file keeps the service's owner).
        _ if dir == Path::new(crate::startup::SYSTEM_STATE_DIR) && me != 0 => "sudo ".to_owned(),
        _ => String::new(),
    };
    format!(
        "{sudo}punktfunk console set-password --state-dir {}",
        dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_password_is_shown_until_a_login() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path();
        keep_generated(dir, "AbCdEf0123456789xyzw").unwrap();
        let line = how_to_get_in(dir).unwrap();
        assert!(
            line.starts_with("console password: AbCdEf0123456789xyzw  "),
            "{line}"
        );
        forget_generated(dir).unwrap();
        let line = how_to_get_in(dir).unwrap();
        assert!(line.contains("console set-password --state-dir"), "{line}");
        keep_generated(dir, "again").unwrap();
        note_login(dir).unwrap();
        assert!(how_to_get_in(dir).is_none());
        assert!(generated(dir).is_none());
    }
}
