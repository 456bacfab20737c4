//! What the console hands to clients so they pair without typing: the
//! `art://` link of a one-time PIN (Apollo's format, which Artemis opens
//! from a QR code or a tap), and the QR codes of such links, rendered here
//! as SVG so the page makes no external request and its CSP stays strict.

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use punktfunk_certs::Fingerprint;
use punktfunk_native::{DisplayName, LinkSecret, PairingLink};

/// What every link this host hands out needs: who it is and where its
/// doors are. The console and the control socket (`punktfunk invite`)
/// share one.
#[derive(Debug)]
pub(crate) struct Links {
    /// The host's name, as links and the page show it.
    pub(crate) host_name: String,
    /// The host certificate's fingerprint, which a pairing link pins.
    pub(crate) host_fingerprint: Fingerprint,
    /// Where clients reach the doors; set once every listener is bound.
    pub(crate) reach: OnceLock<Reach>,
}

impl Links {
    /// A host's links, before its doors are bound.
    pub(crate) fn new(host_name: String, host_fingerprint: Fingerprint) -> Self {
        Self {
            host_name,
            host_fingerprint,
            reach: OnceLock::new(),
        }
    }

    /// Whether the punktfunk app's endpoint runs (`--native`): only then
    /// does an armed PIN or a pairing link reach anything.
    pub(crate) fn native_runs(&self) -> bool {
        self.reach.get().is_some_and(|r| r.native.is_some())
    }

    /// The addresses links name (empty until the doors are bound): `first`
    /// (where the console was opened), then the LAN addresses.
    pub(crate) fn addresses(&self, first: Option<IpAddr>) -> Vec<IpAddr> {
        let Some(reach) = self.reach.get() else {
            return Vec::new();
        };
        let mut addresses = reach.addresses();
        if let Some(ip) = first {
            addresses.retain(|a| *a != ip);
            addresses.insert(0, ip);
            addresses.truncate(punktfunk_native::MAX_LINK_ADDRESSES);
        }
        addresses
    }

    /// The native door's pairing link for an arming's `secret`
    /// (docs/native-protocol.md § 12): the app pins the host fingerprint
    /// from it before connecting, and pairs with the secret, not the typed
    /// PIN. `None` without `--native`, or until the doors are bound.
    pub(crate) fn pairing_link(
        &self,
        addresses: &[IpAddr],
        secret: &LinkSecret,
    ) -> Option<PairingLink> {
        let reach = self.reach.get()?;
        Some(PairingLink {
            addresses: addresses.to_vec(),
            port: reach.native?,
            host_fingerprint: self.host_fingerprint,
            secret: secret.clone(),
            host_name: DisplayName::sanitize_or(&self.host_name, "punktfunk host"),
        })
    }

    /// The `art://` link of a one-time PIN to `host`, with the GameStream
    /// port it names; `None` until the doors are bound.
    pub(crate) fn art_link(
        &self,
        host: &LinkHost,
        pin: &str,
        passphrase: &str,
    ) -> Option<(String, u16)> {
        let port = self.reach.get()?.gamestream_http;
        Some((art_link(host, port, pin, passphrase, &self.host_name), port))
    }
}

/// Where the host's doors can be reached from the LAN, known once every
/// listener is bound.
#[derive(Debug, Clone)]
pub(crate) struct Reach {
    /// The address the doors are bound to (maybe a wildcard).
    pub(crate) bind: IpAddr,
    /// The console's port.
    pub(crate) console: u16,
    /// GameStream plain-HTTP port (what Moonlight clients are given).
    pub(crate) gamestream_http: u16,
    /// The native port, with `--native`.
    pub(crate) native: Option<u16>,
}

impl Reach {
    /// Addresses a client on the LAN can use, best first; read anew each
    /// time, since a machine's addresses change (DHCP, Wi-Fi).
    pub(crate) fn addresses(&self) -> Vec<IpAddr> {
        crate::lan::link_addresses(self.bind)
    }

    /// `https://ADDR:PORT/` of the console for each of [`Reach::addresses`].
    pub(crate) fn console_urls(&self) -> Vec<String> {
        self.addresses()
            .into_iter()
            .map(|ip| format!("https://{}/", SocketAddr::new(ip, self.console)))
            .collect()
    }
}

