//! The console API's JSON replies, one type per shape: the contract the
//! page (`page/app.js`) and the tests read.
//!
//! Fields are declared in alphabetical order on purpose: these types
//! replaced `serde_json::json!` literals, whose maps (without serde_json's
//! `preserve_order`) wrote keys sorted, and keeping that order keeps every
//! reply byte for byte what it was.

use std::time::Instant;

use punktfunk_certs::gate::{
    Block, Claimant, Exchange, OtpTry, Pending, PinState, PinUse, RequestEnd, MAX_OTP_TRIES,
};
use punktfunk_certs::otp::{OneTimePin, Passphrase};
use punktfunk_certs::{
    Device, DisplayName, Fingerprint, FrontDoor, Label, Permissions, Pin, Preset, Via,
};
use serde::Serialize;

use super::ErrorCode;

/// `{}`: an action that has nothing to report but that it happened.
#[derive(Debug, Serialize)]
pub(crate) struct Done {}

/// `{"error": {"code", "message"}}`, the shape of every refusal.
#[derive(Debug, Serialize)]
pub(crate) struct ErrorReply<'a> {
    pub(crate) error: ErrorBody<'a>,
}

/// The inside of [`ErrorReply`].
#[derive(Debug, Serialize)]
pub(crate) struct ErrorBody<'a> {
    /// A stable code the page switches on.
    pub(crate) code: ErrorCode,
    /// What a person reads.
    pub(crate) message: &'a str,
}

impl<'a> ErrorReply<'a> {
    pub(crate) fn new(code: ErrorCode, message: &'a str) -> Self {
        Self {
            error: ErrorBody { code, message },
        }
    }
}

/// `POST /api/login` and `GET /api/session`: the CSRF token of the session.
#[derive(Debug, Serialize)]
pub(crate) struct Csrf<'a> {
    pub(crate) csrf: &'a str,
}

/// `GET /api/host`: what the login page shows before anyone logs in.
#[derive(Debug, Serialize)]
pub(crate) struct HostReply<'a> {
    pub(crate) console_urls: Vec<String>,
    /// Sorts after `console_urls`, so the keys stay in order.
    #[serde(flatten)]
    pub(crate) host: HostSummary<'a>,
}

/// The host, as the Pairing page heads it.
#[derive(Debug, Serialize)]
pub(crate) struct HostSummary<'a> {
    fingerprint: Fingerprint,
    fingerprint_grouped: String,
    name: &'a str,
    /// The punktfunk app's endpoint runs (`--native`, `native = true`):
    /// only then does arming pairing (its PIN, its link) mean anything.
    native: bool,
    /// Open mode (`--open`, `open = true`): unknown native devices are let
    /// in without pairing. The page shows a warning banner while it is on.
    open: bool,
}

impl<'a> HostSummary<'a> {
    pub(crate) fn new(fingerprint: Fingerprint, name: &'a str, native: bool, open: bool) -> Self {
        Self {
            fingerprint,
            fingerprint_grouped: fingerprint.grouped(),
            name,
            native,
            open,
        }
    }
}

/// A device in the registry, without its certificate.
#[derive(Debug, Serialize)]
pub(crate) struct DeviceReply {
    enabled: bool,
    expired: bool,
    expires_at: Option<u64>,
    fingerprint: Fingerprint,
    guest: bool,
    kind: FrontDoor,
    label: Option<Label>,
    last_seen: Option<u64>,
    name: DisplayName,
    paired_at: u64,
    permissions: Permissions,
    preset: Option<Preset>,
    until_first_session: bool,
    via: Via,
}

impl From<&Device> for DeviceReply {
    fn from(d: &Device) -> Self {
        Self {
            enabled: d.enabled,
            // Recorded by the expiry timer within a second of the time.
            expired: d.expired,
            expires_at: d.expires_at,
            fingerprint: d.fingerprint,
            guest: d.guest,
            kind: d.kind,
            label: d.label.clone(),
            last_seen: d.last_seen,
            name: d.name.clone(),
            paired_at: d.paired_at,
            permissions: d.permissions,
            preset: d.permissions.preset(),
            until_first_session: d.until_first_session,
            via: d.via,
        }
    }
}

