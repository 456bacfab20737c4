//! Knocking: how a door lists a device that asks to be let in, for a
//! person to approve (native) or to type its PIN for (GameStream), and how
//! the request ends. Both doors get the same [`Refusal`] and map it to
//! their wire answers; neither touches the gate itself.

use std::time::Instant;

use rand::rngs::OsRng;

use crate::audit::{Event, Outcome};
use crate::gate::{
    GateError, OtpCheck, OtpRequestError, Pending, PendingId, PendingRequest, RequestEnd,
};
use crate::otp::OtpError;
use crate::registry::Via;
use crate::trust::Trust;

/// The proof of an Apollo one-time PIN a Moonlight request came with
/// (`otpauth`, over its `salt` as sent).
#[derive(Debug, Clone)]
pub struct OtpProof {
    /// SHA-256 over the PIN, the salt text and the passphrase.
    pub otpauth: [u8; 32],
    /// The `salt` parameter exactly as the client sent it.
    pub salt_text: String,
}

/// How a request whose PIN was entered ended without pairing, as its door
/// tells it: recorded by [`Trust::pin_failed`].
#[derive(Debug, Clone, Copy)]
pub enum PinFailure<'a> {
    /// The exchange did not prove the PIN: `why`, in the words for a PIN
    /// that may have been wrong, and `after_right_pin`, for one that was
    /// right (a matched one-time PIN).
    Rejected {
        /// What went wrong, when the PIN may have been wrong.
        why: &'a str,
        /// What went wrong, when the PIN is known to have been right.
        after_right_pin: &'a str,
    },
    /// Not a wrong PIN: a client's own bug (`detail` says what to do).
    ClientBug {
        /// What to tell the owner.
        detail: &'a str,
    },
    /// It ended otherwise (the client went away, a host fault): nothing to
    /// record beyond the request's end.
    Abandoned,
}

/// Why a knock was not listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No room for it now, or not from there: the waiting list is full (in
    /// all or for its address), its certificate waits from another address
    /// or is being stored, or the console blocked the address. The client
    /// may ask again later; a door answers "busy".
    #[error(transparent)]
    Busy(GateError),
    /// It came with a one-time PIN's proof, and no one-time PIN can take it.
    #[error(transparent)]
    NoOneTimePin(OtpError),
    /// The host could not list it (a fault, not the client's doing).
    #[error("the host could not record the request: {0}")]
    Fault(GateError),
}

impl From<GateError> for Refusal {
    fn from(e: GateError) -> Self {
        match e {
            GateError::TooManyPending
            | GateError::TooManyFromAddress(_)
            | GateError::WaitingElsewhere
            | GateError::Storing
            | GateError::Blocked(_) => Refusal::Busy(e),
            e => Refusal::Fault(e),
        }
    }
}

impl Trust {
    /// Lists `request` as waiting: for approval, or (GameStream) for the
    /// PIN the console types. With `otp`, the one-time PIN's proof is
    /// checked in the same step and the request gets its PIN at once (a
    /// random one on a mismatch, so the pairing fails later, as on Apollo).
    /// The same certificate asking again from the same address replaces its
    /// earlier request. Subscribe ([`Trust::subscribe`]) before knocking to
    /// miss nothing about the request.
    pub fn knock(
        &self,
        request: PendingRequest,
        otp: Option<&OtpProof>,
    ) -> Result<PendingId, Refusal> {
        let now = self.now();
        let mut gate = self.gate();
        match otp {
            None => gate.add_pending(request, now).map_err(Refusal::from),
            Some(proof) => gate
                .add_otp_request(request, &proof.otpauth, &proof.salt_text, now, &mut OsRng)
                .map_err(|e| match e {
                    OtpRequestError::Gate(e) => e.into(),
                    OtpRequestError::Otp(e) => Refusal::NoOneTimePin(e),
                }),
        }
    }

