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
//! - What phase 1 asks of the trust service (a typed or a one-time PIN,
//!   Apollo/Artemis `otpauth`), and how the trust service's answers become
//!   GameStream answers, are [`crate::Knock`] and [`PairError::refused`] /
//!   [`PairError::ended`]; the PIN the console typed is a
//!   [`CollectedPin`] held with the attempt, which reports how the request
//!   ends (dropped unreported: `abandoned`).
//! - Phase 4's device is stored durably, and the gate's request finished as
//!   `paired`, under one gate lock, before `paired=1` is sent; the console's
//!   PIN entry learns the real outcome from that.

use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use punktfunk_certs::{
    CollectedPin, GateError, PendingId, Refusal, RequestEnd, RequestUpdate, StoreError, TrustError,
    TrustEvent, Via,
};
use rand::rngs::OsRng;
use tokio::sync::broadcast;

use super::State;
use crate::attempts::{Attempts, Key, Tracked};
use crate::xml::{self, Channel};
use crate::{
    Effect, GetServerCert, HostFault, Knock, NewDevice, PairError, PairQuery, PairRequest,
    PairingEnd, PairingSession, Reply, UniqueId, MAX_HOLD,
};

/// Most pairing attempts tracked at once: as many as the gate's waiting
/// list holds (`GateConfig::max_pending`), so a flood from a few addresses,
/// which the gate caps per address, cannot fill this map and keep out a
/// Moonlight at another address.
pub const MAX_SESSIONS: usize = 256;

fn key(unique_id: UniqueId, peer: SocketAddr) -> Key {
    (unique_id, peer.ip().to_canonical())
}

