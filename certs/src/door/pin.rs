//! Pairing with the armed PIN (or the arming's link), and storing a device
//! a door admitted: the steps whose order is the promise.
//!
//! - The PIN leaves the gate when the exchange commits to a guess
//!   ([`Trust::take_pin`]) and never goes back: one guess per arming.
//! - Its [`PinAttempt`] reports exactly once: [`PinAttempt::store`] stores
//!   the device and reports the PIN as used in one step, off the async
//!   threads; dropped any other way (a wrong PIN, an error, a timeout, the
//!   connection gone), it reports the PIN spent and records
//!   `pin_rejected` (`link_rejected` for the link).
//! - A device is durable, and its `paired` entry too, before the door
//!   tells the client ([`Trust::store_device`], the one async wrapper).

use std::net::IpAddr;
use std::sync::Arc;

use crate::audit::{DeviceRef, Door, Entry, Event, Outcome, Ticket};
use crate::fingerprint::Fingerprint;
use crate::gate::{Claimant, Secret, TakenSecret};
use crate::name::DisplayName;
use crate::registry::{Device, FrontDoor, RegistryError, Via};
use crate::trust::{Trust, TrustError};

/// What a pairing exchange proves it knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairWith {
    /// The typed PIN: one guess per arming.
    Pin,
    /// The pairing link's secret: 128 bits, no guess uses it up.
    Link,
}

/// Why a device a door admitted was not stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The registry refused it (e.g. paired at the other door) or could
    /// not save.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The gate or the audit trail refused (the request ended meanwhile).
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// The blocking task that stores it did not finish.
    #[error("the storing task failed: {0}")]
    Task(String),
}

impl From<tokio::task::JoinError> for StoreError {
    fn from(e: tokio::task::JoinError) -> Self {
        StoreError::Task(e.to_string())
    }
}

/// The armed PIN (or the link's secret) taken by one exchange, until it
/// reports. See the module docs.
#[derive(Debug)]
pub struct PinAttempt {
    ticket: Option<TakenSecret>,
    secret: Secret,
    trust: Arc<Trust>,
    door: FrontDoor,
    by: Claimant,
}

impl PinAttempt {
    /// What to run the exchange with.
    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// The exchange proved the PIN: stores the peer's certificate
    /// (`cert_der`) as a device of this door named `name`, admitted `via`,
    /// and reports the PIN as used, in one step off the async threads; the
    /// device and its `paired` entry are durable when this returns `Ok`. If
    /// the store fails the PIN is reported spent, as any failure.
    pub async fn store(
        mut self,
        cert_der: &[u8],
        name: DisplayName,
        via: Via,
    ) -> Result<(), StoreError> {
        // Only `store` and `drop` take the ticket, and both consume the
        // attempt: it is always here.
        let Some(ticket) = self.ticket.take() else {
            return Err(StoreError::Task("the PIN was already reported".into()));
        };
        let trust = self.trust.clone();
        let door = self.door;
        let by = self.by.clone();
        let der = cert_der.to_vec();
        let stored = tokio::task::spawn_blocking(move || {
            let device = Device::from_der(&der, door, name, via, trust.clock().unix());
            let access = ticket.access();
            match device.and_then(|d| trust.admit_as(d, by.address, access)) {
                Ok(ticket_paired) => {
                    trust.gate().report(ticket, Some(by.fingerprint));
                    Ok(ticket_paired)
                }
                Err(e) => {
                    spend(&trust, ticket, door, &by);
                    Err(e)
                }
            }
        })
        .await??;
        trust_durable(stored, door).await;
        Ok(())
    }
}

impl Drop for PinAttempt {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            spend(&self.trust, ticket, self.door, &self.by);
        }
    }
}

/// Reports the taken PIN (or link guess) as spent without pairing, and
/// records it: every way an attempt ends but a stored device.
fn spend(trust: &Trust, ticket: TakenSecret, door: FrontDoor, by: &Claimant) {
    let link = ticket.is_link();
    trust.gate().report(ticket, None);
    let _ = trust.record(rejected_entry(door, by, link));
}