    /// Ends request `id` as `outcome` (the door's side: abandoned,
    /// replaced, timed out, failed). The request as it was, if it was
    /// still waiting.
    pub fn end_request(&self, id: PendingId, outcome: RequestEnd) -> Option<Pending> {
        self.gate().finish(id, outcome)
    }

    /// Ends request `id`, whose PIN was entered, as `failure` says, with its
    /// audit entry: `pin_rejected` (for a one-time PIN: whether the PIN and
    /// passphrase were wrong, or right and the failure came later) or
    /// `moonlight_bug`.
    pub(crate) fn pin_failed(&self, id: PendingId, failure: PinFailure<'_>) {
        let end = match failure {
            PinFailure::Rejected { .. } => RequestEnd::PinRejected,
            PinFailure::ClientBug { .. } => RequestEnd::MoonlightQtBug,
            PinFailure::Abandoned => RequestEnd::Abandoned,
        };
        let Some(pending) = self.end_request(id, end) else {
            return;
        };
        let entry = match failure {
            PinFailure::Rejected {
                why,
                after_right_pin,
            } => {
                let entry = pending.audit_entry(Event::PinRejected);
                // A request whose `otpauth` did not match paired with a
                // random PIN, so its failure says nothing about what the
                // client did after: what went wrong is the one-time PIN or
                // the passphrase (`otpauth` covers both and cannot tell
                // which). One that matched had the right PIN: the failure
                // came later, so do not point at the PIN.
                match pending.otp {
                    None => entry.detail(why),
                    Some(OtpCheck::Matched) => entry.via(Via::Otp).detail(format!(
                        "the one-time PIN and passphrase were right, then pairing failed: {after_right_pin}"
                    )),
                    Some(OtpCheck::Mismatched) => entry
                        .via(Via::Otp)
                        .detail("wrong one-time PIN or passphrase"),
                }
            }
            PinFailure::ClientBug { detail } => {
                pending.audit_entry(Event::MoonlightBug).detail(detail)
            }
            PinFailure::Abandoned => return,
        };
        let _ = self.record(entry.outcome(Outcome::Failed));
    }

    /// Request `id` ends at `until` (as `expired`, by [`Trust::run_expiry`])
    /// unless it ends otherwise first: a door's deadline for the client's
    /// next step, so that the door needs no timer of its own. `false` if it
    /// no longer waits.
    pub fn keep_request_until(&self, id: PendingId, until: Instant) -> bool {
        self.gate().keep_until(id, until)
    }

    /// How request `id` ended, if it did (and is still remembered).
    pub fn request_ended(&self, id: PendingId) -> Option<RequestEnd> {
        self.gate().outcome(id)
    }

    /// Whether request `id` still waits (not denied, expired or replaced).
    pub fn is_waiting(&self, id: PendingId) -> bool {
        let now = self.now();
        self.gate().get_pending(id, now).is_some()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::gate::{GateConfig, Needs};
    use crate::identity::Identity;
    use crate::name::DisplayName;
    use crate::registry::FrontDoor;
    use crate::trust::{Actor, SystemClock};

    fn request(kind: FrontDoor, needs: Needs, from: [u8; 4]) -> PendingRequest {
        let id = Identity::generate_p256("knock").unwrap();
        PendingRequest {
            kind,
            name: DisplayName::sanitize_or("knock", "knock"),
            cert_der: id.cert_der().to_vec(),
            address: (from, 4000).into(),
            needs,
        }
    }

    fn trust(dir: &std::path::Path, config: GateConfig) -> Trust {
        Trust::open(dir, config, Arc::new(SystemClock)).unwrap()
    }

    #[test]
    fn a_full_list_and_a_blocked_address_are_busy_for_both_doors() {
        let dir = tempfile::tempdir().unwrap();
        let config = GateConfig {
            max_pending_per_address: 1,
            ..GateConfig::default()
        };
        let trust = trust(dir.path(), config);
        let first = trust
            .knock(
                request(FrontDoor::Native, Needs::Approval, [10, 0, 0, 1]),
                None,
            )
            .unwrap();
        assert!(trust.is_waiting(first));
        let full = trust.knock(
            request(FrontDoor::Gamestream, Needs::Pin, [10, 0, 0, 1]),
            None,
        );
        assert!(matches!(
            full,
            Err(Refusal::Busy(GateError::TooManyFromAddress(_)))
        ));
        trust.block([10, 0, 0, 2].into(), Actor::cli()).unwrap();
        let blocked = trust.knock(
            request(FrontDoor::Native, Needs::Approval, [10, 0, 0, 2]),
            None,
        );
        assert!(matches!(blocked, Err(Refusal::Busy(GateError::Blocked(_)))));
    }

    #[test]
    fn a_proof_without_a_one_time_pin_is_refused_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let trust = trust(dir.path(), GateConfig::default());
        let proof = OtpProof {
            otpauth: [0; 32],
            salt_text: "00".repeat(16),
        };
        let refused = trust.knock(
            request(FrontDoor::Gamestream, Needs::Pin, [10, 0, 0, 3]),
            Some(&proof),
        );
        assert_eq!(refused, Err(Refusal::NoOneTimePin(OtpError::NotAvailable)));
    }

