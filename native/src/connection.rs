//! The host side of one native connection as a sans-IO state machine
//! (docs/native-protocol.md § 7.1): every decision about what a connection
//! gets, with no socket, no TLS, no clock and no gate of its own.
//!
//! Like quinn-proto's `Connection`, [`HostConnection`] is fed what
//! happened — the first message with the [`HelloFacts`] it needs
//! ([`HostConnection::on_hello`]), later messages, read failures, timeouts,
//! trust events and the results of the effects it asked for — and the
//! driver drains [`Action`]s in order: messages to send, [`Effect`]s to run
//! against the trust service, and finally [`Action::Close`]. The driver
//! reads with [`HostConnection::poll_timeout`] as its deadline and has no
//! protocol decision of its own (`endpoint.rs` is that driver).
//!
//! ```text
//! AwaitHello ─ connect ─┬ trusted ──────────── Touch, welcome{trusted} ──▶ Session
//!            │          ├ Open policy ─ Store{open} ▶ Storing ─ welcome{open} ▶ Session
//!            │          ├ Knock policy ─ AddKnock ▶ Knocking ─ welcome{approval_pending}
//!            │          │                  ▶ AwaitDecision ─ decision ──▶ Session | close
//!            │          └ Refuse policy ─ error{not_paired}
//!            └ pair ─ armed? place? ─ welcome{pairing} ▶ AwaitPake ─ pake ─ TakePin | UseLink
//!                     ▶ TakingPin ─ pake ▶ AwaitConfirm ─ confirm ─ Store{pin}
//!                     ▶ Storing ─ confirm{cB} ──────────────────────────▶ Session
//!                     AwaitPake ─ silence, EOF ─ RecordStall, close
//! Session: ping → pong; its device removed → error{revoked}, close;
//!          disabled → error{disabled}, expired → error{expired}, close;
//!          its grant changed → grant (to a client that speaks `grant`)
//! ```
//!
//! A client that offers the `grant` feature (§ 4.1) learns its grant in
//! every way a session opens: in `welcome{trusted|open}`, or in a `grant`
//! message right after `confirm{cB}` or `decision{approved}`; and again
//! each time it changes (§ 4.9).
//!
//! The core keeps the promises that span several steps: the PIN (or the
//! link's secret) is taken when `pake` arrives and never earlier (§ 6.5),
//! so no connection holds anything exclusive while it waits for its
//! `pake`: any number may wait (the driver bounds them per address and in
//! total), and the first `pake` takes the PIN; one that never sends it is
//! recorded ([`Effect::RecordStall`]). A taken PIN is reported exactly
//! once, as paired or spent ([`Effect::ReportPin`]); the place among the
//! waiting connections is given back ([`Effect::LeavePairing`]) on every
//! way out of the pairing steps; and a client hears about a recorded
//! decision only after the audit trail has it ([`Effect::AwaitAudit`]).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use punktfunk_certs::{Claimant, Denied, Fingerprint, PendingId, Refusal, RequestEnd, Secret, Via};
use rand_core::{CryptoRng, RngCore};

use crate::handshake::{self, HandshakeError};
use crate::message::{
    ConsoleReply, Decision, DisplayName, ErrorCode, Features, Grant, Hello, Intent, Message, Pake,
    Status, Waiting, Welcome,
};
use crate::pairing::{ChannelBinding, Exporter, HostAwaitingStore, HostEffect, HostPairing};
use crate::timeouts;

mod interface;

pub use interface::{Action, Effect, HelloFacts, HostSide, Peer, ReadFailure, UnknownDevices};

const NOT_ARMED: &str =
    "pairing is not armed on this host (or its PIN was used or expired); arm it and use the new PIN";
const BUSY: &str = "too many connections from this address (or in all) are waiting to pair with this host; try again in a minute";
const NOT_PAIRED: &str =
    "this device is not paired with this host; pair it with the PIN the host shows";
const CANNOT_STORE: &str = "the host could not store this device";
const CANNOT_RECORD: &str = "the host could not record the request";
const TOO_SLOW: &str = "the client took too long to send its next message";
const REVOKED: &str = "this device was removed from the host; pair it again";
const DISABLED: &str =
    "the host's owner disabled this device; it stays paired, and connects again once they enable it";
