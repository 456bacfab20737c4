//! The small words every part of the trust service shares: a waiting
//! request's id and how it ended, and the key an address is counted under.
//! They depend on nothing else here, so the gate, the audit trail and the
//! events can all name them without importing one another.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Identifies a pending request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PendingId(pub(crate) u64);

impl fmt::Display for PendingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// No request has that id (or it ended long ago).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no such request is waiting; it may have expired or been answered already")]
pub struct NoSuchRequest;

impl FromStr for PendingId {
    type Err = NoSuchRequest;
    fn from_str(s: &str) -> Result<Self, NoSuchRequest> {
        s.parse().map(Self).map_err(|_| NoSuchRequest)
    }
}

/// From its decimal string form (what [`fmt::Display`] writes and the
/// console puts in its URLs), by the rules of [`FromStr`]: anything else is
/// [`NoSuchRequest`], since no request has such an id.
impl<'de> serde::Deserialize<'de> for PendingId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What counts as "one source address" for every per-address limit (the
/// waiting list's, the console's login limiter, the audit budget, blocks,
/// one-time PIN tries): the full address, an IPv4 address or an IPv6 /128,
/// with an IPv4-mapped IPv6 address counted as the IPv4 address.
///
/// Not the IPv6 /64: a home LAN with SLAAC is one /64, so keying by it let
/// one attacker's address lock every IPv6 device of the LAN out. An
/// attacker who rotates through addresses (easy in a /64) is bounded by the
/// global budgets instead, which are sized for that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AddressKey(IpAddr);

impl AddressKey {
    /// The key of `ip`.
    pub fn of(ip: IpAddr) -> Self {
        Self(ip.to_canonical())
    }

    /// The address.
    pub fn ip(self) -> IpAddr {
        self.0
    }
}

impl fmt::Display for AddressKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How a pending request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestEnd {
    /// Approved in the console; the device is stored.
    Approved,
    /// Denied in the console.
    Denied,
    /// Nobody decided in time.
    Expired,
    /// The same certificate asked again; the new request replaced it.
    Replaced,
    /// The PIN matched and the device is stored.
    Paired,
    /// The PIN did not match (or the client gave up after a PIN entry).
    PinRejected,
    /// The client's answer failed the way moonlight-qt's known key bug
    /// fails (SHA-256(salt ‖ PIN) has a zero byte in its first 15): the PIN
    /// was most likely right; a new attempt in Moonlight pairs.
    MoonlightQtBug,
    /// The client went away.
    Abandoned,
}

impl RequestEnd {
    /// Stable lowercase name used in APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestEnd::Approved => "approved",
            RequestEnd::Denied => "denied",
            RequestEnd::Expired => "expired",
            RequestEnd::Replaced => "replaced",
            RequestEnd::Paired => "paired",
            RequestEnd::PinRejected => "pin_rejected",
            RequestEnd::MoonlightQtBug => "moonlight_qt_bug",
            RequestEnd::Abandoned => "abandoned",
        }
    }
}
