//! The `/pair` shell: carries out the core's calling contract (crate docs,
//! "Calling contract") against the shared trust service.
//!
//! - Phase 1 registers a pending request in the gate (kind `gamestream`,
//!   needs `pin`) and holds the HTTP response until the console enters the
//!   PIN for *that* request, denies it, it expires, a newer phase 1 from the
//!   same client replaces it, or the client goes away (the handler future is
//!   dropped; [`Held`] then ends the request as `abandoned`).
//! - Which attempt a request belongs to, who wins when a client asks again
//!   and how many may be in flight are [`crate::attempts`]' rules; this
//!   shell ends in the trust service the requests those rules hand back.
//! - A phase 1 carrying `otpauth` (Apollo/Artemis one-time PINs,
//!   `punktfunk_certs::otp`) uses up the active one-time PIN: on a match
//!   its PIN is entered for the request at once, with no console step, and
//!   the device is stored as admitted `via: otp`; on a mismatch a random PIN
//!   is entered instead, so the pairing fails later as it does on Apollo
//!   (`nvhttp.cpp`: "Always return positive, attackers will fail in the
//!   next steps"); with none active the answer is Apollo's 503 "OTP auth not
//!   available.".
//! - Phase 4's device is stored durably, and the gate's request finished as
//!   `paired`, under one gate lock, before `paired=1` is sent; the console's
//!   PIN entry learns the real outcome from that.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use punktfunk_certs::{
    DisplayName, FrontDoor, GateError, Label, Needs, OtpProof, PendingId, PendingRequest,
    PinFailure, Refusal, RequestEnd, RequestUpdate, StoreError, TrustError, TrustEvent, Via,
};
use rand::rngs::OsRng;
use tokio::sync::broadcast;

use super::State;
use crate::attempts::{Attempts, Key, Tracked};
use crate::xml::{self, Channel};
use crate::{
    Effect, GetServerCert, HostFault, NewDevice, PairError, PairQuery, PairRequest, PairingEnd,
    PairingSession, Reply, UniqueId,
};

/// Most pairing attempts tracked at once: as many as the gate's waiting
/// list holds (`GateConfig::max_pending`), so a flood from a few addresses,
/// which the gate caps per address, cannot fill this map and keep out a
/// Moonlight at another address.
pub const MAX_SESSIONS: usize = 256;

/// Longest a `getservercert` is held, whatever happens; the gate expires the
/// pending request long before (`GateConfig::pending_ttl`).
const MAX_HOLD: Duration = Duration::from_secs(15 * 60);

/// What every moonlight-qt and moonlight-embedded client sends as
/// `devicename` (`nvpairingmanager.cpp`, `libgamestream/client.c`).
const STOCK_NAME: &str = "roth";

/// The audit detail of [`PairingEnd::MoonlightQtBug`].
const MOONLIGHT_QT_BUG: &str =
    "this attempt hit a known Moonlight bug, so the PIN was probably right: \
moonlight-qt derives a wrong key when SHA-256(salt + PIN) has a zero byte in its first 15 bytes \
(about 1 attempt in 18); press Pair in Moonlight again and enter the new PIN it shows";

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

fn key(unique_id: UniqueId, peer: SocketAddr) -> Key {
    (unique_id, peer.ip().to_canonical())
}

/// One attempt: the core's session plus the shell's bookkeeping.
#[derive(Debug)]
struct InFlight {
    pending: PendingId,
    /// The console's label for the device, known once the PIN is entered.
    label: Option<Label>,
    /// How the device will have been admitted: `pin`, or `otp`.
    via: Via,
    session: PairingSession,
}

impl Tracked for InFlight {
    fn request(&self) -> PendingId {
        self.pending
    }

    fn is_expired(&self, now: Instant) -> bool {
        self.session.is_expired(now)
    }
}

/// The attempts in flight ([`Attempts`], the rules across requests),
/// shared by the handlers. Never locked together with the gate.
#[derive(Debug)]
pub(super) struct InFlightPairings(Mutex<Attempts<InFlight>>);

impl Default for InFlightPairings {
    fn default() -> Self {
        Self(Mutex::new(Attempts::new(MAX_SESSIONS)))
    }
}

impl InFlightPairings {
    fn lock(&self) -> MutexGuard<'_, Attempts<InFlight>> {
        // Plain map updates; a panic elsewhere cannot leave it half-changed.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many attempts are in flight.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// A held `getservercert`. Dropped while armed (the client went away, or
/// the handler gave up), it ends the pending request as `abandoned` and
/// forgets the attempt.
struct Held<'a> {
    state: &'a State,
    key: Key,
    id: PendingId,
    armed: bool,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.state.sessions.lock().take_if(&self.key, self.id);
            // A no-op if the request already ended some other way.
            if self
                .state
                .trust
                .end_request(self.id, RequestEnd::Abandoned)
                .is_some()
            {
                tracing::info!(request = %self.id, "gamestream: pairing request abandoned");
            }
        }
    }
}

