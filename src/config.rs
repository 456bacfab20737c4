//! The settings file: `punktfunk.toml`, the same settings as `serve`'s
//! flags, for a host that runs as a service.
//!
//! Which file: `--config FILE` if given (it must exist); otherwise
//! `/etc/punktfunk/punktfunk.toml` if it exists; otherwise `punktfunk.toml`
//! in the state dir if it exists; otherwise none. A flag overrides the key
//! of the same name. An unknown key is an error that names the key and the
//! file, so a typo never silently falls back to a default.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The system-wide settings file (the Debian package installs an example).
pub(crate) const SYSTEM_CONFIG: &str = "/etc/punktfunk/punktfunk.toml";
/// The settings file's name in a state dir.
pub(crate) const STATE_DIR_CONFIG: &str = "punktfunk.toml";
/// A settings file is a few hundred bytes; a bigger one is a mistake.
const MAX_BYTES: u64 = 64 * 1024;

/// Every key is optional; a missing key takes the flag's default.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileSettings {
    pub(crate) bind: Option<IpAddr>,
    pub(crate) http_port: Option<u16>,
    pub(crate) https_port: Option<u16>,
    pub(crate) console_port: Option<u16>,
    pub(crate) native_port: Option<u16>,
    pub(crate) native: Option<bool>,
    pub(crate) open: Option<bool>,
    pub(crate) mdns: Option<bool>,
    pub(crate) state_dir: Option<PathBuf>,
}

/// Why the settings file was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    #[error("cannot read the settings file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the settings file {} is larger than {MAX_BYTES} bytes", path.display())]
    TooLarge { path: PathBuf },
    #[error("the settings file {}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

/// Reads and checks one settings file. The state dir's own file is never
/// read through a link (its owner could point it at a file only root may
/// read, and the parse error would quote it); `--config` and the system
/// file are the administrator's choice and may be links.
pub(crate) fn load(path: &Path, in_state_dir: bool) -> Result<FileSettings, ConfigError> {
    let read = |source| ConfigError::Read {
        path: path.into(),
        source,
    };
    let text = if in_state_dir {
        let bytes = punktfunk_certs::fsutil::read_limited(path, MAX_BYTES).map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidData {
                ConfigError::TooLarge { path: path.into() }
            } else {
                read(e)
            }
        })?;
        String::from_utf8(bytes).map_err(|_| {
            read(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "stream did not contain valid UTF-8",
            ))
        })?
    } else {
        let meta = std::fs::metadata(path).map_err(read)?;
        if meta.len() > MAX_BYTES {
            return Err(ConfigError::TooLarge { path: path.into() });
        }
        std::fs::read_to_string(path).map_err(read)?
    };
    parse(&text).map_err(|message| ConfigError::Invalid {
        path: path.into(),
        message,
    })
}

/// Parses settings text; the error is toml's, which names the key (or the
/// value) and its line.
pub(crate) fn parse(text: &str) -> Result<FileSettings, String> {
    toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
}

/// The file `serve` reads: `explicit` (which must exist), else the system
/// file, else the state dir's, else none.
pub(crate) fn locate(
    explicit: Option<&Path>,
    state_dir: Option<&Path>,
) -> Result<Option<PathBuf>, ConfigError> {
    if let Some(path) = explicit {
        // Reported by `load` if it cannot be read.
        return Ok(Some(path.to_path_buf()));
    }
    let system = Path::new(SYSTEM_CONFIG);
    if system.exists() {
        return Ok(Some(system.to_path_buf()));
    }
    // A link counts as there (and is refused by `load`).
    Ok(state_dir
        .map(|d| d.join(STATE_DIR_CONFIG))
        .filter(|p| p.symlink_metadata().is_ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_parses_and_none_is_required() {
        assert_eq!(parse("").unwrap(), FileSettings::default());
        let all = parse(
            r#"
            bind = "::"
            http_port = 1
            https_port = 2
            console_port = 3
            native_port = 4
            native = true
            open = false
            mdns = false
            state_dir = "/var/lib/punktfunk"
            "#,
        )
        .unwrap();
        assert_eq!(all.bind, Some("::".parse().unwrap()));
        assert_eq!(all.native_port, Some(4));
        assert_eq!(
            all.state_dir.as_deref(),
            Some(Path::new("/var/lib/punktfunk"))
        );
    }

    #[test]
    fn an_unknown_key_or_a_bad_value_is_named() {
        let e = parse("bind = \"::\"\nconsole_prot = 1\n").unwrap_err();
        assert!(e.contains("unknown field `console_prot`"), "{e}");
        assert!(e.contains("line 2"), "{e}");
        let e = parse("http_port = 70000").unwrap_err();
        assert!(e.contains("http_port") || e.contains("70000"), "{e}");
        let e = parse("bind = \"not an address\"").unwrap_err();
        assert!(e.contains("bind") || e.contains("address"), "{e}");
    }

    #[test]
    fn the_example_shipped_in_the_package_parses() {
        let text = include_str!("../packaging/punktfunk.toml");
        assert_eq!(parse(text).unwrap(), FileSettings::default());
        // Every key it documents, uncommented, is a known key.
        let uncommented: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.contains(" = "))
            .map(|l| format!("{l}\n"))
            .collect();
        let all = parse(&uncommented).unwrap();
        assert_eq!(all.bind, Some("::".parse().unwrap()));
        assert_eq!(all.console_port, Some(47990));
    }
}