/// `GET /api/devices`: the paired devices.
#[derive(Debug, Serialize)]
pub(crate) struct DeviceList {
    pub(crate) devices: Vec<DeviceReply>,
}

/// Who is pairing or paired: a connection's address, name and certificate.
#[derive(Debug, Serialize)]
pub(crate) struct ClaimantReply {
    address: String,
    fingerprint: Fingerprint,
    name: DisplayName,
}

impl From<&Claimant> for ClaimantReply {
    fn from(c: &Claimant) -> Self {
        Self {
            address: c.address.to_string(),
            fingerprint: c.fingerprint,
            name: c.name.clone(),
        }
    }
}

/// The armed PIN (`POST /api/pairing/arm`, and `armed` in the page state).
#[derive(Debug, Serialize)]
pub(crate) struct ArmedReply {
    pub(crate) expires_in_s: u64,
    /// The native pairing link (`None` without the native door).
    pub(crate) link: Option<String>,
    pub(crate) pin: Pin,
    /// The typed PIN was used (a wrong guess, or a pairing in progress):
    /// only the link (QR code) still pairs in this arming.
    pub(crate) pin_used: bool,
}

/// Where a one-time PIN's `art://` link points.
#[derive(Debug)]
pub(crate) struct OtpLink {
    /// The link.
    pub(crate) link: String,
    /// Its host as the link writes it (`192.168.1.20`, `[fd00::1]`, a name):
    /// the address the console was opened on, else the first LAN address.
    pub(crate) address: String,
    /// Its port: the GameStream HTTP port.
    pub(crate) port: u16,
}

/// The active one-time PIN (`POST /api/otp`, and `otp` in the page state).
#[derive(Debug, Serialize)]
pub(crate) struct OtpReply {
    /// The host in `link` (`None` when there is no link).
    address: Option<String>,
    expires_in_s: u64,
    /// The `art://` link (`None` until the doors are bound).
    link: Option<String>,
    name: Option<DisplayName>,
    passphrase: Passphrase,
    pin: Pin,
    /// The port in `link` (`None` when there is no link).
    port: Option<u16>,
    /// The wrong tries so far, oldest first (only in the page state).
    #[serde(skip_serializing_if = "Option::is_none")]
    tries: Option<Vec<OtpTryReply>>,
    /// Tries left before it is used up (only in the page state).
    #[serde(skip_serializing_if = "Option::is_none")]
    tries_left: Option<usize>,
}

impl OtpReply {
    pub(crate) fn new(otp: &OneTimePin, now: Instant, link: Option<OtpLink>) -> Self {
        let (link, address, port) = match link {
            Some(l) => (Some(l.link), Some(l.address), Some(l.port)),
            None => (None, None, None),
        };
        Self {
            address,
            expires_in_s: expires_in(otp.expires(), now),
            link,
            name: otp.name().cloned(),
            passphrase: otp.passphrase().clone(),
            pin: otp.pin().clone(),
            port,
            tries: None,
            tries_left: None,
        }
    }

    /// With the wrong tries at it so far.
    pub(crate) fn with_tries(mut self, tries: &[OtpTry], now: Instant) -> Self {
        self.tries_left = Some(MAX_OTP_TRIES.saturating_sub(tries.len()));
        self.tries = Some(
            tries
                .iter()
                .map(|t| OtpTryReply {
                    address: t.address.to_canonical().to_string(),
                    age_s: now.saturating_duration_since(t.at).as_secs(),
                })
                .collect(),
        );
        self
    }
}

/// A wrong try at the active one-time PIN.
#[derive(Debug, Serialize)]
pub(crate) struct OtpTryReply {
    address: String,
    age_s: u64,
}

/// A blocked address.
#[derive(Debug, Serialize)]
pub(crate) struct BlockReply {
    address: String,
    expires_in_s: u64,
}