/// How waiting for the PIN ended.
enum Wait {
    Pin,
    Ended(Option<RequestEnd>),
    TimedOut,
    ShuttingDown,
}

/// The answer to a client whose request ended without its PIN.
fn ended(outcome: Option<RequestEnd>) -> PairError {
    match outcome {
        Some(RequestEnd::Denied) => PairError::Declined,
        Some(RequestEnd::Expired) | None => PairError::PinTimeout,
        Some(RequestEnd::Replaced) => PairError::Superseded,
        Some(_) => PairError::Cancelled,
    }
}

/// The answer to a phase 1 the trust service would not list.
fn refused(peer: SocketAddr, refusal: Refusal) -> Reply {
    match refusal {
        Refusal::Busy(GateError::TooManyPending | GateError::TooManyFromAddress(_)) => {
            tracing::info!(%peer, "gamestream: pairing request refused: waiting list full");
        }
        // A certificate is public: the same one waiting from another
        // address must not be replaced (it would kick out the victim).
        Refusal::Busy(GateError::WaitingElsewhere) => {
            tracing::warn!(%peer, "gamestream: pairing request refused: its certificate waits from another address");
        }
        // The console blocked this address for now.
        Refusal::Busy(GateError::Blocked(address)) => {
            tracing::info!(%address, "gamestream: pairing request refused: the address is blocked");
        }
        // Its previous attempt is storing the device this moment.
        Refusal::Busy(_) => {}
        Refusal::NoOneTimePin(e) => {
            tracing::info!(%peer, "gamestream: otpauth refused: {e}");
            return PairError::OtpNotAvailable.reply();
        }
        Refusal::Fault(e) => return PairError::Host(e.into()).reply(),
    }
    PairError::Busy.reply()
}

impl State {
    /// `/pair` on either port (over HTTPS only once the certificate passed).
    pub(super) async fn pair(
        &self,
        channel: Channel,
        peer: SocketAddr,
        pairs: Vec<(String, String)>,
        connection: &super::Held,
    ) -> Reply {
        let query = match PairQuery::parse(pairs) {
            Ok(q) => q,
            Err(e) => {
                // Any error ends the attempt (Sunshine `fail_pair`).
                if let Some(unique_id) = &e.unique_id {
                    self.end(&key(unique_id.clone(), peer), PairingEnd::Failed);
                }
                return Reply::from(&e);
            }
        };
        let key = key(query.unique_id.clone(), peer);
        let reply = match query.request {
            PairRequest::GetServerCert(request) => {
                let _waiting = connection.waiting();
                self.get_server_cert(key, peer, query.unique_id, request)
                    .await
            }
            PairRequest::PairChallenge => xml::pair_challenge(channel),
            request => self.step(key, request).await,
        };
        // What this step decided (waiting, paired, pin_rejected, …) is in
        // the audit trail before the client hears of it.
        self.audited().await;
        reply
    }

    /// Waits until every audit entry queued so far is on disk.
    pub(super) async fn audited(&self) {
        if let Err(e) = self.trust.audited().durable().await {
            tracing::error!("gamestream: {e}");
        }
    }

    /// `/unpair`: the client gave up. Ends its attempt, if any; a wrong PIN
    /// shows up here (moonlight-qt `nvpairingmanager.cpp` unpairs after its
    /// own check of phase 3 fails).
    pub(super) fn cancel_by_client(&self, peer: SocketAddr, query: &[(String, String)]) {
        let unique_id = query
            .iter()
            .find(|(k, _)| k == "uniqueid")
            .and_then(|(_, v)| UniqueId::parse(v).ok());
        if let Some(unique_id) = unique_id {
            let taken = self.sessions.lock().take(&key(unique_id, peer));
            if let Some(attempt) = taken {
                let outcome = attempt.session.cancelled_by_client();
                self.finish(attempt.pending, outcome);
            }
        }
    }

    /// Ends the requests of attempts whose clients stopped between phases.
    fn give_up(&self, given_up: Vec<InFlight>) {
        for attempt in given_up {
            tracing::info!(request = %attempt.pending, "gamestream: pairing attempt timed out");
            self.finish(attempt.pending, PairingEnd::Abandoned);
        }
    }

