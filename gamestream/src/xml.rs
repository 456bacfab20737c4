//! GameStream XML replies: one document type, [`Reply`], one renderer,
//! [`Reply::to_xml`], and a builder per endpoint.
//!
//! Every GameStream answer is sent with HTTP status 200; success or failure
//! is the `status_code` attribute of `<root>`, with a `status_message` on
//! errors. Clients treat an HTTP 4xx as "host offline" (moonlight-embedded
//! fails on any HTTP error; moonlight-qt never reads the body of one), and a
//! missing `status_code` makes moonlight-android throw (`research/gamestream.md`
//! §1.3, §2.1).
//!
//! Everything that can come from outside (host name, request path, messages
//! that quote a client) is escaped; element names are fixed in this crate.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::num::NonZeroU32;

/// `appversion`: major 7 selects SHA-256 pairing in every client, and a
/// negative fourth component tells moonlight-common-c it talks to a Sunshine-
/// style host (Sunshine src/nvhttp.h).
pub const APP_VERSION: &str = "7.1.431.-1";

/// `GfeVersion`, Sunshine's value; moonlight-android treats a missing one or
/// "2.x" as "no 4K".
pub const GFE_VERSION: &str = "3.23.0.74";

/// `ServerCodecModeSupport`: H.264 only (moonlight-common-c `SCM_H264`).
/// Clients refuse to stream with 0 and moonlight-embedded reads a missing
/// element as 0, so it is always sent and never 0.
pub const CODEC_MODE_SUPPORT: u32 = 0x1;

/// `state` while no stream runs. Never contains "MJOLNIR": clients read that
/// as "real NVIDIA GFE" and switch on GFE quirks.
pub const STATE_FREE: &str = "SUNSHINE_SERVER_FREE";

/// GFE's message for a certificate that is not paired (loki-47-6F-64/sunshine
/// #117; Sunshine `on_verify_failed`). Clients fall back to HTTP and show
/// the host as "not paired" instead of "offline".
pub const UNAUTHORIZED_MESSAGE: &str =
    "The client is not authorized. Certificate verification failed.";

/// What a pairing-only host says to `/launch` and `/resume`.
pub const NO_STREAMING_MESSAGE: &str =
    "This host pairs Moonlight clients but does not stream; streaming is not available here.";

/// A content type for the HTTP response. No client checks it (GFE sent
/// `text/plain`).
pub const CONTENT_TYPE: &str = "application/xml; charset=utf-8";

/// Longest request path echoed in the `query` attribute of a 401.
const MAX_ECHOED_PATH: usize = 64;

/// One GameStream XML document: `<root status_code=…>` and its children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    status_code: u16,
    status_message: Option<Cow<'static, str>>,
    query: Option<String>,
    children: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Text(&'static str, String),
    Element(&'static str, Vec<Node>),
}

impl Reply {
    /// `status_code="200"`, no children yet.
    pub fn ok() -> Self {
        Self {
            status_code: 200,
            status_message: None,
            query: None,
            children: Vec::new(),
        }
    }

    /// An error: `status_code` and a message a person can read (Moonlight
    /// shows it as `…returned error: <message>`).
    pub fn error(status_code: u16, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status_code,
            status_message: Some(message.into()),
            ..Self::ok()
        }
    }

    /// Adds `<name>value</name>`.
    pub(crate) fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.children.push(Node::Text(name, value.into()));
        self
    }

    fn with_element(mut self, name: &'static str, children: Vec<Node>) -> Self {
        self.children.push(Node::Element(name, children));
        self
    }

    /// The `status_code` attribute.
    pub fn status_code(&self) -> u16 {
        self.status_code
    }

    /// The `status_message` attribute, if any.
    pub fn status_message(&self) -> Option<&str> {
        self.status_message.as_deref()
    }

    /// The text of the first direct child element called `name`, the way
    /// clients read fields (e.g. `paired`, `plaincert`).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.children.iter().find_map(|n| match n {
            Node::Text(n, v) if *n == name => Some(v.as_str()),
            _ => None,
        })
    }

    /// Renders the document, UTF-8, with an XML declaration as Sunshine sends it.
    pub fn to_xml(&self) -> String {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<root");
        let _ = write!(out, " status_code=\"{}\"", self.status_code);
        if let Some(query) = &self.query {
            out.push_str(" query=\"");
            escape_into(&mut out, query);
            out.push('"');
        }
        if let Some(message) = &self.status_message {
            out.push_str(" status_message=\"");
            escape_into(&mut out, message);
            out.push('"');
        }
        if self.children.is_empty() {
            out.push_str("/>");
        } else {
            out.push('>');
            render_nodes(&mut out, &self.children);
            out.push_str("</root>");
        }
        out
    }
}