impl BlockReply {
    pub(crate) fn new(b: &Block, now: Instant) -> Self {
        Self {
            address: b.address.to_string(),
            expires_in_s: expires_in(b.until, now),
        }
    }
}

/// `POST /api/blocks`: the block, and how many waiting requests it denied.
#[derive(Debug, Serialize)]
pub(crate) struct Blocked {
    pub(crate) block: BlockReply,
    pub(crate) denied: usize,
}

/// `DELETE /api/blocks/{address}`: whether there was a block.
#[derive(Debug, Serialize)]
pub(crate) struct Lifted {
    pub(crate) lifted: bool,
}

/// How a pairing went, as every reply of the console says it (the last
/// use of the armed PIN, the last one-time PIN, a PIN entered for a
/// Moonlight request): one vocabulary, whichever door.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PairingResult {
    /// Still running.
    InProgress,
    /// Still running after the console's wait.
    Waiting,
    /// The device was stored.
    Paired,
    /// The PIN did not match (or the exchange broke off after taking it).
    PinRejected,
    /// moonlight-qt's own key bug, not a wrong PIN: press Pair again.
    MoonlightQtBug,
    /// The request ended otherwise (denied, expired, replaced, the client
    /// went away).
    Abandoned,
    /// A one-time PIN's pairing that did not end paired.
    Failed,
    /// A one-time PIN's proof did not match (the PIN or the passphrase).
    WrongPassphrase,
}

impl PairingResult {
    /// How a Moonlight request whose PIN was entered ended.
    pub(crate) fn of_request(outcome: RequestEnd) -> Self {
        match outcome {
            RequestEnd::Paired => Self::Paired,
            RequestEnd::PinRejected => Self::PinRejected,
            RequestEnd::MoonlightQtBug => Self::MoonlightQtBug,
            _ => Self::Abandoned,
        }
    }
}

/// How the last use of the armed PIN went.
#[derive(Debug, Serialize)]
pub(crate) struct LastAttemptReply {
    by: ClaimantReply,
    /// Only for `paired`: the device that was stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    fingerprint: Option<Fingerprint>,
    result: PairingResult,
}

impl LastAttemptReply {
    pub(crate) fn new(by: &Claimant, result: &PinUse) -> Self {
        let (result, fingerprint) = match result {
            PinUse::InProgress => (PairingResult::InProgress, None),
            PinUse::Paired { fingerprint } => (PairingResult::Paired, Some(*fingerprint)),
            PinUse::Failed => (PairingResult::PinRejected, None),
        };
        Self {
            by: by.into(),
            fingerprint,
            result,
        }
    }
}

/// How the last one-time PIN went, and from where.
#[derive(Debug, Serialize)]
pub(crate) struct OtpLastReply {
    pub(crate) address: String,
    pub(crate) result: PairingResult,
}

/// Who runs a native pairing exchange (past its `pake`), and for how long.
#[derive(Debug, Serialize)]
pub(crate) struct ExchangeReply {
    /// `address`, `fingerprint`, `name`: they sort before `since_s`.
    #[serde(flatten)]
    by: ClaimantReply,
    since_s: u64,
}

impl ExchangeReply {
    pub(crate) fn new(e: &Exchange, now: Instant) -> Self {
        Self {
            by: (&e.by).into(),
            since_s: now.saturating_duration_since(e.since).as_secs(),
        }
    }
}

/// A request waiting for the console.
#[derive(Debug, Serialize)]
pub(crate) struct PendingReply {
    address: String,
    age_s: u64,
    expires_in_s: u64,
    fingerprint: Fingerprint,
    id: String,
    kind: FrontDoor,
    name: DisplayName,
    needs: &'static str,
    pin_entered: bool,
    /// Its device is being written to the registry right now.
    storing: bool,
}

