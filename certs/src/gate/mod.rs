//! The pairing gate: the armed PIN and the devices waiting to be let in.
//!
//! Pure state, no I/O: time comes in as `now`, randomness as an RNG argument
//! (the host passes the OS CSPRNG), so every rule here is tested without
//! sleeping. Changes are reported as [`TrustEvent`]s, drained with
//! [`Gate::poll_event`], and what happens to a request or a PIN without
//! anyone deciding (a device asks, goes away, asks again, time runs out) as
//! audit [`Entry`]s, drained with [`Gate::poll_audit`]; decisions are
//! recorded by whoever makes them, who knows who they are.
//!
//! Rules:
//! - [`Gate::arm`] draws a 4-digit PIN, valid for [`GateConfig::pin_ttl`].
//!   Arming again replaces the PIN.
//! - [`Gate::arm`] also draws the pairing link's 128-bit secret
//!   ([`LinkSecret`]). [`Gate::take_pin`] spends the PIN: one exchange gets
//!   it, whether it then succeeds or fails, so an attacker gets one online
//!   guess per arming. [`Gate::use_link`] hands out the link's secret to any
//!   number of exchanges: a wrong guess (at either) does not use the link
//!   up; a success (through either) ends the arming.
//!   The exchange reports how it ended ([`Gate::report`]); a failure stays
//!   visible ([`Gate::last_attempt`]) until the next arming.
//! - Pending requests (a native knock needing approval, a Moonlight request
//!   needing its PIN) are deduplicated by certificate fingerprint: a new
//!   request from the same certificate *and the same source address*
//!   replaces the old one. The same certificate from another address is
//!   refused: a certificate is public, so replaying a victim's certificate
//!   must not kick out the victim's request.
//! - At most [`GateConfig::max_pending`] requests wait at once, and at most
//!   [`GateConfig::max_pending_per_address`] from one source address (one
//!   IPv4 or IPv6 address: see [`AddressKey`]), so one machine cannot fill
//!   the list and lock everyone else out. Over either cap *new* requests
//!   are refused and the waiting ones are kept, so a flood cannot push out
//!   the request the user is about to approve (the user can deny the
//!   flood: all at once with [`Gate::deny_all`], one address's with
//!   [`Gate::deny_from`]).
//! - Requests expire after [`GateConfig::pending_ttl`]. Deny dismisses; it
//!   does not blocklist. [`Gate::block`] does: for [`BLOCK_TTL`] every
//!   request from that address (a knock, a Moonlight request, a one-time
//!   PIN's proof, the armed PIN) is refused with [`GateError::Blocked`]
//!   until the block ends or is lifted ([`Gate::unblock`]). At most
//!   [`MAX_BLOCKS`] addresses are blocked at once.
//! - Who used the armed PIN, and who holds the native pairing exchange, is
//!   kept ([`Claimant`]) so the console can name them.
//! - A one-time PIN for Moonlight-family clients ([`crate::otp`]) is, like
//!   the armed PIN, single: made by the console, used up by its first
//!   match, by its expiry, or by [`MAX_OTP_TRIES`] tries in all (at most one
//!   per address, counted before the check). A wrong `otpauth` needs the
//!   passphrase as well as the PIN to be right, so a few wrong tries do not
//!   let a stranger crack it online, and a stranger cannot burn it with one.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::{CryptoRng, RngCore};

use crate::audit::{DeviceRef, Door, Entry, Event, Outcome};
use crate::events::TrustEvent;
use crate::fingerprint::Fingerprint;
use crate::grant::Access;
use crate::name::{DisplayName, Label};
use crate::otp::{OneTimePin, OtpError, OtpGrant, Passphrase};
use crate::registry::{FrontDoor, Via};

mod armed;
mod one_time;
mod requests;
mod secret;

pub use crate::vocab::{AddressKey, NoSuchRequest, PendingId, RequestEnd};
pub use punktfunk_identity::secret::{BadPin, LinkSecret, Pin, Secret, LINK_SECRET_LEN};
pub use secret::{Armed, TakenSecret};

