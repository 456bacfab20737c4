//! How a phase 1 asks the trust service to be let in, and how the trust
//! service's answers become GameStream answers: the door's decisions that
//! are not the exchange itself, kept here (sans-IO, unit-tested) so that
//! the HTTP shell only carries them out.
//!
//! - [`Knock::of`]: the request to list (the name the console shows, the
//!   certificate, the address), and whether it is a one-time PIN's
//!   (`otpauth`, Apollo/Artemis): then the knock carries its proof and the
//!   device is admitted `via: otp`, otherwise the console types the PIN.
//! - [`PairError::refused`]: a knock the trust service would not list;
//!   [`PairError::ended`]: a request that ended without its PIN.
//! - [`PairingEnd::pin_failure`]: how an attempt whose PIN was entered is
//!   recorded when it does not pair.
//! - [`MAX_HOLD`]: the longest a phase 1 is held, whatever happens.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use punktfunk_certs::{
    DisplayName, FrontDoor, Needs, OtpProof, PendingRequest, PinFailure, Refusal, RequestEnd, Via,
};

use crate::{GetServerCert, PairError, PairingEnd};

/// Longest a `getservercert` is held, whatever happens; the trust service
/// expires the pending request long before (`GateConfig::pending_ttl`).
pub const MAX_HOLD: Duration = Duration::from_secs(15 * 60);

/// What every moonlight-qt and moonlight-embedded client sends as
/// `devicename` (`nvpairingmanager.cpp`, `libgamestream/client.c`).
const STOCK_NAME: &str = "roth";

/// The audit detail of [`PairingEnd::MoonlightQtBug`].
const MOONLIGHT_QT_BUG: &str =
    "this attempt hit a known Moonlight bug, so the PIN was probably right: \
moonlight-qt derives a wrong key when SHA-256(salt + PIN) has a zero byte in its first 15 bytes \
(about 1 attempt in 18); press Pair in Moonlight again and enter the new PIN it shows";

/// What a phase 1 asks of the trust service.
#[derive(Debug, Clone)]
pub struct Knock {
    /// The request to list as waiting for its PIN.
    pub request: PendingRequest,
    /// A one-time PIN's proof, if the client sent `otpauth`: the knock then
    /// uses up the one-time PIN and gets its PIN at once.
    pub otp: Option<OtpProof>,
    /// How the device will have been admitted if it pairs.
    pub via: Via,
}

impl Knock {
    /// The knock of phase 1 `request` from `peer`.
    pub fn of(request: &GetServerCert, peer: SocketAddr) -> Self {
        let otp = request.otpauth.map(|otpauth| OtpProof {
            otpauth,
            salt_text: request.salt_text.clone(),
        });
        Self {
            request: PendingRequest {
                kind: FrontDoor::Gamestream,
                name: shown_name(request.device_name.as_ref(), peer.ip()),
                cert_der: request.client_cert.der().to_vec(),
                address: peer,
                needs: Needs::Pin,
            },
            via: if otp.is_some() { Via::Otp } else { Via::Pin },
            otp,
        }
    }
}

/// The name the console shows for a Moonlight client: its `devicename`,
/// unless it sent none or the stock `roth`, which names nobody; then
/// "Moonlight on ADDRESS" (Apollo similarly shows "Legacy Moonlight Client"
/// for `roth`). The console's label is the way to name it.
fn shown_name(name: Option<&DisplayName>, peer: IpAddr) -> DisplayName {
    match name {
        Some(n) if !n.as_str().eq_ignore_ascii_case(STOCK_NAME) => n.clone(),
        _ => DisplayName::sanitize_or(
            &format!("Moonlight on {}", peer.to_canonical()),
            "Moonlight",
        ),
    }
}

impl PairError {
    /// The answer to a phase 1 the trust service would not list: busy (the
    /// waiting list is full, its certificate waits from another address or
    /// is being stored, the address is blocked), Apollo's "OTP auth not
    /// available." for a proof with no one-time PIN, or a host fault.
    pub fn refused(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Busy(_) => Self::Busy,
            Refusal::NoOneTimePin(_) => Self::OtpNotAvailable,
            Refusal::Fault(e) => Self::Host(e.into()),
        }
    }

    /// The answer to a client whose request ended without its PIN (`None`:
    /// it ended long enough ago to be forgotten).
    pub fn ended(end: Option<RequestEnd>) -> Self {
        match end {
            Some(RequestEnd::Denied) => Self::Declined,
            Some(RequestEnd::Expired) | None => Self::PinTimeout,
            Some(RequestEnd::Replaced) => Self::Superseded,
            Some(_) => Self::Cancelled,
        }
    }
}

