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
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::{Duration, Instant};

use rand::{CryptoRng, Rng, RngCore};

use crate::audit::{DeviceRef, Door, Entry, Event, Outcome};
use crate::events::TrustEvent;
use crate::fingerprint::Fingerprint;
use crate::name::{DisplayName, Label};
use crate::otp::{OneTimePin, OtpError, OtpGrant, Passphrase};
use crate::registry::{Kind, Via};

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

/// A 4-digit PIN: the gate's armed PIN, a Moonlight PIN typed into the
/// console, the native SPAKE2 password. Zeroed on drop; `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Pin(zeroize::Zeroizing<String>);

impl Pin {
    /// Draws a uniformly random PIN.
    pub fn random(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let n: u16 = rng.gen_range(0..10_000);
        Self(zeroize::Zeroizing::new(format!("{n:04}")))
    }

    /// The four ASCII digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The four ASCII digit bytes (the SPAKE2 password, the GameStream salt suffix).
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl FromStr for Pin {
    type Err = GateError;

    /// Exactly four ASCII digits.
    fn from_str(s: &str) -> Result<Self, GateError> {
        let b = s.as_bytes();
        if b.len() != 4 || !b.iter().all(u8::is_ascii_digit) {
            return Err(GateError::BadPin);
        }
        Ok(Self(zeroize::Zeroizing::new(s.to_owned())))
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(****)")
    }
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Bytes of a [`LinkSecret`]: 128 bits, far past any online guessing.
pub const LINK_SECRET_LEN: usize = 16;

/// The one-time secret a pairing link (QR code) carries instead of the
/// typed PIN, the SPAKE2 password of a link pairing (docs/native-protocol.md
/// § 12). Drawn with every arming; a wrong guess does not use it up (it
/// cannot be guessed online), only a success or the arming's expiry.
/// Zeroed on drop; `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkSecret(zeroize::Zeroizing<[u8; LINK_SECRET_LEN]>);

impl LinkSecret {
    /// Draws a uniformly random secret.
    pub fn random(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let mut b = zeroize::Zeroizing::new([0u8; LINK_SECRET_LEN]);
        rng.fill_bytes(b.as_mut());
        Self(b)
    }

    /// A secret from its bytes (test vectors, a parsed link).
    pub fn from_bytes(bytes: [u8; LINK_SECRET_LEN]) -> Self {
        Self(zeroize::Zeroizing::new(bytes))
    }

    /// The raw bytes (the SPAKE2 password).
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_ref()
    }

    /// The 32 lowercase hex digits a link carries.
    pub fn to_hex(&self) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(hex::encode(self.0.as_ref()))
    }

    /// 32 hex digits of either case.
    pub fn parse_hex(s: &str) -> Option<Self> {
        let mut b = zeroize::Zeroizing::new([0u8; LINK_SECRET_LEN]);
        if s.len() != 2 * LINK_SECRET_LEN {
            return None;
        }
        hex::decode_to_slice(s, b.as_mut()).ok()?;
        Some(Self(b))
    }
}

impl fmt::Debug for LinkSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkSecret(****)")
    }
}

/// Identifies a pending request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PendingId(u64);

impl fmt::Display for PendingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for PendingId {
    type Err = GateError;
    fn from_str(s: &str) -> Result<Self, GateError> {
        s.parse().map(Self).map_err(|_| GateError::UnknownRequest)
    }
}

/// From its decimal string form (what [`fmt::Display`] writes and the
/// console puts in its URLs), by the rules of [`FromStr`]: anything else is
/// [`GateError::UnknownRequest`], since no request has such an id.
impl<'de> serde::Deserialize<'de> for PendingId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

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

/// What counts as "one source address" for every per-address limit (the
/// waiting list's, the console's login limiter, the audit budget, blocks,
/// one-time PIN tries): the full address, an IPv4 address or an IPv6 /128,
/// with an IPv4-mapped IPv6 address counted as the IPv4 address.
///
/// Not the IPv6 /64: a home LAN with SLAAC is one /64, so keying by it let
/// one attacker's address lock every IPv6 device of the LAN out. An
/// attacker who rotates through addresses (easy in a /64) is bounded by the
/// global budgets instead, which are sized for that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AddressKey(IpAddr);

impl AddressKey {
    /// The key of `ip`.
    pub fn of(ip: IpAddr) -> Self {
        Self(ip.to_canonical())
    }

    /// The address.
    pub fn ip(self) -> IpAddr {
        self.0
    }
}

impl fmt::Display for AddressKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
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
    pub kind: Kind,
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

/// How a pending request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingOutcome {
    /// Approved in the console; the device is stored.
    Approved,
    /// Denied in the console.
    Denied,
    /// Nobody decided in time.
    Expired,
    /// The same certificate asked again; the new request replaced it.
    Replaced,
    /// The PIN matched and the device is stored.
    Paired,
    /// The PIN did not match (or the client gave up after a PIN entry).
    PinRejected,
    /// The client's answer failed the way moonlight-qt's known key bug
    /// fails (SHA-256(salt ‖ PIN) has a zero byte in its first 15): the PIN
    /// was most likely right; a new attempt in Moonlight pairs.
    MoonlightQtBug,
    /// The client went away.
    Abandoned,
}

impl PendingOutcome {
    /// Stable lowercase name used in APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            PendingOutcome::Approved => "approved",
            PendingOutcome::Denied => "denied",
            PendingOutcome::Expired => "expired",
            PendingOutcome::Replaced => "replaced",
            PendingOutcome::Paired => "paired",
            PendingOutcome::PinRejected => "pin_rejected",
            PendingOutcome::MoonlightQtBug => "moonlight_qt_bug",
            PendingOutcome::Abandoned => "abandoned",
        }
    }
}

/// The current arming, as shown in the console: the typed PIN (one
/// guess) and the pairing link's secret (no guess uses it up).
#[derive(Debug, Clone)]
pub struct Armed {
    /// The PIN.
    pub pin: Pin,
    /// Whether an exchange took the PIN already (it failed, or still
    /// runs): the PIN is spent, the link still pairs.
    pub pin_taken: bool,
    /// The secret of this arming's pairing link.
    pub link: LinkSecret,
    /// When it stops being valid.
    pub expires: Instant,
}

/// What an exchange runs SPAKE2 with, taken from the gate.
#[derive(Debug, Clone)]
pub enum Secret {
    /// The typed PIN: moved out, one exchange per arming.
    Pin(Pin),
    /// The link's secret: a copy, any number of exchanges.
    Link(LinkSecret),
}

impl Secret {
    /// The SPAKE2 password (§ 6.1 of the protocol document).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Secret::Pin(p) => p.as_bytes(),
            Secret::Link(l) => l.as_bytes(),
        }
    }
}

/// The armed PIN (or the link's secret) handed to the exchange that uses
/// it. Hand it back to [`Gate::report`] with the result.
#[derive(Debug)]
pub struct PinTicket {
    secret: Secret,
    arming: u64,
    /// Who uses the link's secret (shown once it paired).
    by: Option<Claimant>,
}

impl PinTicket {
    /// What to run the exchange with.
    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// Whether this is the link's secret rather than the typed PIN.
    pub fn is_link(&self) -> bool {
        matches!(self.secret, Secret::Link(_))
    }
}

