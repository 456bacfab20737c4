//! The one expiry timer: armed PINs, one-time PINs, waiting requests and
//! address blocks end at their deadline on [`Trust`]'s clock, and a
//! device's access at its `expires_at`, whether or not anybody looks; their
//! ends reach every door as trust events. Doors keep no expiry timers of
//! their own.
//!
//! A device's access ends on the wall clock (it is stored as Unix seconds):
//! [`Trust::authorize`] refuses it from that second on, and the timer
//! wakes at the start of that second, records the end (`access_expired`,
//! once: the registry keeps that it did) and tells its doors and watchers,
//! so they end its live connections. A device whose time came while the host was stopped is
//! recorded at the next start.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast::error::RecvError;

use crate::grant::AccessChange;
use crate::trust::{Actor, Trust};

/// Longest sleep while a device's access is due to end: the wall clock
/// may be set meanwhile, and the timer must notice.
const LONGEST_SLEEP: Duration = Duration::from_secs(60);

impl Trust {
    /// Expires what is due, at each deadline, until the trust service
    /// stops (its event channel closes). Run it once per host, e.g.
    /// `tokio::spawn(trust.clone().run_expiry())`.
    ///
    /// Sleeps are on tokio's clock, deadlines on `Trust`'s: the host's
    /// clock is the system's monotonic clock, which tokio reads too. After
    /// [`Gate::expire`](crate::gate::Gate::expire) at `now`, nothing due by
    /// `now` remains, so waking early at worst costs one more pass.
    pub async fn run_expiry(self: Arc<Self>) {
        let mut changes = self.subscribe();
        loop {
            let gate_next = {
                let now = self.now();
                let mut gate = self.gate();
                gate.expire(now);
                gate.next_deadline()
            };
            let next = match (gate_next, self.end_access_due().await) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let due = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = due => {}
                // Anything may have added an earlier deadline.
                changed = changes.recv() => {
                    if let Err(RecvError::Closed) = changed {
                        return;
                    }
                }
            }
        }
    }
}

impl Trust {
    /// Records the end of every device access that is due, and tells its
    /// doors; when (monotonic) the next one is due, if any.
    async fn end_access_due(self: &Arc<Self>) -> Option<Instant> {
        let due = self.registry.expired_by(self.clock().unix());
        if !due.is_empty() {
            let trust = self.clone();
            let ended = tokio::task::spawn_blocking(move || {
                for fp in due {
                    if let Err(e) = trust.change_access(&fp, AccessChange::Expired, Actor::host()) {
                        tracing::warn!(fingerprint = %fp.short(), "the end of a device's access was not recorded: {e}");
                    }
                }
            });
            if let Err(e) = ended.await {
                tracing::warn!("the end of a device's access was not recorded: {e}");
            }
        }
        let at = Duration::from_secs(self.registry.next_expiry()?);
        // The very start of its second (a stored time is whole seconds).
        // One that is due and could not be recorded is tried again a
        // second later.
        let wait = match at.checked_sub(self.clock().since_epoch()) {
            Some(wait) if !wait.is_zero() => wait,
            _ => Duration::from_secs(1),
        };
        Some(self.now() + wait.min(LONGEST_SLEEP))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::gate::{GateConfig, Needs, PendingRequest, RequestEnd};
    use crate::identity::Identity;
    use crate::name::DisplayName;
    use crate::registry::FrontDoor;
    use crate::trust::SystemClock;

    #[test]
    fn a_waiting_request_ends_at_its_deadline_without_anybody_asking() {
        let dir = tempfile::tempdir().unwrap();
        let config = GateConfig {
            pending_ttl: Duration::from_millis(300),
            ..GateConfig::default()
        };
        let trust = Arc::new(Trust::open(dir.path(), config, Arc::new(SystemClock)).unwrap());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::spawn(trust.clone().run_expiry());
            let mut events = trust.subscribe();
            let cert = Identity::generate_p256("late").unwrap();
            let id = trust
                .knock(
                    PendingRequest {
                        kind: FrontDoor::Native,
                        name: DisplayName::sanitize_or("late", "late"),
                        cert_der: cert.cert_der().to_vec(),
                        address: ([10, 0, 0, 9], 1).into(),
                        needs: Needs::Approval,
                    },
                    None,
                )
                .unwrap();
            let ended = tokio::time::timeout(
                Duration::from_secs(5),
                trust.request_outcome(&mut events, id),
            )
            .await
            .expect("expired by the timer, not by a caller");
            assert_eq!(ended, Some(RequestEnd::Expired));
        });
    }

    #[test]
    fn a_device_s_access_ends_at_its_time_and_is_recorded_once() {
        use crate::events::TrustEvent;
        use crate::grant::{Access, Permissions};
        let dir = tempfile::tempdir().unwrap();
        let trust = Arc::new(
            Trust::open(dir.path(), GateConfig::default(), Arc::new(SystemClock)).unwrap(),
        );
        let cert = Identity::generate_p256("guest").unwrap();
        let device = crate::registry::Device::from_der(
            cert.cert_der(),
            FrontDoor::Native,
            DisplayName::sanitize_or("guest", "guest"),
            crate::registry::Via::Pin,
            trust.clock().unix(),
        )
        .unwrap();
        let fp = device.fingerprint;
        let access = Access {
            permissions: Permissions::ALL,
            until: crate::grant::Until::For(1),
            invite: false,
        };
        let _ = trust
            .registry
            .admit(device, Some(access), Permissions::NONE)
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut events = trust.subscribe();
            tokio::spawn(trust.clone().run_expiry());
            let told = tokio::time::timeout(Duration::from_secs(4), async {
                loop {
                    if let Ok(TrustEvent::AccessChanged { fingerprint, .. }) = events.recv().await {
                        return fingerprint;
                    }
                }
            })
            .await
            .expect("its doors are told when its time comes");
            assert_eq!(told, fp);
        });
        assert!(trust.registry().get(&fp).unwrap().expired);
        assert_eq!(
            trust.authorize(FrontDoor::Native, &fp),
            Err(crate::door::Denied::Expired)
        );
        // Recorded once; opening again records nothing new.
        let expired = |dir: &std::path::Path| {
            crate::audit::recorded_events(dir)
                .into_iter()
                .filter(|e| *e == crate::audit::Event::AccessExpired)
                .count()
        };
        // The doors hear of it once it is stored; its entry follows.
        let recorded = std::time::Instant::now();
        while expired(dir.path()) == 0 && recorded.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(expired(dir.path()), 1);
        drop(rt);
        drop(trust);
        let trust = Arc::new(
            Trust::open(dir.path(), GateConfig::default(), Arc::new(SystemClock)).unwrap(),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let _ =
                tokio::time::timeout(Duration::from_millis(200), trust.clone().run_expiry()).await;
        });
        assert_eq!(expired(dir.path()), 1);
    }
}
