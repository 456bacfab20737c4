//! The pairing link (docs/native-protocol.md § 12): everything a client
//! needs to pair with a host, in one URI that a QR code carries.
//!
//! ```text
//! punktfunk://pair?v=2&fp=<64 hex>&s=<32 hex>&port=<u16>&a=<addr>&a=<addr>…&n=<host name>
//! ```
//!
//! A host shows the link (as a QR code) while pairing is armed; the app
//! scans it and pairs without anything typed. The link carries the host's
//! certificate fingerprint, so the client pins the host *before* it
//! connects: an impostor fails the TLS handshake and never receives a
//! secret-derived message (no trust on first use). The link's one-time
//! secret `s` (128 bits, drawn with each arming, not the typed PIN) proves
//! to the host, through the usual SPAKE2 ceremony (§ 6), that the client
//! saw the host's screen; it cannot be guessed online, so wrong guesses do
//! not use it up.
//!
//! [`PairingLink::parse`] is strict about everything that matters (version,
//! exactly one `fp`/`s`/`port`, usable addresses, a length cap checked
//! before any other work) and lenient only where the document allows it
//! (case of the scheme, host and hex, unknown parameters).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use punktfunk_identity::{DisplayName, Fingerprint, LinkSecret};

use crate::message::MAX_NAME_BYTES;

/// What every pairing link starts with (compared ignoring ASCII case).
pub const LINK_PREFIX: &str = "punktfunk://pair?";

/// The link format version this crate reads and writes (`v=2`: the link
/// carries its own secret; `v=1` carried the typed PIN and is refused).
pub const LINK_VERSION: &str = "2";

/// Longest link parsed, in bytes; longer input is refused before any other
/// work. The longest link [`PairingLink::to_uri`] can write (16 full IPv6
/// addresses and a 64-character name of 4-byte characters) is shorter.
pub const MAX_LINK_LEN: usize = 2048;

/// Most addresses a link may carry.
pub const MAX_LINK_ADDRESSES: usize = 16;

/// RFC 3986 unreserved characters stay as they are; every other byte of
/// the UTF-8 text is written as `%XX`.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A decoded pairing link (§ 12).
///
/// `Debug` hides the secret; [`PairingLink::to_uri`] necessarily contains
/// it, so treat the link text like a PIN (show it, never log it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairingLink {
    /// Where the host listens, in the order a client tries them (hosts list
    /// IPv4 addresses first, then IPv6). Only addresses [`is_linkable`]
    /// accepts; at most [`MAX_LINK_ADDRESSES`].
    pub addresses: Vec<IpAddr>,
    /// The native endpoint's TCP port, the same on every address.
    pub port: u16,
    /// The host certificate's fingerprint: the client pins it before it
    /// connects.
    pub host_fingerprint: Fingerprint,
    /// The arming's link secret: the SPAKE2 password of a link pairing.
    pub secret: LinkSecret,
    /// The host's name, for display only.
    pub host_name: DisplayName,
}

impl PairingLink {
    /// The link text (§ 12.1), parameters in the order `v`, `fp`, `s`,
    /// `port`, `a`…, `n`.
    ///
    /// Addresses a client could not use ([`is_linkable`] says no) are left
    /// out, and only the first [`MAX_LINK_ADDRESSES`] are written, so the
    /// result always parses, provided at least one usable address remains.
    pub fn to_uri(&self) -> String {
        let mut s = String::with_capacity(256);
        s.push_str(LINK_PREFIX);
        s.push_str("v=");
        s.push_str(LINK_VERSION);
        s.push_str("&fp=");
        s.push_str(&self.host_fingerprint.to_hex());
        s.push_str("&s=");
        s.push_str(&self.secret.to_hex());
        s.push_str("&port=");
        s.push_str(&self.port.to_string());
        for a in self
            .addresses
            .iter()
            .filter(|a| is_linkable(**a))
            .take(MAX_LINK_ADDRESSES)
        {
            s.push_str("&a=");
            s.extend(utf8_percent_encode(&a.to_string(), COMPONENT));
        }
        s.push_str("&n=");
        s.extend(utf8_percent_encode(self.host_name.as_str(), COMPONENT));
        s
    }

