//! What an operator decides about pairing (the console's user, `punktfunk
//! devices …`, the host itself), each decision with its audit entry, so
//! that no caller builds entries of its own: arm and disarm, deny one
//! waiting request, all of them or one address's, block and unblock an
//! address, make and cancel a one-time PIN, enter a Moonlight PIN. (Approve, revoke and rename, which also touch the registry,
//! are in `trust.rs`.)
//!
//! Each returns the [`Ticket`] of its entries: the caller waits on it
//! (outside any lock) before it tells the operator the decision is made.

use std::net::IpAddr;

use rand::{CryptoRng, RngCore};

use crate::audit::{Entry, Event, Ticket};
use crate::gate::{Armed, Block, GateError, Pending, PendingId, Pin};
pub use crate::grant::INVITE_TTL;
use crate::grant::{Access, Until};
use crate::name::{DisplayName, Label};
use crate::otp::{OneTimePin, Passphrase};
use crate::trust::{Actor, Trust};

/// What a device admitted with `access` may do, in the audit trail's and
/// the CLI's words: "Watch (list apps, view streams) for 4 h after
/// pairing". (Here, not in `grant`: a time is written as the trail writes
/// it, and the grant module stays below the audit trail.)
pub fn describe_access(access: Access) -> String {
    let may = access.permissions.titled();
    match access.until {
        Until::Never => may,
        Until::At(t) => format!("{may} until {}", crate::audit::rfc3339(t)),
        Until::For(s) if s % 3600 == 0 => format!("{may} for {} h after pairing", s / 3600),
        Until::For(s) => format!("{may} for {} min after pairing", s.div_ceil(60)),
        Until::FirstSession => format!("{may} until its first session ends"),
    }
}

/// Requests an operator dismissed at once (all, or one address's).
#[derive(Debug)]
pub struct Dismissed {
    /// How many.
    pub count: usize,
    /// Their `request_denied` entries.
    pub ticket: Ticket,
}

impl Trust {
    /// Arms pairing (a new PIN and link secret, the old ones void) for
    /// `by`, with its `pairing_armed` entry.
    pub fn arm(&self, by: Actor, rng: &mut (impl RngCore + CryptoRng)) -> (Armed, Ticket) {
        self.arm_as(None, by, rng)
    }