fn render_nodes(out: &mut String, nodes: &[Node]) {
    for node in nodes {
        match node {
            Node::Text(name, value) => {
                let _ = write!(out, "<{name}>");
                escape_into(out, value);
                let _ = write!(out, "</{name}>");
            }
            Node::Element(name, children) => {
                let _ = write!(out, "<{name}>");
                render_nodes(out, children);
                let _ = write!(out, "</{name}>");
            }
        }
    }
}

/// Escapes text for both element content and double-quoted attributes.
/// Characters XML 1.0 cannot carry at all (most C0 controls, U+FFFE, U+FFFF)
/// become U+FFFD, so no input can make the document ill-formed.
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// Over which door a request came, as far as `/serverinfo` cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Plain HTTP: never paired, MAC hidden.
    Http,
    /// HTTPS with a client certificate the registry trusts. (An untrusted
    /// certificate gets [`unauthorized`] instead of any endpoint.)
    AuthorizedHttps,
}

/// What `/serverinfo` says about the host.
#[derive(Debug, Clone, Copy)]
pub struct HostInfo<'a> {
    /// Display name (`hostname`).
    pub host_name: &'a str,
    /// The host's stable UUID (`uniqueid`); clients key hosts by it.
    pub unique_id: &'a str,
    /// The HTTP port (`ExternalPort`).
    pub http_port: u16,
    /// The HTTPS port (`HttpsPort`).
    pub https_port: u16,
    /// The local address of the accepted connection (`LocalIP`).
    pub local_ip: IpAddr,
}

/// `/serverinfo`, with every field some client requires (§2.2 of
/// `research/gamestream.md`; Sunshine `serverinfo` order).
pub fn server_info(host: &HostInfo<'_>, channel: Channel) -> Reply {
    // PairStatus is 0 over HTTP in GFE and Sunshine alike; over HTTPS the
    // shell only routes trusted certificates here.
    let pair_status = match channel {
        Channel::Http => "0",
        Channel::AuthorizedHttps => "1",
    };
    Reply::ok()
        .with("hostname", host.host_name)
        .with("appversion", APP_VERSION)
        .with("GfeVersion", GFE_VERSION)
        .with("uniqueid", host.unique_id)
        .with("HttpsPort", host.https_port.to_string())
        .with("ExternalPort", host.http_port.to_string())
        // No HEVC is advertised, so no HEVC pixel budget.
        .with("MaxLumaPixelsHEVC", "0")
        // The MAC is only for Wake-on-LAN, which this service does not need;
        // Sunshine cloaks it from unpaired clients the same way.
        .with("mac", "00:00:00:00:00:00")
        .with("LocalIP", local_ip(host.local_ip))
        .with("ServerCodecModeSupport", CODEC_MODE_SUPPORT.to_string())
        .with("PairStatus", pair_status)
        .with("currentgame", "0")
        .with("state", STATE_FREE)
}

/// IPv4 as dotted quad. For native IPv6 Sunshine reports `127.0.0.1`
/// (emulating GFE with its IPv6 forwarder), which Qt and iOS then ignore.
fn local_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => "127.0.0.1".to_owned(),
        },
    }
}

/// An app id: positive and within `i32`, because clients parse it as a
/// signed 32-bit integer and moonlight-qt ignores an app with id 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AppId(NonZeroU32);

impl AppId {
    /// `None` for 0 or anything above `i32::MAX`.
    pub const fn new(id: u32) -> Option<Self> {
        match NonZeroU32::new(id) {
            Some(id) if id.get() <= i32::MAX as u32 => Some(Self(id)),
            _ => None,
        }
    }

    /// The id.
    pub fn get(self) -> u32 {
        self.0.get()
    }
}

/// One entry of `/applist`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// Its id.
    pub id: AppId,
    /// Its title.
    pub title: String,
}

/// `/applist`. Send at least one app: moonlight-qt treats an empty list as
/// "no update" and keeps asking.
pub fn app_list(apps: &[App]) -> Reply {
    apps.iter().fold(Reply::ok(), |reply, app| {
        reply.with_element(
            "App",
            vec![
                Node::Text("IsHdrSupported", "0".to_owned()),
                Node::Text("AppTitle", app.title.clone()),
                Node::Text("ID", app.id.get().to_string()),
            ],
        )
    })
}

/// `/launch` on a host that does not stream: XML 503 with a readable message,
/// `gamesession=0` (Qt and Android show the message).
pub fn launch_unavailable() -> Reply {
    Reply::error(503, NO_STREAMING_MESSAGE).with("gamesession", "0")
}

/// `/resume` on a host that does not stream.
pub fn resume_unavailable() -> Reply {
    Reply::error(503, NO_STREAMING_MESSAGE).with("resume", "0")
}