/// RFC 3986 unreserved characters stay; everything else is %XX.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Where a link sends the client: an IP address, or a DNS name.
///
/// Made only by [`LinkHost::from_host_header`] or [`LinkHost::parse`], so
/// it is always a valid address or name, safe to put in a link as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LinkHost {
    Ip(IpAddr),
    Name(String),
}

/// Longest DNS name (RFC 1035), and label.
const MAX_NAME: usize = 253;
const MAX_LABEL: usize = 63;

/// A DNS name of letters, digits and hyphens (RFC 1123 labels).
fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= MAX_LABEL
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        // All digits and dots is an IPv4 address, or nothing.
        && !name.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

impl LinkHost {
    /// The address a browser opened the console on, from its `Host`
    /// header (`HOST[:PORT]`): an IP address, or a name that is this
    /// host's own (`own_name`, `own_name.local`, or `own_name.` followed by
    /// a domain). Anything else (another name, which a DNS rebinding page
    /// could choose, or text that is no address at all) is `None`, and so
    /// is loopback or an unspecified address: a device elsewhere cannot
    /// use those.
    pub(crate) fn from_host_header(raw: &str, own_name: &str) -> Option<Self> {
        let raw = raw.trim();
        let host = if let Some(rest) = raw.strip_prefix('[') {
            let (v6, after) = rest.split_once(']')?;
            if !(after.is_empty() || after.starts_with(':')) {
                return None;
            }
            return Self::usable_ip(v6.parse::<std::net::Ipv6Addr>().ok()?.into());
        } else {
            // No brackets: at most one colon, before the port.
            match raw.split_once(':') {
                Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
                Some(_) => return None,
                None => raw,
            }
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Self::usable_ip(ip);
        }
        if !is_dns_name(host) {
            return None;
        }
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        let own = own_name.trim().to_ascii_lowercase();
        let own = own.strip_suffix('.').unwrap_or(&own);
        let first = host.split('.').next().unwrap_or_default();
        (!own.is_empty() && (host == own || first == own || host.starts_with(&format!("{own}."))))
            .then_some(Self::Name(host))
    }

    fn usable_ip(ip: IpAddr) -> Option<Self> {
        let ip = ip.to_canonical();
        (!ip.is_loopback() && punktfunk_native::is_linkable(ip)).then_some(Self::Ip(ip))
    }

    /// An address the console user typed for a link: an IP address (IPv6
    /// with or without brackets) or a DNS name.
    pub(crate) fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        let bare = raw
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(raw);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            let ip = ip.to_canonical();
            return punktfunk_native::is_linkable(ip).then_some(Self::Ip(ip));
        }
        is_dns_name(raw).then(|| Self::Name(raw.to_ascii_lowercase()))
    }

    /// The IP address, if it is one.
    pub(crate) fn ip(&self) -> Option<IpAddr> {
        match self {
            Self::Ip(ip) => Some(*ip),
            Self::Name(_) => None,
        }
    }

    /// `HOST:PORT` as a URL writes it (`[v6]:port`).
    pub(crate) fn with_port(&self, port: u16) -> String {
        match self {
            Self::Ip(ip) => SocketAddr::new(*ip, port).to_string(),
            Self::Name(name) => format!("{name}:{port}"),
        }
    }
}

impl std::fmt::Display for LinkHost {
    /// As the link's authority writes it: `[v6]`, `v4` or the name.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Name(name) => f.write_str(name),
        }
    }
}

/// `art://HOST:PORT?pin=…&passphrase=…&name=…`, as Apollo's console makes
/// it (`pin.html`): HOST:PORT is the GameStream HTTP address (Artemis
/// pairs automatically only when the port is there), `name` the host's.
/// Every value is percent-encoded (a passphrase may hold `&`, `=`, spaces).
pub(crate) fn art_link(
    host: &LinkHost,
    port: u16,
    pin: &str,
    passphrase: &str,
    host_name: &str,
) -> String {
    let enc = |s: &str| utf8_percent_encode(s, QUERY_VALUE).to_string();
    format!(
        "art://{}?pin={}&passphrase={}&name={}",
        host.with_port(port),
        enc(pin),
        enc(passphrase),
        enc(host_name)
    )
}