    /// Phase 1: register, hold until the PIN, answer with the host certificate.
    async fn get_server_cert(
        &self,
        key: Key,
        peer: SocketAddr,
        unique_id: UniqueId,
        request: GetServerCert,
    ) -> Reply {
        if !self.has_room_for(&key) {
            return PairError::Busy.reply();
        }
        let pending = PendingRequest {
            kind: FrontDoor::Gamestream,
            name: shown_name(request.device_name.as_ref(), peer.ip()),
            cert_der: request.client_cert.der().to_vec(),
            address: peer,
            needs: Needs::Pin,
        };
        // What a one-time PIN's proof needs, before the core takes the
        // request. With it, the knock uses up the one-time PIN and enters a
        // PIN for the request: the wait below ends at once.
        let otp = request.otpauth.map(|otpauth| OtpProof {
            otpauth,
            salt_text: request.salt_text.clone(),
        });
        let session = PairingSession::start(unique_id, request);
        // Subscribe before the request exists, so no event about it is missed.
        let mut events = self.trust.subscribe();
        let id = match self.trust.knock(pending, otp.as_ref()) {
            Ok(id) => id,
            Err(refusal) => return refused(peer, refusal),
        };
        tracing::info!(request = %id, %peer, "gamestream: pairing request waits for its PIN");
        let via = if otp.is_some() { Via::Otp } else { Via::Pin };
        let mut held = self.hold(key.clone(), id, via, session);
        match self.answer_when_pin(&key, &mut events, id).await {
            Ok(reply) => {
                held.armed = false;
                reply
            }
            // `held` ends the request and forgets the attempt.
            Err(e) => e.reply(),
        }
    }

    /// Whether a new attempt from `key` fits, after ending the attempts
    /// whose clients stopped between phases.
    fn has_room_for(&self, key: &Key) -> bool {
        let (room, given_up) = self.sessions.lock().admit(key, self.trust.now());
        self.give_up(given_up);
        room.is_ok()
    }