/// `/cancel`: nothing runs, so cancelling succeeds.
pub fn cancel() -> Reply {
    Reply::ok().with("cancel", "1")
}

/// `/appasset` for an app id that is missing, malformed or not in
/// `/applist`: a clean XML 404 (a listed app gets an image instead).
pub fn app_asset_unknown() -> Reply {
    Reply::error(404, "No such app; the app ids are in /applist")
}

/// `/appasset` when the host cannot produce the image of a listed app
/// (not expected: the placeholder is drawn in memory).
pub fn app_asset_unavailable() -> Reply {
    Reply::error(500, "The box art could not be made; see the host's log")
}

/// `/unpair`: an XML 200 that removes nothing. The request is
/// unauthenticated and its `uniqueid` is usually the shared constant, so it
/// may at most end that peer's pairing in progress; some clients need an XML
/// answer here (hgaiser/moonshine #85).
pub fn unpair() -> Reply {
    Reply::ok()
}

/// Any unknown path: XML 404 with HTTP 200, as Sunshine's not-found handler.
pub fn not_found() -> Reply {
    Reply::error(404, "Not found")
}

/// An HTTPS request whose client certificate is not paired: GFE's 401,
/// with `query` naming the path as GFE and Sunshine do.
pub fn unauthorized(path: &str) -> Reply {
    Reply {
        query: Some(echoed(path)),
        ..Reply::error(401, UNAUTHORIZED_MESSAGE)
    }
}

/// A paired certificate the host refuses for now: its owner disabled the
/// device, or its access expired. Its own answer (403, saying which and
/// what to do), not "not paired", so the user knows to ask the owner
/// rather than pair again.
pub fn access_refused(path: &str, denied: punktfunk_certs::Denied) -> Reply {
    Reply {
        query: Some(echoed(path)),
        ..Reply::error(403, denied.to_string())
    }
}

/// A paired device without the permission a path needs (Apollo answers
/// 403 "Permission denied"; this also says which, and who can allow it).
pub fn permission_denied(path: &str, what: &str) -> Reply {
    Reply {
        query: Some(echoed(path)),
        ..Reply::error(
            403,
            format!(
                "Permission denied: this device may not {what}; the host's owner can allow it in the console"
            ),
        )
    }
}

fn echoed(path: &str) -> String {
    path.trim_start_matches('/')
        .chars()
        .take(MAX_ECHOED_PATH)
        .collect()
}

/// A refused concurrent `getservercert`, the way GFE refuses it: `paired=1`
/// without `plaincert`, which moonlight-qt, -android and -ios report as
/// "Another pairing attempt is already in progress".
pub fn pair_busy() -> Reply {
    Reply::ok().with("paired", "1")
}

/// Phase 5 (`phrase=pairchallenge`). Over HTTPS the shell has already checked
/// that the client certificate is paired, so the answer is `paired=1`, as in
/// Sunshine, which answers it before looking at any session. Over plain HTTP
/// it proves nothing and is refused.
pub fn pair_challenge(channel: Channel) -> Reply {
    match channel {
        Channel::AuthorizedHttps => Reply::ok().with("paired", "1"),
        Channel::Http => Reply::error(
            400,
            "pairchallenge must be sent over HTTPS with the paired client certificate",
        )
        .with("paired", "0"),
    }
}