/// The entry of a taken PIN (or a link guess) that did not pair. A wrong
/// guess at the link costs nothing, so anyone may make many: its entry is
/// budgeted like other unsolicited ones.
fn rejected_entry(door: FrontDoor, by: &Claimant, link: bool) -> Entry {
    let event = if link {
        Event::LinkRejected
    } else {
        Event::PinRejected
    };
    Entry::new(event, Door::of(door))
        .outcome(Outcome::Failed)
        .device(DeviceRef::new(by.fingerprint, &by.name, None))
        .address(by.address)
}

/// Waits for `ticket` to be durable; a failure is logged (the decision
/// stands, and the audit writer reports its own fault).
pub(super) async fn trust_durable(ticket: Ticket, door: FrontDoor) {
    if let Err(e) = ticket.durable().await {
        tracing::error!("{}: {e}", Door::of(door).as_str());
    }
}

/// A native pairing exchange as the console shows it, from the client's
/// first `pake` until the connection leaves the pairing steps (drop).
#[derive(Debug)]
pub struct ExchangeShown {
    trust: Arc<Trust>,
    fingerprint: Fingerprint,
}

impl Drop for ExchangeShown {
    fn drop(&mut self) {
        self.trust.gate().end_exchange(&self.fingerprint);
    }
}

impl Trust {
    /// Whether an exchange with `with` could take its secret now: the PIN
    /// is armed and not taken, or (the link) pairing is armed at all.
    pub fn is_armed(&self, with: PairWith) -> bool {
        let now = self.now();
        let mut gate = self.gate();
        match with {
            PairWith::Pin => gate.pin_armed(now),
            PairWith::Link => gate.armed(now).is_some(),
        }
    }

    /// Shows `by` in the console as the device in the pairing exchange
    /// until the returned guard drops.
    pub fn show_exchange(self: &Arc<Self>, by: Claimant) -> ExchangeShown {
        let fingerprint = by.fingerprint;
        let now = self.now();
        self.gate().begin_exchange(by, now);
        ExchangeShown {
            trust: self.clone(),
            fingerprint,
        }
    }

    /// Takes the armed PIN (or reads the link's secret) for `by`'s exchange
    /// at `door`: `None` if pairing is not armed (or the PIN is taken), or
    /// `by`'s address is blocked.
    pub fn take_pin(
        self: &Arc<Self>,
        by: Claimant,
        with: PairWith,
        door: FrontDoor,
    ) -> Option<PinAttempt> {
        let now = self.now();
        let ticket = match with {
            PairWith::Pin => self.gate().take_pin(by.clone(), now),
            PairWith::Link => self.gate().use_link(by.clone(), now),
        }
        .ok()?;
        Some(PinAttempt {
            secret: ticket.secret().clone(),
            ticket: Some(ticket),
            trust: self.clone(),
            door,
            by,
        })
    }

