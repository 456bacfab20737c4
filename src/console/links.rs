//! What the console hands to clients so they pair without typing: the
//! `art://` link of a one-time PIN (Apollo's format, which Artemis opens
//! from a QR code or a tap), and the QR codes of such links, rendered here
//! as SVG so the page makes no external request and its CSP stays strict.

use std::net::{IpAddr, SocketAddr};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

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

/// `art://HOST:PORT?pin=…&passphrase=…&name=…`, as Apollo's console makes
/// it (`pin.html`): HOST:PORT is the GameStream HTTP address (Artemis
/// pairs automatically only when the port is there), `name` the host's.
pub(crate) fn art_link(
    ip: IpAddr,
    port: u16,
    pin: &str,
    passphrase: &str,
    host_name: &str,
) -> String {
    let enc = |s: &str| utf8_percent_encode(s, QUERY_VALUE).to_string();
    format!(
        "art://{}?pin={}&passphrase={}&name={}",
        // `[v6]:port` or `v4:port`.
        SocketAddr::new(ip, port),
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

    #[test]
    fn art_links_look_like_apollos() {
        assert_eq!(
            art_link(
                "192.168.1.20".parse().unwrap(),
                47989,
                "0427",
                "Ab3dEf9hJk",
                "Living Room PC"
            ),
            "art://192.168.1.20:47989?pin=0427&passphrase=Ab3dEf9hJk&name=Living%20Room%20PC"
        );
        assert_eq!(
            art_link("fd00::1".parse().unwrap(), 47989, "0427", "x", "Ä&b"),
            "art://[fd00::1]:47989?pin=0427&passphrase=x&name=%C3%84%26b"
        );
    }

    #[test]
    fn qr_codes_are_svg() {
        let svg = qr_svg("art://192.168.1.20:47989?pin=0427").unwrap();
        assert!(svg.contains("<svg"), "{svg}");
        assert!(svg.contains("<path"), "{svg}");
    }
}
