//! The trust service: approve stores durably then ends the request; a
//! refused approve changes nothing; events reach subscribers; a fake clock
//! drives expiry.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use punktfunk_certs::registry::REGISTRY_FILE;
use punktfunk_certs::{
    Clock, GateConfig, GateError, Identity, Kind, Needs, PendingOutcome, PendingRequest, Trust,
    TrustError, TrustEvent, Via,
};

struct FakeClock(Mutex<Instant>);

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        *self.0.lock().unwrap()
    }
    fn unix(&self) -> u64 {
        1_800_000_000
    }
}

fn knock(id: &Identity, needs: Needs) -> PendingRequest {
    PendingRequest {
        kind: Kind::Native,
        name: punktfunk_certs::DisplayName::sanitize("iPad <b>").unwrap(),
        cert_der: id.cert_der().to_vec(),
        address: "192.0.2.7:5000".parse().unwrap(),
        needs,
    }
}

#[test]
fn approve_stores_durably_then_ends_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(REGISTRY_FILE);
    let clock = Arc::new(FakeClock(Mutex::new(Instant::now())));
    let trust = Trust::open(&path, GateConfig::default(), clock.clone()).unwrap();
    let mut events = trust.subscribe();
    let client = Identity::generate("client").unwrap();
    let now = trust.now();
    let id = trust
        .gate()
        .add_pending(knock(&client, Needs::Approval), now)
        .unwrap();
    assert_eq!(events.try_recv().unwrap(), TrustEvent::PendingAdded { id });

    let device = trust
        .approve(
            id,
            punktfunk_certs::Label::parse(" Living Room TV ").unwrap(),
        )
        .unwrap();
    assert_eq!(device.via, Via::Approval);
    assert_eq!(device.label.as_deref(), Some("Living Room TV"));
    assert_eq!(device.name, "iPad <b>");
    assert_eq!(device.paired_at, 1_800_000_000);
    assert!(trust.is_trusted(&client.fingerprint()));
    assert_eq!(
        events.try_recv().unwrap(),
        TrustEvent::DeviceAdded {
            fingerprint: client.fingerprint(),
            replaced: false
        }
    );
    assert_eq!(
        events.try_recv().unwrap(),
        TrustEvent::PendingRemoved {
            id,
            outcome: PendingOutcome::Approved
        }
    );
    // Durable: a fresh open sees it.
    drop(trust);
    let again = Trust::open(&path, GateConfig::default(), clock).unwrap();
    assert!(again.is_trusted(&client.fingerprint()));
    // Approving twice is an unknown request.
    assert!(matches!(
        again.approve(id, None),
        Err(TrustError::Gate(GateError::UnknownRequest))
    ));
}

#[test]
fn pin_requests_cannot_be_approved_and_expire_on_the_fake_clock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock(Mutex::new(Instant::now())));
    let trust = Trust::open(
        &dir.path().join(REGISTRY_FILE),
        GateConfig::default(),
        clock.clone(),
    )
    .unwrap();
    let client = Identity::generate("moonlight").unwrap();
    let now = trust.now();
    let id = trust
        .gate()
        .add_pending(knock(&client, Needs::Pin), now)
        .unwrap();
    assert!(matches!(
        trust.approve(id, None),
        Err(TrustError::Gate(GateError::WrongNeed(_)))
    ));
    assert!(!trust.is_trusted(&client.fingerprint()));
    let mut events = trust.subscribe();
    *clock.0.lock().unwrap() += Duration::from_secs(301);
    let now = trust.now();
    trust.gate().expire(now);
    assert_eq!(
        events.try_recv().unwrap(),
        TrustEvent::PendingRemoved {
            id,
            outcome: PendingOutcome::Expired
        }
    );
    assert_eq!(trust.gate().outcome(id), Some(PendingOutcome::Expired));
}

#[test]
fn a_failed_store_leaves_the_request_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(REGISTRY_FILE);
    let clock = Arc::new(FakeClock(Mutex::new(Instant::now())));
    let trust = Trust::open(&path, GateConfig::default(), clock).unwrap();
    let client = Identity::generate("c").unwrap();
    let now = trust.now();
    let id = trust
        .gate()
        .add_pending(knock(&client, Needs::Approval), now)
        .unwrap();
    // Block the registry's temp file so the write fails.
    std::fs::create_dir_all(dir.path().join(format!("{REGISTRY_FILE}.tmp")).join("x")).unwrap();
    assert!(matches!(
        trust.approve(id, None),
        Err(TrustError::Registry(_))
    ));
    assert!(!trust.is_trusted(&client.fingerprint()));
    let now = trust.now();
    assert!(
        trust.gate().get_pending(id, now).is_some(),
        "the user can try again"
    );
}