    #[test]
    fn a_request_ends_once_and_remembers_how() {
        let dir = tempfile::tempdir().unwrap();
        let trust = trust(dir.path(), GateConfig::default());
        let id = trust
            .knock(
                request(FrontDoor::Gamestream, Needs::Pin, [10, 0, 0, 4]),
                None,
            )
            .unwrap();
        let trust = Arc::new(trust);
        assert!(trust.collect_pin(id).is_none(), "no PIN entered yet");
        assert!(trust.end_request(id, RequestEnd::Abandoned).is_some());
        assert!(trust.end_request(id, RequestEnd::Replaced).is_none());
        assert!(!trust.is_waiting(id));
        assert_eq!(trust.request_ended(id), Some(RequestEnd::Abandoned));
    }

    #[test]
    fn a_moonlight_request_pairs_through_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let trust = Arc::new(trust(dir.path(), GateConfig::default()));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let moonlight = request(FrontDoor::Gamestream, Needs::Pin, [10, 0, 0, 5]);
        let der = moonlight.cert_der.clone();
        let id = trust.knock(moonlight, None).unwrap();
        // The console types the PIN Moonlight shows; the door collects it.
        let _ = trust
            .enter_pin(id, "1234".parse().unwrap(), None, Actor::cli())
            .unwrap();
        let collected = trust.collect_pin(id).unwrap();
        assert_eq!(collected.pin().as_str(), "1234");
        assert!(trust.collect_pin(id).is_none(), "collected once");
        rt.block_on(collected.store(der.clone(), crate::registry::Via::Pin))
            .unwrap();
        assert_eq!(trust.request_ended(id), Some(RequestEnd::Paired));
        let fp = crate::fingerprint::Fingerprint::of_der(&der);
        assert!(trust.authorize(FrontDoor::Gamestream, &fp).is_ok());
        assert!(trust.authorize(FrontDoor::Native, &fp).is_err());
    }

    #[test]
    fn a_knock_approved_in_the_console_is_a_device_of_its_door() {
        let dir = tempfile::tempdir().unwrap();
        let trust = trust(dir.path(), GateConfig::default());
        let app = request(FrontDoor::Native, Needs::Approval, [10, 0, 0, 6]);
        let fp = crate::fingerprint::Fingerprint::of_der(&app.cert_der);
        let id = trust.knock(app, None).unwrap();
        let device = trust.approve(id, None, Actor::cli()).unwrap();
        assert_eq!(device.fingerprint, fp);
        assert_eq!(trust.request_ended(id), Some(RequestEnd::Approved));
        assert!(trust.authorize(FrontDoor::Native, &fp).is_ok());
    }

    #[test]
    fn a_failed_pin_is_recorded_in_the_words_its_one_time_pin_calls_for() {
        use crate::audit::{read, Query};
        let dir = tempfile::tempdir().unwrap();
        let trust = trust(dir.path(), GateConfig::default());
        let details = |trust: &Trust| -> Vec<(Event, Option<String>)> {
            trust.audited().durable_blocking().unwrap();
            let page = read(
                trust.audit_dir(),
                &Query {
                    limit: 50,
                    ..Query::default()
                },
            )
            .unwrap();
            page.events
                .iter()
                .filter(|r| matches!(r.entry.event, Event::PinRejected | Event::MoonlightBug))
                .map(|r| (r.entry.event, r.entry.detail.clone()))
                .collect()
        };
        let rejected = PinFailure::Rejected {
            why: "wrong PIN",
            after_right_pin: "the client gave up",
        };
        // A typed PIN.
        let id = trust
            .knock(
                request(FrontDoor::Gamestream, Needs::Pin, [10, 0, 1, 1]),
                None,
            )
            .unwrap();
        trust.pin_failed(id, rejected);
        assert_eq!(trust.request_ended(id), Some(RequestEnd::PinRejected));
        // A one-time PIN whose proof did not match.
        let passphrase = crate::otp::Passphrase::parse("correct horse battery").unwrap();
        let _ = trust.create_otp(passphrase, None, Actor::cli(), &mut OsRng);
        let proof = OtpProof {
            otpauth: [7; 32],
            salt_text: "00".repeat(16),
        };
        let id = trust
            .knock(
                request(FrontDoor::Gamestream, Needs::Pin, [10, 0, 1, 2]),
                Some(&proof),
            )
            .unwrap();
        trust.pin_failed(id, rejected);
        // moonlight-qt's bug; and an attempt abandoned records nothing.
        let id = trust
            .knock(
                request(FrontDoor::Gamestream, Needs::Pin, [10, 0, 1, 3]),
                None,
            )
            .unwrap();
        trust.pin_failed(
            id,
            PinFailure::ClientBug {
                detail: "press Pair again",
            },
        );
        assert_eq!(trust.request_ended(id), Some(RequestEnd::MoonlightQtBug));
        let id = trust
            .knock(
                request(FrontDoor::Gamestream, Needs::Pin, [10, 0, 1, 4]),
                None,
            )
            .unwrap();
        trust.pin_failed(id, PinFailure::Abandoned);
        assert_eq!(trust.request_ended(id), Some(RequestEnd::Abandoned));
        trust.pin_failed(id, rejected);
        assert_eq!(
            trust.request_ended(id),
            Some(RequestEnd::Abandoned),
            "ended once"
        );

        let mut got = details(&trust);
        got.reverse();
        assert_eq!(
            got,
            [
                (Event::PinRejected, Some("wrong PIN".to_owned())),
                (
                    Event::PinRejected,
                    Some("wrong one-time PIN or passphrase".to_owned())
                ),
                (Event::MoonlightBug, Some("press Pair again".to_owned())),
            ]
        );
    }

    #[test]
    fn a_door_deadline_moves_the_request_s_end_and_the_timer_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let trust = Arc::new(trust(dir.path(), GateConfig::default()));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::spawn(trust.clone().run_expiry());
            let mut events = trust.subscribe();
            let id = trust
                .knock(
                    request(FrontDoor::Gamestream, Needs::Pin, [10, 0, 2, 1]),
                    None,
                )
                .unwrap();
            // Five minutes to wait for its PIN; its door then gives the
            // client 300 ms for its next step.
            let until = trust.now() + std::time::Duration::from_millis(300);
            assert!(trust.keep_request_until(id, until));
            assert_eq!(trust.view().request(id).map(|p| p.expires), Some(until));
            let ended = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                trust.request_outcome(&mut events, id),
            )
            .await
            .expect("ended by the one timer at the door's deadline");
            assert_eq!(ended, Some(RequestEnd::Expired));
            assert!(!trust.keep_request_until(id, until), "no longer waits");
        });
    }
}