impl PendingReply {
    pub(crate) fn new(id: impl std::fmt::Display, p: &Pending, now: Instant) -> Self {
        Self {
            address: p.request.address.ip().to_canonical().to_string(),
            age_s: now.saturating_duration_since(p.created).as_secs(),
            expires_in_s: expires_in(p.expires, now),
            fingerprint: p.fingerprint,
            id: id.to_string(),
            kind: p.request.kind,
            name: p.request.name.clone(),
            needs: p.request.needs.as_str(),
            pin_entered: !matches!(p.pin, PinState::Waiting),
            storing: p.storing,
        }
    }
}

/// `GET /api/pairing`: the whole Pairing page.
#[derive(Debug, Serialize)]
pub(crate) struct PairingState<'a> {
    pub(crate) armed: Option<ArmedReply>,
    pub(crate) blocks: Vec<BlockReply>,
    pub(crate) devices: Vec<DeviceReply>,
    pub(crate) exchange: Option<ExchangeReply>,
    pub(crate) host: HostSummary<'a>,
    pub(crate) last_attempt: Option<LastAttemptReply>,
    pub(crate) otp: Option<OtpReply>,
    pub(crate) otp_last: Option<OtpLastReply>,
    pub(crate) pending: Vec<PendingReply>,
}

/// `POST /api/pending/deny-all`: how many requests were dismissed.
#[derive(Debug, Serialize)]
pub(crate) struct DeniedAll {
    pub(crate) denied: usize,
}

/// `DELETE /api/otp`: whether a one-time PIN was active.
#[derive(Debug, Serialize)]
pub(crate) struct OtpCancelled {
    pub(crate) cancelled: bool,
}

/// `POST /api/pending/{id}/pin`: how the pairing ended, or `waiting`.
#[derive(Debug, Serialize)]
pub(crate) struct PinOutcome {
    pub(crate) result: PairingResult,
}