    /// Stores `device`, admitted by its door from `address` (open mode),
    /// off the async threads; it and its `paired` entry are durable when
    /// this returns `Ok`.
    pub async fn store_device(
        self: &Arc<Self>,
        device: Device,
        address: IpAddr,
    ) -> Result<(), StoreError> {
        let trust = self.clone();
        let door = device.kind;
        let ticket = tokio::task::spawn_blocking(move || trust.admit(device, address)).await??;
        trust_durable(ticket, door).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::{GateConfig, PinUse};
    use crate::identity::Identity;
    use crate::trust::{Actor, SystemClock};

    struct Door {
        trust: Arc<Trust>,
        rt: tokio::runtime::Runtime,
        _dir: tempfile::TempDir,
    }

    fn door() -> Door {
        let dir = tempfile::tempdir().unwrap();
        let trust = Arc::new(
            Trust::open(dir.path(), GateConfig::default(), Arc::new(SystemClock)).unwrap(),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        Door {
            trust,
            rt,
            _dir: dir,
        }
    }

    fn claimant(id: &Identity) -> Claimant {
        Claimant {
            address: [10, 0, 0, 7].into(),
            name: DisplayName::sanitize_or("phone", "phone"),
            fingerprint: id.fingerprint(),
        }
    }

    fn events(d: &Door) -> Vec<Event> {
        d.trust.audited().durable_blocking().unwrap();
        crate::audit::recorded_events(d.trust.audit_dir())
    }

    #[test]
    fn the_pin_is_one_guess_and_storing_reports_it_in_the_same_step() {
        let d = door();
        let _ = d.trust.arm(Actor::cli(), &mut rand::rngs::OsRng);
        let phone = Identity::generate_p256("phone").unwrap();
        assert!(d.trust.is_armed(PairWith::Pin));
        let attempt = d
            .trust
            .take_pin(claimant(&phone), PairWith::Pin, FrontDoor::Native)
            .unwrap();
        assert!(matches!(attempt.secret(), Secret::Pin(_)));
        assert!(!d.trust.is_armed(PairWith::Pin), "one guess per arming");
        assert!(d.trust.is_armed(PairWith::Link), "the link still pairs");
        assert!(d
            .trust
            .take_pin(claimant(&phone), PairWith::Pin, FrontDoor::Native)
            .is_none());

        d.rt.block_on(attempt.store(phone.cert_der(), claimant(&phone).name, Via::Pin))
            .unwrap();
        let grant = d
            .trust
            .authorize(FrontDoor::Native, &phone.fingerprint())
            .unwrap();
        assert_eq!(grant.via(), Via::Pin);
        assert!(
            !d.trust.is_armed(PairWith::Link),
            "a success ends the arming"
        );
        assert_eq!(
            d.trust.view().last_attempt().map(|a| a.result.clone()),
            Some(PinUse::Paired {
                fingerprint: phone.fingerprint()
            })
        );
        assert_eq!(
            events(&d),
            [Event::PairingArmed, Event::Paired],
            "paired, and no pin_rejected"
        );
    }

    #[test]
    fn an_attempt_dropped_any_other_way_spends_the_pin_and_says_so() {
        let d = door();
        let _ = d.trust.arm(Actor::cli(), &mut rand::rngs::OsRng);
        let stranger = Identity::generate_p256("stranger").unwrap();
        let attempt = d
            .trust
            .take_pin(claimant(&stranger), PairWith::Pin, FrontDoor::Native)
            .unwrap();
        drop(attempt);
        assert!(!d.trust.is_armed(PairWith::Pin));
        assert_eq!(
            d.trust.view().last_attempt().map(|a| a.result.clone()),
            Some(PinUse::Failed)
        );
        assert!(d.trust.registry().is_empty());
        assert_eq!(events(&d), [Event::PairingArmed, Event::PinRejected]);

        // A wrong guess at the link costs nothing but its entry.
        let attempt = d
            .trust
            .take_pin(claimant(&stranger), PairWith::Link, FrontDoor::Native)
            .unwrap();
        assert!(matches!(attempt.secret(), Secret::Link(_)));
        drop(attempt);
        assert!(d.trust.is_armed(PairWith::Link));
        assert_eq!(
            events(&d),
            [Event::PairingArmed, Event::PinRejected, Event::LinkRejected]
        );
    }

    #[test]
    fn a_store_the_registry_refuses_spends_the_pin() {
        let d = door();
        let _ = d.trust.arm(Actor::cli(), &mut rand::rngs::OsRng);
        let moonlight = Identity::generate_p256("moonlight").unwrap();
        // Paired at the other door already: this door may not take it over.
        let device = Device::from_der(
            moonlight.cert_der(),
            FrontDoor::Gamestream,
            DisplayName::sanitize_or("m", "m"),
            Via::Pin,
            1_800_000_000,
        )
        .unwrap();
        d.rt.block_on(d.trust.store_device(device, [10, 0, 0, 8].into()))
            .unwrap();
        let attempt = d
            .trust
            .take_pin(claimant(&moonlight), PairWith::Pin, FrontDoor::Native)
            .unwrap();
        let refused =
            d.rt.block_on(attempt.store(moonlight.cert_der(), claimant(&moonlight).name, Via::Pin));
        assert!(matches!(
            refused,
            Err(StoreError::Registry(
                RegistryError::PairedAtOtherDoor { .. }
            ))
        ));
        assert!(d
            .trust
            .authorize(FrontDoor::Native, &moonlight.fingerprint())
            .is_err());
        assert_eq!(
            events(&d),
            [Event::PairingArmed, Event::Paired, Event::PinRejected]
        );
    }

    #[test]
    fn the_exchange_shows_until_its_guard_drops() {
        let d = door();
        let phone = Identity::generate_p256("phone").unwrap();
        let shown = d.trust.show_exchange(claimant(&phone));
        assert_eq!(
            d.trust.view().exchange().map(|e| e.by.fingerprint),
            Some(phone.fingerprint())
        );
        drop(shown);
        assert!(d.trust.view().exchange().is_none());
    }

    #[test]
    fn a_guest_invite_pairs_one_device_with_its_grant_for_its_time() {
        use crate::grant::{Access, Permissions, Preset, Until};
        let d = door();
        // The host's first device (Full whatever is asked) is not a guest.
        let owner = Identity::generate_p256("owner").unwrap();
        let _ = d.trust.arm(Actor::cli(), &mut rand::rngs::OsRng);
        let attempt = d
            .trust
            .take_pin(claimant(&owner), PairWith::Pin, FrontDoor::Native)
            .unwrap();
        d.rt.block_on(attempt.store(owner.cert_der(), claimant(&owner).name, Via::Pin))
            .unwrap();
        let watch = Access {
            permissions: Preset::Watch.permissions(),
            until: Until::For(4 * 3600),
            invite: false,
        };
        let (armed, _) = d.trust.invite(watch, Actor::cli(), &mut rand::rngs::OsRng);
        assert!(armed.expires > d.trust.now() + std::time::Duration::from_secs(14 * 60));
        let guest = Identity::generate_p256("guest").unwrap();
        let attempt = d
            .trust
            .take_pin(claimant(&guest), PairWith::Link, FrontDoor::Native)
            .unwrap();
        d.rt.block_on(attempt.store(guest.cert_der(), claimant(&guest).name, Via::Pin))
            .unwrap();
        let grant = d
            .trust
            .authorize(FrontDoor::Native, &guest.fingerprint())
            .unwrap();
        assert_eq!(grant.permissions(), Permissions::LIST | Permissions::VIEW);
        let ends = grant.expires_at().unwrap();
        let now = d.trust.clock().unix();
        assert!(
            ends >= now + 4 * 3600 - 5 && ends <= now + 4 * 3600,
            "{ends} {now}"
        );
        assert!(!d.trust.is_armed(PairWith::Link), "single use");
        let seen = events(&d);
        assert_eq!(
            &seen[seen.len() - 3..],
            [Event::InviteCreated, Event::Paired, Event::InviteUsed]
        );
    }

    #[test]
    fn a_moonlight_invite_is_a_one_time_pin_with_its_grant() {
        use crate::gate::{Needs, PendingRequest};
        use crate::grant::{Access, Preset, Until};
        let d = door();
        let owner = Identity::generate_p256("owner").unwrap();
        let device = Device::from_der(
            owner.cert_der(),
            FrontDoor::Native,
            DisplayName::sanitize_or("owner", "o"),
            Via::Pin,
            1,
        )
        .unwrap();
        let _ = d.trust.admit(device, [10, 0, 0, 1].into()).unwrap();
        let gamepad = Access {
            permissions: Preset::Gamepad.permissions(),
            until: Until::At(4_000_000_000),
            invite: false,
        };
        let pass = crate::otp::Passphrase::parse("correct horse battery").unwrap();
        let (otp, _) = d.trust.create_otp_for(
            pass.clone(),
            None,
            Some(gamepad),
            Actor::cli(),
            &mut rand::rngs::OsRng,
        );
        let deck = Identity::generate_p256("deck").unwrap();
        let salt = "00".repeat(16);
        let proof = crate::door::OtpProof {
            otpauth: crate::otp::otpauth(otp.pin(), &salt, &pass),
            salt_text: salt,
        };
        let request = PendingRequest {
            kind: FrontDoor::Gamestream,
            name: DisplayName::sanitize_or("deck", "d"),
            cert_der: deck.cert_der().to_vec(),
            address: ([10, 0, 0, 8], 1).into(),
            needs: Needs::Pin,
        };
        let id = d.trust.knock(request, Some(&proof)).unwrap();
        let collected = d.trust.collect_pin(id).unwrap();
        d.rt.block_on(collected.store(deck.cert_der().to_vec(), Via::Otp))
            .unwrap();
        let grant = d
            .trust
            .authorize(FrontDoor::Gamestream, &deck.fingerprint())
            .unwrap();
        assert_eq!(grant.permissions(), Preset::Gamepad.permissions());
        assert_eq!(grant.expires_at(), Some(4_000_000_000));
        let seen = events(&d);
        assert!(
            seen.contains(&Event::InviteCreated)
                && seen.ends_with(&[Event::Paired, Event::InviteUsed]),
            "{seen:?}"
        );
    }
}
