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
    /// The addresses to give out (console links, pairing links, the
    /// start-up block) instead of the interfaces' LAN addresses.
    pub(crate) advertise: Option<Vec<IpAddr>>,
    /// What a newly paired device may do: a preset (the host's first
    /// device may do everything whatever this says).
    pub(crate) default_grant: Option<punktfunk_certs::Preset>,
    /// A group whose members may use `streamer.sock` too (the streamer's
    /// user, when it is not the host's): a name or a number.
    pub(crate) streamer_group: Option<String>,
}

/// Every key, what it takes (said when a value is refused).
const KEYS: &[(&str, &str)] = &[
    (
        "bind",
        "an IP address in quotes, e.g. \"::\" (every address) or \"192.168.1.20\"",
    ),
    (
        "http_port",
        "a port number from 0 to 65535, without quotes (0: any free port)",
    ),
    (
        "https_port",
        "a port number from 0 to 65535, without quotes (0: any free port)",
    ),
    (
        "console_port",
        "a port number from 0 to 65535, without quotes (0: any free port)",
    ),
    (
        "native_port",
        "a port number from 0 to 65535, without quotes (0: any free port)",
    ),
    ("native", "true or false, without quotes"),
    ("open", "true or false, without quotes"),
    ("mdns", "true or false, without quotes"),
    ("state_dir", "a path in quotes, e.g. \"/var/lib/punktfunk\""),
    (
        "advertise",
        "a list of IP addresses in quotes, e.g. [\"192.168.1.20\", \"fd00::20\"]",
    ),
    (
        "default_grant",
        "a preset in quotes: \"full\", \"play\", \"gamepad\" or \"watch\"",
    ),
    (
        "streamer_group",
        "a group's name or number in quotes, e.g. \"punktfunk-streamer\"",
    ),
];

/// Why the settings file was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    #[error("cannot read the settings file {}: {source}; check the path (`--config`) and that this user may read it", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the settings file {} is larger than {MAX_BYTES} bytes", path.display())]
    TooLarge { path: PathBuf },
    #[error("the settings file {}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("the settings file {}, line {line}: {message}; fix or remove that line (a missing key takes its default) and start again", path.display())]
    Key {
        path: PathBuf,
        line: usize,
        message: String,
    },
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
    let settings = parse(&text).map_err(|e| match e {
        Refused::Key { line, message } => ConfigError::Key {
            path: path.into(),
            line,
            message,
        },
        Refused::Other(message) => ConfigError::Invalid {
            path: path.into(),
            message,
        },
    })?;
    check(&settings).map_err(|(key, message)| ConfigError::Key {
        path: path.into(),
        line: line_of(&text, key),
        message,
    })?;
    Ok(settings)
}

/// What is wrong with settings text.
#[derive(Debug)]
pub(crate) enum Refused {
    /// A key's line: an unknown key or a value it does not take.
    Key { line: usize, message: String },
    /// Anything else (not TOML at all).
    Other(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Key { line, message } => write!(f, "line {line}: {message}"),
            Self::Other(m) => f.write_str(m),
        }
    }
}

/// Parses settings text. A refusal names the line, the key, what the key
/// takes (or which keys there are), instead of toml's bare "expected u16".
pub(crate) fn parse(text: &str) -> Result<FileSettings, Refused> {
    toml::from_str(text).map_err(|e| {
        let Some(span) = e.span() else {
            return Refused::Other(e.message().trim_end().to_owned());
        };
        let start = span.start.min(text.len());
        let line = text[..start].matches('\n').count() + 1;
        let line_text = text.lines().nth(line - 1).unwrap_or("").trim();
        let key = line_text
            .split_once('=')
            .map(|(k, _)| k.trim().trim_matches('"'))
            .unwrap_or("");
        let message = match KEYS.iter().find(|(k, _)| *k == key) {
            Some((_, takes)) => {
                let value = line_text.split_once('=').map_or("", |(_, v)| v.trim());
                format!("`{key}` cannot be {value}: it takes {takes}")
            }
            None if e.message().contains("unknown field") => {
                let names: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
                format!("unknown key `{key}`; the keys are {}", names.join(", "))
            }
            None => format!(
                "`{line_text}` is not `key = value`: {}",
                e.message().trim_end()
            ),
        };
        Refused::Key { line, message }
    })
}

/// What a value's type cannot say: the key, and why.
fn check(settings: &FileSettings) -> Result<(), (&'static str, String)> {
    if let Some(group) = &settings.streamer_group {
        crate::streamer::group_id(group).map_err(|e| ("streamer_group", e))?;
    }
    for ip in settings.advertise.iter().flatten() {
        if ip.is_unspecified() || !punktfunk_native::is_linkable(*ip) {
            return Err((
                "advertise",
                format!(
                    "`advertise` cannot hold {ip}: it takes addresses clients can reach (not \
                     \"::\" or \"0.0.0.0\", not an IPv6 link-local fe80:: address)"
                ),
            ));
        }
    }
    Ok(())
}

/// The line of `key = …` (1 if it is not there).
fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| l.split_once('=').is_some_and(|(k, _)| k.trim() == key))
        .map_or(1, |i| i + 1)
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
            advertise = ["192.168.1.20"]
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
    fn an_unknown_key_or_a_bad_value_is_named_with_what_it_takes() {
        let e = parse("bind = \"::\"\nconsole_prot = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown key `console_prot`"), "{e}");
        assert!(e.contains("console_port"), "the keys are listed: {e}");
        assert!(e.contains("line 2"), "{e}");
        let e = parse("http_port = 70000").unwrap_err().to_string();
        assert!(e.contains("`http_port` cannot be 70000"), "{e}");
        assert!(e.contains("from 0 to 65535"), "{e}");
        assert!(!e.contains("u16"), "{e}");
        let e = parse("bind = \"not an address\"").unwrap_err().to_string();
        assert!(e.contains("`bind` cannot be \"not an address\""), "{e}");
        let e = parse("\n\nmdns = yes").unwrap_err().to_string();
        assert!(e.contains("line 3"), "{e}");
        assert!(
            e.contains("`mdns` cannot be yes: it takes true or false"),
            "{e}"
        );
        assert!(!e.contains("expected `\"`"), "{e}");
    }

    #[test]
    fn advertise_takes_reachable_addresses() {
        let s = parse("advertise = [\"192.168.1.20\", \"fd00::20\"]").unwrap();
        assert_eq!(s.advertise.as_ref().map(Vec::len), Some(2));
        assert!(check(&s).is_ok());
        for bad in ["0.0.0.0", "::", "fe80::1"] {
            let s = parse(&format!("advertise = [\"{bad}\"]")).unwrap();
            assert!(check(&s).unwrap_err().1.contains(bad), "{bad}");
        }
        let e = parse("advertise = \"192.168.1.20\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("a list of IP addresses"), "{e}");
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
        assert_eq!(all.default_grant, Some(punktfunk_certs::Preset::Play));
        assert_eq!(all.streamer_group.as_deref(), Some("punktfunk-streamer"));
    }

    #[test]
    fn a_streamer_group_must_exist() {
        let s = parse("streamer_group = \"root\"").unwrap();
        assert!(check(&s).is_ok());
        let s = parse("streamer_group = \"4242\"").unwrap();
        assert!(check(&s).is_ok(), "a number needs no name");
        let s = parse("streamer_group = \"no-such-group-here\"").unwrap();
        let (key, why) = check(&s).unwrap_err();
        assert_eq!(key, "streamer_group");
        assert!(why.contains("no group named"), "{why}");
    }
}
