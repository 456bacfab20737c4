//! A PIN the console typed for one waiting request (GameStream: the PIN
//! Moonlight shows), from the moment its door collects it until the
//! request pairs or fails: [`CollectedPin`], the request's counterpart of
//! [`super::PinAttempt`].
//!
//! It reports exactly once: [`CollectedPin::store`] stores the device and
//! ends the request as `paired` in one admission; [`CollectedPin::fail`]
//! ends it as its door tells it, with its `pin_rejected` (or
//! `moonlight_bug`) entry. Dropped unreported, the request ends as
//! `abandoned`, not `pin_rejected`: unlike the armed PIN, whose one guess is
//! spent once taken, this PIN belongs to its request, and a client that
//! goes away between phases (or whose attempt a newer one replaced) guessed
//! nothing. A request that already ended (denied, expired, replaced) stays
//! as it ended.

use std::sync::Arc;

use super::knock::PinFailure;
use super::pin::{trust_durable, StoreError};
use crate::gate::{Needs, PendingId, Pin, RequestEnd};
use crate::grant::Access;
use crate::name::Label;
#[cfg(test)]
use crate::registry::FrontDoor;
use crate::registry::{Device, Via};
use crate::trust::Trust;

/// The PIN entered for request `request()`, collected by its door. See the
/// module docs.
#[derive(Debug)]
pub struct CollectedPin {
    id: PendingId,
    pin: Pin,
    label: Option<Label>,
    /// What the device may do if it pairs (`None`: the host's default).
    access: Option<Access>,
    trust: Arc<Trust>,
    reported: bool,
}

impl CollectedPin {
    /// The request this PIN was typed for.
    pub fn request(&self) -> PendingId {
        self.id
    }

    /// What to run the exchange with.
    pub fn pin(&self) -> &Pin {
        &self.pin
    }

    /// The exchange proved the PIN: the device (`cert_der`, under the name
    /// the request waited with, labelled as the console said, admitted
    /// `via`) is stored durably and the request ends as `paired`, in one
    /// admission ([`Trust::admit_request`]), off the async threads; its
    /// `paired` entry is durable when this returns `Ok`. On an error the
    /// request ends as `abandoned` (if nothing ended it before).
    pub async fn store(mut self, cert_der: Vec<u8>, via: Via) -> Result<(), StoreError> {
        let trust = self.trust.clone();
        let (id, label, access) = (self.id, self.label.take(), self.access);
        let admitted = tokio::task::spawn_blocking(move || {
            trust
                .admit_request(id, Needs::Pin, access, |pending| {
                    // The name the console showed while the request waited.
                    let name = pending.request.name.clone();
                    let kind = pending.request.kind;
                    let mut device =
                        Device::from_der(&cert_der, kind, name, via, trust.clock().unix())?;
                    device.label = label;
                    Ok(device)
                })
                .map(|admitted| {
                    let mut ticket = trust.record_paired(&admitted);
                    if access.is_some_and(|a| a.invite) {
                        ticket = trust.record_invite_used(&admitted.device);
                    }
                    (admitted.device.kind, ticket)
                })
        })
        .await??;
        self.reported = true;
        let (door, ticket) = admitted;
        trust_durable(ticket, door).await;
        Ok(())
    }

    /// The exchange ended without pairing, as `failure` says: the request
    /// ends with its audit entry ([`Trust::pin_failed`]).
    pub fn fail(mut self, failure: PinFailure<'_>) {
        self.reported = true;
        self.trust.pin_failed(self.id, failure);
    }
}

impl Drop for CollectedPin {
    fn drop(&mut self) {
        if !self.reported
            && self
                .trust
                .end_request(self.id, RequestEnd::Abandoned)
                .is_some()
        {
            tracing::info!(request = %self.id, "pairing request abandoned after its PIN was entered");
        }
    }
}

impl Trust {
    /// The PIN the console entered for request `id`, collected (once) by
    /// its door; the request then pairs, until the returned guard reports.
    /// `None` if no PIN waits for collection (or the request ended).
    pub fn collect_pin(self: &Arc<Self>, id: PendingId) -> Option<CollectedPin> {
        let now = self.now();
        let (pin, label, access) = self.gate().claim_pin(id, now)?;
        Some(CollectedPin {
            id,
            pin,
            label,
            access,
            trust: self.clone(),
            reported: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::{GateConfig, PendingRequest};
    use crate::identity::Identity;
    use crate::name::DisplayName;
    use crate::trust::{Actor, SystemClock};

    /// A Moonlight request from `from`, its PIN typed as 1234, collected.
    fn collected(trust: &Arc<Trust>, from: [u8; 4]) -> (CollectedPin, Vec<u8>) {
        let der = Identity::generate_p256("moonlight")
            .unwrap()
            .cert_der()
            .to_vec();
        let request = PendingRequest {
            kind: FrontDoor::Gamestream,
            name: DisplayName::sanitize_or("moonlight", "m"),
            cert_der: der.clone(),
            address: (from, 47989).into(),
            needs: Needs::Pin,
        };
        let id = trust.knock(request, None).unwrap();
        let _ = trust
            .enter_pin(id, "1234".parse().unwrap(), None, Actor::cli())
            .unwrap();
        (trust.collect_pin(id).unwrap(), der)
    }

    fn trust(dir: &std::path::Path) -> Arc<Trust> {
        Arc::new(Trust::open(dir, GateConfig::default(), Arc::new(SystemClock)).unwrap())
    }

    #[test]
    fn it_reports_once_whichever_way_the_exchange_ends() {
        let dir = tempfile::tempdir().unwrap();
        let trust = trust(dir.path());
        // Dropped unreported: the client went away between phases.
        let (pin, _) = collected(&trust, [10, 1, 0, 1]);
        let id = pin.request();
        drop(pin);
        assert_eq!(trust.request_ended(id), Some(RequestEnd::Abandoned));
        // Failed: recorded as its door says, and the drop adds nothing.
        let (pin, _) = collected(&trust, [10, 1, 0, 2]);
        let id = pin.request();
        pin.fail(PinFailure::Rejected {
            why: "wrong PIN",
            after_right_pin: "gave up",
        });
        assert_eq!(trust.request_ended(id), Some(RequestEnd::PinRejected));
    }

    #[test]
    fn a_request_denied_meanwhile_stays_denied_and_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let trust = trust(dir.path());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (pin, der) = collected(&trust, [10, 1, 0, 3]);
        let id = pin.request();
        let _ = trust.deny(id, Actor::cli()).unwrap();
        assert!(rt.block_on(pin.store(der.clone(), Via::Pin)).is_err());
        assert_eq!(trust.request_ended(id), Some(RequestEnd::Denied));
        let fp = crate::fingerprint::Fingerprint::of_der(&der);
        assert!(trust.authorize(FrontDoor::Gamestream, &fp).is_err());
    }
}