    /// Reads a link (§ 12.2). Nothing is resolved and nothing is connected
    /// to: this only checks and decodes the text.
    pub fn parse(s: &str) -> Result<Self, LinkError> {
        if s.len() > MAX_LINK_LEN {
            return Err(LinkError::TooLong { len: s.len() });
        }
        let query = match s.get(..LINK_PREFIX.len()) {
            Some(head) if head.eq_ignore_ascii_case(LINK_PREFIX) => &s[LINK_PREFIX.len()..],
            _ => return Err(LinkError::NotAPairingLink),
        };
        let params = decode_query(query)?;

        // The version first: a later version may change everything else.
        let version = single(&params, "v")?.ok_or(LinkError::Missing("v"))?;
        if version != LINK_VERSION {
            return Err(LinkError::UnsupportedVersion {
                found: shown(version),
            });
        }

        let fp = single(&params, "fp")?.ok_or(LinkError::Missing("fp"))?;
        let host_fingerprint = fp.parse::<Fingerprint>().map_err(|e| LinkError::BadValue {
            param: "fp",
            reason: e.to_string(),
        })?;

        let secret = single(&params, "s")?.ok_or(LinkError::Missing("s"))?;
        // Never echoed: it is the secret.
        let secret = LinkSecret::parse_hex(secret).ok_or_else(|| LinkError::BadValue {
            param: "s",
            reason: "the secret is exactly 32 hexadecimal digits".into(),
        })?;

        let port = single(&params, "port")?.ok_or(LinkError::Missing("port"))?;
        let port = parse_port(port).ok_or_else(|| LinkError::BadValue {
            param: "port",
            reason: format!("{} is not a TCP port (1-65535)", shown(port)),
        })?;

        let addresses = link_addresses(&params)?;
        let host_name = link_host_name(&params, &addresses)?;
        Ok(Self {
            addresses,
            port,
            host_fingerprint,
            secret,
            host_name,
        })
    }
}

impl FromStr for PairingLink {
    type Err = LinkError;

    fn from_str(s: &str) -> Result<Self, LinkError> {
        Self::parse(s)
    }
}

/// Whether a client on another machine could connect to `ip`, and so
/// whether it may appear in a link: not unspecified (`0.0.0.0`, `::`), not
/// multicast or broadcast, and not IPv6 link-local (`fe80::/10`: it needs a
/// zone id, which names an interface of the host and means nothing to
/// another machine). Loopback is allowed (a client on the host itself).
pub fn is_linkable(ip: IpAddr) -> bool {
    if ip.is_unspecified() || ip.is_multicast() {
        return false;
    }
    match ip {
        IpAddr::V4(v4) => !v4.is_broadcast(),
        IpAddr::V6(v6) => !v6.is_unicast_link_local(),
    }
}

