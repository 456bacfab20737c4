//! The state dir: where a host keeps its identity, registry and console
//! credentials, and the lock that lets only one host use it at a time.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
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
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.join(LOCK_FILE))
            .map_err(io_err)?;
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
        let mut changed = Vec::new();
        let targets = std::iter::once((self.path.clone(), 0o700))
            .chain(files.iter().map(|f| (self.path.join(f), 0o600)));
        for (path, want) in targets {
            if let Some(old) = tighten(&path, want)? {
                changed.push((path, old, want));
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
/// if it changed. A missing file is fine (it is created private).
fn tighten(path: &Path, want: u32) -> Result<Option<u32>, StateDirError> {
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
    if mode & 0o077 == 0 {
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
