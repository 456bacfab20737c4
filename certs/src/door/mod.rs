//! The door contract: what a front door (GameStream, native, any later one)
//! asks of the trust service, so that every door decides the same way.
//!
//! This first part is authorisation. [`Trust::authorize`] is the one check
//! of every door: a certificate is trusted only at the door it was admitted
//! through (its [`FrontDoor`]); at any other door it is unknown. GameStream
//! pairing has an offline-crackable PIN, so its trust must not open the
//! native door, and native trust must not open GameStream's apps. The
//! answer is a [`Grant`], not a `bool`: what the device is and may do there,
//! which is what a door carries through the request or session.
//!
//! [`Trust::seen`] records that the device of a grant was seen (its
//! `last_seen`), written once here for every door: coarse, so most calls
//! write nothing and never leave the calling thread.
//!
//! The rest of the contract: `knock` (a device asks to be let in, and
//! how its request ends) and `pin` (pairing with the armed PIN, and
//! storing what a door admitted). A door implements its wire format and
//! calls these; the gate and the registry stay inside this crate.

mod collected;
mod knock;
mod pin;
mod watch;

pub use collected::CollectedPin;
pub use knock::{OtpProof, PinFailure, Refusal};

pub use pin::{ExchangeShown, PairWith, PinAttempt, StoreError};
pub use watch::{AccessUpdate, AccessWatch};

use std::sync::Arc;

use crate::fingerprint::Fingerprint;
use crate::grant::Permissions;
use crate::registry::{FrontDoor, Via};
use crate::trust::Trust;

/// What a paired device may do at the door it asked at, as of the moment
/// it was authorised: its permissions ([`crate::grant`]) and when its
/// access ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    fingerprint: Fingerprint,
    door: FrontDoor,
    via: Via,
    permissions: Permissions,
    expires_at: Option<u64>,
    /// `last_seen` is old enough that [`Trust::seen`] would write it.
    seen_due: bool,
}

impl Grant {
    /// The certificate's fingerprint.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// The door it was admitted through, and so the only one it may use.
    pub fn door(&self) -> FrontDoor {
        self.door
    }

    /// How it was admitted.
    pub fn via(&self) -> Via {
        self.via
    }

    /// What it may do.
    pub fn permissions(&self) -> Permissions {
        self.permissions
    }

    /// Whether it may do everything in `needed`.
    pub fn may(&self, needed: Permissions) -> bool {
        self.permissions.contains(needed)
    }

    /// When its access ends (Unix seconds), if it does.
    pub fn expires_at(&self) -> Option<u64> {
        self.expires_at
    }

    /// Whether [`Trust::seen`] has something to write: a hot path can skip
    /// the hop to a blocking thread when not.
    pub fn seen_due(&self) -> bool {
        self.seen_due
    }
}

/// Why a door refuses a certificate. Each has its own answer at every
/// door: a disabled or expired device is told so, not "not paired".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// Not paired at this door (at the other one, or not at all).
    #[error("this device is not paired with this host")]
    NotPaired,
    /// Paired, and disabled by the host's owner.
    #[error("the host's owner disabled this device; ask them to enable it")]
    Disabled,
    /// Paired, and its access ended at its time.
    #[error("this device's access to the host has expired; ask the host's owner to renew it")]
    Expired,
}

impl Trust {
    /// The one authorisation of every front door: a grant if the
    /// certificate with this fingerprint is paired *at this door*, enabled
    /// and not expired, at this very moment (a revocation, a disable counts
    /// at once). Never blocks.
    pub fn authorize(&self, door: FrontDoor, fp: &Fingerprint) -> Result<Grant, Denied> {
        let device = self
            .registry()
            .get(fp)
            .filter(|d| d.kind == door)
            .ok_or(Denied::NotPaired)?;
        let now = self.clock().unix();
        if !device.enabled {
            return Err(Denied::Disabled);
        }
        if device.is_expired(now) {
            return Err(Denied::Expired);
        }
        Ok(Grant {
            fingerprint: *fp,
            door,
            via: device.via,
            permissions: device.permissions,
            expires_at: device.expires_at,
            seen_due: !crate::registry::seen_recently(&device, now),
        })
    }