/// Why a string is not a pairing link. Every variant means "do not connect
/// anywhere": the user should scan the host's current code again (or update
/// the app, for [`LinkError::UnsupportedVersion`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Longer than [`MAX_LINK_LEN`] bytes.
    #[error("the pairing link is {len} bytes long, a punktfunk pairing link has at most {MAX_LINK_LEN}; scan the host's code again")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// Does not start with `punktfunk://pair?`.
    #[error("this is not a punktfunk pairing link (it must start with `{LINK_PREFIX}`); scan the code the host shows while pairing is armed")]
    NotAPairingLink,
    /// Not a valid URI query: a character a URI cannot hold, a bad `%XX`
    /// escape, or a value that is not UTF-8 once decoded.
    #[error("the pairing link is damaged ({0}); scan the host's code again")]
    Malformed(String),
    /// `v` is not [`LINK_VERSION`].
    #[error("the pairing link has version {found}, this client reads version {LINK_VERSION}; update the app (or the host)")]
    UnsupportedVersion {
        /// The `v` found (escaped, shortened).
        found: String,
    },
    /// A required parameter is absent.
    #[error("the pairing link has no `{0}` parameter; scan the host's code again")]
    Missing(&'static str),
    /// A single-valued parameter appears more than once.
    #[error("the pairing link has the `{0}` parameter more than once, so it is ambiguous; scan the host's code again")]
    Duplicate(&'static str),
    /// A parameter's value is not valid.
    #[error("the pairing link's `{param}` is not valid: {reason}; scan the host's code again")]
    BadValue {
        /// The parameter.
        param: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// More than [`MAX_LINK_ADDRESSES`] `a` parameters.
    #[error("the pairing link lists {count} addresses, at most {MAX_LINK_ADDRESSES} are allowed; scan the host's code again")]
    TooManyAddresses {
        /// How many it lists.
        count: usize,
    },
}

impl LinkError {
    /// A short stable word for the kind of error (`too_long`,
    /// `not_a_pairing_link`, `malformed`, `unsupported_version`, `missing`,
    /// `duplicate`, `bad_value`, `too_many_addresses`): what the rejection
    /// vectors of § 12.4 name, and handy for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TooLong { .. } => "too_long",
            Self::NotAPairingLink => "not_a_pairing_link",
            Self::Malformed(_) => "malformed",
            Self::UnsupportedVersion { .. } => "unsupported_version",
            Self::Missing(_) => "missing",
            Self::Duplicate(_) => "duplicate",
            Self::BadValue { .. } => "bad_value",
            Self::TooManyAddresses { .. } => "too_many_addresses",
        }
    }
}

/// Splits the query into decoded `(key, value)` pairs, in order. Empty
/// segments (`&&`, a trailing `&`) are skipped; a segment without `=` is a
/// key with an empty value.
fn decode_query(query: &str) -> Result<Vec<(String, String)>, LinkError> {
    check_query_chars(query)?;
    let mut params = Vec::new();
    for segment in query.split('&').filter(|s| !s.is_empty()) {
        let (key, value) = segment.split_once('=').unwrap_or((segment, ""));
        params.push((decode(key)?, decode(value)?));
    }
    Ok(params)
}

/// Every byte must be one a URI query may hold (RFC 3986 § 3.4: unreserved,
/// sub-delims, `:`, `@`, `/`, `?`, and `%` with two hex digits). This
/// refuses spaces, raw non-ASCII, `#` (a fragment) and broken escapes
/// instead of guessing what the sender meant. A raw `+` is a plus sign,
/// never a space (this is not form encoding).
fn check_query_chars(query: &str) -> Result<(), LinkError> {
    let bytes = query.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return Err(LinkError::Malformed(format!(
                    "`%` at byte {} does not start a `%XX` escape",
                    LINK_PREFIX.len() + i
                )));
            }
            i += 3;
            continue;
        }
        let allowed = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?".contains(&b);
        if !allowed {
            return Err(LinkError::Malformed(format!(
                "byte {} ({}) cannot appear in a link unescaped",
                LINK_PREFIX.len() + i,
                std::ascii::escape_default(b)
            )));
        }
        i += 1;
    }
    Ok(())
}

fn decode(raw: &str) -> Result<String, LinkError> {
    percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| LinkError::Malformed("a parameter is not UTF-8 once decoded".into()))
}

/// The value of a single-valued parameter: `None` if absent, an error if
/// repeated.
fn single<'a>(
    params: &'a [(String, String)],
    key: &'static str,
) -> Result<Option<&'a str>, LinkError> {
    let mut found = params.iter().filter(|(k, _)| k == key).map(|(_, v)| v);
    let first = found.next();
    if found.next().is_some() {
        return Err(LinkError::Duplicate(key));
    }
    Ok(first.map(String::as_str))
}