/// Tunables of the gate.
#[derive(Debug, Clone)]
pub struct GateConfig {
    /// How long an armed PIN stays valid.
    pub pin_ttl: Duration,
    /// How long a pending request waits.
    pub pending_ttl: Duration,
    /// How many requests may wait at once.
    pub max_pending: usize,
    /// How many requests from one source address ([`AddressKey`]) may wait
    /// at once.
    pub max_pending_per_address: usize,
}

impl Default for GateConfig {
    fn default() -> Self {
        Self {
            pin_ttl: Duration::from_secs(180),
            pending_ttl: Duration::from_secs(300),
            max_pending: 256,
            max_pending_per_address: 4,
        }
    }
}

/// After the console entered a Moonlight PIN, the pairing still needs a few
/// round trips; the request is kept at least this long.
const PIN_ENTRY_GRACE: Duration = Duration::from_secs(60);

/// How many finished requests' outcomes are remembered for late readers.
const OUTCOMES_KEPT: usize = 256;

/// How long [`Gate::block`] refuses an address.
pub const BLOCK_TTL: Duration = Duration::from_secs(3600);

/// How many addresses may be blocked at once (each entry is small; the cap
/// keeps the list bounded whatever the console is asked).
pub const MAX_BLOCKS: usize = 64;

/// How many tries a one-time PIN takes in all, right or wrong, before it is
/// used up; at most one of them from each address.
pub const MAX_OTP_TRIES: usize = 5;

/// What a waiting device needs to get in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// A click on Approve (native knock).
    Approval,
    /// The PIN the client shows, typed into the console (Moonlight).
    Pin,
}

impl Needs {
    /// `approval` or `pin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Needs::Approval => "approval",
            Needs::Pin => "pin",
        }
    }

    /// What the request waits for, in words ([`GateError::WrongNeed`]).
    fn in_words(self) -> &'static str {
        match self {
            Needs::Approval => "approval",
            Needs::Pin => "the PIN that Moonlight shows",
        }
    }
}

/// Who used the armed PIN or holds the pairing exchange, as the console
/// shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimant {
    /// Where the connection came from.
    pub address: IpAddr,
    /// The device name it sent.
    pub name: DisplayName,
    /// Its certificate's fingerprint.
    pub fingerprint: Fingerprint,
}

/// A device asking to be let in.
#[derive(Debug, Clone)]
pub struct PendingRequest {
    /// Front door.
    pub kind: FrontDoor,
    /// Device name as the client sent it, cleaned.
    pub name: DisplayName,
    /// The client certificate (DER), stored if the request is admitted.
    pub cert_der: Vec<u8>,
    /// Where it came from.
    pub address: SocketAddr,
    /// What it needs.
    pub needs: Needs,
}

/// Where a PIN request stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinState {
    /// Nobody typed a PIN yet.
    Waiting,
    /// The console typed one; the front door has not collected it.
    Entered {
        /// The PIN.
        pin: Pin,
        /// Label to give the device if it pairs.
        label: Option<Label>,
        /// What it may do if it pairs (`None`: the host's default).
        access: Option<Access>,
    },
    /// The front door collected the PIN and is finishing the pairing.
    Pairing,
}

/// A pending request with its bookkeeping.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The request.
    pub request: PendingRequest,
    /// `SHA-256` of `request.cert_der`.
    pub fingerprint: Fingerprint,
    /// When it arrived.
    pub created: Instant,
    /// When it goes away.
    pub expires: Instant,
    /// For `Needs::Pin`: the PIN's progress.
    pub pin: PinState,
    /// Its device is being written to the registry ([`Gate::begin_storing`]):
    /// nothing but the writer may end it, and it does not expire meanwhile.
    pub storing: bool,
    /// A request that came with a one-time PIN's `otpauth`
    /// ([`Gate::add_otp_request`]): whether it matched. A request that did
    /// not match pairs with a random PIN and fails; otpauth cannot tell a
    /// wrong PIN from a wrong passphrase, so the failure says both.
    pub otp: Option<OtpCheck>,
}