/// The QR code of `data` as a standalone SVG document.
pub(crate) fn qr_svg(data: &str) -> Result<String, qrcode::types::QrError> {
    use qrcode::render::svg;
    let code = qrcode::QrCode::with_error_correction_level(data.as_bytes(), qrcode::EcLevel::M)?;
    Ok(code
        .render::<svg::Color>()
        .quiet_zone(true)
        .min_dimensions(240, 240)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> LinkHost {
        LinkHost::Ip(s.parse().unwrap())
    }

    #[test]
    fn art_links_look_like_apollos() {
        assert_eq!(
            art_link(
                &ip("192.168.1.20"),
                47989,
                "0427",
                "Ab3dEf9hJk",
                "Living Room PC"
            ),
            "art://192.168.1.20:47989?pin=0427&passphrase=Ab3dEf9hJk&name=Living%20Room%20PC"
        );
        assert_eq!(
            art_link(&ip("fd00::1"), 47989, "0427", "x", "Ä&b"),
            "art://[fd00::1]:47989?pin=0427&passphrase=x&name=%C3%84%26b"
        );
        assert_eq!(
            art_link(
                &LinkHost::Name("den.local".into()),
                47989,
                "0427",
                "a b&c=d+e%",
                "den"
            ),
            "art://den.local:47989?pin=0427&passphrase=a%20b%26c%3Dd%2Be%25&name=den"
        );
    }

    #[test]
    fn the_host_header_gives_an_ip_or_this_hosts_own_name() {
        let h = |raw| LinkHost::from_host_header(raw, "Den");
        assert_eq!(h("192.168.1.20:47990"), Some(ip("192.168.1.20")));
        assert_eq!(h("192.168.1.20"), Some(ip("192.168.1.20")));
        assert_eq!(h("[fd00::1]:47990"), Some(ip("fd00::1")));
        assert_eq!(h("[::ffff:10.0.0.2]:1"), Some(ip("10.0.0.2")));
        for own in ["den:47990", "DEN.local:47990", "den.fritz.box", "den."] {
            assert!(matches!(h(own), Some(LinkHost::Name(_))), "{own}");
        }
        assert_eq!(h("Den.Local:1"), Some(LinkHost::Name("den.local".into())));
        for bad in [
            "127.0.0.1:47990",
            "[::1]:47990",
            "0.0.0.0",
            "localhost:47990",
            "evil.example:47990",
            "denx.local",
            "<script>:1",
            "den:47990/x",
            "den:port",
            "[fd00::1]x",
            "[fe80::1]:1",
            "fd00::1",
            "",
            "999.1.1.1",
        ] {
            assert_eq!(h(bad), None, "{bad}");
        }
    }

    #[test]
    fn typed_addresses_are_ips_or_dns_names() {
        assert_eq!(LinkHost::parse(" 10.0.0.5 "), Some(ip("10.0.0.5")));
        assert_eq!(LinkHost::parse("[fd00::2]"), Some(ip("fd00::2")));
        assert_eq!(LinkHost::parse("fd00::2"), Some(ip("fd00::2")));
        assert_eq!(
            LinkHost::parse("Gaming-PC.lan"),
            Some(LinkHost::Name("gaming-pc.lan".into()))
        );
        for bad in [
            "", "a b", "x/y", "-x", "a..b", "1.2.3", "<b>", "a:1", "0.0.0.0", "fe80::1",
        ] {
            assert_eq!(LinkHost::parse(bad), None, "{bad}");
        }
        assert_eq!(ip("fd00::2").to_string(), "[fd00::2]");
        assert_eq!(ip("fd00::2").with_port(5), "[fd00::2]:5");
    }

    #[test]
    fn qr_codes_are_svg() {
        let svg = qr_svg("art://192.168.1.20:47989?pin=0427").unwrap();
        assert!(svg.contains("<svg"), "{svg}");
        assert!(svg.contains("<path"), "{svg}");
    }
}
