//! The vocabulary of the trail: what happened ([`Event`]), at which door,
//! how it ended, about which device, and the line as written ([`Entry`],
//! [`Record`]).

use super::*;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A console login (outcome ok / failed / rate_limited).
    Login,
    /// A console logout.
    Logout,
    /// Pairing was armed with a new PIN.
    PairingArmed,
    /// Pairing was disarmed in the console.
    PairingDisarmed,
    /// The armed PIN expired unused.
    PairingExpired,
    /// A device asks to be let in (a native knock, a Moonlight PIN request).
    RequestWaiting,
    /// A waiting request was approved in the console.
    RequestApproved,
    /// A waiting request was denied in the console.
    RequestDenied,
    /// Nobody decided in time.
    RequestExpired,
    /// The device went away while waiting.
    RequestAbandoned,
    /// The same device asked again; its newer request replaces this one.
    RequestReplaced,
    /// The console entered the PIN a Moonlight client shows (the PIN itself
    /// is never recorded).
    PinEntered,
    /// A pairing exchange failed on a wrong PIN.
    PinRejected,
    /// A Moonlight pairing failed after the PIN was entered the way
    /// moonlight-qt's known key bug fails (most likely not a wrong PIN).
    MoonlightBug,
    /// A pairing exchange failed on a wrong pairing-link secret (the link
    /// stays usable; budgeted like other unsolicited entries).
    LinkRejected,
    /// A connection said `hello{intent: pair}` and sent no `pake` before
    /// its deadline (budgeted like other unsolicited entries).
    PairingStalled,
    /// A device was paired (`via` says how).
    Paired,
    /// A device's label was changed.
    Renamed,
    /// A device was removed; its connections were ended.
    Revoked,
    /// What a device may do changed (`detail` says what it may do now, or
    /// until when).
    GrantChanged,
    /// A device was disabled: every door refuses it; it stays paired.
    Disabled,
    /// A disabled device was enabled again.
    Enabled,
    /// A device's access ended at its time.
    AccessExpired,
    /// A guest invite was made (`detail`: for which door, what the guest
    /// may do and for how long).
    InviteCreated,
    /// A device paired through a guest invite (after its `paired` entry).
    InviteUsed,
    /// The trust registry was upgraded to a newer format at start (`detail`
    /// says from which, and where the old file is kept).
    RegistryUpgraded,
    /// The host made its identity (first start).
    HostIdentityCreated,
    /// The host refused to start on a trust registry it could not read.
    RegistryRefused,
    /// A one-time PIN was made in the console.
    OtpCreated,
    /// A one-time PIN was cancelled in the console.
    OtpCancelled,
    /// A one-time PIN expired unused.
    OtpExpired,
    /// A client used the one-time PIN (outcome ok, or failed on a wrong one).
    OtpUsed,
    /// The console blocked an address's pairing requests for an hour.
    AddressBlocked,
    /// The console lifted an address's block.
    AddressUnblocked,
    /// An address's block ended after its hour.
    BlockExpired,
    /// Entries from unauthenticated peers over the budget were not written;
    /// `detail` says how many.
    AuditSuppressed,
}

impl Event {
    /// The name written to the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Login => "login",
            Event::Logout => "logout",
            Event::PairingArmed => "pairing_armed",
            Event::PairingDisarmed => "pairing_disarmed",
            Event::PairingExpired => "pairing_expired",
            Event::RequestWaiting => "request_waiting",
            Event::RequestApproved => "request_approved",
            Event::RequestDenied => "request_denied",
            Event::RequestExpired => "request_expired",
            Event::RequestAbandoned => "request_abandoned",
            Event::RequestReplaced => "request_replaced",
            Event::PinEntered => "pin_entered",
            Event::PinRejected => "pin_rejected",
            Event::MoonlightBug => "moonlight_bug",
            Event::LinkRejected => "link_rejected",
            Event::PairingStalled => "pairing_stalled",
            Event::Paired => "paired",
            Event::Renamed => "renamed",
            Event::Revoked => "revoked",
            Event::GrantChanged => "grant_changed",
            Event::Disabled => "disabled",
            Event::Enabled => "enabled",
            Event::AccessExpired => "access_expired",
            Event::RegistryUpgraded => "registry_upgraded",
            Event::InviteCreated => "invite_created",
            Event::InviteUsed => "invite_used",
            Event::HostIdentityCreated => "host_identity_created",
            Event::RegistryRefused => "registry_refused",
            Event::OtpCreated => "otp_created",
            Event::OtpCancelled => "otp_cancelled",
            Event::OtpExpired => "otp_expired",
            Event::OtpUsed => "otp_used",
            Event::AddressBlocked => "address_blocked",
            Event::AddressUnblocked => "address_unblocked",
            Event::BlockExpired => "block_expired",
            Event::AuditSuppressed => "audit_suppressed",
        }
    }
}