impl From<&crate::request::InvalidQuery> for Reply {
    /// A malformed `/pair` request: `paired=0`, status 400 (Sunshine's
    /// `fail_pair`), or 404 for a request of no known phase (Sunshine:
    /// "Invalid pairing request").
    fn from(e: &crate::request::InvalidQuery) -> Self {
        let status = match e.error {
            crate::request::ParseError::NoPhase => 404,
            _ => 400,
        };
        Reply::error(status, e.error.to_string()).with("paired", "0")
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn host() -> HostInfo<'static> {
        HostInfo {
            host_name: "den <&> \"pc\"",
            unique_id: "2f6c1a9e-1c3b-4d0e-9a57-0d4f8f4e7b21",
            http_port: 47989,
            https_port: 47984,
            local_ip: IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20)),
        }
    }

    #[test]
    fn renders_declaration_root_and_children() {
        let xml = Reply::ok()
            .with("paired", "1")
            .with("plaincert", "AB")
            .to_xml();
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
             <root status_code=\"200\"><paired>1</paired><plaincert>AB</plaincert></root>"
        );
        assert_eq!(
            unpair().to_xml(),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<root status_code=\"200\"/>"
        );
    }

    #[test]
    fn escapes_everything_from_outside() {
        let mut out = String::new();
        escape_into(&mut out, "a<b>&\"c'\u{0}\u{1b}\t\n\r\u{FFFF}é");
        assert_eq!(
            out,
            "a&lt;b&gt;&amp;&quot;c&apos;\u{FFFD}\u{FFFD}&#9;&#10;&#13;\u{FFFD}é"
        );
        let xml = server_info(&host(), Channel::Http).to_xml();
        assert!(xml.contains("<hostname>den &lt;&amp;&gt; &quot;pc&quot;</hostname>"));
        let parsed = punktfunk_testsupport::xml::reply(&xml);
        assert_eq!(parsed.field("hostname"), Some("den <&> \"pc\""));
        let xml = unauthorized("/x\"><evil/>").to_xml();
        assert!(xml.contains("query=\"x&quot;&gt;&lt;evil/&gt;\""), "{xml}");
        let parsed = punktfunk_testsupport::xml::reply(&xml);
        assert_eq!(parsed.attr("query"), Some("x\"><evil/>"));
    }

    #[test]
    fn serverinfo_has_every_required_field() {
        let r = server_info(&host(), Channel::Http);
        assert_eq!(r.status_code(), 200);
        for (name, value) in [
            ("appversion", "7.1.431.-1"),
            ("GfeVersion", "3.23.0.74"),
            ("uniqueid", "2f6c1a9e-1c3b-4d0e-9a57-0d4f8f4e7b21"),
            ("HttpsPort", "47984"),
            ("ExternalPort", "47989"),
            ("mac", "00:00:00:00:00:00"),
            ("LocalIP", "192.168.1.20"),
            ("ServerCodecModeSupport", "1"),
            ("MaxLumaPixelsHEVC", "0"),
            ("PairStatus", "0"),
            ("currentgame", "0"),
            ("state", "SUNSHINE_SERVER_FREE"),
        ] {
            assert_eq!(r.field(name), Some(value), "{name}");
        }
        assert!(!r.to_xml().contains("MJOLNIR"));
        let r = server_info(&host(), Channel::AuthorizedHttps);
        assert_eq!(r.field("PairStatus"), Some("1"));
        assert_eq!(r.field("mac"), Some("00:00:00:00:00:00"));
    }

    #[test]
    fn local_ip_forms() {
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 7).to_ipv6_mapped());
        assert_eq!(local_ip(mapped), "10.0.0.7");
        assert_eq!(local_ip(IpAddr::V6(Ipv6Addr::LOCALHOST)), "127.0.0.1");
    }

    #[test]
    fn applist_and_app_ids() {
        assert!(AppId::new(0).is_none());
        assert!(AppId::new(i32::MAX as u32 + 1).is_none());
        let id = AppId::new(881_448_767).unwrap();
        let xml = app_list(&[App {
            id,
            title: "Desktop & more".into(),
        }])
        .to_xml();
        assert!(xml.ends_with(
            "<root status_code=\"200\"><App><IsHdrSupported>0</IsHdrSupported>\
             <AppTitle>Desktop &amp; more</AppTitle><ID>881448767</ID></App></root>"
        ));
    }

    #[test]
    fn error_replies() {
        let r = launch_unavailable();
        assert_eq!((r.status_code(), r.field("gamesession")), (503, Some("0")));
        assert_eq!(r.status_message(), Some(NO_STREAMING_MESSAGE));
        assert_eq!(resume_unavailable().field("resume"), Some("0"));
        assert_eq!(cancel().field("cancel"), Some("1"));
        assert_eq!(not_found().status_code(), 404);
        assert_eq!(
            unauthorized("/serverinfo").to_xml(),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<root status_code=\"401\" \
             query=\"serverinfo\" status_message=\"The client is not authorized. \
             Certificate verification failed.\"/>"
        );
        assert_eq!(pair_busy().field("plaincert"), None);
        assert_eq!(
            pair_challenge(Channel::AuthorizedHttps).field("paired"),
            Some("1")
        );
        let r = pair_challenge(Channel::Http);
        assert_eq!((r.status_code(), r.field("paired")), (400, Some("0")));
    }

    proptest::proptest! {
        #[test]
        fn escaped_text_has_no_markup(s in "\\PC*|[\\x00-\\x7f]*") {
            let mut out = String::new();
            escape_into(&mut out, &s);
            proptest::prop_assert!(!out.contains('<') && !out.contains('>') && !out.contains('"'));
            // Every '&' starts one of our entities.
            for (i, _) in out.match_indices('&') {
                let rest = &out[i..];
                proptest::prop_assert!(
                    ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;", "&#9;", "&#10;", "&#13;"]
                        .iter()
                        .any(|e| rest.starts_with(e))
                );
            }
            proptest::prop_assert!(!out.chars().any(|c| (c as u32) < 0x20));
        }
    }
}
