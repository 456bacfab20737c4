//! The trust service: approve stores durably then ends the request; a
//! refused approve changes nothing; events reach subscribers; a fake clock
//! drives expiry.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use punktfunk_certs::audit::{self, Query};
use punktfunk_certs::registry::REGISTRY_FILE;
use punktfunk_certs::{
    Actor, Clock, Door, Event, FrontDoor, GateConfig, GateError, Identity, Needs, PendingRequest,
    RequestEnd, Trust, TrustError, TrustEvent, Via,
};
use tokio::sync::broadcast;

/// The next change, skipping the audit writer's progress reports (they
/// arrive from its thread whenever a batch is on disk).
fn next_change(events: &mut broadcast::Receiver<TrustEvent>) -> TrustEvent {
    loop {
        match events.try_recv().unwrap() {
            TrustEvent::Audited { .. } => continue,
            e => return e,
        }
    }
}

/// The audit trail in `dir`, oldest first, as (event, door).
fn trail(dir: &std::path::Path) -> Vec<(Event, Door)> {
    let query = Query {
        limit: 1000,
        ..Query::default()
    };
    let mut records = audit::read(dir, &query).unwrap().events;
    records.reverse();
    records
        .into_iter()
        .map(|r| (r.entry.event, r.entry.door))
        .collect()
}

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
        kind: match needs {
            Needs::Approval => FrontDoor::Native,
            Needs::Pin => FrontDoor::Gamestream,
        },
        name: punktfunk_certs::DisplayName::sanitize("iPad <b>").unwrap(),
        cert_der: id.cert_der().to_vec(),
        address: "192.0.2.7:5000".parse().unwrap(),
        needs,
    }
}

#[test]
fn approve_stores_durably_then_ends_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let clock = Arc::new(FakeClock(Mutex::new(Instant::now())));
    let trust = Trust::open(path, GateConfig::default(), clock.clone()).unwrap();
    let mut events = trust.subscribe();
    let client = Identity::generate("client").unwrap();
    let id = trust.knock(knock(&client, Needs::Approval), None).unwrap();
    assert_eq!(next_change(&mut events), TrustEvent::PendingAdded { id });

    let device = trust
        .approve(
            id,
            punktfunk_certs::Label::parse(" Living Room TV ").unwrap(),
            Actor::console("192.0.2.1".parse().unwrap()),
        )
        .unwrap();
    assert_eq!(device.via, Via::Approval);
    assert_eq!(device.label.as_deref(), Some("Living Room TV"));
    assert_eq!(device.name, "iPad <b>");
    assert_eq!(device.paired_at, 1_800_000_000);
    assert!(trust.is_trusted(&client.fingerprint()));
    assert_eq!(
        next_change(&mut events),
        TrustEvent::DeviceAdded {
            fingerprint: client.fingerprint(),
            replaced: false
        }
    );
    assert_eq!(
        next_change(&mut events),
        TrustEvent::PendingRemoved {
            id,
            outcome: RequestEnd::Approved
        }
    );
    // Recorded in order, with who approved it from where.
    assert_eq!(
        trail(path),
        [
            (Event::RequestWaiting, Door::Native),
            (Event::RequestApproved, Door::Console),
            (Event::Paired, Door::Native),
        ]
    );
    let newest = &audit::read(
        path,
        &Query {
            limit: 1,
            ..Query::default()
        },
    )
    .unwrap()
    .events[0];
    assert_eq!(newest.at, "2027-01-15T08:00:00Z");
    assert_eq!(newest.entry.via, Some(Via::Approval));
    assert_eq!(newest.entry.address, Some("192.0.2.7".parse().unwrap()));
    assert_eq!(
        newest.entry.device.as_ref().unwrap().label.as_deref(),
        Some("Living Room TV")
    );
    // Durable: a fresh open sees it.
    drop(trust);
    let again = Trust::open(path, GateConfig::default(), clock).unwrap();
    assert!(again.is_trusted(&client.fingerprint()));
    // Approving twice is an unknown request.
    assert!(matches!(
        again.approve(id, None, Actor::cli()),
        Err(TrustError::Gate(GateError::UnknownRequest))
    ));
}