const ACCESS_EXPIRED: &str =
    "this device's access to the host has expired; ask the host's owner to renew it";

/// The answer to a paired device that may not connect now.
fn refused(denied: Denied) -> (ErrorCode, &'static str) {
    match denied {
        Denied::Disabled => (ErrorCode::Disabled, DISABLED),
        Denied::Expired => (ErrorCode::Expired, ACCESS_EXPIRED),
        Denied::NotPaired => (ErrorCode::NotPaired, NOT_PAIRED),
    }
}

/// One state per step of § 7.1.
enum State {
    AwaitHello {
        deadline: Instant,
    },
    /// `Store` asked for; what to send once it is stored.
    Storing(AfterStore),
    /// `AddKnock` asked for.
    Knocking,
    AwaitDecision {
        id: PendingId,
        idle: Instant,
    },
    AwaitPake {
        claimant: Claimant,
        /// The client pairs with the link's secret, not the typed PIN.
        link: bool,
        deadline: Instant,
    },
    /// `TakePin` asked for, with the `pake` that triggered it.
    TakingPin {
        name: DisplayName,
        pake: Pake,
    },
    AwaitConfirm {
        pairing: HostPairing,
        deadline: Instant,
    },
    Session {
        idle: Instant,
    },
    Closed,
}

/// A trusted session whose idle clock starts at `now`.
fn session(now: Instant) -> State {
    State::Session {
        idle: now + timeouts::SESSION_IDLE,
    }
}

enum AfterStore {
    /// Open mode: `welcome{open}`.
    Open,
    /// PIN pairing: `confirm{cB}`.
    Paired {
        awaiting: HostAwaitingStore,
        fingerprint: Fingerprint,
    },
}

/// The host side of one native connection, from the first message on.
pub struct HostConnection {
    host: HostSide,
    peer: Peer,
    state: State,
    /// The PIN was taken and not reported yet.
    pin_taken: bool,
    /// The connection holds a place among those waiting to pair.
    pairing: bool,
    /// The features both sides speak, from `hello` on (§ 4.1).
    features: Features,
    /// The grant the client last heard of, in `welcome` or `grant`.
    told: Option<Grant>,
    /// [`Action::Close`] was queued; the core takes no more input.
    closed: bool,
    actions: VecDeque<Action>,
}

impl std::fmt::Debug for HostConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostConnection")
            .field("peer", &self.peer.address)
            .field("client", &self.peer.fingerprint)
            .field("state", &self.state_name())
            .finish_non_exhaustive()
    }
}

impl HostConnection {
    /// A connection whose TLS handshake completed at `now`; it waits for
    /// `hello` until [`timeouts::HELLO`] has passed.
    pub fn new(host: HostSide, peer: Peer, now: Instant) -> Self {
        Self {
            host,
            peer,
            state: State::AwaitHello {
                deadline: now + timeouts::HELLO,
            },
            pin_taken: false,
            pairing: false,
            features: Features::default(),
            told: None,
            closed: false,
            actions: VecDeque::new(),
        }
    }