/// How a request's `otpauth` compared with the active one-time PIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtpCheck {
    /// Right PIN and passphrase.
    Matched,
    /// A wrong one-time PIN or passphrase.
    Mismatched,
}

impl Pending {
    /// An audit entry about this request's device, from its door and
    /// address.
    pub fn audit_entry(&self, event: Event) -> Entry {
        Entry::new(event, Door::of(self.request.kind))
            .device(self.device_ref())
            .address(self.request.address.ip())
    }

    /// The device as the audit trail names it.
    pub fn device_ref(&self) -> DeviceRef {
        DeviceRef::new(self.fingerprint, &self.request.name, None)
    }
}

/// The last exchange that took the armed PIN: who, and how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastPinUse {
    /// Who took the PIN.
    pub by: Claimant,
    /// How it went.
    pub result: PinUse,
}

/// A native pairing exchange in progress (the client's `pake` took the PIN
/// or the link's secret), shown so the console can name the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// Who holds it.
    pub by: Claimant,
    /// Since when.
    pub since: Instant,
}

/// The last use of a one-time PIN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastOtp {
    /// Where the client came from.
    pub address: IpAddr,
    /// Whether its `otpauth` matched.
    pub matched: bool,
    /// The pairing request it started (`None` only while it is being
    /// recorded, and after a refusal).
    pub request: Option<PendingId>,
}

/// A try at the active one-time PIN that did not match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtpTry {
    /// Where the client came from.
    pub address: IpAddr,
    /// When.
    pub at: Instant,
}

/// An address [`Gate::block`]ed, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// The address.
    pub address: AddressKey,
    /// When the block ends by itself.
    pub until: Instant,
}

/// How the last exchange that took the armed PIN ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinUse {
    /// Still running.
    InProgress,
    /// The device was paired.
    Paired {
        /// Which device.
        fingerprint: Fingerprint,
    },
    /// The PIN did not match (or the exchange broke off after taking it).
    Failed,
}

/// Why a request carrying a one-time PIN's proof was not recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OtpRequestError {
    /// No one-time PIN is active (none made, expired, or used).
    #[error(transparent)]
    Otp(#[from] OtpError),
    /// The waiting list refused the request; the one-time PIN is untouched.
    #[error(transparent)]
    Gate(#[from] GateError),
}

/// Why the gate refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    /// Pairing is not armed (or the PIN was already used or expired).
    #[error("pairing is not armed; arm pairing in the console to get a PIN")]
    NotArmed,
    /// No such pending request (it may have expired or been answered).
    #[error("{}", NoSuchRequest)]
    UnknownRequest,
    /// Too many requests are waiting.
    #[error(
        "too many devices are waiting; approve or deny some in the console, or wait a few minutes"
    )]
    TooManyPending,
    /// Too many requests from this source address are waiting.
    #[error("too many pairing requests from {0} are waiting; approve or deny them in the console, or wait a few minutes")]
    TooManyFromAddress(AddressKey),
    /// This certificate already waits, from another address.
    #[error("this device already waits for approval from another address; approve or deny that request in the console first")]
    WaitingElsewhere,
    /// The request needs this (a PIN), not what was done (approval), or
    /// the other way round.
    #[error("this request needs {}, not that", .0.in_words())]
    WrongNeed(Needs),
    /// A PIN was already entered for this request.
    #[error("a PIN was already entered for this request; if it was wrong, start pairing again on the client")]
    PinAlreadyEntered,
    /// Not a 4-digit PIN.
    #[error("a PIN is exactly 4 digits")]
    BadPin,
    /// The request's device is being stored right now.
    #[error("this device is being added right now; it will be in the device list in a moment")]
    Storing,
    /// Requests from this address are blocked for now.
    #[error("pairing requests from {0} are blocked on this host for up to an hour; its owner can lift the block in the console")]
    Blocked(AddressKey),
    /// [`MAX_BLOCKS`] addresses are blocked already.
    #[error("{MAX_BLOCKS} addresses are blocked already; lift a block in the console first, or deny this address's requests")]
    TooManyBlocks,
    /// Not an IP address.
    #[error("not an IP address")]
    BadAddress,
}