#[test]
fn pin_requests_cannot_be_approved_and_expire_on_the_fake_clock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock(Mutex::new(Instant::now())));
    let trust = Trust::open(dir.path(), GateConfig::default(), clock.clone()).unwrap();
    let client = Identity::generate("moonlight").unwrap();
    let id = trust.knock(knock(&client, Needs::Pin), None).unwrap();
    assert!(matches!(
        trust.approve(id, None, Actor::cli()),
        Err(TrustError::Gate(GateError::WrongNeed(_)))
    ));
    assert!(!trust.is_trusted(&client.fingerprint()));
    let mut events = trust.subscribe();
    *clock.0.lock().unwrap() += Duration::from_secs(301);
    trust.expire_due();
    assert_eq!(
        next_change(&mut events),
        TrustEvent::PendingRemoved {
            id,
            outcome: RequestEnd::Expired
        }
    );
    assert_eq!(trust.request_ended(id), Some(RequestEnd::Expired));
    trust.audited().durable_blocking().unwrap();
    assert_eq!(
        trail(dir.path()),
        [
            (Event::RequestWaiting, Door::Gamestream),
            (Event::RequestExpired, Door::Gamestream),
        ]
    );
}

#[test]
fn a_failed_store_leaves_the_request_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock(Mutex::new(Instant::now())));
    let trust = Trust::open(dir.path(), GateConfig::default(), clock).unwrap();
    let client = Identity::generate("c").unwrap();
    let id = trust.knock(knock(&client, Needs::Approval), None).unwrap();
    // Block the registry's temp file so the write fails.
    std::fs::create_dir_all(dir.path().join(format!("{REGISTRY_FILE}.tmp")).join("x")).unwrap();
    assert!(matches!(
        trust.approve(id, None, Actor::cli()),
        Err(TrustError::Registry(_))
    ));
    assert!(!trust.is_trusted(&client.fingerprint()));
    assert!(trust.is_waiting(id), "the user can try again");
}

#[test]
fn a_registry_that_cannot_be_read_is_refused_and_the_refusal_recorded() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(REGISTRY_FILE), b"{ not json").unwrap();
    let clock = Arc::new(FakeClock(Mutex::new(Instant::now())));
    let err = Trust::open(dir.path(), GateConfig::default(), clock).unwrap_err();
    assert!(matches!(err, TrustError::Registry(_)), "{err}");
    let records = audit::read(
        dir.path(),
        &Query {
            limit: 10,
            ..Query::default()
        },
    )
    .unwrap()
    .events;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].entry.event, Event::RegistryRefused);
    assert!(records[0]
        .entry
        .detail
        .as_deref()
        .unwrap()
        .contains("corrupt"));
}

#[test]
fn a_waiter_that_fell_behind_still_learns_what_happened_to_its_request() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock(Mutex::new(Instant::now())));
    let trust = Trust::open(dir.path(), GateConfig::default(), clock).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = Identity::generate_p256("moonlight").unwrap();
    let mut events = trust.subscribe();
    let id = trust.knock(knock(&client, Needs::Pin), None).unwrap();
    // More events than the channel keeps: this receiver lags.
    for _ in 0..1500 {
        let _ = trust.arm(Actor::cli(), &mut rand::rngs::OsRng);
    }
    let _ = trust
        .enter_pin(id, "1234".parse().unwrap(), None, Actor::cli())
        .unwrap();
    assert_eq!(
        rt.block_on(trust.request_update(&mut events, id)),
        punktfunk_certs::RequestUpdate::PinEntered
    );
    for _ in 0..1500 {
        trust.disarm(Actor::cli());
        let _ = trust.arm(Actor::cli(), &mut rand::rngs::OsRng);
    }
    trust.end_request(id, RequestEnd::PinRejected);
    assert_eq!(
        rt.block_on(trust.request_outcome(&mut events, id)),
        Some(RequestEnd::PinRejected)
    );
}

#[test]
fn a_request_whose_device_cannot_be_stored_waits_again() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock(Mutex::new(Instant::now())));
    let trust = Trust::open(dir.path(), GateConfig::default(), clock).unwrap();
    let id_a = Identity::generate_p256("a").unwrap();
    let id = trust.knock(knock(&id_a, Needs::Approval), None).unwrap();
    let refused = trust.admit_request(id, Needs::Approval, None, |p| {
        // The request is marked while its device is built and written.
        assert!(p.storing);
        Err(punktfunk_certs::RegistryError::NotFound(id_a.fingerprint()))
    });
    assert!(
        matches!(refused, Err(TrustError::Registry(_))),
        "{refused:?}"
    );
    assert!(!trust.view().request(id).unwrap().storing);
    assert!(trust.registry().list().is_empty());
    // Back to waiting: it can be denied, or approved after all.
    let approved = trust.approve(id, None, Actor::cli()).unwrap();
    assert_eq!(approved.fingerprint, id_a.fingerprint());
    assert_eq!(trust.request_ended(id), Some(RequestEnd::Approved));
    assert!(trust.is_trusted(&id_a.fingerprint()));
}