/// The last exchange that took the armed PIN: who, and how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastAttempt {
    /// Who took the PIN.
    pub by: Claimant,
    /// How it went.
    pub result: Attempt,
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
pub enum Attempt {
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
    #[error("no such request is waiting; it may have expired or been answered already")]
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

/// The gate. See the module docs for its rules.
#[derive(Debug)]
pub struct Gate {
    config: GateConfig,
    armed: Option<Armed>,
    arming: u64,
    last_attempt: Option<LastAttempt>,
    exchange: Option<Exchange>,
    otp: Option<OneTimePin>,
    /// The active one-time PIN's tries so far (all wrong: a match ends it).
    otp_tries: Vec<OtpTry>,
    last_otp: Option<LastOtp>,
    blocks: BTreeMap<AddressKey, Instant>,
    pending: BTreeMap<PendingId, Pending>,
    next_id: u64,
    outcomes: VecDeque<(PendingId, PendingOutcome)>,
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
    pub fn poll_event(&mut self) -> Option<TrustEvent> {
        self.events.pop_front()
    }

    /// Next audit entry to record, if any.
    pub fn poll_audit(&mut self) -> Option<Entry> {
        self.audit.pop_front()
    }

    /// Drops what has expired by `now`. Every method taking `now` calls it.
    pub fn expire(&mut self, now: Instant) {
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
            self.finish(id, PendingOutcome::Expired);
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

    // ---- the armed PIN -------------------------------------------------

    /// Arms pairing with a fresh PIN, replacing any armed one.
    pub fn arm(&mut self, now: Instant, rng: &mut (impl RngCore + CryptoRng)) -> Armed {
        self.expire(now);
        let armed = Armed {
            pin: Pin::random(rng),
            pin_taken: false,
            link: LinkSecret::random(rng),
            expires: now + self.config.pin_ttl,
        };
        self.arming += 1;
        self.armed = Some(armed.clone());
        self.last_attempt = None;
        self.events.push_back(TrustEvent::Armed);
        armed
    }

    /// Disarms pairing.
    pub fn disarm(&mut self) {
        if self.armed.take().is_some() {
            self.events.push_back(TrustEvent::Disarmed);
        }
    }

    /// The current arming (the link's, even once its PIN is spent), if any.
    pub fn armed(&mut self, now: Instant) -> Option<&Armed> {
        self.expire(now);
        self.arming()
    }

    /// [`Gate::armed`] as of the last expiry.
    pub fn arming(&self) -> Option<&Armed> {
        self.armed.as_ref()
    }

    /// Whether the typed PIN is armed and not taken yet.
    pub fn pin_armed(&mut self, now: Instant) -> bool {
        self.armed(now).is_some_and(|a| !a.pin_taken)
    }

    /// Takes the armed PIN for one exchange run by `by`. After this the PIN
    /// is spent, whatever the exchange's outcome: one guess per arming.
    /// The arming's link still pairs.
    pub fn take_pin(&mut self, by: Claimant, now: Instant) -> Result<PinTicket, GateError> {
        self.expire(now);
        self.refuse_blocked(by.address)?;
        let armed = self
            .armed
            .as_mut()
            .filter(|a| !a.pin_taken)
            .ok_or(GateError::NotArmed)?;
        armed.pin_taken = true;
        let pin = armed.pin.clone();
        self.last_attempt = Some(LastAttempt {
            by,
            result: Attempt::InProgress,
        });
        self.events.push_back(TrustEvent::PinTaken);
        Ok(PinTicket {
            secret: Secret::Pin(pin),
            arming: self.arming,
            by: None,
        })
    }

    /// Hands the arming's link secret to one exchange. Any number may run;
    /// a wrong guess leaves the link (and the PIN) as they are, since 128
    /// bits cannot be guessed online. The first success ends the arming.
    pub fn use_link(&mut self, by: Claimant, now: Instant) -> Result<PinTicket, GateError> {
        self.expire(now);
        self.refuse_blocked(by.address)?;
        let armed = self.armed.as_ref().ok_or(GateError::NotArmed)?;
        Ok(PinTicket {
            secret: Secret::Link(armed.link.clone()),
            arming: self.arming,
            by: Some(by),
        })
    }

    /// Reports how the exchange that took the PIN (or the link's secret)
    /// ended. `Some(fp)` if the device was paired, `None` if it failed for
    /// any reason. A success ends the arming: its PIN and its link are
    /// both used.
    pub fn report(&mut self, ticket: PinTicket, paired: Option<Fingerprint>) {
        // A report for an older arming must not overwrite what the console
        // shows for the current one.
        if ticket.arming == self.arming {
            if paired.is_some() && self.armed.take().is_some() {
                self.events.push_back(TrustEvent::Disarmed);
            }
            match (ticket.by, paired) {
                (Some(by), Some(fingerprint)) => {
                    self.last_attempt = Some(LastAttempt {
                        by,
                        result: Attempt::Paired { fingerprint },
                    })
                }
                // A wrong guess at the link says nothing about the PIN.
                (Some(_), None) => {}
                (None, paired) => {
                    if let Some(last) = &mut self.last_attempt {
                        last.result = match paired {
                            Some(fingerprint) => Attempt::Paired { fingerprint },
                            None => Attempt::Failed,
                        };
                    }
                }
            }
        }
        self.events.push_back(TrustEvent::PinAttemptFinished {
            paired: paired.is_some(),
        });
    }

    /// How the last use of the armed PIN went, and who made it, since the
    /// last arming.
    pub fn last_attempt(&self) -> Option<&LastAttempt> {
        self.last_attempt.as_ref()
    }

    /// A native pairing exchange started (the client was told `pairing`).
    pub fn begin_exchange(&mut self, by: Claimant, now: Instant) {
        self.exchange = Some(Exchange { by, since: now });
        self.events.push_back(TrustEvent::ExchangeChanged);
    }

    /// The exchange begun by `fingerprint` ended, whichever way.
    pub fn end_exchange(&mut self, fingerprint: &Fingerprint) {
        if self
            .exchange
            .as_ref()
            .is_some_and(|e| &e.by.fingerprint == fingerprint)
        {
            self.exchange = None;
            self.events.push_back(TrustEvent::ExchangeChanged);
        }
    }

    /// The native pairing exchange in progress, if any.
    pub fn exchange(&self) -> Option<&Exchange> {
        self.exchange.as_ref()
    }

    // ---- the one-time PIN ------------------------------------------------

    /// Makes a one-time PIN, replacing any active one.
    pub fn create_otp(
        &mut self,
        passphrase: Passphrase,
        name: Option<DisplayName>,
        now: Instant,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> OneTimePin {
        self.expire(now);
        let otp = OneTimePin::new(passphrase, name, now, rng);
        self.otp = Some(otp.clone());
        self.otp_tries.clear();
        self.last_otp = None;
        self.events.push_back(TrustEvent::OtpChanged);
        otp
    }

    /// Cancels the active one-time PIN; whether there was one.
    pub fn cancel_otp(&mut self) -> bool {
        let had = self.otp.take().is_some();
        self.otp_tries.clear();
        if had {
            self.events.push_back(TrustEvent::OtpChanged);
        }
        had
    }

    /// The active one-time PIN, if any.
    pub fn otp(&mut self, now: Instant) -> Option<&OneTimePin> {
        self.expire(now);
        self.active_otp()
    }

    /// [`Gate::otp`] as of the last expiry.
    pub fn active_otp(&self) -> Option<&OneTimePin> {
        self.otp.as_ref()
    }

    /// The active one-time PIN's wrong tries so far, oldest first.
    pub fn otp_tries(&self) -> &[OtpTry] {
        &self.otp_tries
    }

    /// A Moonlight request that carries `otpauth` (the proof of a one-time
    /// PIN, over the `salt` text it sent): one transaction. A request the
    /// waiting list would refuse is refused before the one-time PIN is
    /// touched (a full list must not cost the client a try); then the try
    /// is counted and checked ([`MAX_OTP_TRIES`]), and the request is
    /// recorded with a PIN already entered, so no one has to type it: on a
    /// match the one-time PIN (and the name it was made for), on a mismatch
    /// a random one, so the pairing fails at the client's check as on
    /// Apollo. A second try from the same address is refused
    /// ([`OtpError::AlreadyTried`]) and records nothing.
    pub fn add_otp_request(
        &mut self,
        mut request: PendingRequest,
        otpauth: &[u8; 32],
        salt_as_sent: &str,
        now: Instant,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<PendingId, OtpRequestError> {
        let fingerprint = Fingerprint::of_der(&request.cert_der);
        self.admissible(&fingerprint, request.address.ip(), now)?;
        let address = request.address.ip().to_canonical();
        let (pin, check) = match self.redeem_otp(otpauth, salt_as_sent, address, now) {
            Ok(grant) => {
                if let Some(name) = grant.name {
                    request.name = name;
                }
                (grant.pin, OtpCheck::Matched)
            }
            Err(OtpError::Mismatch) => (Pin::random(rng), OtpCheck::Mismatched),
            Err(e) => return Err(e.into()),
        };
        let id = self.add_request(request, Some(check), now)?;
        if let Some(last) = &mut self.last_otp {
            last.request = Some(id);
        }
        self.enter_pin(id, pin, None, now)?;
        Ok(id)
    }

    /// One try at the one-time PIN from `address`: counted before the
    /// check (at most one per address, [`MAX_OTP_TRIES`] in all), then
    /// `otpauth` is checked. A match uses the PIN up; so does the last
    /// allowed try, right or wrong. Each counted try is recorded for the
    /// console.
    fn redeem_otp(
        &mut self,
        otpauth: &[u8; 32],
        salt_as_sent: &str,
        address: IpAddr,
        now: Instant,
    ) -> Result<OtpGrant, OtpError> {
        self.expire(now);
        let otp = self.otp.as_ref().ok_or(OtpError::NotAvailable)?;
        let key = AddressKey::of(address);
        if self
            .otp_tries
            .iter()
            .any(|t| AddressKey::of(t.address) == key)
        {
            return Err(OtpError::AlreadyTried);
        }
        self.otp_tries.push(OtpTry { address, at: now });
        let tries = self.otp_tries.len();
        let result = otp.redeem(otpauth, salt_as_sent);
        self.events.push_back(TrustEvent::OtpChanged);
        self.last_otp = Some(LastOtp {
            address,
            matched: result.is_ok(),
            request: None,
        });
        let used_up = result.is_ok() || tries >= MAX_OTP_TRIES;
        let detail = match (&result, used_up) {
            (Ok(_), _) => format!("try {tries} of {MAX_OTP_TRIES} matched; used up"),
            (Err(_), true) => format!("try {tries} of {MAX_OTP_TRIES} was wrong; used up"),
            (Err(_), false) => format!(
                "try {tries} of {MAX_OTP_TRIES} was wrong; {} left",
                MAX_OTP_TRIES - tries
            ),
        };
        self.audit.push_back(
            Entry::new(Event::OtpUsed, Door::Gamestream)
                .address(address)
                .outcome(if result.is_ok() {
                    Outcome::Ok
                } else {
                    Outcome::Failed
                })
                .detail(detail),
        );
        if used_up {
            self.otp = None;
            self.otp_tries.clear();
        }
        result
    }

    /// The last use of a one-time PIN since one was made.
    pub fn last_otp(&self) -> Option<&LastOtp> {
        self.last_otp.as_ref()
    }

    // ---- pending requests ----------------------------------------------

    /// Whether a request with this certificate from `ip` would be recorded
    /// now: `Ok(Some(id))` if it would replace request `id` (same
    /// certificate, same address), `Ok(None)` if it would be added, the
    /// refusal otherwise. Changes nothing but expiry.
    fn admissible(
        &mut self,
        fingerprint: &Fingerprint,
        ip: IpAddr,
        now: Instant,
    ) -> Result<Option<PendingId>, GateError> {
        self.expire(now);
        self.refuse_blocked(ip)?;
        let from = AddressKey::of(ip);
        let previous = self
            .pending
            .iter()
            .find(|(_, p)| &p.fingerprint == fingerprint)
            .map(|(id, p)| (*id, AddressKey::of(p.request.address.ip()), p.storing));
        match previous {
            Some((_, _, true)) => Err(GateError::Storing),
            Some((_, waiting_from, _)) if waiting_from != from => Err(GateError::WaitingElsewhere),
            Some((id, _, _)) => Ok(Some(id)),
            None if self.pending.len() >= self.config.max_pending => Err(GateError::TooManyPending),
            None => {
                let same_address = self
                    .pending
                    .values()
                    .filter(|p| AddressKey::of(p.request.address.ip()) == from)
                    .count();
                if same_address >= self.config.max_pending_per_address {
                    Err(GateError::TooManyFromAddress(from))
                } else {
                    Ok(None)
                }
            }
        }
    }

    /// Records a request; a request from the same certificate and address
    /// replaces the previous one. Refused when the same certificate waits
    /// from another address, or when [`GateConfig::max_pending`] requests
    /// (or [`GateConfig::max_pending_per_address`] from this address) wait.
    pub fn add_pending(
        &mut self,
        request: PendingRequest,
        now: Instant,
    ) -> Result<PendingId, GateError> {
        self.add_request(request, None, now)
    }

    /// [`Gate::add_pending`], for a request that came with a one-time PIN
    /// (`otp`) or not.
    fn add_request(
        &mut self,
        request: PendingRequest,
        otp: Option<OtpCheck>,
        now: Instant,
    ) -> Result<PendingId, GateError> {
        let fingerprint = Fingerprint::of_der(&request.cert_der);
        if let Some(old) = self.admissible(&fingerprint, request.address.ip(), now)? {
            self.finish(old, PendingOutcome::Replaced);
        }
        let id = PendingId(self.next_id);
        self.next_id += 1;
        let waiting = Entry::new(Event::RequestWaiting, Door::of(request.kind))
            .device(DeviceRef::new(fingerprint, &request.name, None))
            .address(request.address.ip());
        self.audit.push_back(match (request.needs, otp) {
            (Needs::Approval, _) => waiting.detail("waits for approval in the console"),
            (Needs::Pin, None) => waiting.detail("waits for the PIN Moonlight shows"),
            (Needs::Pin, Some(_)) => waiting
                .via(Via::Otp)
                .detail("pairs with the one-time PIN; nothing to type in the console"),
        });
        self.pending.insert(
            id,
            Pending {
                request,
                fingerprint,
                created: now,
                expires: now + self.config.pending_ttl,
                pin: PinState::Waiting,
                storing: false,
                otp,
            },
        );
        self.events.push_back(TrustEvent::PendingAdded { id });
        Ok(id)
    }

    /// All waiting requests, oldest first.
    pub fn pending(&mut self, now: Instant) -> impl Iterator<Item = (PendingId, &Pending)> {
        self.expire(now);
        self.waiting()
    }

    /// [`Gate::pending`] as of the last expiry.
    pub fn waiting(&self) -> impl Iterator<Item = (PendingId, &Pending)> {
        self.pending.iter().map(|(id, p)| (*id, p))
    }

    /// One waiting request, as of the last expiry.
    pub fn request(&self, id: PendingId) -> Option<&Pending> {
        self.pending.get(&id)
    }

    /// One waiting request.
    pub fn get_pending(&mut self, id: PendingId, now: Instant) -> Option<&Pending> {
        self.expire(now);
        self.pending.get(&id)
    }

    /// Ends a request with `outcome` and returns it; the outcome is kept for
    /// [`Gate::outcome`].
    pub fn finish(&mut self, id: PendingId, outcome: PendingOutcome) -> Option<Pending> {
        let pending = self.pending.remove(&id)?;
        if self.outcomes.len() >= OUTCOMES_KEPT {
            self.outcomes.pop_front();
        }
        self.outcomes.push_back((id, outcome));
        self.events
            .push_back(TrustEvent::PendingRemoved { id, outcome });
        let undecided = match outcome {
            PendingOutcome::Expired => Some(Event::RequestExpired),
            PendingOutcome::Abandoned => Some(Event::RequestAbandoned),
            PendingOutcome::Replaced => Some(Event::RequestReplaced),
            // Decisions: recorded by whoever decided.
            PendingOutcome::Approved
            | PendingOutcome::Denied
            | PendingOutcome::Paired
            | PendingOutcome::PinRejected
            | PendingOutcome::MoonlightQtBug => None,
        };
        if let Some(event) = undecided {
            self.audit.push_back(pending.audit_entry(event));
        }
        Some(pending)
    }

    /// How a recently finished request ended.
    pub fn outcome(&self, id: PendingId) -> Option<PendingOutcome> {
        self.outcomes
            .iter()
            .rev()
            .find(|(i, _)| *i == id)
            .map(|(_, o)| *o)
    }

    /// Marks request `id`, which must need `needs`, as having its device
    /// written to the registry, and returns it. Until
    /// [`Gate::end_storing`], it cannot be denied, replaced or expired, so
    /// the write can run without the gate locked (`Trust::admit_request`).
    pub fn begin_storing(
        &mut self,
        id: PendingId,
        needs: Needs,
        now: Instant,
    ) -> Result<&Pending, GateError> {
        self.expire(now);
        let pending = self.pending.get_mut(&id).ok_or(GateError::UnknownRequest)?;
        if pending.request.needs != needs {
            return Err(GateError::WrongNeed(pending.request.needs));
        }
        if pending.storing {
            return Err(GateError::Storing);
        }
        pending.storing = true;
        Ok(pending)
    }

    /// The write [`Gate::begin_storing`] announced is over: the request
    /// ends with `outcome`, or, if the device could not be stored
    /// (`None`), waits again as before.
    pub fn end_storing(&mut self, id: PendingId, outcome: Option<PendingOutcome>) {
        match outcome {
            Some(outcome) => {
                self.finish(id, outcome);
            }
            None => {
                if let Some(p) = self.pending.get_mut(&id) {
                    p.storing = false;
                }
            }
        }
    }

    /// Denies every waiting request (a flood, dismissed in one click);
    /// returns them.
    pub fn deny_all(&mut self, now: Instant) -> Vec<Pending> {
        self.expire(now);
        let ids: Vec<PendingId> = self
            .pending
            .iter()
            .filter(|(_, p)| !p.storing)
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter()
            .filter_map(|id| self.finish(id, PendingOutcome::Denied))
            .collect()
    }

    /// Denies every waiting request from `ip` (one flooding address,
    /// dismissed in one click); returns them.
    pub fn deny_from(&mut self, ip: IpAddr, now: Instant) -> Vec<Pending> {
        self.expire(now);
        let from = AddressKey::of(ip);
        let ids: Vec<PendingId> = self
            .pending
            .iter()
            .filter(|(_, p)| !p.storing && AddressKey::of(p.request.address.ip()) == from)
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter()
            .filter_map(|id| self.finish(id, PendingOutcome::Denied))
            .collect()
    }

    /// Blocks `ip` for [`BLOCK_TTL`] from `now` (again: the hour starts
    /// over): its waiting requests are denied (returned), and every new one
    /// is refused with [`GateError::Blocked`] until then. Refused with
    /// [`GateError::TooManyBlocks`] when [`MAX_BLOCKS`] other addresses are
    /// blocked.
    pub fn block(&mut self, ip: IpAddr, now: Instant) -> Result<(Block, Vec<Pending>), GateError> {
        self.expire(now);
        let address = AddressKey::of(ip);
        if !self.blocks.contains_key(&address) && self.blocks.len() >= MAX_BLOCKS {
            return Err(GateError::TooManyBlocks);
        }
        let until = now + BLOCK_TTL;
        self.blocks.insert(address, until);
        self.events.push_back(TrustEvent::BlocksChanged);
        let denied = self.deny_from(ip, now);
        Ok((Block { address, until }, denied))
    }

    /// Lifts the block of `ip`; whether there was one.
    pub fn unblock(&mut self, ip: IpAddr, now: Instant) -> bool {
        self.expire(now);
        let lifted = self.blocks.remove(&AddressKey::of(ip)).is_some();
        if lifted {
            self.events.push_back(TrustEvent::BlocksChanged);
        }
        lifted
    }

    /// The blocked addresses, in address order.
    pub fn blocks(&mut self, now: Instant) -> impl Iterator<Item = Block> + '_ {
        self.expire(now);
        self.blocked()
    }

    /// [`Gate::blocks`] as of the last expiry.
    pub fn blocked(&self) -> impl Iterator<Item = Block> + '_ {
        self.blocks.iter().map(|(address, until)| Block {
            address: *address,
            until: *until,
        })
    }

    /// [`GateError::Blocked`] if `ip` is blocked (expiry already run).
    fn refuse_blocked(&self, ip: IpAddr) -> Result<(), GateError> {
        let address = AddressKey::of(ip);
        if self.blocks.contains_key(&address) {
            Err(GateError::Blocked(address))
        } else {
            Ok(())
        }
    }

    /// Denies a request: it is dismissed, not blocklisted.
    pub fn deny(&mut self, id: PendingId, now: Instant) -> Result<Pending, GateError> {
        self.expire(now);
        if self.pending.get(&id).is_some_and(|p| p.storing) {
            return Err(GateError::Storing);
        }
        self.finish(id, PendingOutcome::Denied)
            .ok_or(GateError::UnknownRequest)
    }

    /// The console typed the PIN a Moonlight client shows. One entry per
    /// request: a wrong PIN fails the pairing, and the client starts over.
    pub fn enter_pin(
        &mut self,
        id: PendingId,
        pin: Pin,
        label: Option<Label>,
        now: Instant,
    ) -> Result<(), GateError> {
        self.expire(now);
        let pending = self.pending.get_mut(&id).ok_or(GateError::UnknownRequest)?;
        if pending.request.needs != Needs::Pin {
            return Err(GateError::WrongNeed(pending.request.needs));
        }
        if pending.pin != PinState::Waiting {
            return Err(GateError::PinAlreadyEntered);
        }
        pending.pin = PinState::Entered { pin, label };
        pending.expires = pending.expires.max(now + PIN_ENTRY_GRACE);
        self.events.push_back(TrustEvent::PinEntered { id });
        Ok(())
    }

    /// The front door collects the entered PIN (once).
    pub fn claim_pin(&mut self, id: PendingId, now: Instant) -> Option<(Pin, Option<Label>)> {
        self.expire(now);
        let pending = self.pending.get_mut(&id)?;
        match std::mem::replace(&mut pending.pin, PinState::Pairing) {
            PinState::Entered { pin, label } => Some((pin, label)),
            other => {
                pending.pin = other;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn req(cert: &[u8], needs: Needs) -> PendingRequest {
        PendingRequest {
            kind: Kind::Native,
            name: DisplayName::sanitize("dev").unwrap(),
            cert_der: cert.to_vec(),
            address: "127.0.0.1:1".parse().unwrap(),
            needs,
        }
    }

    fn who() -> Claimant {
        Claimant {
            address: "192.0.2.50".parse().unwrap(),
            name: DisplayName::sanitize("attacker").unwrap(),
            fingerprint: Fingerprint::of_der(b"who"),
        }
    }

    fn req_from(cert: &[u8], address: &str) -> PendingRequest {
        PendingRequest {
            address: address.parse().unwrap(),
            ..req(cert, Needs::Approval)
        }
    }

    fn drain(g: &mut Gate) -> Vec<TrustEvent> {
        std::iter::from_fn(|| g.poll_event()).collect()
    }

    #[test]
    fn pin_is_four_digits_and_single_use() {
        let mut g = Gate::new(GateConfig::default());
        let mut rng = StdRng::seed_from_u64(7);
        let t0 = Instant::now();
        assert_eq!(g.take_pin(who(), t0).unwrap_err(), GateError::NotArmed);
        let armed = g.arm(t0, &mut rng);
        assert_eq!(armed.pin.as_str().len(), 4);
        assert!(armed.pin.as_str().bytes().all(|b| b.is_ascii_digit()));
        let ticket = g.take_pin(who(), t0).unwrap();
        assert_eq!(ticket.secret().as_bytes(), armed.pin.as_bytes());
        assert_eq!(g.take_pin(who(), t0).unwrap_err(), GateError::NotArmed);
        assert_eq!(g.last_attempt().unwrap().result, Attempt::InProgress);
        assert_eq!(g.last_attempt().unwrap().by, who());
        g.report(ticket, None);
        assert_eq!(g.last_attempt().unwrap().result, Attempt::Failed);
        // Failure is remembered until the next arming.
        assert_eq!(g.take_pin(who(), t0).unwrap_err(), GateError::NotArmed);
        g.arm(t0, &mut rng);
        assert_eq!(g.last_attempt(), None);
        let events = drain(&mut g);
        assert!(events.contains(&TrustEvent::PinTaken));
        assert!(events.contains(&TrustEvent::PinAttemptFinished { paired: false }));
    }

    #[test]
    fn link_survives_wrong_guesses_and_a_success_ends_the_arming() {
        let mut g = Gate::new(GateConfig::default());
        let mut rng = StdRng::seed_from_u64(9);
        let t0 = Instant::now();
        assert_eq!(g.use_link(who(), t0).unwrap_err(), GateError::NotArmed);
        let armed = g.arm(t0, &mut rng);
        assert_eq!(armed.link.as_bytes().len(), LINK_SECRET_LEN);
        assert_ne!(
            armed.link,
            g.arm(t0, &mut rng).link,
            "a new arming, a new link"
        );
        let armed = g.armed(t0).unwrap().clone();
        // A wrong typed PIN spends the PIN, not the link.
        let pin = g.take_pin(who(), t0).unwrap();
        g.report(pin, None);
        assert!(!g.pin_armed(t0));
        assert_eq!(g.last_attempt().unwrap().result, Attempt::Failed);
        // Wrong guesses at the link, from anyone, any number.
        for _ in 0..10 {
            let t = g.use_link(who(), t0).unwrap();
            assert_eq!(t.secret().as_bytes(), armed.link.as_bytes());
            g.report(t, None);
        }
        assert!(g.armed(t0).is_some());
        assert_eq!(g.last_attempt().unwrap().result, Attempt::Failed);
        // The first success ends the arming.
        let t = g.use_link(who(), t0).unwrap();
        let late = g.use_link(who(), t0).unwrap();
        g.report(t, Some(who().fingerprint));
        assert!(g.armed(t0).is_none());
        assert_eq!(
            g.last_attempt().unwrap().result,
            Attempt::Paired {
                fingerprint: who().fingerprint
            }
        );
        assert_eq!(g.use_link(who(), t0).unwrap_err(), GateError::NotArmed);
        g.report(late, None);
        assert!(drain(&mut g).contains(&TrustEvent::Disarmed));
    }

    #[test]
    fn a_pin_success_ends_the_link_too() {
        let mut g = Gate::new(GateConfig::default());
        let mut rng = StdRng::seed_from_u64(3);
        let t0 = Instant::now();
        g.arm(t0, &mut rng);
        let pin = g.take_pin(who(), t0).unwrap();
        assert!(
            g.armed(t0).is_some(),
            "the link pairs while the PIN is in use"
        );
        g.report(pin, Some(who().fingerprint));
        assert!(g.armed(t0).is_none());
        assert_eq!(g.use_link(who(), t0).unwrap_err(), GateError::NotArmed);
    }

    #[test]
    fn link_secret_hex_round_trips() {
        let s = LinkSecret::from_bytes([0xab; LINK_SECRET_LEN]);
        assert_eq!(s.to_hex().as_str(), "ab".repeat(16));
        assert_eq!(LinkSecret::parse_hex(&"AB".repeat(16)), Some(s));
        assert_eq!(LinkSecret::parse_hex(&"ab".repeat(15)), None);
        assert_eq!(LinkSecret::parse_hex(&"zz".repeat(16)), None);
        assert_eq!(
            format!("{:?}", LinkSecret::from_bytes([1; 16])),
            "LinkSecret(****)"
        );
    }

    #[test]
    fn stale_report_does_not_overwrite_new_arming() {
        let mut g = Gate::new(GateConfig::default());
        let mut rng = StdRng::seed_from_u64(1);
        let t0 = Instant::now();
        g.arm(t0, &mut rng);
        let old = g.take_pin(who(), t0).unwrap();
        g.arm(t0, &mut rng);
        g.report(old, None);
        assert_eq!(g.last_attempt(), None);
        assert!(g.armed(t0).is_some());
    }

    #[test]
    fn pin_expires_after_ttl() {
        let mut g = Gate::new(GateConfig::default());
        let mut rng = StdRng::seed_from_u64(2);
        let t0 = Instant::now();
        g.arm(t0, &mut rng);
        let ttl = g.config().pin_ttl;
        assert!(g.armed(t0 + ttl - Duration::from_millis(1)).is_some());
        assert_eq!(g.next_deadline(), Some(t0 + ttl));
        assert!(g.armed(t0 + ttl).is_none());
        assert_eq!(
            g.take_pin(who(), t0 + ttl).unwrap_err(),
            GateError::NotArmed
        );
        assert!(drain(&mut g).contains(&TrustEvent::Disarmed));
    }

    #[test]
    fn pins_are_spread_over_all_digits() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            seen.insert(Pin::random(&mut rng).as_str().to_owned());
        }
        // 2000 draws from 10,000 values: ~1,800 distinct expected.
        assert!(seen.len() > 1500, "{}", seen.len());
        assert!(seen.iter().any(|p| p.starts_with('0')));
    }

    #[test]
    fn pin_parse() {
        assert!("0123".parse::<Pin>().is_ok());
        for bad in ["123", "12345", "12a4", "", "١٢٣٤"] {
            assert_eq!(bad.parse::<Pin>().unwrap_err(), GateError::BadPin, "{bad}");
        }
        assert_eq!(format!("{:?}", "1234".parse::<Pin>().unwrap()), "Pin(****)");
    }

    #[test]
    fn pending_dedupes_by_fingerprint_and_expires() {
        let mut g = Gate::new(GateConfig::default());
        let t0 = Instant::now();
        let a = g.add_pending(req(b"a", Needs::Approval), t0).unwrap();
        let a2 = g.add_pending(req(b"a", Needs::Approval), t0).unwrap();
        assert_ne!(a, a2);
        assert_eq!(g.outcome(a), Some(PendingOutcome::Replaced));
        assert_eq!(g.pending(t0).count(), 1);
        let b = g
            .add_pending(req(b"b", Needs::Approval), t0 + Duration::from_secs(10))
            .unwrap();
        let ttl = g.config().pending_ttl;
        assert_eq!(
            g.pending(t0 + ttl).map(|(id, _)| id).collect::<Vec<_>>(),
            vec![b]
        );
        assert_eq!(g.outcome(a2), Some(PendingOutcome::Expired));
        assert_eq!(g.pending(t0 + ttl + Duration::from_secs(10)).count(), 0);
        let events = drain(&mut g);
        assert!(events.contains(&TrustEvent::PendingRemoved {
            id: b,
            outcome: PendingOutcome::Expired
        }));
    }

    #[test]
    fn pending_is_capped_and_refuses_the_new_one() {
        let mut g = Gate::new(GateConfig {
            max_pending: 3,
            ..GateConfig::default()
        });
        let t0 = Instant::now();
        let ids: Vec<_> = (0..3u8)
            .map(|i| g.add_pending(req(&[i], Needs::Approval), t0).unwrap())
            .collect();
        assert_eq!(
            g.add_pending(req(b"new", Needs::Approval), t0).unwrap_err(),
            GateError::TooManyPending
        );
        // A repeat from a waiting certificate still gets through (it replaces).
        g.add_pending(req(&[0], Needs::Approval), t0).unwrap();
        g.deny(ids[1], t0).unwrap();
        g.add_pending(req(b"new", Needs::Approval), t0).unwrap();
        assert_eq!(g.pending(t0).count(), 3);
    }

    #[test]
    fn deny_dismisses_without_blocklisting() {
        let mut g = Gate::new(GateConfig::default());
        let t0 = Instant::now();
        let id = g.add_pending(req(b"x", Needs::Approval), t0).unwrap();
        g.deny(id, t0).unwrap();
        assert_eq!(g.outcome(id), Some(PendingOutcome::Denied));
        assert_eq!(g.deny(id, t0).unwrap_err(), GateError::UnknownRequest);
        assert!(g.add_pending(req(b"x", Needs::Approval), t0).is_ok());
    }

    #[test]
    fn a_request_being_stored_is_ended_only_by_its_writer() {
        let mut g = Gate::new(GateConfig::default());
        let t0 = Instant::now();
        let ttl = g.config().pending_ttl;
        let id = g.add_pending(req(b"s", Needs::Approval), t0).unwrap();
        let other = g.add_pending(req(b"o", Needs::Approval), t0).unwrap();
        g.begin_storing(id, Needs::Approval, t0).unwrap();
        assert_eq!(
            g.begin_storing(id, Needs::Approval, t0).unwrap_err(),
            GateError::Storing,
            "one writer"
        );
        assert_eq!(g.deny(id, t0).unwrap_err(), GateError::Storing);
        assert_eq!(
            g.add_pending(req(b"s", Needs::Approval), t0).unwrap_err(),
            GateError::Storing,
            "not replaced"
        );
        let denied = g.deny_all(t0);
        assert_eq!(denied.len(), 1, "the other one only");
        assert_eq!(denied[0].fingerprint, Fingerprint::of_der(b"o"));
        assert_eq!(g.outcome(other), Some(PendingOutcome::Denied));
        // Past its deadline, still there while the write runs.
        let late = t0 + ttl + Duration::from_secs(1);
        assert_eq!(g.next_deadline(), None);
        let listed: Vec<(PendingId, bool)> = g.pending(late).map(|(i, p)| (i, p.storing)).collect();
        assert_eq!(listed, [(id, true)]);

        // The write failed: it waits (and expires) as before.
        g.end_storing(id, None);
        assert!(!g.get_pending(id, t0).unwrap().storing);
        assert_eq!(g.pending(late).count(), 0);
        assert_eq!(g.outcome(id), Some(PendingOutcome::Expired));

        let id = g.add_pending(req(b"s", Needs::Approval), t0).unwrap();
        g.begin_storing(id, Needs::Approval, t0).unwrap();
        g.end_storing(id, Some(PendingOutcome::Approved));
        assert_eq!(g.outcome(id), Some(PendingOutcome::Approved));
        assert_eq!(g.pending(t0).count(), 0);
    }

    #[test]
    fn pin_entry_is_single_and_claimed_once() {
        let mut g = Gate::new(GateConfig::default());
        let t0 = Instant::now();
        let knock = g.add_pending(req(b"k", Needs::Approval), t0).unwrap();
        let id = g.add_pending(req(b"m", Needs::Pin), t0).unwrap();
        let pin: Pin = "4321".parse().unwrap();
        assert_eq!(
            g.begin_storing(id, Needs::Approval, t0).unwrap_err(),
            GateError::WrongNeed(Needs::Pin)
        );
        assert_eq!(
            GateError::WrongNeed(Needs::Pin).to_string(),
            "this request needs the PIN that Moonlight shows, not that"
        );
        assert!(g.begin_storing(knock, Needs::Approval, t0).is_ok());
        g.end_storing(knock, None);
        assert_eq!(
            g.enter_pin(knock, pin.clone(), None, t0).unwrap_err(),
            GateError::WrongNeed(Needs::Approval)
        );
        assert!(g.claim_pin(id, t0).is_none());
        g.enter_pin(id, pin.clone(), Label::parse("TV").unwrap(), t0)
            .unwrap();
        assert_eq!(
            g.enter_pin(id, pin.clone(), None, t0).unwrap_err(),
            GateError::PinAlreadyEntered
        );
        assert_eq!(
            g.claim_pin(id, t0),
            Some((pin.clone(), Label::parse("TV").unwrap()))
        );
        assert_eq!(g.claim_pin(id, t0), None);
        assert_eq!(
            g.enter_pin(id, pin, None, t0).unwrap_err(),
            GateError::PinAlreadyEntered
        );
        g.finish(id, PendingOutcome::Paired);
        assert_eq!(g.outcome(id), Some(PendingOutcome::Paired));
    }

    #[test]
    fn pin_entered_late_gets_a_grace_period() {
        let mut g = Gate::new(GateConfig::default());
        let t0 = Instant::now();
        let ttl = g.config().pending_ttl;
        let id = g.add_pending(req(b"m", Needs::Pin), t0).unwrap();
        let late = t0 + ttl - Duration::from_secs(1);
        g.enter_pin(id, "1111".parse().unwrap(), None, late)
            .unwrap();
        assert!(g
            .get_pending(id, t0 + ttl + Duration::from_secs(30))
            .is_some());
        assert!(g.get_pending(id, late + PIN_ENTRY_GRACE).is_none());
    }

    #[test]
    fn one_address_cannot_fill_the_waiting_list() {
        let mut g = Gate::new(GateConfig::default());
        let t0 = Instant::now();
        let cap = g.config().max_pending_per_address;
        for i in 0..cap as u8 {
            g.add_pending(req_from(&[i], "10.0.0.1:1000"), t0).unwrap();
        }
        let key = AddressKey::of("10.0.0.1".parse().unwrap());
        assert_eq!(
            g.add_pending(req_from(b"more", "10.0.0.1:2000"), t0)
                .unwrap_err(),
            GateError::TooManyFromAddress(key)
        );
        // Another address still gets in; a repeat from a waiting
        // certificate at the same address still replaces.
        g.add_pending(req_from(b"other", "10.0.0.2:1000"), t0)
            .unwrap();
        g.add_pending(req_from(&[0], "10.0.0.1:3000"), t0).unwrap();
        assert_eq!(g.pending(t0).count(), cap + 1);
    }

    #[test]
    fn ipv6_is_limited_per_full_address_and_mapped_ipv4_as_ipv4() {
        let mut g = Gate::new(GateConfig::default());
        let t0 = Instant::now();
        let cap = g.config().max_pending_per_address;
        for i in 0..cap as u8 {
            g.add_pending(req_from(&[i], "[2001:db8:1:2::66]:1"), t0)
                .unwrap();
        }
        let err = g
            .add_pending(req_from(b"x", "[2001:db8:1:2::66]:2"), t0)
            .unwrap_err();
        assert_eq!(
            err.to_string().matches("2001:db8:1:2::66 ").count(),
            1,
            "{err}"
        );
        // Another address of the same /64 (a home LAN) still gets in.
        g.add_pending(req_from(b"y", "[2001:db8:1:2::2]:1"), t0)
            .unwrap();
        assert_eq!(
            AddressKey::of("::ffff:10.1.2.3".parse().unwrap()),
            AddressKey::of("10.1.2.3".parse().unwrap())
        );
        assert_ne!(
            AddressKey::of("2001:db8:a::1".parse().unwrap()),
            AddressKey::of("2001:db8:a::2".parse().unwrap())
        );
        assert_eq!(
            AddressKey::of("2001:db8:a::1".parse().unwrap()).to_string(),
            "2001:db8:a::1"
        );
    }

    #[test]
    fn a_replayed_certificate_from_the_same_64_does_not_replace_the_victim() {
        let mut g = Gate::new(GateConfig::default());
        let t0 = Instant::now();
        let victim = g
            .add_pending(req_from(b"v", "[2001:db8:a::2]:1"), t0)
            .unwrap();
        assert_eq!(
            g.add_pending(req_from(b"v", "[2001:db8:a::66]:1"), t0)
                .unwrap_err(),
            GateError::WaitingElsewhere
        );
        let p = g.get_pending(victim, t0).unwrap();
        assert_eq!(p.request.address.ip().to_string(), "2001:db8:a::2");
    }

    #[test]
    fn a_block_refuses_an_address_at_every_door_for_an_hour_and_can_be_lifted() {
        let mut g = Gate::new(GateConfig::default());
        let mut rng = StdRng::seed_from_u64(11);
        let t0 = Instant::now();
        let bad = "10.0.0.66:1";
        let ip: IpAddr = "10.0.0.66".parse().unwrap();
        let flood: Vec<_> = (0..3u8)
            .map(|i| g.add_pending(req_from(&[i], bad), t0).unwrap())
            .collect();
        let other = g.add_pending(req_from(b"o", "10.0.0.7:1"), t0).unwrap();
        drain(&mut g);
        let (block, denied) = g.block(ip, t0).unwrap();
        assert_eq!(block.until, t0 + BLOCK_TTL);
        assert_eq!(denied.len(), 3);
        assert_eq!(g.outcome(flood[0]), Some(PendingOutcome::Denied));
        assert!(g.get_pending(other, t0).is_some());
        assert!(drain(&mut g).contains(&TrustEvent::BlocksChanged));
        let key = AddressKey::of(ip);
        // Knocks and Moonlight requests, one-time PINs, the armed PIN.
        assert_eq!(
            g.add_pending(req_from(b"new", bad), t0).unwrap_err(),
            GateError::Blocked(key)
        );
        let pass = Passphrase::parse("Passphrase1").unwrap();
        g.create_otp(pass, None, t0, &mut rng);
        assert_eq!(
            g.add_otp_request(req_from(b"otp", bad), &[0; 32], "00", t0, &mut rng)
                .unwrap_err(),
            OtpRequestError::Gate(GateError::Blocked(key))
        );
        assert!(g.otp_tries().is_empty(), "no try counted");
        g.arm(t0, &mut rng);
        let blocked = Claimant {
            address: ip,
            ..who()
        };
        assert_eq!(
            g.take_pin(blocked.clone(), t0).unwrap_err(),
            GateError::Blocked(key)
        );
        assert!(g.armed(t0).is_some(), "the PIN is not spent");
        assert_eq!(g.blocks(t0).collect::<Vec<_>>(), [block]);
        assert_eq!(g.next_deadline(), Some(t0 + g.config().pin_ttl));
        // Lifted: heard again.
        assert!(g.unblock(ip, t0));
        assert!(!g.unblock(ip, t0));
        g.add_pending(req_from(b"new", bad), t0).unwrap();
        // Blocked again, it ends by itself after the hour (recorded).
        g.block(ip, t0).unwrap();
        let late = t0 + BLOCK_TTL;
        assert_eq!(g.blocks(late).count(), 0);
        let audit: Vec<Entry> = std::iter::from_fn(|| g.poll_audit()).collect();
        assert!(audit.iter().any(|e| e.event == Event::BlockExpired));
        g.add_pending(req_from(b"after", bad), late).unwrap();
    }

    #[test]
    fn blocks_are_bounded() {
        let mut g = Gate::new(GateConfig::default());
        let t0 = Instant::now();
        for i in 0..MAX_BLOCKS as u32 {
            g.block(IpAddr::from((0x0a00_0000 + i).to_be_bytes()), t0)
                .unwrap();
        }
        let one_more: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(g.block(one_more, t0).unwrap_err(), GateError::TooManyBlocks);
        // Blocking a blocked address again restarts its hour.
        let later = t0 + Duration::from_secs(60);
        let (again, _) = g.block("10.0.0.0".parse().unwrap(), later).unwrap();
        assert_eq!(again.until, later + BLOCK_TTL);
        assert_eq!(g.blocks(later).count(), MAX_BLOCKS);
    }

    #[test]
    fn deny_from_dismisses_one_address_only() {
        let mut g = Gate::new(GateConfig::default());
        let t0 = Instant::now();
        for i in 0..3u8 {
            g.add_pending(req_from(&[i], "10.0.0.66:1"), t0).unwrap();
        }
        let other = g.add_pending(req_from(b"o", "10.0.0.7:1"), t0).unwrap();
        let denied = g.deny_from("::ffff:10.0.0.66".parse().unwrap(), t0);
        assert_eq!(denied.len(), 3);
        assert_eq!(g.pending(t0).map(|(id, _)| id).collect::<Vec<_>>(), [other]);
        // Deny is no block: the address asks again.
        g.add_pending(req_from(b"again", "10.0.0.66:1"), t0)
            .unwrap();
    }

    #[test]
    fn a_waiting_certificate_from_another_address_is_refused_not_replaced() {
        let mut g = Gate::new(GateConfig::default());
        let t0 = Instant::now();
        let victim = g.add_pending(req_from(b"v", "10.0.0.7:1"), t0).unwrap();
        assert_eq!(
            g.add_pending(req_from(b"v", "10.0.0.66:1"), t0)
                .unwrap_err(),
            GateError::WaitingElsewhere
        );
        let (_, still) = g.pending(t0).next().unwrap();
        assert_eq!(still.request.address.ip().to_string(), "10.0.0.7");
        assert!(g.get_pending(victim, t0).is_some());
    }

    #[test]
    fn deny_all_dismisses_every_waiting_request() {
        let mut g = Gate::new(GateConfig::default());
        let t0 = Instant::now();
        for i in 0..3u8 {
            g.add_pending(req_from(&[i], &format!("10.0.0.{i}:1")), t0)
                .unwrap();
        }
        assert_eq!(g.deny_all(t0).len(), 3);
        assert_eq!(g.pending(t0).count(), 0);
        assert_eq!(g.deny_all(t0).len(), 0);
    }

    #[test]
    fn a_one_time_pin_survives_wrong_tries_one_per_address_and_is_used_up_by_a_match() {
        use crate::otp::{otpauth, OTP_TTL};
        let mut g = Gate::new(GateConfig::default());
        let mut rng = StdRng::seed_from_u64(9);
        let t0 = Instant::now();
        let from = |i: u8| IpAddr::from([192, 0, 2, i]);
        let salt = "00112233445566778899AABBCCDDEEFF";
        let pass = Passphrase::parse("Passphrase1").unwrap();
        let wrong_pass = Passphrase::parse("WrongPass1").unwrap();
        assert_eq!(
            g.redeem_otp(&[0; 32], salt, from(1), t0).unwrap_err(),
            OtpError::NotAvailable
        );
        let otp = g.create_otp(pass.clone(), DisplayName::sanitize("Deck"), t0, &mut rng);
        assert_eq!(g.next_deadline(), Some(t0 + OTP_TTL));
        let right = otpauth(otp.pin(), salt, &pass);
        let wrong = otpauth(otp.pin(), salt, &wrong_pass);
        // Wrong tries from other addresses leave it usable; each is listed.
        for i in 1..MAX_OTP_TRIES as u8 {
            assert_eq!(
                g.redeem_otp(&wrong, salt, from(i), t0).unwrap_err(),
                OtpError::Mismatch
            );
            assert!(g.otp(t0).is_some(), "try {i}");
            assert!(!g.last_otp().unwrap().matched);
        }
        let tried: Vec<IpAddr> = g.otp_tries().iter().map(|t| t.address).collect();
        assert_eq!(
            tried,
            (1..MAX_OTP_TRIES as u8).map(from).collect::<Vec<_>>()
        );
        // One try per address, whatever it sends (not counted).
        assert_eq!(
            g.redeem_otp(&right, salt, from(1), t0).unwrap_err(),
            OtpError::AlreadyTried
        );
        assert_eq!(
            g.redeem_otp(&wrong, salt, "::ffff:192.0.2.2".parse().unwrap(), t0)
                .unwrap_err(),
            OtpError::AlreadyTried
        );
        assert_eq!(g.otp_tries().len(), MAX_OTP_TRIES - 1);
        // The right client, as the last allowed try: granted, then gone.
        let grant = g.redeem_otp(&right, salt, from(99), t0).unwrap();
        assert_eq!(&grant.pin, otp.pin());
        assert!(g.otp(t0).is_none());
        assert!(g.otp_tries().is_empty());
        assert!(g.last_otp().unwrap().matched);
        assert_eq!(
            g.redeem_otp(&right, salt, from(100), t0).unwrap_err(),
            OtpError::NotAvailable
        );
        // MAX_OTP_TRIES wrong tries use it up.
        let otp = g.create_otp(pass.clone(), None, t0, &mut rng);
        assert!(g.otp_tries().is_empty(), "a new PIN starts over");
        let wrong = otpauth(otp.pin(), salt, &wrong_pass);
        for i in 1..=MAX_OTP_TRIES as u8 {
            assert_eq!(
                g.redeem_otp(&wrong, salt, from(i), t0).unwrap_err(),
                OtpError::Mismatch
            );
        }
        assert!(g.otp(t0).is_none());
        let right = otpauth(otp.pin(), salt, &pass);
        assert_eq!(
            g.redeem_otp(&right, salt, from(99), t0).unwrap_err(),
            OtpError::NotAvailable
        );
        let used: Vec<Entry> = std::iter::from_fn(|| g.poll_audit())
            .filter(|e| e.event == Event::OtpUsed)
            .collect();
        assert_eq!(used.len(), 2 * MAX_OTP_TRIES, "each counted try");
        // Expired: not available.
        let otp = g.create_otp(pass.clone(), None, t0, &mut rng);
        let right = otpauth(otp.pin(), salt, &pass);
        assert!(g.otp(t0 + OTP_TTL - Duration::from_millis(1)).is_some());
        assert_eq!(
            g.redeem_otp(&right, salt, from(1), t0 + OTP_TTL)
                .unwrap_err(),
            OtpError::NotAvailable
        );
        // Cancelled: not available.
        let otp = g.create_otp(pass.clone(), None, t0, &mut rng);
        assert!(g.cancel_otp());
        let right = otpauth(otp.pin(), salt, &pass);
        assert_eq!(
            g.redeem_otp(&right, salt, from(1), t0).unwrap_err(),
            OtpError::NotAvailable
        );
        assert!(drain(&mut g).contains(&TrustEvent::OtpChanged));
    }

    #[test]
    fn a_wrong_otp_request_waits_with_a_pin_the_client_cannot_know() {
        use crate::otp::otpauth;
        let mut g = Gate::new(GateConfig::default());
        let mut rng = StdRng::seed_from_u64(10);
        let t0 = Instant::now();
        let salt = "00112233445566778899AABBCCDDEEFF";
        let pass = Passphrase::parse("Passphrase1").unwrap();
        let otp = g.create_otp(pass, None, t0, &mut rng);
        let wrong = otpauth(otp.pin(), salt, &Passphrase::parse("WrongPass1").unwrap());
        let mut r = req_from(b"stranger", "10.0.0.66:1");
        r.needs = Needs::Pin;
        let id = g.add_otp_request(r, &wrong, salt, t0, &mut rng).unwrap();
        assert!(matches!(
            g.get_pending(id, t0).unwrap().pin,
            PinState::Entered { .. }
        ));
        assert!(g.otp(t0).is_some(), "still usable");
        let mut again = req_from(b"stranger", "10.0.0.66:2");
        again.needs = Needs::Pin;
        assert_eq!(
            g.add_otp_request(again, &wrong, salt, t0, &mut rng)
                .unwrap_err(),
            OtpRequestError::Otp(OtpError::AlreadyTried)
        );
        assert!(g.get_pending(id, t0).is_some(), "nothing replaced");
    }

    #[test]
    fn the_exchange_in_progress_is_named_until_it_ends() {
        let mut g = Gate::new(GateConfig::default());
        let t0 = Instant::now();
        g.begin_exchange(who(), t0);
        assert_eq!(g.exchange().unwrap().by, who());
        g.end_exchange(&Fingerprint::of_der(b"someone else"));
        assert!(g.exchange().is_some());
        g.end_exchange(&who().fingerprint);
        assert!(g.exchange().is_none());
        assert!(drain(&mut g).contains(&TrustEvent::ExchangeChanged));
    }

    #[test]
    fn pending_id_deserializes_from_its_display_form_only() {
        let id: PendingId = serde_json::from_str("\"42\"").unwrap();
        assert_eq!(id.to_string(), "42");
        for bad in [
            "\"\"",
            "\"-1\"",
            "\"4 2\"",
            "\"x\"",
            "\"18446744073709551616\"",
        ] {
            let e = serde_json::from_str::<PendingId>(bad).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with(&GateError::UnknownRequest.to_string()),
                "{bad}: {e}"
            );
        }
    }
}