/// One attempt: the core's session plus the shell's bookkeeping.
#[derive(Debug)]
struct InFlight {
    pending: PendingId,
    /// How the device will have been admitted: `pin`, or `otp`.
    via: Via,
    session: PairingSession,
    /// The PIN the console entered, once collected: it reports how the
    /// request ends (dropped unreported: `abandoned`).
    pin: Option<CollectedPin>,
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
            // Dropped after the map's lock: a collected PIN reports to the
            // trust service when dropped.
            let taken = self.state.sessions.lock().take_if(&self.key, self.id);
            drop(taken);
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

/// The answer to a phase 1 the trust service would not list.
fn refused(peer: SocketAddr, refusal: Refusal) -> Reply {
    match &refusal {
        Refusal::Busy(GateError::TooManyPending | GateError::TooManyFromAddress(_)) => {
            tracing::info!(%peer, "gamestream: pairing request refused: waiting list full");
        }
        // A certificate is public: the same one waiting from another
        // address must not be replaced (it would kick out the victim).
        Refusal::Busy(GateError::WaitingElsewhere) => {
            tracing::warn!(%peer, "gamestream: pairing request refused: its certificate waits from another address");
        }
        Refusal::Busy(GateError::Blocked(address)) => {
            tracing::info!(%address, "gamestream: pairing request refused: the address is blocked");
        }
        // Its previous attempt is storing the device this moment.
        Refusal::Busy(_) => {}
        Refusal::NoOneTimePin(e) => tracing::info!(%peer, "gamestream: otpauth refused: {e}"),
        Refusal::Fault(e) => tracing::error!(%peer, "gamestream: pairing request not listed: {e}"),
    }
    PairError::refused(refusal).reply()
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
            if let Some(mut attempt) = taken {
                let outcome = attempt.session.cancelled_by_client();
                self.finish(attempt.pending, attempt.pin.take(), outcome);
            }
        }
    }

    /// Ends the requests of attempts whose clients stopped between phases.
    fn give_up(&self, given_up: Vec<InFlight>) {
        for attempt in given_up {
            tracing::info!(request = %attempt.pending, "gamestream: pairing attempt timed out");
            self.finish(attempt.pending, attempt.pin, PairingEnd::Abandoned);
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
        // With a one-time PIN's proof, the knock uses it up and enters a
        // PIN for the request: the wait below ends at once.
        let knock = Knock::of(&request, peer);
        let session = PairingSession::start(unique_id, request);
        // Subscribe before the request exists, so no event about it is missed.
        let mut events = self.trust.subscribe();
        let id = match self.trust.knock(knock.request, knock.otp.as_ref()) {
            Ok(id) => id,
            Err(refusal) => return refused(peer, refusal),
        };
        tracing::info!(request = %id, %peer, "gamestream: pairing request waits for its PIN");
        let mut held = self.hold(key.clone(), id, knock.via, session);
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
            via,
            session,
            pin: None,
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
            Wait::Ended(outcome) => Err(PairError::ended(outcome)),
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
        let Some(pin) = self.trust.collect_pin(id) else {
            return Err(PairError::ended(self.trust.request_ended(id)));
        };
        let taken = self.sessions.lock().take_if(key, id);
        let Some(attempt) = taken else {
            return Err(PairError::ended(self.trust.request_ended(id)));
        };
        let step = attempt
            .session
            .pin_entered(pin.pin(), &self.host.identity, now)?;
        if let Some(session) = step.session {
            self.keep(
                key.clone(),
                InFlight {
                    pending: id,
                    via: attempt.via,
                    session,
                    pin: Some(pin),
                },
            );
        }
        Ok(step.reply)
    }

    /// Phases 2–4.
    async fn step(&self, key: Key, request: PairRequest) -> Reply {
        let taken = self.sessions.lock().take(&key);
        let Some(InFlight {
            pending,
            via,
            session,
            mut pin,
        }) = taken
        else {
            return PairError::NoSession.reply();
        };
        let now = self.trust.now();
        // Denied or expired in the console meanwhile: the attempt is over.
        if !self.trust.is_waiting(pending) {
            return PairError::ended(self.trust.request_ended(pending)).reply();
        }
        let step = match session.step(request, &self.host.identity, &mut OsRng, now) {
            Ok(step) => step,
            Err(e) => {
                tracing::info!(request = %pending, "gamestream: pairing failed: {e}");
                self.finish(pending, pin, e.outcome());
                return e.reply();
            }
        };
        for effect in step.effects {
            match effect {
                Effect::StoreDevice(device) => {
                    // On an error the collected PIN ends the request.
                    if let Err(e) = self.store(pending, pin.take(), device, via).await {
                        tracing::warn!(request = %pending, "gamestream: device not stored: {e}");
                        return e.reply();
                    }
                }
                // `store` already finished the request as paired.
                Effect::Finished(PairingEnd::Paired(fp)) => {
                    tracing::info!(request = %pending, fingerprint = %fp.short(), "gamestream: device paired");
                }
                Effect::Finished(outcome) => {
                    tracing::info!(request = %pending, outcome = outcome.as_str(), "gamestream: pairing ended");
                    self.finish(pending, pin.take(), outcome);
                }
            }
        }
        if let Some(session) = step.session {
            self.keep(
                key,
                InFlight {
                    pending,
                    via,
                    session,
                    pin,
                },
            );
        }
        step.reply
    }

    /// Stores a verified device durably, then finishes its request as
    /// `paired`: [`CollectedPin::store`], the one admission transaction,
    /// which keeps a deny or expiry from coming between the two without
    /// holding the gate across the write.
    async fn store(
        &self,
        id: PendingId,
        pin: Option<CollectedPin>,
        device: NewDevice,
        via: Via,
    ) -> Result<(), PairError> {
        // Phase 4 follows phase 1's PIN: the core stores no device without it.
        let Some(pin) = pin else {
            return Err(PairError::Host(HostFault::Gate(GateError::UnknownRequest)));
        };
        let der = device.cert_der().to_vec();
        match pin.store(der, via).await {
            Ok(()) => Ok(()),
            Err(StoreError::Trust(TrustError::Gate(GateError::UnknownRequest))) => {
                Err(PairError::ended(self.trust.request_ended(id)))
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
            self.finish(attempt.pending, attempt.pin, outcome);
        }
    }

    /// Ends request `id` as `outcome` says: through its collected PIN,
    /// which records a rejected PIN, or (no PIN yet) as `abandoned`.
    /// `Paired` ended it already, when the device was stored.
    fn finish(&self, id: PendingId, pin: Option<CollectedPin>, outcome: PairingEnd) {
        match (pin, outcome.pin_failure()) {
            (_, None) => {}
            (Some(pin), Some(failure)) => pin.fail(failure),
            (None, Some(_)) => {
                self.trust.end_request(id, RequestEnd::Abandoned);
            }
        }
    }
}