    /// Records that the device of `grant` was seen now, if that is due
    /// ([`crate::registry::TOUCH_GRANULARITY_S`]): the write (an fsync) runs
    /// on a blocking thread; a failure is logged, never the caller's
    /// problem. Needs a tokio runtime when something is due.
    pub async fn seen(self: &Arc<Self>, grant: &Grant) {
        if !grant.seen_due {
            return;
        }
        let trust = self.clone();
        let fp = grant.fingerprint;
        let door = grant.door.door_name();
        match tokio::task::spawn_blocking(move || trust.touch(&fp)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("{door}: last-seen not recorded: {e}"),
            Err(e) => tracing::warn!("{door}: last-seen not recorded: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::GateConfig;
    use crate::identity::Identity;
    use crate::name::DisplayName;
    use crate::registry::Device;
    use crate::trust::SystemClock;

    fn paired(trust: &Trust, kind: FrontDoor) -> Fingerprint {
        let id = Identity::generate_p256("door").unwrap();
        let device = Device::from_der(
            id.cert_der(),
            kind,
            DisplayName::sanitize_or("door", "door"),
            Via::Pin,
            1_800_000_000,
        )
        .unwrap();
        let _ = trust.admit(device, [127, 0, 0, 1].into()).unwrap();
        id.fingerprint()
    }

    #[test]
    fn a_device_is_authorised_only_at_its_own_door() {
        let dir = tempfile::tempdir().unwrap();
        let trust = Trust::open(dir.path(), GateConfig::default(), Arc::new(SystemClock)).unwrap();
        let moonlight = paired(&trust, FrontDoor::Gamestream);
        let app = paired(&trust, FrontDoor::Native);

        let grant = trust.authorize(FrontDoor::Gamestream, &moonlight).unwrap();
        assert_eq!(
            (grant.fingerprint(), grant.door(), grant.via()),
            (&moonlight, FrontDoor::Gamestream, Via::Pin)
        );
        assert!(grant.seen_due(), "never seen yet");
        assert!(trust.authorize(FrontDoor::Native, &moonlight).is_err());
        assert!(trust.authorize(FrontDoor::Native, &app).is_ok());
        assert!(trust.authorize(FrontDoor::Gamestream, &app).is_err());

        let stranger = Identity::generate_p256("stranger").unwrap().fingerprint();
        assert!(trust.authorize(FrontDoor::Native, &stranger).is_err());
        trust.revoke(&app, crate::trust::Actor::cli()).unwrap();
        assert!(trust.authorize(FrontDoor::Native, &app).is_err(), "at once");
    }

    #[test]
    fn seen_writes_once_per_granularity() {
        let dir = tempfile::tempdir().unwrap();
        let trust = Arc::new(
            Trust::open(dir.path(), GateConfig::default(), Arc::new(SystemClock)).unwrap(),
        );
        let fp = paired(&trust, FrontDoor::Native);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let grant = trust.authorize(FrontDoor::Native, &fp).unwrap();
        rt.block_on(trust.seen(&grant));
        assert!(trust.registry().get(&fp).unwrap().last_seen.is_some());
        let again = trust.authorize(FrontDoor::Native, &fp).unwrap();
        assert!(!again.seen_due(), "seen a moment ago");
    }

    #[test]
    fn a_disabled_or_expired_device_is_refused_with_its_own_answer() {
        use crate::audit::{recorded_events, Event};
        use crate::grant::{AccessChange, Preset};
        use crate::trust::Actor;
        let dir = tempfile::tempdir().unwrap();
        let trust = Trust::open(dir.path(), GateConfig::default(), Arc::new(SystemClock)).unwrap();
        let first = paired(&trust, FrontDoor::Native);
        let grant = trust.authorize(FrontDoor::Native, &first).unwrap();
        assert_eq!(grant.permissions(), Permissions::ALL, "the first device");
        assert!(grant.may(Permissions::INPUT_KBD | Permissions::LAUNCH));
        let second = paired(&trust, FrontDoor::Gamestream);
        let play = trust.authorize(FrontDoor::Gamestream, &second).unwrap();
        assert_eq!(
            play.permissions(),
            Preset::Play.permissions(),
            "the default"
        );
        assert!(!play.may(Permissions::SERVER_CMD));
        trust.set_default_grant(Preset::Watch.permissions());
        let third = paired(&trust, FrontDoor::Native);
        let watch = trust.authorize(FrontDoor::Native, &third).unwrap();
        assert_eq!(watch.permissions(), Preset::Watch.permissions());

        let cli = Actor::cli();
        trust
            .change_access(&first, AccessChange::Enabled(false), cli)
            .unwrap();
        assert_eq!(
            trust.authorize(FrontDoor::Native, &first),
            Err(Denied::Disabled)
        );
        assert_eq!(
            trust.authorize(FrontDoor::Gamestream, &first),
            Err(Denied::NotPaired),
            "the other door knows nothing of it"
        );
        trust
            .change_access(&first, AccessChange::Enabled(true), cli)
            .unwrap();
        assert!(trust.authorize(FrontDoor::Native, &first).is_ok());
        let past = trust.clock().unix() - 1;
        trust
            .change_access(&first, AccessChange::Expires(Some(past)), cli)
            .unwrap();
        assert_eq!(
            trust.authorize(FrontDoor::Native, &first),
            Err(Denied::Expired)
        );
        trust
            .change_access(&first, AccessChange::Expires(None), cli)
            .unwrap();
        let renewed = trust.authorize(FrontDoor::Native, &first).unwrap();
        assert_eq!(renewed.expires_at(), None);
        trust
            .change_access(&third, AccessChange::Permissions(Permissions::LIST), cli)
            .unwrap();
        let narrowed = trust.authorize(FrontDoor::Native, &third).unwrap();
        assert!(!narrowed.may(Permissions::VIEW));

        let access: Vec<Event> = recorded_events(dir.path())
            .into_iter()
            .filter(|e| !matches!(e, Event::Paired))
            .collect();
        assert_eq!(
            access,
            [
                Event::Disabled,
                Event::Enabled,
                Event::GrantChanged,
                Event::GrantChanged,
                Event::GrantChanged
            ]
        );
    }
}