/// 1 to 5 ASCII digits, 1-65535 (no sign, which `u16::from_str` would take).
fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|&p| p != 0)
}

fn parse_address(s: &str) -> Result<IpAddr, LinkError> {
    let bad = |reason: String| LinkError::BadValue { param: "a", reason };
    let ip = s.parse::<IpAddr>().map_err(|_| {
        bad(format!(
            "{} is not an IP address (IPv4 dotted decimal, or IPv6 without brackets or zone)",
            shown(s)
        ))
    })?;
    if !is_linkable(ip) {
        return Err(bad(format!(
            "{ip} cannot be reached from another machine (unspecified, multicast, broadcast or IPv6 link-local)"
        )));
    }
    Ok(ip)
}

/// Untrusted text for an error message: escaped (no terminal control
/// sequences) and shortened.
fn shown(s: &str) -> String {
    const MAX: usize = 24;
    let mut out: String = s.chars().take(MAX).flat_map(char::escape_debug).collect();
    if s.chars().count() > MAX {
        out.push('…');
    }
    format!("`{out}`")
}

impl fmt::Display for PairingLink {
    /// The link text, like [`PairingLink::to_uri`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_uri())
    }
}

/// The link's `a` parameters: one to [`MAX_LINK_ADDRESSES`] addresses.
fn link_addresses(params: &[(String, String)]) -> Result<Vec<IpAddr>, LinkError> {
    let raw: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k == "a")
        .map(|(_, v)| v.as_str())
        .collect();
    if raw.len() > MAX_LINK_ADDRESSES {
        return Err(LinkError::TooManyAddresses { count: raw.len() });
    }
    if raw.is_empty() {
        return Err(LinkError::Missing("a"));
    }
    raw.into_iter().map(parse_address).collect()
}