/// Seconds until `deadline`, rounded up: "0 s left" while it is still valid
/// would be wrong.
pub(crate) fn expires_in(deadline: Instant, now: Instant) -> u64 {
    let left = deadline.saturating_duration_since(now);
    left.as_secs() + u64::from(left.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use punktfunk_certs::otp::Passphrase;
    use serde_json::json;

    use super::*;

    /// The bytes a reply type writes are the bytes the `json!` literal it
    /// replaced wrote (the page and the tests read them).
    fn same_bytes(reply: impl Serialize, literal: serde_json::Value) {
        assert_eq!(
            serde_json::to_string(&reply).unwrap(),
            serde_json::to_string(&literal).unwrap()
        );
    }

    fn claimant() -> Claimant {
        Claimant {
            address: [192, 168, 1, 30].into(),
            name: DisplayName::sanitize("Anna's iPad").unwrap(),
            fingerprint: Fingerprint::of_der(b"ipad"),
        }
    }

    #[test]
    fn replies_write_what_the_json_literals_wrote() {
        same_bytes(Done {}, json!({}));
        same_bytes(
            ErrorReply::new(ErrorCode::Csrf, "reload <the> \"page\""),
            json!({"error": {"code": "csrf", "message": "reload <the> \"page\""}}),
        );
        same_bytes(Csrf { csrf: "t0k" }, json!({ "csrf": "t0k" }));
        same_bytes(DeniedAll { denied: 3 }, json!({ "denied": 3 }));
        same_bytes(
            OtpCancelled { cancelled: true },
            json!({ "cancelled": true }),
        );
        same_bytes(
            PinOutcome {
                result: PairingResult::Waiting,
            },
            json!({"result": "waiting"}),
        );

        let fp = Fingerprint::of_der(b"host");
        same_bytes(
            HostReply {
                console_urls: vec!["https://192.168.1.20:47990/".into()],
                host: HostSummary::new(fp, "den", false, true),
            },
            json!({
                "name": "den",
                "native": false,
                "open": true,
                "fingerprint": fp,
                "fingerprint_grouped": fp.grouped(),
                "console_urls": ["https://192.168.1.20:47990/"],
            }),
        );

        for label in [None, Label::parse("Living room").unwrap()] {
            let d = Device {
                fingerprint: fp,
                cert_pem: "not shown".into(),
                kind: FrontDoor::Native,
                name: DisplayName::sanitize("iPad").unwrap(),
                label,
                paired_at: 1_700_000_000,
                last_seen: Some(1_700_000_100),
                via: Via::Approval,
                permissions: punktfunk_certs::Permissions::ALL,
                enabled: true,
                expires_at: None,
                expired: false,
                until_first_session: false,
                guest: false,
            };
            same_bytes(
                DeviceReply::from(&d),
                json!({
                    "enabled": true,
                    "expired": false,
                    "expires_at": null,
                    "fingerprint": d.fingerprint,
                    "guest": false,
                    "kind": d.kind,
                    "name": d.name,
                    "label": d.label,
                    "paired_at": d.paired_at,
                    "last_seen": d.last_seen,
                    "permissions": d.permissions,
                    "preset": "full",
                    "until_first_session": false,
                    "via": d.via,
                }),
            );
        }

        let c = claimant();
        let by = json!({
            "address": c.address.to_string(),
            "name": c.name,
            "fingerprint": c.fingerprint,
        });
        same_bytes(
            LastAttemptReply::new(&c, &PinUse::Paired { fingerprint: fp }),
            json!({"result": "paired", "fingerprint": fp, "by": by}),
        );
        same_bytes(
            LastAttemptReply::new(&c, &PinUse::Failed),
            json!({"result": "pin_rejected", "by": by}),
        );
        let now = Instant::now();
        let e = Exchange {
            by: c.clone(),
            since: now - Duration::from_secs(7),
        };
        let mut exchange = by.clone();
        exchange["since_s"] = 7.into();
        same_bytes(ExchangeReply::new(&e, now), exchange);

        let otp = OneTimePin::new(
            Passphrase::generate(&mut rand::rngs::OsRng),
            DisplayName::sanitize("TV"),
            now,
            &mut rand::rngs::OsRng,
        );
        same_bytes(
            OtpReply::new(
                &otp,
                now,
                Some(OtpLink {
                    link: "art://x".into(),
                    address: "x".into(),
                    port: 1,
                }),
            ),
            json!({
                "pin": otp.pin().as_str(),
                "passphrase": otp.passphrase().as_str(),
                "name": otp.name(),
                "expires_in_s": expires_in(otp.expires(), now),
                "link": "art://x",
                "address": "x",
                "port": 1,
            }),
        );
        same_bytes(
            ArmedReply {
                expires_in_s: 180,
                link: None,
                pin: "0042".parse().unwrap(),
                pin_used: true,
            },
            json!({"pin": "0042", "expires_in_s": 180, "link": null, "pin_used": true}),
        );
    }

    #[test]
    fn every_pairing_result_is_spelled_as_the_api_document_says() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../docs/console-api.json")).unwrap();
        let text = doc.to_string();
        for (result, wire) in [
            (PairingResult::InProgress, "in_progress"),
            (PairingResult::Waiting, "waiting"),
            (PairingResult::Paired, "paired"),
            (PairingResult::PinRejected, "pin_rejected"),
            (PairingResult::MoonlightQtBug, "moonlight_qt_bug"),
            (PairingResult::Abandoned, "abandoned"),
            (PairingResult::Failed, "failed"),
            (PairingResult::WrongPassphrase, "wrong_passphrase"),
        ] {
            assert_eq!(serde_json::to_value(result).unwrap(), json!(wire));
            assert!(
                text.contains(&format!("\"{wire}\"")),
                "{wire} not in the API document"
            );
        }
    }

    #[test]
    fn expires_in_rounds_up() {
        let now = Instant::now();
        assert_eq!(expires_in(now + Duration::from_millis(1), now), 1);
        assert_eq!(expires_in(now + Duration::from_secs(2), now), 2);
        assert_eq!(expires_in(now, now + Duration::from_secs(1)), 0);
    }
}