impl PairingEnd {
    /// How the trust service records this end of an attempt whose PIN was
    /// entered, when it did not pair; `None` for [`PairingEnd::Paired`]
    /// (storing the device ended the request).
    pub fn pin_failure(&self) -> Option<PinFailure<'static>> {
        Some(match self {
            Self::Paired(_) => return None,
            Self::PinRejected(rejection) => PinFailure::Rejected {
                why: rejection.why(),
                after_right_pin: rejection.after_right_pin(),
            },
            Self::MoonlightQtBug(_) => PinFailure::ClientBug {
                detail: MOONLIGHT_QT_BUG,
            },
            Self::Failed | Self::Abandoned => PinFailure::Abandoned,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{PairQuery, PairRequest};
    use crate::testdata::CLIENT_CRT;
    use crate::Rejection;
    use punktfunk_certs::otp::OtpError;
    use punktfunk_certs::GateError;

    const SALT: &str = "7771b902ec281b304e15ef0191ae97f9";

    fn phase1(extra: &[(&str, &str)], name: &str) -> GetServerCert {
        let mut pairs = vec![
            ("uniqueid".to_owned(), "0123456789ABCDEF".to_owned()),
            ("devicename".to_owned(), name.to_owned()),
            ("phrase".to_owned(), "getservercert".to_owned()),
            ("salt".to_owned(), SALT.to_owned()),
            ("clientcert".to_owned(), hex::encode(CLIENT_CRT)),
        ];
        pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        match PairQuery::parse(pairs).unwrap().request {
            PairRequest::GetServerCert(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_stock_name_is_replaced_by_the_address_and_a_real_one_kept() {
        let peer: SocketAddr = "192.168.1.20:50000".parse().unwrap();
        let stock = Knock::of(&phase1(&[], "roth"), peer);
        assert_eq!(stock.request.name.as_str(), "Moonlight on 192.168.1.20");
        let named = Knock::of(&phase1(&[], "Steam Deck"), peer);
        assert_eq!(named.request.name.as_str(), "Steam Deck");
        assert_eq!(named.request.needs, Needs::Pin);
        assert_eq!(named.request.kind, FrontDoor::Gamestream);
        let mapped: SocketAddr = "[::ffff:10.0.0.9]:1".parse().unwrap();
        assert_eq!(
            Knock::of(&phase1(&[], "roth"), mapped)
                .request
                .name
                .as_str(),
            "Moonlight on 10.0.0.9"
        );
    }

    #[test]
    fn otpauth_makes_a_one_time_pin_knock_admitted_via_otp() {
        let peer: SocketAddr = "10.0.0.2:1".parse().unwrap();
        let typed = Knock::of(&phase1(&[], "tv"), peer);
        assert!(typed.otp.is_none());
        assert_eq!(typed.via, Via::Pin);
        let otpauth = "ab".repeat(32);
        let otp = Knock::of(&phase1(&[("otpauth", &otpauth)], "tv"), peer);
        let proof = otp.otp.expect("a proof");
        assert_eq!(proof.otpauth, [0xab; 32]);
        assert_eq!(proof.salt_text, SALT);
        assert_eq!(otp.via, Via::Otp);
    }

    #[test]
    fn refusals_and_ends_map_to_the_answers_moonlight_shows() {
        let busy = [
            GateError::TooManyPending,
            GateError::WaitingElsewhere,
            GateError::Storing,
            GateError::Blocked(punktfunk_certs::AddressKey::of([10, 0, 0, 1].into())),
        ];
        for e in busy {
            let refusal = Refusal::from(e);
            assert!(matches!(PairError::refused(refusal), PairError::Busy));
        }
        assert!(matches!(
            PairError::refused(Refusal::NoOneTimePin(OtpError::NotAvailable)),
            PairError::OtpNotAvailable
        ));
        assert!(matches!(
            PairError::refused(Refusal::Fault(GateError::UnknownRequest)),
            PairError::Host(_)
        ));
        let ends = [
            (Some(RequestEnd::Denied), 403),
            (Some(RequestEnd::Expired), 408),
            (None, 408),
            (Some(RequestEnd::Replaced), 409),
            (Some(RequestEnd::Abandoned), 400),
        ];
        for (end, status) in ends {
            let reply = PairError::ended(end).reply();
            assert_eq!(reply.status_code(), status, "{end:?}");
        }
    }

    #[test]
    fn only_a_rejected_pin_and_the_moonlight_bug_are_recorded_as_such() {
        let fp = punktfunk_certs::Fingerprint::of_der(b"x");
        assert!(PairingEnd::Paired(fp).pin_failure().is_none());
        assert!(matches!(
            PairingEnd::PinRejected(Rejection::HashMismatch).pin_failure(),
            Some(PinFailure::Rejected { why, .. }) if why.contains("wrong PIN")
        ));
        assert!(matches!(
            PairingEnd::MoonlightQtBug(Rejection::HashMismatch).pin_failure(),
            Some(PinFailure::ClientBug { detail }) if detail.contains("press Pair in Moonlight again")
        ));
        for end in [PairingEnd::Failed, PairingEnd::Abandoned] {
            assert!(matches!(end.pin_failure(), Some(PinFailure::Abandoned)));
        }
    }
}
