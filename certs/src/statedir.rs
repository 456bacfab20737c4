//! The state dir: where a host keeps its identity, registry and console
//! credentials, and the lock that lets only one host use it at a time.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Name of the lock file inside a state dir.
pub const LOCK_FILE: &str = "punktfunk.lock";

/// Errors opening a state dir.
#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    /// Another host holds the lock.
    #[error("another punktfunk host is already running with state dir {} (it holds {}); stop it first, or pass a different --state-dir", path.display(), path.join(LOCK_FILE).display())]
    Locked {
        /// The state dir.
        path: PathBuf,
    },
    /// A private file or the dir is open to other users and cannot be
    /// made private.
    #[error("{} is readable by other users (mode {mode:04o}) and cannot be made private: {source}; fix it with `chmod {want:o} {}`", path.display(), path.display())]
    Permissions {
        /// The file or dir.
        path: PathBuf,
        /// Its mode.
        mode: u32,
        /// The mode it needs.
        want: u32,
        /// Why it could not be changed.
        source: io::Error,
    },
    /// A state file is a symbolic link (never followed).
    #[error(transparent)]
    Link(crate::fsutil::LinkRefused),
    /// The dir or lock file cannot be created or opened.
    #[error("cannot use state dir {}: {source}", path.display())]
    Io {
        /// The state dir.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// An exclusively locked state dir. The lock is held until this is dropped
/// (or the process exits, however it exits).
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    _lock: File,
}

impl StateDir {
    /// Creates `path` (mode 0700) if needed and locks it.
    pub fn open(path: &Path) -> Result<Self, StateDirError> {
        let io_err = |source| StateDirError::Io {
            path: path.into(),
            source,
        };
        create_private_dir(path).map_err(io_err)?;
        let lock_path = path.join(LOCK_FILE);
        let mut opts = OpenOptions::new();
        opts.create(true).truncate(false).write(true).mode(0o600);
        let lock = crate::fsutil::open(&lock_path, &opts).map_err(|e| file_error(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StateDirError::Locked { path: path.into() })
            }
            Err(TryLockError::Error(e)) => return Err(io_err(e)),
        }
        Ok(Self {
            path: path.into(),
            _lock: lock,
        })
    }

    /// The platform default: `$XDG_CONFIG_HOME/punktfunk`, else
    /// `$HOME/.config/punktfunk`; `None` when neither variable is set.
    pub fn default_path() -> Option<PathBuf> {
        let nonempty = |k| std::env::var_os(k).filter(|v| !v.is_empty());
        nonempty("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| nonempty("HOME").map(|h| PathBuf::from(h).join(".config")))
            .map(|base| base.join("punktfunk"))
    }

    /// Makes the dir (0700) and the private files in it that exist (0600)
    /// unreadable to other users, and returns what it changed as (path, old
    /// mode, new mode), for the caller to log. A dir or file that stays open
    /// to others is an error: it would expose the host key, the pinned
    /// devices or the password hash.
    pub fn make_private(&self, files: &[&str]) -> Result<Vec<(PathBuf, u32, u32)>, StateDirError> {
        self.make_private_but(files, 0o700)
    }

    /// [`StateDir::make_private`], the dir allowed `dir_mode` (0700, or
    /// 0710 when a group may reach a socket in it: the streamer's group
    /// may then pass through the dir, never list or read it).
    pub fn make_private_but(
        &self,
        files: &[&str],
        dir_mode: u32,
    ) -> Result<Vec<(PathBuf, u32, u32)>, StateDirError> {
        let mut changed = Vec::new();
        if let Some(old) = tighten_dir(&self.path, dir_mode)? {
            changed.push((self.path.clone(), old, dir_mode));
        }
        for path in files.iter().map(|f| self.path.join(f)) {
            if let Some(old) = tighten(&path, 0o600)? {
                changed.push((path, old, 0o600));
            }
        }
        Ok(changed)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A file inside it.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

/// Sets `path` to `want` if group or others have any access; the old mode
/// if it changed. A missing file is fine (it is created private); a link is
/// refused, never followed (its target is left alone).
fn tighten(path: &Path, want: u32) -> Result<Option<u32>, StateDirError> {
    let mode = match crate::fsutil::mode(path) {
        Ok(Some(mode)) => mode,
        Ok(None) => return Ok(None),
        Err(e) => return Err(file_error(path, e)),
    };
    if mode & 0o077 == 0 {
        return Ok(None);
    }
    crate::fsutil::chmod(path, want).map_err(|source| match link_refused(path, source) {
        Ok(link) => link,
        Err(source) => StateDirError::Permissions {
            path: path.into(),
            mode,
            want,
            source,
        },
    })?;
    Ok(Some(mode))
}

/// The state dir itself may be reached through a link (the owner chose its
/// path); only the files in it must not be links.
fn tighten_dir(path: &Path, want: u32) -> Result<Option<u32>, StateDirError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = match fs::metadata(path) {
        Ok(m) => m.permissions().mode() & 0o7777,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateDirError::Io {
                path: path.into(),
                source,
            })
        }
    };
    // Only what `want` does not allow counts: 0710 keeps its group's x.
    if mode & 0o077 & !want == 0 {
        return Ok(None);
    }
    fs::set_permissions(path, fs::Permissions::from_mode(want)).map_err(|source| {
        StateDirError::Permissions {
            path: path.into(),
            mode,
            want,
            source,
        }
    })?;
    Ok(Some(mode))
}

