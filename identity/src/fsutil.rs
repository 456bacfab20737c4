//! The one way anything in the state dir is opened, read and written.
//!
//! The state dir belongs to the host's user, and root (`console
//! set-password`, a host started as root) works in it too. The dir's owner
//! can put a symbolic link in place of any file there, at any moment, so
//! nothing here ever follows one: every open carries `O_NOFOLLOW`, a link
//! is refused with an error naming it ([`is_link_refused`]), and what is
//! done to a file (mode, owner, content) is done through the descriptor
//! opened, never again by path. Otherwise root writing `console.passwd`,
//! or the host appending to `audit.jsonl` and making it private, would
//! write to, `chown` or `chmod` whatever file the link points at.
//!
//! Replacing a file is durable: a temp file in the same directory, created
//! anew (`O_CREAT|O_EXCL`, 0600, owner and mode set on the descriptor),
//! written, fsynced, renamed over the target, then the directory fsynced. A
//! crash at any instant leaves either the old file or the new one, never a
//! torn one (the temp file may be left behind; it is removed by the next
//! write and never read).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;

/// Largest file [`read`] takes by default: state files are small, and a
/// file put there by hand must not exhaust memory.
pub const MAX_STATE_FILE_BYTES: u64 = 1024 * 1024;

/// Path of the temp file used while replacing `path`.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Whether `e` is the refusal of a symbolic link by this module.
pub fn is_link_refused(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.downcast_ref::<LinkRefused>().is_some())
}

/// A symbolic link where a state file must be.
#[derive(Debug, thiserror::Error)]
#[error("{} is a symbolic link; punktfunk never follows a link in its state dir (it could point a write, chown or chmod at another file): replace it with the file itself, or remove it", .0.display())]
pub struct LinkRefused(pub PathBuf);

/// Turns the `ELOOP` of an `O_NOFOLLOW` open into [`LinkRefused`].
fn refuse_link(path: &Path, e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
        io::Error::new(io::ErrorKind::InvalidInput, LinkRefused(path.into()))
    } else {
        e
    }
}

/// Opens `path` with `opts`, never following a link at its last component.
pub fn open(path: &Path, opts: &OpenOptions) -> io::Result<File> {
    let mut opts = opts.clone();
    opts.custom_flags(OFlags::NOFOLLOW.bits() as i32);
    opts.open(path).map_err(|e| refuse_link(path, e))
}

/// Opens an existing regular file for reading without following a link
/// (and without blocking on a FIFO put in its place).
pub fn open_read(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.read(true)
        .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32);
    let file = opts.open(path).map_err(|e| refuse_link(path, e))?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    Ok(file)
}

/// Reads a whole state file (at most `max` bytes, more is an error) without
/// following a link.
pub fn read_limited(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let file = open_read(path)?;
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is larger than {max} bytes", path.display()),
        ));
    }
    Ok(bytes)
}

/// Reads a whole state file (at most [`MAX_STATE_FILE_BYTES`]) without
/// following a link.
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    read_limited(path, MAX_STATE_FILE_BYTES)
}

/// Reads a state file as UTF-8 text, see [`read`].
pub fn read_to_string(path: &Path) -> io::Result<String> {
    String::from_utf8(read(path)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"))
}

/// The owner a replaced file is given (root writing a service's file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// Atomically and durably replaces `path` with `bytes`, mode 0600.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_as(path, bytes, None)
}

/// Like [`write_atomic`], and the new file belongs to `owner` from before
/// it gets its name (set on the descriptor, so no link can redirect it).
pub fn write_atomic_as(path: &Path, bytes: &[u8], owner: Option<Owner>) -> io::Result<()> {
    let tmp = temp_path(path);
    let mut file = create_new_private(&tmp)?;
    if let Some(o) = owner {
        rustix::fs::fchown(
            &file,
            Some(rustix::fs::Uid::from_raw(o.uid)),
            Some(rustix::fs::Gid::from_raw(o.gid)),
        )?;
    }
    // The mode asked for at creation is narrowed by the umask; set it
    // exactly (after the chown, which may clear set-id bits).
    rustix::fs::fchmod(&file, rustix::fs::Mode::from_raw_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    // A rename moves the name, never follows it: if the temp name was
    // swapped for a link meanwhile, the link lands on `path` and is refused
    // when read, and no other file was written.
    fs::rename(&tmp, path)?;
    sync_dir(path)
}

/// Creates `tmp` anew, 0600, never opening what is already there (a file
/// left by a crash, or a link put there): that is removed first, and if
/// something reappears in between, tried again a few times.
fn create_new_private(tmp: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true).mode(0o600);
    let mut tries = 0;
    loop {
        // `remove_file` unlinks a link itself, never its target.
        match fs::remove_file(tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        match open(tmp, &opts) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < 8 => tries += 1,
            other => return other,
        }
    }
}

