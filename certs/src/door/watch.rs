//! Watching one device's access: what a streamer (or any long-lived
//! connection outside this service) needs to end a stream the moment the
//! device may no longer have it, and to apply a narrowed grant at once.
//!
//! [`Trust::watch`] answers as [`Trust::authorize`] does now, then
//! [`AccessWatch::changed`] yields each change of that answer: a new grant
//! (permissions or end changed, enabled, renewed, paired again), or the end
//! of access (removed, disabled, expired: the expiry timer marks it at the
//! start of its second). Changes that leave the answer as it was (a label,
//! `last_seen`) are not reported.

use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError};

use super::{Denied, Grant};
use crate::events::TrustEvent;
use crate::fingerprint::Fingerprint;
use crate::registry::FrontDoor;
use crate::trust::Trust;

/// A change of a watched device's access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessUpdate {
    /// It may connect, with this grant (what changed: its permissions, its
    /// end, or it may connect again).
    Granted(Grant),
    /// It may no longer connect: end what it has now.
    Ended(Denied),
}

/// One device's access, as it changes. See the module docs.
#[derive(Debug)]
pub struct AccessWatch {
    trust: Arc<Trust>,
    door: FrontDoor,
    fingerprint: Fingerprint,
    events: broadcast::Receiver<TrustEvent>,
    last: Result<Grant, Denied>,
}

impl Trust {
    /// Starts watching the access of the certificate `fingerprint` at
    /// `door`: its access now, and the watch for what changes.
    pub fn watch(
        self: &Arc<Self>,
        door: FrontDoor,
        fingerprint: Fingerprint,
    ) -> (Result<Grant, Denied>, AccessWatch) {
        // Subscribed first: nothing between the answer and the watch is missed.
        let events = self.subscribe();
        let now = self.authorize(door, &fingerprint);
        let watch = AccessWatch {
            trust: self.clone(),
            door,
            fingerprint,
            events,
            last: now.clone(),
        };
        (now, watch)
    }
}

impl AccessWatch {
    /// The next change of the device's access; `None` once the trust
    /// service stops. Cancel-safe.
    pub async fn changed(&mut self) -> Option<AccessUpdate> {
        loop {
            match self.events.recv().await {
                Ok(
                    TrustEvent::DeviceRemoved { fingerprint }
                    | TrustEvent::AccessChanged { fingerprint, .. }
                    | TrustEvent::DeviceAdded { fingerprint, .. },
                ) if fingerprint == self.fingerprint => {}
                Ok(_) => continue,
                // Missed events: look again.
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return None,
            }
            let now = self.trust.authorize(self.door, &self.fingerprint);
            if same_access(&now, &self.last) {
                continue;
            }
            self.last = now.clone();
            return Some(match now {
                Ok(grant) => AccessUpdate::Granted(grant),
                Err(denied) => AccessUpdate::Ended(denied),
            });
        }
    }
}