/// The link's `n`, cleaned; with no name, or nothing printable left, the
/// first address stands in.
fn link_host_name(
    params: &[(String, String)],
    addresses: &[IpAddr],
) -> Result<DisplayName, LinkError> {
    let name = match single(params, "n")? {
        Some(n) if n.len() > MAX_NAME_BYTES => {
            return Err(LinkError::BadValue {
                param: "n",
                reason: format!(
                    "the host name has {} bytes, at most {MAX_NAME_BYTES} are allowed",
                    n.len()
                ),
            })
        }
        Some(n) => DisplayName::sanitize(n),
        None => None,
    };
    Ok(match (name, addresses.first()) {
        (Some(n), _) => n,
        (None, Some(a)) => DisplayName::sanitize_or(&a.to_string(), "punktfunk host"),
        (None, None) => DisplayName::sanitize_or("punktfunk host", "punktfunk host"),
    })
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;

    const S: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
    const FP: &str = "50e3c712eeac7e84920fbcbe82424953cd8b8b79de73ff54df8c894c47991cb8";

    fn link() -> PairingLink {
        PairingLink {
            addresses: vec!["192.168.1.20".parse().unwrap(), "fd00::1".parse().unwrap()],
            port: 47991,
            host_fingerprint: FP.parse().unwrap(),
            secret: LinkSecret::parse_hex(S).unwrap(),
            host_name: DisplayName::sanitize("Living Room PC").unwrap(),
        }
    }

    /// The canonical text of [`link`], with `params` instead of the query.
    fn with_query(params: &str) -> String {
        format!("{LINK_PREFIX}{params}")
    }

    const GOOD_QUERY: &str = "v=2&fp=50e3c712eeac7e84920fbcbe82424953cd8b8b79de73ff54df8c894c47991cb8&s=0f1e2d3c4b5a69788796a5b4c3d2e1f0&port=47991&a=192.168.1.20&a=fd00%3A%3A1&n=Living%20Room%20PC";

    #[test]
    fn writes_the_documented_form() {
        assert_eq!(link().to_uri(), with_query(GOOD_QUERY));
        assert_eq!(link().to_string(), link().to_uri());
        assert_eq!(PairingLink::parse(&link().to_uri()), Ok(link()));
    }

    #[test]
    fn debug_hides_the_secret() {
        let shown = format!("{:?}", link());
        assert!(!shown.contains(S), "{shown}");
    }

    #[test]
    fn lenient_where_the_document_allows() {
        // Scheme and host in any case, uppercase hex, lowercase escapes,
        // any order, unknown (even repeated) parameters, empty segments.
        let s = format!(
            "PunktFunk://PAIR?x=1&x=2&&n=Living%20Room%20PC&a=192.168.1.20&port=47991&a=fd00%3a%3a1&s=0f1e2d3c4b5a69788796a5b4c3d2e1f0&fp={}&v=2&",
            FP.to_uppercase()
        );
        assert_eq!(PairingLink::parse(&s), Ok(link()));
    }

    #[test]
    fn a_missing_or_empty_name_falls_back_to_the_first_address() {
        let q = GOOD_QUERY.replace("&n=Living%20Room%20PC", "");
        let parsed = PairingLink::parse(&with_query(&q)).unwrap();
        assert_eq!(parsed.host_name, "192.168.1.20");
        let parsed = PairingLink::parse(&with_query(&format!("{q}&n=%E2%80%8B%20%0A"))).unwrap();
        assert_eq!(parsed.host_name, "192.168.1.20");
        let v6 = q.replace("a=192.168.1.20&", "");
        assert_eq!(
            PairingLink::parse(&with_query(&v6)).unwrap().host_name,
            "fd00::1"
        );
    }

    #[test]
    fn the_name_is_sanitised() {
        let q = GOOD_QUERY.replace(
            "Living%20Room%20PC",
            "%E2%80%AEK%C3%BCche%0A%1B%5B31m%F0%9F%8E%AE",
        );
        let parsed = PairingLink::parse(&with_query(&q)).unwrap();
        assert_eq!(parsed.host_name, "Küche [31m🎮");
    }

    #[test]
    fn a_raw_plus_is_a_plus() {
        let q = GOOD_QUERY.replace("Living%20Room%20PC", "A+B");
        assert_eq!(
            PairingLink::parse(&with_query(&q)).unwrap().host_name,
            "A+B"
        );
    }

    fn refused(query: &str) -> LinkError {
        PairingLink::parse(&with_query(query)).expect_err(query)
    }

    #[test]
    fn rejects_what_is_not_a_link() {
        for s in [
            "",
            "punktfunk://pair",
            "punktfunk://pairing?v=2",
            "punktfunk://pair/?v=2",
            "https://pair?v=2",
            " punktfunk://pair?v=2",
            "punktfunk:pair?v=2",
        ] {
            assert_eq!(
                PairingLink::parse(s),
                Err(LinkError::NotAPairingLink),
                "{s:?}"
            );
        }
    }

    #[test]
    fn rejects_versions_and_repeats() {
        for (q, want) in [
            (GOOD_QUERY.replace("v=2", "v=3"), "unsupported_version"),
            (GOOD_QUERY.replace("v=2", "v=01"), "unsupported_version"),
            (GOOD_QUERY.replace("v=2", "v="), "unsupported_version"),
            (GOOD_QUERY.replace("v=2&", ""), "missing"),
            (format!("{GOOD_QUERY}&v=2"), "duplicate"),
            (format!("{GOOD_QUERY}&fp={FP}"), "duplicate"),
            (
                format!("{GOOD_QUERY}&s=0f1e2d3c4b5a69788796a5b4c3d2e1f0"),
                "duplicate",
            ),
            (format!("{GOOD_QUERY}&port=47991"), "duplicate"),
            (format!("{GOOD_QUERY}&n=x"), "duplicate"),
        ] {
            assert_eq!(refused(&q).kind(), want, "{q}");
        }
        // Another version is reported as such even if nothing else fits v2;
        // a v1 link (it carried the typed PIN) among them.
        assert_eq!(
            PairingLink::parse("punktfunk://pair?v=3&whatever"),
            Err(LinkError::UnsupportedVersion {
                found: "`3`".into()
            })
        );
        let v1 = "punktfunk://pair?v=1&fp=50e3c712eeac7e84920fbcbe82424953cd8b8b79de73ff54df8c894c47991cb8&pin=0427&port=47991&a=10.0.0.5";
        assert_eq!(
            PairingLink::parse(v1).unwrap_err().kind(),
            "unsupported_version"
        );
    }

    #[test]
    fn address_forms_of_section_12_2() {
        let one = |a: &str| {
            PairingLink::parse(&with_query(
                &GOOD_QUERY.replace("a=192.168.1.20&a=fd00%3A%3A1", &format!("a={a}")),
            ))
            .map(|l| l.addresses)
        };
        // Any RFC 4291 spelling is the same address, kept in RFC 5952 form.
        let fd00_1: IpAddr = "fd00::1".parse().unwrap();
        for a in [
            "FD00%3A0%3A0%3A0%3A0%3A0%3A0%3A0001",
            "fd00%3A%3A0001",
            "Fd00%3A%3A1",
        ] {
            assert_eq!(one(a), Ok(vec![fd00_1]), "{a}");
            assert_eq!(one(a).unwrap()[0].to_string(), "fd00::1");
        }
        // IPv4-mapped: an IPv6 address, kept as written.
        let mapped = one("%3A%3Affff%3A192.0.2.7").unwrap();
        assert_eq!(mapped[0].to_string(), "::ffff:192.0.2.7");
        assert!(mapped[0].is_ipv6());
        // IPv4 link-local needs no zone: accepted.
        assert_eq!(one("169.254.7.9").unwrap()[0].to_string(), "169.254.7.9");
        // Leading zeros and short forms are not dotted decimal; a zone is
        // not allowed.
        for bad in [
            "010.0.0.1",
            "10.1",
            "fe80%3A%3A1%25eth0",
            "%5Bfd00%3A%3A1%5D",
        ] {
            assert_eq!(one(bad).unwrap_err().kind(), "bad_value", "{bad}");
        }
    }

    #[test]
    fn the_first_failing_rule_is_reported() {
        // A repeated `v` is found before its value, and before anything else.
        assert_eq!(refused("v=3&v=3").kind(), "duplicate");
        assert_eq!(refused("v=2&v=2").kind(), "duplicate");
        // `fp` is looked at before `s`, `port` and the addresses.
        let q = "v=2&fp=zz&s=zz&port=0&a=zz";
        assert!(matches!(
            PairingLink::parse(&with_query(q)),
            Err(LinkError::BadValue { param: "fp", .. })
        ));
        let q = format!("v=2&fp={FP}&s=zz&port=0&a=zz");
        assert!(matches!(
            PairingLink::parse(&with_query(&q)),
            Err(LinkError::BadValue { param: "s", .. })
        ));
        let q = format!("v=2&fp={FP}&s={S}&port=0&a=zz");
        assert!(matches!(
            PairingLink::parse(&with_query(&q)),
            Err(LinkError::BadValue { param: "port", .. })
        ));
        // The address count before any address is parsed.
        let many = "&a=zz".repeat(17);
        let q = format!("v=2&fp={FP}&s={S}&port=1{many}");
        assert_eq!(refused(&q).kind(), "too_many_addresses");
    }

    #[test]
    fn rejects_bad_values() {
        let fp63 = &FP[..63];
        for (q, param) in [
            (GOOD_QUERY.replace(FP, fp63), "fp"),
            (GOOD_QUERY.replace(FP, &FP.replace('e', "g")), "fp"),
            (GOOD_QUERY.replace(S, &S[..31]), "s"),
            (GOOD_QUERY.replace(S, &format!("{S}0")), "s"),
            (GOOD_QUERY.replace(S, &S.replace('f', "g")), "s"),
            (GOOD_QUERY.replace(S, "%EF%BC%90427"), "s"),
            (GOOD_QUERY.replace("port=47991", "port=0"), "port"),
            (GOOD_QUERY.replace("port=47991", "port=65536"), "port"),
            (GOOD_QUERY.replace("port=47991", "port=%2B47"), "port"),
            (GOOD_QUERY.replace("port=47991", "port=000047991"), "port"),
            (GOOD_QUERY.replace("port=47991", "port="), "port"),
            (GOOD_QUERY.replace("fd00%3A%3A1", "fe80%3A%3A1"), "a"),
            (GOOD_QUERY.replace("fd00%3A%3A1", "fe80%3A%3A1%25eth0"), "a"),
            (GOOD_QUERY.replace("fd00%3A%3A1", "%5Bfd00%3A%3A1%5D"), "a"),
            (GOOD_QUERY.replace("192.168.1.20", "0.0.0.0"), "a"),
            (GOOD_QUERY.replace("192.168.1.20", "255.255.255.255"), "a"),
            (GOOD_QUERY.replace("192.168.1.20", "224.0.0.251"), "a"),
            (GOOD_QUERY.replace("192.168.1.20", "192.168.001.20"), "a"),
            (GOOD_QUERY.replace("192.168.1.20", "host.local"), "a"),
            (GOOD_QUERY.replace("fd00%3A%3A1", "%3A%3A"), "a"),
            (
                GOOD_QUERY.replace("Living%20Room%20PC", &"x".repeat(MAX_NAME_BYTES + 1)),
                "n",
            ),
        ] {
            match refused(&q) {
                LinkError::BadValue { param: p, .. } => assert_eq!(p, param, "{q}"),
                other => panic!("{q}: {other:?}"),
            }
        }
        for (q, missing) in [
            (GOOD_QUERY.replace(&format!("&fp={FP}"), ""), "fp"),
            (GOOD_QUERY.replace(&format!("&s={S}"), ""), "s"),
            (GOOD_QUERY.replace("&port=47991", ""), "port"),
            (GOOD_QUERY.replace("&a=192.168.1.20&a=fd00%3A%3A1", ""), "a"),
        ] {
            assert_eq!(refused(&q), LinkError::Missing(missing), "{q}");
        }
    }

    #[test]
    fn rejects_damaged_text() {
        for q in [
            GOOD_QUERY.replace("%20", " "),
            GOOD_QUERY.replace("%20", "%2"),
            GOOD_QUERY.replace("%20", "%zz"),
            format!("{GOOD_QUERY}%"),
            format!("{GOOD_QUERY}#frag"),
            GOOD_QUERY.replace("Living%20Room%20PC", "K\u{fc}che"),
            GOOD_QUERY.replace("Living%20Room%20PC", "%FF%FE"),
            GOOD_QUERY.replace("Living", "Liv\"ing"),
        ] {
            assert_eq!(refused(&q).kind(), "malformed", "{q}");
        }
    }

    #[test]
    fn caps_length_and_addresses_before_anything_else() {
        let long = format!("{}{}", with_query(GOOD_QUERY), "&x=1".repeat(MAX_LINK_LEN));
        assert_eq!(
            PairingLink::parse(&long),
            Err(LinkError::TooLong { len: long.len() })
        );
        // Even something that is not a link at all.
        let junk = "x".repeat(MAX_LINK_LEN + 1);
        assert_eq!(refused_raw(&junk).kind(), "too_long");
        let at_cap = format!("{}{}", with_query(GOOD_QUERY), "&".repeat(MAX_LINK_LEN));
        let at_cap = &at_cap[..MAX_LINK_LEN];
        assert_eq!(PairingLink::parse(at_cap), Ok(link()));

        let mut q = GOOD_QUERY.replace("&a=192.168.1.20&a=fd00%3A%3A1", "");
        for i in 0..MAX_LINK_ADDRESSES {
            q.push_str(&format!("&a=10.0.0.{}", i + 1));
        }
        assert_eq!(
            PairingLink::parse(&with_query(&q)).unwrap().addresses.len(),
            MAX_LINK_ADDRESSES
        );
        q.push_str("&a=10.0.0.99");
        assert_eq!(
            refused(&q),
            LinkError::TooManyAddresses {
                count: MAX_LINK_ADDRESSES + 1
            }
        );
    }

    fn refused_raw(s: &str) -> LinkError {
        PairingLink::parse(s).expect_err(s)
    }

    #[test]
    fn error_text_escapes_what_it_quotes() {
        let e = refused(&GOOD_QUERY.replace("v=2", "v=%1B%5B2J"));
        let text = e.to_string();
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("\\u{1b}[2J"), "{text}");
    }

    #[test]
    fn to_uri_skips_unusable_addresses_and_caps_them() {
        let mut l = link();
        l.addresses = vec![
            "fe80::1".parse().unwrap(),
            "0.0.0.0".parse().unwrap(),
            "10.0.0.1".parse().unwrap(),
        ];
        let parsed = PairingLink::parse(&l.to_uri()).unwrap();
        assert_eq!(parsed.addresses, ["10.0.0.1".parse::<IpAddr>().unwrap()]);
        l.addresses = (0..40)
            .map(|i| IpAddr::V4(Ipv4Addr::new(10, 0, 1, i)))
            .collect();
        let parsed = PairingLink::parse(&l.to_uri()).unwrap();
        assert_eq!(parsed.addresses, l.addresses[..MAX_LINK_ADDRESSES]);
    }

    #[test]
    fn the_longest_link_fits_the_cap() {
        let l = PairingLink {
            addresses: vec![
                IpAddr::V6(Ipv6Addr::new(
                    0xfd00, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff
                ));
                MAX_LINK_ADDRESSES
            ],
            port: 65535,
            host_fingerprint: FP.parse().unwrap(),
            secret: LinkSecret::from_bytes([0xff; 16]),
            host_name: DisplayName::sanitize(&"🎮".repeat(100)).unwrap(),
        };
        let uri = l.to_uri();
        assert!(uri.len() <= MAX_LINK_LEN, "{}", uri.len());
        assert_eq!(PairingLink::parse(&uri), Ok(l));
    }

    fn linkable_ip() -> impl Strategy<Value = IpAddr> {
        any::<IpAddr>().prop_filter("usable in a link", |ip| is_linkable(*ip))
    }

    proptest! {
        #[test]
        fn round_trip(
            fp in any::<[u8; 32]>(),
            secret in any::<[u8; 16]>(),
            port in 1u16..=65535,
            addresses in proptest::collection::vec(linkable_ip(), 1..=MAX_LINK_ADDRESSES),
            name in any::<String>().prop_filter_map("printable", |s| DisplayName::sanitize(&s)),
        ) {
            let l = PairingLink {
                addresses,
                port,
                host_fingerprint: Fingerprint::from_bytes(fp),
                secret: LinkSecret::from_bytes(secret),
                host_name: name,
            };
            let uri = l.to_uri();
            prop_assert!(uri.len() <= MAX_LINK_LEN);
            prop_assert!(uri.is_ascii());
            prop_assert_eq!(PairingLink::parse(&uri), Ok(l));
        }

        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = PairingLink::parse(&s);
            let _ = PairingLink::parse(&format!("{LINK_PREFIX}{s}"));
        }

        #[test]
        fn parse_never_panics_on_near_links(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("v=2".to_owned()), Just(format!("fp={FP}")), Just("s=0f1e2d3c4b5a69788796a5b4c3d2e1f0".to_owned()),
                    Just("port=1".to_owned()), Just("a=10.0.0.1".to_owned()), Just("a=fd00%3A%3A1".to_owned()),
                    "[a-z]{1,4}=[%0-9A-Za-z:.]{0,12}",
                ],
                0..24,
            ),
        ) {
            let _ = PairingLink::parse(&format!("{LINK_PREFIX}{}", parts.join("&")));
        }
    }
}