impl From<NoSuchRequest> for GateError {
    fn from(_: NoSuchRequest) -> Self {
        GateError::UnknownRequest
    }
}

impl From<BadPin> for GateError {
    fn from(_: BadPin) -> Self {
        GateError::BadPin
    }
}

/// The gate. See the module docs for its rules.
#[derive(Debug)]
pub struct Gate {
    config: GateConfig,
    armed: Option<Armed>,
    arming: u64,
    last_attempt: Option<LastPinUse>,
    exchange: Option<Exchange>,
    otp: Option<OneTimePin>,
    /// The active one-time PIN's tries so far (all wrong: a match ends it).
    otp_tries: Vec<OtpTry>,
    last_otp: Option<LastOtp>,
    blocks: BTreeMap<AddressKey, Instant>,
    pending: BTreeMap<PendingId, Pending>,
    next_id: u64,
    outcomes: VecDeque<(PendingId, RequestEnd)>,
    events: VecDeque<TrustEvent>,
    audit: VecDeque<Entry>,
}

impl Gate {
    /// An empty, disarmed gate.
    pub fn new(config: GateConfig) -> Self {
        Self {
            config,
            armed: None,
            arming: 0,
            last_attempt: None,
            exchange: None,
            otp: None,
            otp_tries: Vec::new(),
            last_otp: None,
            blocks: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_id: 1,
            outcomes: VecDeque::new(),
            events: VecDeque::new(),
            audit: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &GateConfig {
        &self.config
    }

    /// Next event to broadcast, if any.
    pub(crate) fn poll_event(&mut self) -> Option<TrustEvent> {
        self.events.pop_front()
    }

    /// Next audit entry to record, if any.
    pub(crate) fn poll_audit(&mut self) -> Option<Entry> {
        self.audit.pop_front()
    }

    /// Drops what has expired by `now`. Every method taking `now` calls it.
    pub(crate) fn expire(&mut self, now: Instant) {
        if self.otp.as_ref().is_some_and(|o| o.expires() <= now) {
            self.otp = None;
            self.otp_tries.clear();
            self.events.push_back(TrustEvent::OtpChanged);
            self.audit
                .push_back(Entry::new(Event::OtpExpired, Door::Host));
        }
        if self.armed.as_ref().is_some_and(|a| a.expires <= now) {
            self.armed = None;
            self.events.push_back(TrustEvent::Disarmed);
            self.audit
                .push_back(Entry::new(Event::PairingExpired, Door::Host));
        }
        let expired: Vec<PendingId> = self
            .pending
            .iter()
            // A write in flight ends the request itself, moments later.
            .filter(|(_, p)| p.expires <= now && !p.storing)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.finish(id, RequestEnd::Expired);
        }
        let ended: Vec<AddressKey> = self
            .blocks
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(a, _)| *a)
            .collect();
        for address in ended {
            self.blocks.remove(&address);
            self.events.push_back(TrustEvent::BlocksChanged);
            self.audit.push_back(
                Entry::new(Event::BlockExpired, Door::Host)
                    .address(address.ip())
                    .detail("the hour is over; its requests are heard again"),
            );
        }
    }

    /// The earliest moment something expires, for a timer in the shell.
    pub fn next_deadline(&self) -> Option<Instant> {
        let armed = self.armed.as_ref().map(|a| a.expires);
        let otp = self.otp.as_ref().map(|o| o.expires());
        let pending = self
            .pending
            .values()
            .filter(|p| !p.storing)
            .map(|p| p.expires)
            .min();
        let block = self.blocks.values().min().copied();
        armed
            .into_iter()
            .chain(otp)
            .chain(pending)
            .chain(block)
            .min()
    }
}

#[cfg(test)]
mod tests;
