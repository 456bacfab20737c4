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

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A file inside it.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
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