/// Whether two answers give the same access (whatever `last_seen` says).
fn same_access(a: &Result<Grant, Denied>, b: &Result<Grant, Denied>) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => a.permissions == b.permissions && a.expires_at == b.expires_at,
        (Err(a), Err(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    async fn next(watch: &mut AccessWatch) -> Option<AccessUpdate> {
        tokio::time::timeout(Duration::from_secs(5), watch.changed())
            .await
            .expect("a change")
    }

    use super::*;
    use crate::gate::GateConfig;
    use crate::grant::{AccessChange, Permissions};
    use crate::identity::Identity;
    use crate::name::{DisplayName, Label};
    use crate::registry::{Device, Via};
    use crate::trust::{Actor, SystemClock};

    #[test]
    fn a_watch_reports_each_change_of_access_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let trust = Arc::new(
            Trust::open(dir.path(), GateConfig::default(), Arc::new(SystemClock)).unwrap(),
        );
        let id = Identity::generate_p256("watched").unwrap();
        let device = Device::from_der(
            id.cert_der(),
            FrontDoor::Native,
            DisplayName::sanitize_or("watched", "w"),
            Via::Pin,
            1,
        )
        .unwrap();
        let fp = device.fingerprint;
        let _ = trust.admit(device, [10, 0, 0, 1].into()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::spawn(trust.clone().run_expiry());
            let (now, mut watch) = trust.watch(FrontDoor::Native, fp);
            assert_eq!(now.unwrap().permissions(), Permissions::ALL);
            let (other_door, _) = trust.watch(FrontDoor::Gamestream, fp);
            assert_eq!(other_door, Err(Denied::NotPaired));
            let cli = Actor::cli();
            // A label is not access; the permissions are.
            trust.rename(&fp, Label::parse("TV").unwrap(), cli).unwrap();
            trust
                .change_access(&fp, AccessChange::Permissions(Permissions::LIST), cli)
                .unwrap();
            match next(&mut watch).await {
                Some(AccessUpdate::Granted(g)) => assert_eq!(g.permissions(), Permissions::LIST),
                other => panic!("{other:?}"),
            }
            trust
                .change_access(&fp, AccessChange::Enabled(false), cli)
                .unwrap();
            assert_eq!(next(&mut watch).await, Some(AccessUpdate::Ended(Denied::Disabled)));
            trust
                .change_access(&fp, AccessChange::Enabled(true), cli)
                .unwrap();
            assert!(matches!(next(&mut watch).await, Some(AccessUpdate::Granted(_))));
            // Its end comes by the timer, unasked.
            let at = trust.clock().unix() + 1;
            trust
                .change_access(&fp, AccessChange::Expires(Some(at)), cli)
                .unwrap();
            assert!(matches!(next(&mut watch).await, Some(AccessUpdate::Granted(g)) if g.expires_at() == Some(at)));
            assert_eq!(next(&mut watch).await, Some(AccessUpdate::Ended(Denied::Expired)));
            trust.revoke(&fp, cli).unwrap();
            assert_eq!(next(&mut watch).await, Some(AccessUpdate::Ended(Denied::NotPaired)));
        });
    }

    #[test]
    fn a_device_admitted_until_its_first_session_ends_loses_access_when_it_does() {
        use crate::grant::{Access, Until};
        let dir = tempfile::tempdir().unwrap();
        let trust = Arc::new(
            Trust::open(dir.path(), GateConfig::default(), Arc::new(SystemClock)).unwrap(),
        );
        let device = |name: &str| {
            let id = Identity::generate_p256(name).unwrap();
            Device::from_der(
                id.cert_der(),
                FrontDoor::Native,
                DisplayName::sanitize_or(name, "d"),
                Via::Pin,
                1,
            )
            .unwrap()
        };
        let owner = device("owner");
        let owner_fp = owner.fingerprint;
        let _ = trust.admit(owner, [10, 0, 0, 1].into()).unwrap();
        let guest = device("guest");
        let fp = guest.fingerprint;
        let access = Access {
            permissions: Permissions::LIST,
            until: Until::FirstSession,
            invite: false,
        };
        let _ = trust
            .admit_as(guest, [10, 0, 0, 2].into(), Some(access))
            .unwrap();
        let stored = trust.registry().get(&fp).unwrap();
        assert!(stored.until_first_session && stored.expires_at.is_none());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let (now, mut watch) = trust.watch(FrontDoor::Native, fp);
            assert!(now.is_ok());
            // Another device's session, or another door: nothing.
            let owner_after = trust.session_ended(FrontDoor::Native, &owner_fp).unwrap();
            assert!(!owner_after.unwrap().expired);
            assert!(trust
                .session_ended(FrontDoor::Gamestream, &fp)
                .unwrap()
                .is_none());
            assert!(trust.authorize(FrontDoor::Native, &fp).is_ok());
            // Its own: the end of its access, heard at once.
            let after = trust
                .session_ended(FrontDoor::Native, &fp)
                .unwrap()
                .unwrap();
            assert!(after.expired);
            assert_eq!(
                next(&mut watch).await,
                Some(AccessUpdate::Ended(Denied::Expired))
            );
            assert_eq!(
                trust.authorize(FrontDoor::Native, &fp).err(),
                Some(Denied::Expired)
            );
            // A time set later replaces it, and renews the device.
            let at = trust.clock().unix() + 3600;
            let renewed = trust
                .change_access(&fp, AccessChange::Expires(Some(at)), Actor::cli())
                .unwrap();
            assert!(!renewed.until_first_session && !renewed.expired);
            let again = trust
                .session_ended(FrontDoor::Native, &fp)
                .unwrap()
                .unwrap();
            assert!(
                !again.expired,
                "only the first session, and only without a time"
            );
        });
    }
}