/// [`StateDirError::Link`] if `e` refused a link at `path`, else `e`.
fn link_refused(path: &Path, e: io::Error) -> Result<StateDirError, io::Error> {
    if crate::fsutil::is_link_refused(&e) {
        Ok(StateDirError::Link(crate::fsutil::LinkRefused(path.into())))
    } else {
        Err(e)
    }
}

fn file_error(path: &Path, e: io::Error) -> StateDirError {
    link_refused(path, e).unwrap_or_else(|source| StateDirError::Io {
        path: path.into(),
        source,
    })
}

fn create_private_dir(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loose_permissions_are_tightened() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state");
        let state = StateDir::open(&p).unwrap();
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        fs::write(p.join("secret"), b"k").unwrap();
        fs::set_permissions(p.join("secret"), fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(p.join("fine"), b"k").unwrap();
        fs::set_permissions(p.join("fine"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        let changed = state.make_private(&["secret", "fine", "absent"]).unwrap();
        assert_eq!(
            changed,
            vec![(p.clone(), 0o755, 0o700), (p.join("secret"), 0o644, 0o600)]
        );
        assert_eq!(mode(&p), 0o700);
        assert_eq!(mode(&p.join("secret")), 0o600);
        assert!(state.make_private(&["secret"]).unwrap().is_empty());
    }

    #[test]
    fn a_dir_shared_with_a_group_keeps_only_its_x_bit() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state");
        let state = StateDir::open(&p).unwrap();
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o710)).unwrap();
        assert!(state.make_private_but(&[], 0o710).unwrap().is_empty());
        assert_eq!(mode(&p), 0o710);
        // Group read (a listing) is more than the streamer's group needs.
        fs::set_permissions(&p, fs::Permissions::from_mode(0o750)).unwrap();
        assert_eq!(
            state.make_private_but(&[], 0o710).unwrap(),
            vec![(p.clone(), 0o750, 0o710)]
        );
        // Without the group, its x bit goes too.
        assert_eq!(
            state.make_private(&[]).unwrap(),
            vec![(p.clone(), 0o710, 0o700)]
        );
        assert_eq!(mode(&p), 0o700);
    }

    #[test]
    fn a_link_is_refused_and_its_target_left_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state");
        let state = StateDir::open(&p).unwrap();
        let outside = dir.path().join("outside");
        fs::write(&outside, b"k").unwrap();
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&outside, p.join("secret")).unwrap();
        let err = state.make_private(&["secret"]).unwrap_err();
        assert!(matches!(err, StateDirError::Link(_)), "{err}");
        assert!(
            err.to_string().contains("secret is a symbolic link"),
            "{err}"
        );
        let mode = fs::metadata(&outside).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        drop(state);
        // The lock file too.
        fs::remove_file(p.join(LOCK_FILE)).unwrap();
        std::os::unix::fs::symlink(&outside, p.join(LOCK_FILE)).unwrap();
        assert!(matches!(StateDir::open(&p), Err(StateDirError::Link(_))));
    }

    #[test]
    fn second_open_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state");
        let first = StateDir::open(&p).unwrap();
        assert!(matches!(
            StateDir::open(&p),
            Err(StateDirError::Locked { .. })
        ));
        drop(first);
        StateDir::open(&p).unwrap();
    }
}