/// Sets the mode of `path` to `mode` without following a link (refused with
/// [`LinkRefused`]); works on any kind of file, a socket included. `Ok(None)`
/// if the file does not exist, else its mode before.
pub fn chmod(path: &Path, mode: u32) -> io::Result<Option<u32>> {
    use rustix::fs::{FileType, Mode};
    // O_PATH with O_NOFOLLOW opens a link itself instead of failing: check
    // the type on the descriptor, then change the inode it holds.
    let fd = match rustix::fs::open(
        path,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let stat = rustix::fs::fstat(&fd)?;
    let old = stat.st_mode & 0o7777;
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::Symlink => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                LinkRefused(path.into()),
            ))
        }
        FileType::RegularFile | FileType::Directory | FileType::Socket => {}
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", path.display()),
            ))
        }
    }
    // fchmod does not take an O_PATH descriptor; its /proc name resolves
    // to exactly the inode checked above (how the C library emulates
    // fchmodat(AT_SYMLINK_NOFOLLOW)).
    let proc_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    match rustix::fs::chmod(proc_path.as_str(), Mode::from_raw_mode(mode)) {
        Ok(()) => Ok(Some(old)),
        // No /proc: a regular file can still be changed through a
        // descriptor of its own.
        Err(rustix::io::Errno::NOENT)
            if FileType::from_raw_mode(stat.st_mode) != FileType::Socket =>
        {
            let file = open_read(path)?;
            rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))?;
            Ok(Some(old))
        }
        Err(e) => Err(e.into()),
    }
}

/// The mode of `path` (not following a link), `None` if it does not exist.
pub fn mode(path: &Path) -> io::Result<Option<u32>> {
    use std::os::unix::fs::PermissionsExt;
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            LinkRefused(path.into()),
        )),
        Ok(m) => Ok(Some(m.permissions().mode() & 0o7777)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Fsyncs the directory holding `path`, so a rename in it is durable.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(unix)]
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_content_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert!(!temp_path(&p).exists());
        #[cfg(unix)]
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn links_are_never_followed() {
        use std::os::unix::fs::{symlink, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::write(&outside, b"precious").unwrap();
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o644)).unwrap();
        let state = dir.path().join("state");
        fs::create_dir(&state).unwrap();
        let link = state.join("f.json");
        symlink(&outside, &link).unwrap();
        let refused = |e: io::Error| {
            assert!(is_link_refused(&e), "{e}");
            assert!(e.to_string().contains("f.json"), "{e}");
        };
        refused(read(&link).unwrap_err());
        refused(chmod(&link, 0o600).unwrap_err());
        refused(mode(&link).unwrap_err());
        let mut append = OpenOptions::new();
        append.append(true).create(true);
        refused(open(&link, &append).unwrap_err());
        // A link at the temp name is removed, not written through.
        symlink(&outside, temp_path(&state.join("g.json"))).unwrap();
        write_atomic(&state.join("g.json"), b"new").unwrap();
        assert_eq!(fs::read(&outside).unwrap(), b"precious");
        assert_eq!(
            fs::metadata(&outside).unwrap().permissions().mode() & 0o777,
            0o644
        );
        // Replacing the link replaces the link, not its target.
        write_atomic(&link, b"new").unwrap();
        assert_eq!(fs::read(&outside).unwrap(), b"precious");
        assert_eq!(read(&link).unwrap(), b"new");
    }

    #[test]
    fn chmod_changes_files_and_reports_the_old_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        assert_eq!(chmod(&p, 0o600).unwrap(), None);
        fs::write(&p, b"x").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(chmod(&p, 0o600).unwrap(), Some(0o644));
        assert_eq!(mode(&p).unwrap(), Some(0o600));
        assert!(read_limited(&p, 0).is_err());
    }

    #[test]
    fn stale_temp_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.json");
        fs::write(temp_path(&p), b"torn garb").unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
    }
}