    /// [`Trust::arm`], the device it pairs given `access` instead of the
    /// host's default (the PIN ceremony's grant picker).
    pub fn arm_as(
        &self,
        access: Option<Access>,
        by: Actor,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> (Armed, Ticket) {
        let armed = {
            let mut gate = self.gate();
            let ttl = gate.config().pin_ttl;
            gate.arm_for(access, ttl, self.now(), rng)
        };
        let mut entry = by.entry(Event::PairingArmed);
        if let Some(access) = access {
            entry = entry.detail(format!("the device it pairs: {}", describe_access(access)));
        }
        (armed, self.record(entry))
    }

    /// Disarms pairing for `by`: its `pairing_disarmed` entry, or `None`
    /// if nothing was armed.
    pub fn disarm(&self, by: Actor) -> Option<Ticket> {
        let was_armed = {
            let mut gate = self.gate();
            let was = gate.armed(self.now()).is_some();
            gate.disarm();
            was
        };
        was_armed.then(|| self.record(by.entry(Event::PairingDisarmed)))
    }

    /// Denies waiting request `id` for `by` (the device may ask again).
    pub fn deny(&self, id: PendingId, by: Actor) -> Result<Ticket, GateError> {
        let pending = self.gate().deny(id, self.now())?;
        Ok(self.record(denied_entry(&by, &pending)))
    }

    /// Denies every waiting request (a flood) for `by`.
    pub fn deny_all(&self, by: Actor) -> Dismissed {
        let denied = self.gate().deny_all(self.now());
        self.dismissed(&by, &denied)
    }

    /// Denies every waiting request from `ip` (its full address) for `by`.
    pub fn deny_from(&self, ip: IpAddr, by: Actor) -> Dismissed {
        let denied = self.gate().deny_from(ip, self.now());
        self.dismissed(&by, &denied)
    }

    /// Blocks `ip` for an hour for `by`: its waiting requests are denied,
    /// and every new one is refused until the block ends or is lifted.
    pub fn block(&self, ip: IpAddr, by: Actor) -> Result<(Block, Dismissed), GateError> {
        let (block, denied) = self.gate().block(ip, self.now())?;
        self.record_denied(&by, &denied);
        let _ = self.record(by.entry(Event::AddressBlocked).detail(format!(
            "pairing requests from {} refused for 1 hour",
            block.address
        )));
        let dismissed = Dismissed {
            count: denied.len(),
            ticket: self.audited(),
        };
        Ok((block, dismissed))
    }

    /// Lifts the block of `ip` for `by`: its entry, or `None` if it was not
    /// blocked.
    pub fn unblock(&self, ip: IpAddr, by: Actor) -> Option<Ticket> {
        let lifted = self.gate().unblock(ip, self.now());
        lifted.then(|| {
            self.record(by.entry(Event::AddressUnblocked).detail(format!(
                "pairing requests from {} heard again",
                crate::gate::AddressKey::of(ip)
            )))
        })
    }

    /// Makes a one-time PIN for `by` (any active one is replaced), named
    /// for the device it will pair if `name` is given.
    pub fn create_otp(
        &self,
        passphrase: Passphrase,
        name: Option<DisplayName>,
        by: Actor,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> (OneTimePin, Ticket) {
        self.create_otp_for(passphrase, name, None, by, rng)
    }

    /// [`Trust::create_otp`], the device it pairs given `access` instead
    /// of the host's default: a guest invite for Moonlight (recorded as
    /// `invite_created`).
    pub fn create_otp_for(
        &self,
        passphrase: Passphrase,
        name: Option<DisplayName>,
        access: Option<Access>,
        by: Actor,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> (OneTimePin, Ticket) {
        let access = access.map(|a| Access { invite: true, ..a });
        let otp = self
            .gate()
            .create_otp(passphrase, name, access, self.now(), rng);
        let mut words = Vec::new();
        if let Some(name) = otp.name() {
            words.push(format!("for {name}"));
        }
        let entry = match access {
            None => by.entry(Event::OtpCreated),
            Some(access) => {
                words.push(format!(
                    "a one-time PIN for Moonlight: {}",
                    describe_access(access)
                ));
                by.entry(Event::InviteCreated)
            }
        };
        let entry = match words.is_empty() {
            true => entry,
            false => entry.detail(words.join("; ")),
        };
        (otp, self.record(entry))
    }

    /// A guest invite for the punktfunk app: arms pairing for
    /// [`INVITE_TTL`] (its link, or its PIN, pairs one device), and the
    /// device it pairs gets `access`; recorded as `invite_created`.
    pub fn invite(
        &self,
        access: Access,
        by: Actor,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> (Armed, Ticket) {
        let access = Access {
            invite: true,
            ..access
        };
        let armed = self
            .gate()
            .arm_for(Some(access), INVITE_TTL, self.now(), rng);
        let entry = by.entry(Event::InviteCreated).detail(format!(
            "a pairing link for the punktfunk app: {}",
            describe_access(access)
        ));
        (armed, self.record(entry))
    }

    /// Cancels the active one-time PIN for `by`: its entry, or `None` if
    /// there was none.
    pub fn cancel_otp(&self, by: Actor) -> Option<Ticket> {
        let cancelled = self.gate().cancel_otp();
        cancelled.then(|| self.record(by.entry(Event::OtpCancelled)))
    }

    /// Enters, for `by`, the PIN a Moonlight client shows for waiting
    /// request `id` (and the label its device gets if it pairs).
    pub fn enter_pin(
        &self,
        id: PendingId,
        pin: Pin,
        label: Option<Label>,
        by: Actor,
    ) -> Result<Ticket, GateError> {
        self.enter_pin_for(id, pin, label, None, by)
    }

    /// [`Trust::enter_pin`], the device given `access` if it pairs instead
    /// of the host's default (the grant picker).
    pub fn enter_pin_for(
        &self,
        id: PendingId,
        pin: Pin,
        label: Option<Label>,
        access: Option<Access>,
        by: Actor,
    ) -> Result<Ticket, GateError> {
        let device = {
            let now = self.now();
            let mut gate = self.gate();
            let device = gate.get_pending(id, now).map(|p| p.device_ref());
            gate.enter_pin(id, pin, label, access, now)?;
            device
        };
        let mut entry = by.entry(Event::PinEntered);
        if let Some(device) = device {
            entry = entry.device(device);
        }
        Ok(self.record(entry))
    }

    /// Queues a `request_denied` entry for each of `denied`.
    fn record_denied(&self, by: &Actor, denied: &[Pending]) {
        for pending in denied {
            let _ = self.record(denied_entry(by, pending));
        }
    }

    fn dismissed(&self, by: &Actor, denied: &[Pending]) -> Dismissed {
        self.record_denied(by, denied);
        Dismissed {
            count: denied.len(),
            ticket: self.audited(),
        }
    }
}

/// `request_denied` by `by`, naming where the request came from.
fn denied_entry(by: &Actor, pending: &Pending) -> Entry {
    by.entry(Event::RequestDenied)
        .device(pending.device_ref())
        .detail(format!(
            "{} request from {}",
            pending.request.kind.door_name(),
            pending.request.address.ip().to_canonical()
        ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::{GateConfig, Needs, PendingRequest};
    use crate::identity::Identity;
    use crate::name::DisplayName;
    use crate::registry::FrontDoor;
    use crate::trust::SystemClock;
    use rand::rngs::OsRng;
    use std::sync::Arc;

    fn knock(trust: &Trust, from: [u8; 4]) -> PendingId {
        let id = Identity::generate_p256("knock").unwrap();
        let request = PendingRequest {
            kind: FrontDoor::Native,
            name: DisplayName::sanitize_or("tablet", "tablet"),
            cert_der: id.cert_der().to_vec(),
            address: (from, 40000).into(),
            needs: Needs::Approval,
        };
        trust.gate().add_pending(request, trust.now()).unwrap()
    }

    fn events(dir: &std::path::Path) -> Vec<Event> {
        crate::audit::recorded_events(dir)
    }

    #[test]
    fn each_decision_records_itself_for_its_operator() {
        let dir = tempfile::tempdir().unwrap();
        let trust = Trust::open(dir.path(), GateConfig::default(), Arc::new(SystemClock)).unwrap();
        let console = Actor::console([192, 0, 2, 7].into());

        let (_armed, t) = trust.arm(console, &mut OsRng);
        t.durable_blocking().unwrap();
        trust.disarm(console).unwrap().durable_blocking().unwrap();
        assert!(trust.disarm(console).is_none(), "nothing left to disarm");

        let one = knock(&trust, [10, 0, 0, 1]);
        trust
            .deny(one, console)
            .unwrap()
            .durable_blocking()
            .unwrap();
        assert!(matches!(
            trust.deny(one, console),
            Err(GateError::UnknownRequest)
        ));
        knock(&trust, [10, 0, 0, 2]);
        knock(&trust, [10, 0, 0, 3]);
        let from_two = trust.deny_from([10, 0, 0, 2].into(), console);
        assert_eq!(from_two.count, 1);
        let all = trust.deny_all(Actor::cli());
        assert_eq!(all.count, 1);
        knock(&trust, [10, 0, 0, 4]);
        let (block, dismissed) = trust.block([10, 0, 0, 4].into(), console).unwrap();
        assert_eq!(dismissed.count, 1);
        assert_eq!(block.address.to_string(), "10.0.0.4");
        trust
            .unblock([10, 0, 0, 4].into(), console)
            .unwrap()
            .durable_blocking()
            .unwrap();
        assert!(trust.unblock([10, 0, 0, 4].into(), console).is_none());
        trust.audited().durable_blocking().unwrap();

        let seen: Vec<Event> = events(dir.path())
            .into_iter()
            // The knocks' own entries are the door's, not the operator's.
            .filter(|e| !matches!(e, Event::HostIdentityCreated | Event::RequestWaiting))
            .collect();
        assert_eq!(
            seen,
            [
                Event::PairingArmed,
                Event::PairingDisarmed,
                Event::RequestDenied,
                Event::RequestDenied,
                Event::RequestDenied,
                Event::RequestDenied,
                Event::AddressBlocked,
                Event::AddressUnblocked,
            ]
        );
    }
}
