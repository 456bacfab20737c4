//! Host addresses as people type them: `HOST`, `HOST:PORT`, `[V6]:PORT`.

use super::*;

/// Why a typed host address ([`HostAddr::parse`]) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostAddrError {
    /// Not of the form `HOST`, `HOST:PORT` or `[V6]:PORT`.
    #[error("`{0}` is not HOST[:PORT]; write e.g. `192.168.1.20`, `tv.local:47991` or `[fe80::1]:47991`")]
    Malformed(String),
    /// The port is not a number from 1 to 65535.
    #[error("`{input}` is not HOST[:PORT]: the port `{port}` is not a number from 1 to 65535")]
    Port {
        /// The address as typed (trimmed).
        input: String,
        /// The port as typed.
        port: String,
    },
}

/// A host address as typed: `HOST`, `HOST:PORT`, `[V6]:PORT`, optionally
/// as `tls://HOST:PORT/` (what the host prints).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostAddr {
    pub(super) host: String,
    pub(super) port: u16,
}

impl HostAddr {
    /// Parses `HOST[:PORT]`; the port defaults to 47991.
    pub fn parse(s: &str) -> Result<Self, HostAddrError> {
        let s = s.trim();
        let s = s.strip_prefix("tls://").unwrap_or(s);
        let s = s.strip_suffix('/').unwrap_or(s);
        let bad = || HostAddrError::Malformed(s.to_owned());
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, after) = rest.split_once(']').ok_or_else(bad)?;
            match after.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None if after.is_empty() => (h, None),
                None => return Err(bad()),
            }
        } else if s.matches(':').count() == 1 {
            let (h, p) = s.split_once(':').ok_or_else(bad)?;
            (h, Some(p))
        } else {
            (s, None)
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let port =
            match port {
                Some(p) => p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| {
                    HostAddrError::Port {
                        input: s.to_owned(),
                        port: p.to_owned(),
                    }
                })?,
                None => DEFAULT_PORT,
            };
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }

    /// An IP address and port (what a [`PairingLink`] lists); written and
    /// keyed like the typed `IP:PORT` or `[V6]:PORT`.
    pub fn from_ip(ip: std::net::IpAddr, port: u16) -> Self {
        Self {
            host: ip.to_string(),
            port,
        }
    }

    /// The host name or address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl std::str::FromStr for HostAddr {
    type Err = HostAddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for HostAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}