/// Who did it, or through which door it came.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Door {
    /// The GameStream emulator (Moonlight clients).
    Gamestream,
    /// The native endpoint (the punktfunk app).
    Native,
    /// The web console.
    Console,
    /// `punktfunk devices …` on the host machine.
    Cli,
    /// The host itself (start-up, timers).
    Host,
}

impl Door {
    /// The door a device of this kind comes through.
    pub fn of(kind: FrontDoor) -> Self {
        match kind {
            FrontDoor::Gamestream => Door::Gamestream,
            FrontDoor::Native => Door::Native,
        }
    }

    /// The name written to the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Door::Gamestream => "gamestream",
            Door::Native => "native",
            Door::Console => "console",
            Door::Cli => "cli",
            Door::Host => "host",
        }
    }
}

/// How it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It happened as asked.
    Ok,
    /// It was refused or did not match.
    Failed,
    /// It was refused before being looked at: too many attempts.
    RateLimited,
}

/// The device an entry is about, as it was named at that moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRef {
    /// Its certificate's fingerprint.
    pub fingerprint: Fingerprint,
    /// The name the device sent.
    pub name: String,
    /// The label given in the console, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl DeviceRef {
    /// A device by fingerprint and names.
    pub fn new(fingerprint: Fingerprint, name: &DisplayName, label: Option<&Label>) -> Self {
        Self {
            fingerprint,
            name: name.as_str().to_owned(),
            label: label.map(|l| l.as_str().to_owned()),
        }
    }
}

impl From<&Device> for DeviceRef {
    fn from(d: &Device) -> Self {
        Self::new(d.fingerprint, &d.name, d.label.as_ref())
    }
}

/// One decision, before it is numbered and timed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// What happened.
    pub event: Event,
    /// Who did it or through which door it came.
    pub door: Door,
    /// How it went.
    pub outcome: Outcome,
    /// The device it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceRef>,
    /// The peer's address (the device's, or the console user's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
    /// For `paired`: how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<Via>,
    /// Words for a person: what a request needs, why something failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The paired device a console action came from (the console over the
    /// native door, docs/native-protocol.md § 4.10), as named then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<DeviceRef>,
}

impl Entry {
    /// An entry that went as asked, about no device yet.
    pub fn new(event: Event, door: Door) -> Self {
        Self {
            event,
            door,
            outcome: Outcome::Ok,
            device: None,
            address: None,
            via: None,
            detail: None,
            by: None,
        }
    }

    /// Sets the outcome.
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// Sets the device.
    pub fn device(mut self, device: impl Into<DeviceRef>) -> Self {
        self.device = Some(device.into());
        self
    }

    /// Sets the peer address (IPv4-mapped IPv6 is written as IPv4).
    pub fn address(mut self, address: IpAddr) -> Self {
        self.address = Some(address.to_canonical());
        self
    }

    /// Sets how a device was paired.
    pub fn via(mut self, via: Via) -> Self {
        self.via = Some(via);
        self
    }

    /// Sets the words for a person.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Whether this is a decision (kept whatever the noise, see the module
    /// docs): anything but what a peer without credentials can cause and
    /// the suppression counts.
    pub fn is_decision(&self) -> bool {
        !self.unsolicited() && self.event != Event::AuditSuppressed
    }

    /// Whether a peer with no credentials can cause this entry, so it must
    /// pass the unsolicited budget.
    pub(super) fn unsolicited(&self) -> bool {
        match self.event {
            Event::Login => self.outcome != Outcome::Ok,
            Event::RequestWaiting
            | Event::RequestExpired
            | Event::RequestAbandoned
            | Event::RequestReplaced
            | Event::LinkRejected
            | Event::PairingStalled => true,
            _ => false,
        }
    }
}

/// One line of the audit file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Position in the trail: increases by one per line, across rotations.
    pub seq: u64,
    /// When, RFC 3339 in UTC.
    pub at: String,
    /// The decision.
    #[serde(flatten)]
    pub entry: Entry,
}

/// `unix` seconds as RFC 3339 UTC (`2026-11-28T12:00:00Z`).
pub fn rfc3339(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}