    /// Keeps the attempt of request `id` for its next phases; a previous
    /// attempt of the same client is replaced (its held handler, if any,
    /// answers `Superseded`). The returned guard ends the request if the
    /// handler goes away before the PIN.
    fn hold(&self, key: Key, id: PendingId, via: Via, session: PairingSession) -> Held<'_> {
        let attempt = InFlight {
            pending: id,
            label: None,
            via,
            session,
        };
        let replaced = self.sessions.lock().begin(key.clone(), attempt);
        if let Some(old) = replaced {
            self.trust.end_request(old.pending, RequestEnd::Replaced);
        }
        Held {
            state: self,
            key,
            id,
            armed: true,
        }
    }

    /// Waits for the PIN of request `id`, then answers phase 1 with it.
    async fn answer_when_pin(
        &self,
        key: &Key,
        events: &mut broadcast::Receiver<TrustEvent>,
        id: PendingId,
    ) -> Result<Reply, PairError> {
        match self.wait_for_pin(events, id).await {
            Wait::Pin => self.pin_entered(key, id),
            Wait::Ended(outcome) => Err(ended(outcome)),
            Wait::TimedOut => {
                self.trust.end_request(id, RequestEnd::Expired);
                Err(PairError::PinTimeout)
            }
            Wait::ShuttingDown => Err(PairError::ShuttingDown),
        }
    }

    async fn wait_for_pin(
        &self,
        events: &mut broadcast::Receiver<TrustEvent>,
        id: PendingId,
    ) -> Wait {
        let mut shutdown = self.shutdown.clone();
        let stop = async move {
            // A dropped sender is not a stop request.
            if shutdown.wait_for(|stop| *stop).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let deadline = tokio::time::sleep(MAX_HOLD);
        tokio::pin!(stop, deadline);
        tokio::select! {
            update = self.trust.request_update(events, id) => match update {
                RequestUpdate::PinEntered => Wait::Pin,
                RequestUpdate::Ended(outcome) => Wait::Ended(outcome),
            },
            () = &mut stop => Wait::ShuttingDown,
            () = &mut deadline => Wait::TimedOut,
        }
    }

    /// The console entered the PIN for request `id`: answer phase 1.
    fn pin_entered(&self, key: &Key, id: PendingId) -> Result<Reply, PairError> {
        let now = self.trust.now();
        let Some((pin, label)) = self.trust.collect_pin(id) else {
            return Err(ended(self.trust.request_ended(id)));
        };
        let taken = self.sessions.lock().take_if(key, id);
        let Some(attempt) = taken else {
            return Err(ended(self.trust.request_ended(id)));
        };
        let step = attempt
            .session
            .pin_entered(&pin, &self.host.identity, now)?;
        if let Some(session) = step.session {
            self.keep(
                key.clone(),
                InFlight {
                    pending: id,
                    label,
                    via: attempt.via,
                    session,
                },
            );
        }
        Ok(step.reply)
    }

    /// Phases 2–4.
    async fn step(&self, key: Key, request: PairRequest) -> Reply {
        let Some(InFlight {
            pending,
            label,
            via,
            session,
        }) = self.sessions.lock().take(&key)
        else {
            return PairError::NoSession.reply();
        };
        let now = self.trust.now();
        // Denied or expired in the console meanwhile: the attempt is over.
        if !self.trust.is_waiting(pending) {
            return ended(self.trust.request_ended(pending)).reply();
        }
        let step = match session.step(request, &self.host.identity, &mut OsRng, now) {
            Ok(step) => step,
            Err(e) => {
                tracing::info!(request = %pending, "gamestream: pairing failed: {e}");
                self.finish(pending, e.outcome());
                return e.reply();
            }
        };
        for effect in step.effects {
            match effect {
                Effect::StoreDevice(device) => {
                    if let Err(e) = self.store(pending, device, label.clone(), via).await {
                        tracing::warn!(request = %pending, "gamestream: device not stored: {e}");
                        self.finish(pending, PairingEnd::Failed);
                        return e.reply();
                    }
                }
                // `store` already finished the request as paired.
                Effect::Finished(PairingEnd::Paired(fp)) => {
                    tracing::info!(request = %pending, fingerprint = %fp.short(), "gamestream: device paired");
                }
                Effect::Finished(outcome) => {
                    tracing::info!(request = %pending, outcome = outcome.as_str(), "gamestream: pairing ended");
                    self.finish(pending, outcome);
                }
            }
        }
        if let Some(session) = step.session {
            self.keep(
                key,
                InFlight {
                    pending,
                    label,
                    via,
                    session,
                },
            );
        }
        step.reply
    }

    /// Stores a verified device durably, then finishes its request as
    /// `paired`: `Trust::pair_request`, the one admission transaction,
    /// which keeps a deny or expiry from coming between the two without
    /// holding the gate across the write.
    async fn store(
        &self,
        id: PendingId,
        device: NewDevice,
        label: Option<Label>,
        via: Via,
    ) -> Result<(), PairError> {
        let der = device.cert_der().to_vec();
        match self.trust.pair_request(id, der, label, via).await {
            Ok(()) => Ok(()),
            Err(StoreError::Trust(TrustError::Gate(GateError::UnknownRequest))) => {
                Err(ended(self.trust.request_ended(id)))
            }
            Err(StoreError::Trust(TrustError::Gate(e))) => Err(PairError::Host(e.into())),
            Err(StoreError::Trust(TrustError::Registry(e)) | StoreError::Registry(e)) => {
                Err(PairError::Host(e.into()))
            }
            Err(StoreError::Trust(TrustError::Audit(e))) => Err(PairError::Host(e.into())),
            Err(StoreError::Task(e)) => Err(PairError::Host(HostFault::Task(e))),
        }
    }

    /// Puts an attempt back for its next phase, unless a newer phase 1 from
    /// the same client took its place meanwhile; its request ends at the
    /// phase's deadline (by the trust service's timer) if the client does
    /// not come back.
    fn keep(&self, key: Key, attempt: InFlight) {
        let (id, deadline) = (attempt.pending, attempt.session.deadline());
        let lost = self.sessions.lock().put_back(key, attempt);
        match (lost, deadline) {
            (Some(lost), _) => {
                self.trust.end_request(lost.pending, RequestEnd::Replaced);
            }
            (None, Some(until)) => {
                self.trust.keep_request_until(id, until);
            }
            (None, None) => {}
        }
    }

    fn end(&self, key: &Key, outcome: PairingEnd) {
        let taken = self.sessions.lock().take(key);
        if let Some(attempt) = taken {
            self.finish(attempt.pending, outcome);
        }
    }

    fn finish(&self, id: PendingId, outcome: PairingEnd) {
        let why;
        let failure = match outcome {
            PairingEnd::Paired(_) => {
                self.trust.end_request(id, RequestEnd::Paired);
                return;
            }
            PairingEnd::PinRejected(rejection) => {
                why = rejection.to_string();
                PinFailure::Rejected {
                    why: &why,
                    after_right_pin: rejection.after_right_pin(),
                }
            }
            PairingEnd::MoonlightQtBug(_) => PinFailure::ClientBug {
                detail: MOONLIGHT_QT_BUG,
            },
            PairingEnd::Failed | PairingEnd::Abandoned => PinFailure::Abandoned,
        };
        self.trust.pin_failed(id, failure);
    }
}