    /// The next thing to do, in order; `None` when the core waits for
    /// input.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`HostConnection::on_timeout`] is due, if the core waits for
    /// the peer or the clock at all.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::AwaitHello { deadline }
            | State::AwaitPake { deadline, .. }
            | State::AwaitConfirm { deadline, .. } => Some(*deadline),
            State::AwaitDecision { idle, .. } => Some(*idle),
            State::Session { idle } => Some(*idle),
            State::Storing(_) | State::Knocking | State::TakingPin { .. } | State::Closed => None,
        }
    }

    /// Whether the next message is the first one, for
    /// [`HostConnection::on_hello`].
    pub fn wants_hello(&self) -> bool {
        matches!(self.state, State::AwaitHello { .. })
    }

    /// The pending request this connection waits on, for the driver to
    /// watch with `Trust::request_update` and report through
    /// [`HostConnection::on_request_ended`].
    pub fn waiting_on(&self) -> Option<PendingId> {
        match self.state {
            State::AwaitDecision { id, .. } => Some(id),
            _ => None,
        }
    }

    /// Whether [`Action::Close`] was issued.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The first message of the connection (§ 7.1 `AwaitHello`), with
    /// access to what the host knows. Past `hello`, this is
    /// [`HostConnection::on_message`].
    pub fn on_hello(&mut self, msg: Message, facts: &mut impl HelloFacts, now: Instant) {
        if !self.wants_hello() {
            return self.on_message(msg, now);
        }
        match handshake::read_hello(msg) {
            Ok(hello) => {
                self.features = hello.features.both(self.host.features);
                match hello.intent {
                    Intent::Connect => self.connect(hello, facts, now),
                    Intent::Pair => self.pair(hello, false, facts, now),
                    Intent::PairLink => self.pair(hello, true, facts, now),
                }
            }
            Err(e) => self.close_with(e.to_message()),
        }
    }

    fn connect(&mut self, hello: Hello, facts: &mut impl HelloFacts, now: Instant) {
        match facts.authorize() {
            Ok(grant) => {
                self.effect(Effect::Touch);
                return self.welcome(Status::Trusted, Some(grant), session(now));
            }
            // Paired, and refused for now: its own answer, never a knock.
            Err(denied @ (Denied::Disabled | Denied::Expired)) => {
                let (code, message) = refused(denied);
                return self.refuse(code, message);
            }
            Err(Denied::NotPaired) => {}
        }
        match self.host.unknown_devices {
            UnknownDevices::DangerAdmitOpen => {
                self.state = State::Storing(AfterStore::Open);
                self.effect(Effect::Store {
                    name: hello.device_name,
                    via: Via::Open,
                });
            }
            UnknownDevices::Refuse => self.refuse(ErrorCode::NotPaired, NOT_PAIRED),
            UnknownDevices::Knock => {
                self.state = State::Knocking;
                self.effect(Effect::AddKnock {
                    name: hello.device_name,
                });
            }
        }
    }

    fn pair(&mut self, hello: Hello, link: bool, facts: &mut impl HelloFacts, now: Instant) {
        if !facts.is_armed(link) {
            return self.refuse(ErrorCode::NotArmed, NOT_ARMED);
        }
        if !facts.wait_for_pake() {
            return self.refuse(ErrorCode::PairingBusy, BUSY);
        }
        self.pairing = true;
        let claimant = Claimant {
            address: self.peer.address.ip().to_canonical(),
            name: hello.device_name,
            fingerprint: self.peer.fingerprint,
        };
        // A client that connects to pair already has the PIN, so the step
        // is short (§ 8). Waiting holds nothing: the PIN stays in the gate
        // for whoever sends `pake` first.
        let next = State::AwaitPake {
            claimant,
            link,
            deadline: now + timeouts::HOST_PAIRING_STEP,
        };
        self.welcome(Status::Pairing, None, next);
    }

    /// A message after `hello`.
    pub fn on_message(&mut self, msg: Message, now: Instant) {
        match std::mem::replace(&mut self.state, State::Closed) {
            State::AwaitPake { claimant, link, .. } => self.on_pake(msg, claimant, link),
            State::AwaitConfirm { pairing, .. } => match pairing.on_message(msg) {
                Ok((HostEffect::StoreDevice(verified), awaiting)) => {
                    // § 6.4: durably stored before the host confirms.
                    self.state = State::Storing(AfterStore::Paired {
                        awaiting,
                        fingerprint: verified.fingerprint(),
                    });
                    self.effect(Effect::Store {
                        name: verified.device_name().clone(),
                        via: Via::Pin,
                    });
                }
                Err(e) => self.pairing_failed(e.to_message()),
            },
            State::AwaitDecision { id, .. } => match msg {
                Message::Ping => {
                    self.state = State::AwaitDecision {
                        id,
                        idle: now + timeouts::SESSION_IDLE,
                    };
                    self.send(Message::Pong);
                }
                other => self.unexpected("ping", other),
            },
            State::Session { .. } => match msg {
                Message::Ping => {
                    self.state = session(now);
                    self.send(Message::Pong);
                }
                // § 4.10: answered by the driver's console door, in order.
                Message::Console(request) if self.features.console => {
                    self.state = session(now);
                    self.effect(Effect::Console(request));
                }
                other => self.unexpected("ping", other),
            },
            // The driver feeds the first message to `on_hello`, and reads
            // nothing while an effect is outstanding.
            state @ (State::AwaitHello { .. }
            | State::Storing(_)
            | State::Knocking
            | State::TakingPin { .. }) => {
                self.state = state;
                self.close_with(Some(Message::error(
                    ErrorCode::Internal,
                    "the host read a message out of turn",
                )));
            }
            State::Closed => {}
        }
    }

    /// The message after `welcome{pairing}`: § 6.5, the PIN leaves the
    /// gate at `pake`, and never goes back (the link's secret is only
    /// read: no guess uses it up); anything else leaves the PIN in the gate.
    fn on_pake(&mut self, msg: Message, claimant: Claimant, link: bool) {
        let Message::Pake(pake) = msg else {
            return self.unexpected("pake", msg);
        };
        self.state = State::TakingPin {
            name: claimant.name.clone(),
            pake,
        };
        self.effect(Effect::BeginExchange(claimant.clone()));
        self.effect(if link {
            Effect::UseLink(claimant)
        } else {
            Effect::TakePin(claimant)
        });
    }

    /// Reading the next message failed.
    pub fn on_read_failed(&mut self, failure: ReadFailure) {
        if !matches!(
            failure,
            ReadFailure::Malformed(_) | ReadFailure::UnsupportedVersion(_)
        ) {
            self.record_stall();
        }
        let in_session = matches!(self.state, State::Session { .. });
        let first = matches!(self.state, State::AwaitHello { .. });
        let reply = match failure {
            ReadFailure::Closed | ReadFailure::Broken => None,
            // § 8: silence closes a session without a word.
            ReadFailure::TooSlow if in_session => None,
            ReadFailure::TooSlow => Some(Message::error(ErrorCode::Timeout, TOO_SLOW)),
            ReadFailure::Malformed(why) => Some(Message::error(ErrorCode::BadMessage, &why)),
            ReadFailure::UnsupportedVersion(got) if first => {
                HandshakeError::UnsupportedVersion { got }.to_message()
            }
            // A `hello` after the first message is out of turn, whatever
            // its version.
            ReadFailure::UnsupportedVersion(_) => Some(Message::error(
                ErrorCode::BadMessage,
                "the client sent a second hello",
            )),
        };
        self.close_with(reply);
    }

    /// The clock reached [`HostConnection::poll_timeout`] (or later).
    pub fn on_timeout(&mut self, now: Instant) {
        match &mut self.state {
            State::AwaitHello { deadline }
            | State::AwaitPake { deadline, .. }
            | State::AwaitConfirm { deadline, .. } => {
                if now >= *deadline {
                    self.record_stall();
                    self.close_with(Some(Message::error(ErrorCode::Timeout, TOO_SLOW)));
                }
            }
            // The request's own end (approved, denied, expired by the
            // trust service's timer) arrives as `on_request_ended`.
            State::AwaitDecision { idle, .. } => {
                if now >= *idle {
                    self.close_with(Some(Message::error(ErrorCode::Timeout, TOO_SLOW)));
                }
            }
            State::Session { idle } => {
                if now >= *idle {
                    self.close_with(None);
                }
            }
            State::Storing(_) | State::Knocking | State::TakingPin { .. } | State::Closed => {}
        }
    }

    /// The result of [`Effect::Store`]: the grant the device was stored
    /// with, if it is durably stored, else why not (sent to the client
    /// with `error{internal}`; `None`: a fault the client can do nothing
    /// about).
    pub fn on_stored(&mut self, stored: Result<Grant, Option<String>>, now: Instant) {
        let State::Storing(after) = std::mem::replace(&mut self.state, State::Closed) else {
            return;
        };
        let grant = match stored {
            Ok(grant) => grant,
            Err(why) => {
                let why = why.unwrap_or_else(|| CANNOT_STORE.to_owned());
                return self.refuse(ErrorCode::Internal, &why);
            }
        };
        match after {
            AfterStore::Open => self.welcome(Status::Open, Some(grant), session(now)),
            AfterStore::Paired {
                awaiting,
                fingerprint,
            } => {
                self.pin_taken = false;
                self.effect(Effect::ReportPin(Some(fingerprint)));
                self.leave_pairing();
                self.send(awaiting.stored());
                self.state = session(now);
                self.tell_grant(grant);
            }
        }
    }

    /// The result of [`Effect::AddKnock`]: the request, or why it was not
    /// listed.
    pub fn on_knock_added(&mut self, added: Result<PendingId, Refusal>, now: Instant) {
        if !matches!(self.state, State::Knocking) {
            return;
        }
        match added {
            Ok(id) => {
                // The knock is in the audit trail before the client hears
                // it is waiting.
                self.effect(Effect::AwaitAudit);
                let next = State::AwaitDecision {
                    id,
                    idle: now + timeouts::SESSION_IDLE,
                };
                self.welcome(Status::ApprovalPending, None, next);
            }
            Err(e @ Refusal::Busy(_)) => self.refuse(ErrorCode::PairingBusy, &e.to_string()),
            Err(Refusal::NoOneTimePin(_) | Refusal::Fault(_)) => {
                self.refuse(ErrorCode::Internal, CANNOT_RECORD)
            }
        }
    }

    /// The result of [`Effect::TakePin`] or [`Effect::UseLink`]: the PIN
    /// (or the link's secret), or `None` if the gate had none any more.
    /// `rng` drives SPAKE2.
    pub fn on_pin<R: RngCore + CryptoRng>(
        &mut self,
        pin: Option<Secret>,
        rng: &mut R,
        now: Instant,
    ) {
        let State::TakingPin { name, pake } = std::mem::replace(&mut self.state, State::Closed)
        else {
            return;
        };
        let Some(pin) = pin else {
            // Nothing was taken, so nothing to report.
            return self.refuse(ErrorCode::NotArmed, NOT_ARMED);
        };
        self.pin_taken = true;
        let binding = ChannelBinding {
            client: self.peer.fingerprint,
            host: self.host.fingerprint,
            exporter: self.peer.exporter.clone(),
        };
        match HostPairing::respond(pin, binding, name, pake, rng) {
            Ok((pairing, reply)) => {
                self.send(reply);
                // Timeout, EOF or garbage from here on all spend the PIN.
                self.state = State::AwaitConfirm {
                    pairing,
                    deadline: now + timeouts::HOST_PAIRING_STEP,
                };
            }
            Err(e) => self.pairing_failed(e.to_message()),
        }
    }

    /// The request this connection waits on ended (`None`: its outcome is
    /// forgotten, or the host is stopping). `access`: what the client may
    /// do now (`Trust::authorize`).
    pub fn on_request_ended(
        &mut self,
        outcome: Option<RequestEnd>,
        access: Result<Grant, Denied>,
        now: Instant,
    ) {
        if !matches!(self.state, State::AwaitDecision { .. }) {
            return;
        }
        let Some(outcome) = outcome else {
            return self.close_with(None);
        };
        let decision = match outcome {
            RequestEnd::Approved => Decision::Approved,
            RequestEnd::Denied => Decision::Denied,
            // Expired, or replaced by a newer knock of the same device on
            // another connection: this request is over either way.
            _ => Decision::Expired,
        };
        // Whoever decided recorded it; the client hears it after the disk.
        self.effect(Effect::AwaitAudit);
        self.send(Message::Decision(decision));
        // Trust::approve stores the device before ending the request; a
        // revocation since then wins.
        match access {
            Ok(grant) if decision == Decision::Approved => {
                self.state = session(now);
                self.tell_grant(grant);
            }
            _ => self.close_with(None),
        }
    }

    /// A device was removed from the registry (`fingerprint`), or events
    /// were missed and the registry no longer lists the client (pass the
    /// client's own fingerprint). Only an open session cares (§ 7.1).
    pub fn on_device_removed(&mut self, fingerprint: &Fingerprint) {
        if *fingerprint != self.peer.fingerprint || !matches!(self.state, State::Session { .. }) {
            return;
        }
        self.effect(Effect::AwaitAudit);
        self.close_with(Some(Message::error(ErrorCode::Revoked, REVOKED)));
    }

    /// What the device with `fingerprint` may do changed and it may no
    /// longer connect (`denied`: disabled, or its access expired): an open
    /// session ends with that answer (§ 7.1).
    pub fn on_access_ended(&mut self, fingerprint: &Fingerprint, denied: Denied) {
        if *fingerprint != self.peer.fingerprint || !matches!(self.state, State::Session { .. }) {
            return;
        }
        if denied == Denied::NotPaired {
            return self.on_device_removed(fingerprint);
        }
        let (code, message) = refused(denied);
        self.effect(Effect::AwaitAudit);
        self.close_with(Some(Message::error(code, message)));
    }

    /// What the device with `fingerprint` may do changed and it may still
    /// connect: an open session whose client speaks `grant` hears the new
    /// grant (§ 4.9), once per change.
    pub fn on_grant_changed(&mut self, fingerprint: &Fingerprint, grant: Grant) {
        if *fingerprint == self.peer.fingerprint && matches!(self.state, State::Session { .. }) {
            self.tell_grant(grant);
        }
    }

    /// The answer to an [`Effect::Console`]: sent as it is, in a session.
    pub fn on_console_reply(&mut self, reply: ConsoleReply) {
        if matches!(self.state, State::Session { .. }) {
            self.send(Message::ConsoleReply(reply));
        }
    }

    /// The waiting requests changed, for a session that watches them (the
    /// driver knows which do): sent as it is, in a session (§ 4.10).
    pub fn on_waiting(&mut self, waiting: Waiting) {
        if matches!(self.state, State::Session { .. }) && self.features.console {
            self.send(Message::Waiting(waiting));
        }
    }

    /// The trust service stopped: nothing more can be decided.
    pub fn on_trust_stopped(&mut self) {
        if matches!(
            self.state,
            State::Session { .. } | State::AwaitDecision { .. }
        ) {
            self.close_with(None);
        }
    }

    /// A name for the current state, for logs.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::AwaitHello { .. } => "await_hello",
            State::Storing(_) => "storing",
            State::Knocking => "knocking",
            State::AwaitDecision { .. } => "await_decision",
            State::AwaitPake { .. } => "await_pake",
            State::TakingPin { .. } => "taking_pin",
            State::AwaitConfirm { .. } => "await_confirm",
            State::Session { .. } => "session",
            State::Closed => "closed",
        }
    }

    /// Sends `welcome{status}` (with the grant of a session it opens) and
    /// moves on to `next`.
    fn welcome(&mut self, status: Status, grant: Option<Grant>, next: State) {
        self.told.clone_from(&grant);
        self.send(Message::Welcome(Welcome {
            status,
            host_name: self.host.name.clone(),
            host_fingerprint: self.host.fingerprint,
            features: self.features,
            grant,
        }));
        self.state = next;
    }

    /// Sends `grant` to a client that speaks it, unless it heard this one.
    fn tell_grant(&mut self, grant: Grant) {
        if self.features.grant && self.told.as_ref() != Some(&grant) {
            self.told = Some(grant.clone());
            self.send(Message::Grant(grant));
        }
    }

    /// A pairing step failed after the PIN was taken: the PIN is spent and
    /// recorded before the client hears why (unless it sent the error).
    fn pairing_failed(&mut self, reply: Option<Message>) {
        self.report_spent();
        self.effect(Effect::AwaitAudit);
        self.close_with(reply);
    }

    fn unexpected(&mut self, expected: &'static str, got: Message) {
        let e = HandshakeError::Unexpected {
            expected,
            got: got.type_name(),
        };
        self.close_with(e.to_message());
    }

    fn refuse(&mut self, code: ErrorCode, message: &str) {
        self.close_with(Some(Message::error(code, message)));
    }

    /// Sends `reply` (if any), keeps the promises still open and closes.
    fn close_with(&mut self, reply: Option<Message>) {
        if self.closed {
            return;
        }
        if let Some(m) = reply {
            self.send(m);
        }
        self.report_spent();
        self.leave_pairing();
        self.state = State::Closed;
        self.closed = true;
        self.actions.push_back(Action::Close);
    }

    /// A connection that said `hello{intent: pair}` leaves without `pake`.
    fn record_stall(&mut self) {
        if let State::AwaitPake { claimant, .. } = &self.state {
            let claimant = claimant.clone();
            self.effect(Effect::RecordStall(claimant));
        }
    }

    fn report_spent(&mut self) {
        if std::mem::take(&mut self.pin_taken) {
            self.effect(Effect::ReportPin(None));
        }
    }

    fn leave_pairing(&mut self) {
        if std::mem::take(&mut self.pairing) {
            self.effect(Effect::LeavePairing);
        }
    }

    fn send(&mut self, msg: Message) {
        self.actions.push_back(Action::Send(msg));
    }

    fn effect(&mut self, effect: Effect) {
        self.actions.push_back(Action::Effect(effect));
    }
}

#[cfg(test)]
mod tests;
