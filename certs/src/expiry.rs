//! The one expiry timer: armed PINs, one-time PINs, waiting requests and
//! address blocks end at their deadline on [`Trust`]'s clock, whether or
//! not anybody looks, and their ends reach every door as trust events.
//! Doors keep no expiry timers of their own for what the gate holds.

use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;

use crate::trust::Trust;

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
            let next = {
                let now = self.now();
                let mut gate = self.gate();
                gate.expire(now);
                gate.next_deadline()
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
}
