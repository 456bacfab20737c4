//! Every § 7.1 transition of the host connection core, without TLS: the
//! facts it is given, the messages and effects it emits, in order.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use punktfunk_certs::{
    AddressKey, Claimant, Fingerprint, GateError, LinkSecret, PendingId, RequestEnd, Secret, Via,
};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::*;
use crate::handshake;
use crate::message::{
    Confirm, ConsoleAction, ConsoleReply, ConsoleRequest, Decision, DisplayName, ErrorCode,
    Features, Grant, Intent, Message, Status, Waiting, Welcome,
};
use crate::pairing::{ChannelBinding, ClientAwaitingConfirm, ClientPairing, Exporter, Pin};
use crate::timeouts;

fn host_fp() -> Fingerprint {
    Fingerprint::from_bytes([0xAA; 32])
}

fn client_fp() -> Fingerprint {
    Fingerprint::from_bytes([0xCC; 32])
}

fn other_fp() -> Fingerprint {
    Fingerprint::from_bytes([0xDD; 32])
}

fn peer_addr() -> SocketAddr {
    "192.0.2.7:50123".parse().unwrap()
}

fn host_name() -> DisplayName {
    DisplayName::sanitize("Living Room").unwrap()
}

fn device_name() -> DisplayName {
    DisplayName::sanitize("Test iPad").unwrap()
}

fn exporter() -> Exporter {
    Exporter([7; crate::pairing::EXPORTER_LEN])
}

fn new_conn(policy: UnknownDevices, now: Instant) -> HostConnection {
    HostConnection::new(
        HostSide {
            name: host_name(),
            fingerprint: host_fp(),
            unknown_devices: policy,
            features: Features::ALL,
        },
        Peer {
            address: peer_addr(),
            fingerprint: client_fp(),
            exporter: exporter(),
        },
        now,
    )
}

/// Facts as a table, recording which were asked.
#[derive(Default)]
struct Facts {
    trusted: bool,
    /// Why an untrusted device is refused (`None`: it is not paired).
    denied: Option<Denied>,
    place_free: bool,
    armed: bool,
    asked: Vec<&'static str>,
}

impl Facts {
    fn trusted() -> Self {
        Self {
            trusted: true,
            ..Self::default()
        }
    }

    fn pairable() -> Self {
        Self {
            place_free: true,
            armed: true,
            ..Self::default()
        }
    }
}

impl HelloFacts for Facts {
    fn authorize(&mut self) -> Result<Grant, Denied> {
        self.asked.push("trusted");
        match (self.trusted, self.denied) {
            (true, _) => Ok(play()),
            (false, denied) => Err(denied.unwrap_or(Denied::NotPaired)),
        }
    }
    fn wait_for_pake(&mut self) -> bool {
        self.asked.push("place");
        self.place_free
    }
    fn is_armed(&mut self, link: bool) -> bool {
        self.asked.push(if link { "link armed" } else { "armed" });
        self.armed
    }
}

/// A connection that got a `hello` with `intent`, answered from `facts`.
fn greeted(
    policy: UnknownDevices,
    intent: Intent,
    facts: &mut Facts,
    t: Instant,
) -> HostConnection {
    let mut c = new_conn(policy, t);
    c.on_hello(hello(intent), facts, t);
    c
}

/// An unknown device's `hello{connect}` under `policy`.
fn unknown_connects(policy: UnknownDevices, t: Instant) -> HostConnection {
    greeted(policy, Intent::Connect, &mut Facts::default(), t)
}

fn drain(c: &mut HostConnection) -> Vec<Action> {
    std::iter::from_fn(|| c.poll_action()).collect()
}

fn hello(intent: Intent) -> Message {
    handshake::hello(device_name(), intent)
}

/// What the registry says of the client after a decision.
fn access(trusted: bool) -> Result<Grant, Denied> {
    if trusted {
        Ok(play())
    } else {
        Err(Denied::NotPaired)
    }
}

/// The grant the tests' trusted device has.
fn play() -> Grant {
    Grant {
        permissions: vec!["input_controller".into(), "list".into(), "view".into()],
        expires_at: None,
    }
}

/// The `welcome` to a client that offered no features: a session it opens
/// carries the device's grant.
fn welcome(status: Status) -> Action {
    let mut w = handshake::welcome(status, host_name(), host_fp());
    if let Message::Welcome(w) = &mut w {
        if matches!(status, Status::Trusted | Status::Open) {
            w.grant = Some(play());
        }
    }
    Action::Send(w)
}

fn claimant() -> Claimant {
    Claimant {
        address: peer_addr().ip(),
        name: device_name(),
        fingerprint: client_fp(),
    }
}

/// The `error` code sent right before `Close`, or `None` for a silent
/// close. Panics if the actions do not end in `Close`.
fn closed_with(actions: &[Action]) -> Option<ErrorCode> {
    assert_eq!(actions.last(), Some(&Action::Close), "{actions:?}");
    actions.iter().rev().find_map(|a| match a {
        Action::Send(Message::Error(e)) => Some(e.code),
        _ => None,
    })
}

fn effect(e: Effect) -> Action {
    Action::Effect(e)
}

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(7)
}

fn pin(s: &str) -> Pin {
    s.parse().unwrap()
}

/// The typed PIN `s` as the gate hands it to the core.
fn secret(s: &str) -> Secret {
    Secret::Pin(pin(s))
}

fn link_secret(byte: u8) -> LinkSecret {
    LinkSecret::from_bytes([byte; 16])
}

fn binding() -> ChannelBinding {
    ChannelBinding {
        client: client_fp(),
        host: host_fp(),
        exporter: exporter(),
    }
}

// ---- AwaitHello ----

#[test]
fn the_first_message_must_be_a_hello_of_this_version() {
    let t = Instant::now();
    let mut c = new_conn(UnknownDevices::Knock, t);
    c.on_hello(Message::Ping, &mut Facts::default(), t);
    assert_eq!(closed_with(&drain(&mut c)), Some(ErrorCode::BadMessage));

    let mut c = new_conn(UnknownDevices::Knock, t);
    let Message::Hello(mut h) = hello(Intent::Connect) else {
        unreachable!()
    };
    h.protocol = 2;
    let mut facts = Facts::trusted();
    c.on_hello(Message::Hello(h), &mut facts, t);
    assert_eq!(
        closed_with(&drain(&mut c)),
        Some(ErrorCode::UnsupportedVersion)
    );
    assert!(
        facts.asked.is_empty(),
        "nothing is looked up for a bad hello"
    );
}

#[test]
fn a_client_error_instead_of_hello_closes_without_a_word() {
    let t = Instant::now();
    let mut c = new_conn(UnknownDevices::Knock, t);
    c.on_hello(
        Message::error(ErrorCode::Internal, "bye"),
        &mut Facts::default(),
        t,
    );
    assert_eq!(closed_with(&drain(&mut c)), None);
}

#[test]
fn no_hello_within_the_deadline_is_timeout() {
    let t = Instant::now();
    let mut c = new_conn(UnknownDevices::Knock, t);
    assert_eq!(c.poll_timeout(), Some(t + timeouts::HELLO));
    c.on_timeout(t + timeouts::HELLO - Duration::from_millis(1));
    assert!(drain(&mut c).is_empty(), "not due yet");
    c.on_timeout(t + timeouts::HELLO);
    assert_eq!(closed_with(&drain(&mut c)), Some(ErrorCode::Timeout));
}

#[test]
fn read_failures_before_hello() {
    let t = Instant::now();
    for (failure, code) in [
        (ReadFailure::Closed, None),
        (ReadFailure::Broken, None),
        (ReadFailure::TooSlow, Some(ErrorCode::Timeout)),
        (
            ReadFailure::Malformed("frame too long".into()),
            Some(ErrorCode::BadMessage),
        ),
        // § 4.1: a newer hello with fields v1 cannot read.
        (
            ReadFailure::UnsupportedVersion(2),
            Some(ErrorCode::UnsupportedVersion),
        ),
    ] {
        let mut c = new_conn(UnknownDevices::Knock, t);
        c.on_read_failed(failure);
        assert_eq!(closed_with(&drain(&mut c)), code);
    }
}

// ---- connect ----

#[test]
fn a_trusted_device_gets_a_session_and_is_touched() {
    let t = Instant::now();
    let mut c = new_conn(UnknownDevices::Refuse, t);
    let mut facts = Facts::trusted();
    c.on_hello(hello(Intent::Connect), &mut facts, t);
    assert_eq!(
        drain(&mut c),
        [effect(Effect::Touch), welcome(Status::Trusted)]
    );
    assert_eq!(
        facts.asked,
        ["trusted"],
        "a connect never takes the pairing slot"
    );
    assert_eq!(c.state_name(), "session");
}

#[test]
fn a_disabled_or_expired_device_gets_its_own_answer_and_never_knocks() {
    for (denied, code) in [
        (Denied::Disabled, ErrorCode::Disabled),
        (Denied::Expired, ErrorCode::Expired),
    ] {
        let t = Instant::now();
        let mut c = new_conn(UnknownDevices::Knock, t);
        let mut facts = Facts {
            denied: Some(denied),
            ..Facts::default()
        };
        c.on_hello(hello(Intent::Connect), &mut facts, t);
        let actions = drain(&mut c);
        assert_eq!(closed_with(&actions), Some(code), "{denied:?}");
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::Effect(Effect::AddKnock { .. }))),
            "no knock for a paired device"
        );
    }
}

#[test]
fn disabling_or_expiring_the_device_ends_its_session_with_that_answer() {
    let t = Instant::now();
    for (denied, code) in [
        (Denied::Disabled, ErrorCode::Disabled),
        (Denied::Expired, ErrorCode::Expired),
        (Denied::NotPaired, ErrorCode::Revoked),
    ] {
        let mut c = session(t);
        c.on_access_ended(&other_fp(), denied);
        assert!(drain(&mut c).is_empty(), "another device's change");
        c.on_access_ended(&client_fp(), denied);
        let actions = drain(&mut c);
        assert_eq!(actions[0], effect(Effect::AwaitAudit));
        assert_eq!(closed_with(&actions), Some(code), "{denied:?}");
    }
}

#[test]
fn an_unknown_device_is_refused_when_knocks_are_off() {
    let t = Instant::now();
    let mut c = unknown_connects(UnknownDevices::Refuse, t);
    assert_eq!(closed_with(&drain(&mut c)), Some(ErrorCode::NotPaired));
}

#[test]
fn open_mode_stores_the_device_before_welcoming_it() {
    let t = Instant::now();
    let mut c = unknown_connects(UnknownDevices::DangerAdmitOpen, t);
    assert_eq!(
        drain(&mut c),
        [effect(Effect::Store {
            name: device_name(),
            via: Via::Open
        })]
    );
    assert_eq!(c.poll_timeout(), None, "the store is the driver's to bound");
    c.on_stored(Ok(play()), t);
    assert_eq!(drain(&mut c), [welcome(Status::Open)]);
    assert_eq!(c.state_name(), "session");
}

#[test]
fn open_mode_that_cannot_store_is_internal() {
    let t = Instant::now();
    let mut c = unknown_connects(UnknownDevices::DangerAdmitOpen, t);
    drain(&mut c);
    c.on_stored(Err(None), t);
    assert_eq!(closed_with(&drain(&mut c)), Some(ErrorCode::Internal));
}

// ---- knock ----

fn knocking(t: Instant) -> HostConnection {
    let mut c = unknown_connects(UnknownDevices::Knock, t);
    assert_eq!(
        drain(&mut c),
        [effect(Effect::AddKnock {
            name: device_name()
        })]
    );
    c
}

fn id() -> PendingId {
    "41".parse().unwrap()
}
const KNOCK_TTL: Duration = Duration::from_secs(300);

fn waiting(t: Instant) -> HostConnection {
    let mut c = knocking(t);
    c.on_knock_added(Ok(id()), t);
    assert_eq!(
        drain(&mut c),
        [effect(Effect::AwaitAudit), welcome(Status::ApprovalPending)],
        "the knock is on disk before the client hears it waits"
    );
    assert_eq!(c.waiting_on(), Some(id()));
    c
}

#[test]
fn a_knock_the_gate_will_not_list_is_busy_or_internal() {
    let t = Instant::now();
    for (err, code) in [
        (GateError::TooManyPending, ErrorCode::PairingBusy),
        (
            GateError::TooManyFromAddress(AddressKey::of(peer_addr().ip())),
            ErrorCode::PairingBusy,
        ),
        (GateError::WaitingElsewhere, ErrorCode::PairingBusy),
        (GateError::Storing, ErrorCode::PairingBusy),
        (GateError::UnknownRequest, ErrorCode::Internal),
    ] {
        let mut c = knocking(t);
        c.on_knock_added(Err(err.into()), t);
        assert_eq!(closed_with(&drain(&mut c)), Some(code));
    }
}

#[test]
fn a_waiting_knock_answers_pings_and_hears_the_decision() {
    let t = Instant::now();
    let mut c = waiting(t);
    let later = t + Duration::from_secs(30);
    c.on_message(Message::Ping, later);
    assert_eq!(drain(&mut c), [Action::Send(Message::Pong)]);
    assert_eq!(
        c.poll_timeout(),
        Some(later + timeouts::SESSION_IDLE),
        "a ping moves the idle deadline"
    );

    c.on_request_ended(Some(RequestEnd::Approved), Ok(play()), later);
    assert_eq!(
        drain(&mut c),
        [
            effect(Effect::AwaitAudit),
            Action::Send(Message::Decision(Decision::Approved))
        ]
    );
    assert_eq!(c.state_name(), "session");
    assert_eq!(c.waiting_on(), None);
}

#[test]
fn every_other_end_of_a_knock_closes_after_the_decision() {
    let t = Instant::now();
    for (outcome, trusted, decision) in [
        (RequestEnd::Denied, false, Decision::Denied),
        (RequestEnd::Expired, false, Decision::Expired),
        (RequestEnd::Replaced, false, Decision::Expired),
        // Approved, then revoked before the session began.
        (RequestEnd::Approved, false, Decision::Approved),
    ] {
        let mut c = waiting(t);
        c.on_request_ended(Some(outcome), access(trusted), t);
        let actions = drain(&mut c);
        assert_eq!(
            actions,
            [
                effect(Effect::AwaitAudit),
                Action::Send(Message::Decision(decision)),
                Action::Close
            ],
            "{outcome:?}"
        );
    }
    let mut c = waiting(t);
    c.on_request_ended(None, Ok(play()), t);
    assert_eq!(closed_with(&drain(&mut c)), None, "forgotten or stopping");
}

#[test]
fn a_knock_past_its_time_waits_for_the_trust_service_to_end_it() {
    let t = Instant::now();
    let mut c = waiting(t);
    let due = t + KNOCK_TTL;
    assert_eq!(c.poll_timeout(), Some(t + timeouts::SESSION_IDLE));
    // Keep the connection from idling out meanwhile.
    c.on_message(Message::Ping, due - Duration::from_secs(10));
    drain(&mut c);
    assert_eq!(
        c.poll_timeout(),
        Some(due - Duration::from_secs(10) + timeouts::SESSION_IDLE),
        "only the idle deadline is the core's; the request's is the trust service's"
    );
    c.on_timeout(due);
    assert_eq!(drain(&mut c), [], "nothing to do at the request's deadline");
    assert_eq!(c.state_name(), "await_decision");
    c.on_request_ended(Some(RequestEnd::Expired), Err(Denied::NotPaired), due);
    assert_eq!(
        &drain(&mut c)[1..],
        [
            Action::Send(Message::Decision(Decision::Expired)),
            Action::Close
        ]
    );
}

#[test]
fn a_silent_knock_times_out_with_a_word_and_a_gone_one_closes() {
    let t = Instant::now();
    let mut c = waiting(t);
    c.on_timeout(t + timeouts::SESSION_IDLE);
    assert_eq!(closed_with(&drain(&mut c)), Some(ErrorCode::Timeout));

    let mut c = waiting(t);
    c.on_read_failed(ReadFailure::Closed);
    assert_eq!(closed_with(&drain(&mut c)), None);

    let mut c = waiting(t);
    c.on_message(hello(Intent::Pair), t);
    assert_eq!(closed_with(&drain(&mut c)), Some(ErrorCode::BadMessage));
}

#[test]
fn a_revocation_does_not_touch_a_waiting_knock() {
    let t = Instant::now();
    let mut c = waiting(t);
    c.on_device_removed(&client_fp());
    assert!(drain(&mut c).is_empty());
    assert_eq!(c.waiting_on(), Some(id()));
}

// ---- session ----

fn session(t: Instant) -> HostConnection {
    let mut c = greeted(
        UnknownDevices::Knock,
        Intent::Connect,
        &mut Facts::trusted(),
        t,
    );
    drain(&mut c);
    c
}

#[test]
fn a_session_is_ping_pong_and_nothing_else() {
    let t = Instant::now();
    let mut c = session(t);
    c.on_message(Message::Ping, t);
    assert_eq!(drain(&mut c), [Action::Send(Message::Pong)]);
    c.on_message(Message::Pong, t);
    assert_eq!(closed_with(&drain(&mut c)), Some(ErrorCode::BadMessage));
}

#[test]
fn a_silent_session_just_closes() {
    let t = Instant::now();
    let mut c = session(t);
    c.on_timeout(t + timeouts::SESSION_IDLE);
    assert_eq!(closed_with(&drain(&mut c)), None);

    let mut c = session(t);
    c.on_read_failed(ReadFailure::TooSlow);
    assert_eq!(
        closed_with(&drain(&mut c)),
        None,
        "§ 8: a stalled frame too"
    );

    let mut c = session(t);
    c.on_read_failed(ReadFailure::Malformed("bad json".into()));
    assert_eq!(closed_with(&drain(&mut c)), Some(ErrorCode::BadMessage));
}

#[test]
fn revoking_the_device_ends_its_session_after_the_audit() {
    let t = Instant::now();
    let mut c = session(t);
    c.on_device_removed(&other_fp());
    assert!(drain(&mut c).is_empty(), "another device's revocation");
    c.on_device_removed(&client_fp());
    let actions = drain(&mut c);
    assert_eq!(actions[0], effect(Effect::AwaitAudit));
    assert_eq!(closed_with(&actions), Some(ErrorCode::Revoked));
}

#[test]
fn a_stopping_trust_service_ends_the_session() {
    let t = Instant::now();
    let mut c = session(t);
    c.on_trust_stopped();
    assert_eq!(closed_with(&drain(&mut c)), None);
}

// ---- pair ----

#[test]
fn pairing_needs_an_armed_pin_then_a_place_among_the_waiting() {
    let t = Instant::now();
    let mut c = new_conn(UnknownDevices::Knock, t);
    let mut facts = Facts {
        place_free: true,
        trusted: true,
        ..Facts::default()
    };
    c.on_hello(hello(Intent::Pair), &mut facts, t);
    let actions = drain(&mut c);
    assert_eq!(closed_with(&actions), Some(ErrorCode::NotArmed));
    assert!(
        !actions.contains(&effect(Effect::LeavePairing)),
        "none taken"
    );
    assert_eq!(facts.asked, ["armed"], "pairing never asks trust");

    let mut c = new_conn(UnknownDevices::Knock, t);
    let mut facts = Facts {
        armed: true,
        ..Facts::default()
    };
    c.on_hello(hello(Intent::PairLink), &mut facts, t);
    assert_eq!(closed_with(&drain(&mut c)), Some(ErrorCode::PairingBusy));
    assert_eq!(facts.asked, ["link armed", "place"]);
}

fn awaiting_pake_with(t: Instant, intent: Intent) -> HostConnection {
    let mut c = greeted(UnknownDevices::Refuse, intent, &mut Facts::pairable(), t);
    // Nothing is claimed or shown yet: waiting for `pake` holds nothing.
    assert_eq!(drain(&mut c), [welcome(Status::Pairing)]);
    assert_eq!(c.poll_timeout(), Some(t + timeouts::HOST_PAIRING_STEP));
    c
}

fn awaiting_pake(t: Instant) -> HostConnection {
    awaiting_pake_with(t, Intent::Pair)
}

#[test]
fn any_number_wait_for_pake_and_the_first_pake_takes_the_pin() {
    let t = Instant::now();
    let mut rng = rng();
    let mut waiting: Vec<HostConnection> = (0..5).map(|_| awaiting_pake(t)).collect();
    // The fourth sends its pake first: it is the one that takes the PIN.
    let (_, pake) = ClientPairing::start(&pin("1111"), binding(), &mut rng).unwrap();
    waiting[3].on_message(pake.clone(), t);
    assert_eq!(
        drain(&mut waiting[3]),
        [
            effect(Effect::BeginExchange(claimant())),
            effect(Effect::TakePin(claimant()))
        ]
    );
    // Another's later pake finds the PIN gone: not armed, nothing spent.
    waiting[0].on_message(pake, t);
    drain(&mut waiting[0]);
    waiting[0].on_pin(None, &mut rng, t);
    let actions = drain(&mut waiting[0]);
    assert_eq!(closed_with(&actions), Some(ErrorCode::NotArmed));
    assert!(!actions
        .iter()
        .any(|a| matches!(a, Action::Effect(Effect::ReportPin(_)))));
    // The rest still wait, each on its own deadline.
    for c in &waiting[1..3] {
        assert_eq!(c.state_name(), "await_pake");
    }
}

#[test]
fn a_pair_hello_without_pake_is_recorded_as_a_stall() {
    let t = Instant::now();
    for input in 0..4 {
        let mut c = awaiting_pake(t);
        match input {
            0 => c.on_timeout(t + timeouts::HOST_PAIRING_STEP),
            1 => c.on_read_failed(ReadFailure::Closed),
            2 => c.on_read_failed(ReadFailure::Broken),
            _ => c.on_read_failed(ReadFailure::TooSlow),
        }
        let actions = drain(&mut c);
        assert_eq!(
            actions[0],
            effect(Effect::RecordStall(claimant())),
            "input {input}: {actions:?}"
        );
        assert!(actions.contains(&effect(Effect::LeavePairing)));
        assert_eq!(actions.last(), Some(&Action::Close));
    }
    // Early is no stall; garbage is a bad message, not a stall.
    let mut c = awaiting_pake(t);
    c.on_timeout(t + timeouts::HOST_PAIRING_STEP - Duration::from_millis(1));
    assert_eq!(drain(&mut c), []);
    c.on_read_failed(ReadFailure::Malformed("x".into()));
    let actions = drain(&mut c);
    assert!(!actions.contains(&effect(Effect::RecordStall(claimant()))));
}

#[test]
fn a_link_pairing_runs_with_the_link_secret_and_a_wrong_one_is_rejected() {
    let t = Instant::now();
    for (client_byte, host_byte) in [(7u8, 7u8), (7, 8)] {
        let mut rng = rng();
        let mut c = awaiting_pake_with(t, Intent::PairLink);
        let (client, pake) =
            ClientPairing::start(&link_secret(client_byte), binding(), &mut rng).unwrap();
        c.on_message(pake, t);
        assert_eq!(
            drain(&mut c),
            [
                effect(Effect::BeginExchange(claimant())),
                effect(Effect::UseLink(claimant()))
            ]
        );
        c.on_pin(Some(Secret::Link(link_secret(host_byte))), &mut rng, t);
        let host_pake = match drain(&mut c).as_slice() {
            [Action::Send(m @ Message::Pake(_))] => m.clone(),
            other => panic!("{other:?}"),
        };
        let (_, confirm) = client.on_message(host_pake).unwrap();
        c.on_message(confirm, t);
        let actions = drain(&mut c);
        if client_byte == host_byte {
            assert_eq!(
                actions,
                [effect(Effect::Store {
                    name: device_name(),
                    via: Via::Pin
                })]
            );
        } else {
            // Reported as spent: for the link, the gate keeps it anyway.
            assert_eq!(actions[0], effect(Effect::ReportPin(None)));
            assert_eq!(closed_with(&actions), Some(ErrorCode::PinRejected));
        }
    }
}

#[test]
fn anything_but_pake_leaves_the_pin_in_the_gate() {
    let t = Instant::now();
    for input in 0..4 {
        let mut c = awaiting_pake(t);
        match input {
            // Nothing was shown or taken: only the place goes back.
            0 => c.on_message(Message::Ping, t),
            1 => c.on_message(Message::error(ErrorCode::Internal, "x"), t),
            2 => c.on_read_failed(ReadFailure::Malformed("short pake".into())),
            _ => c.on_timeout(t + timeouts::HOST_PAIRING_STEP),
        }
        let actions = drain(&mut c);
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::Effect(Effect::TakePin(_) | Effect::ReportPin(_)))),
            "input {input}: {actions:?}"
        );
        assert!(actions.contains(&effect(Effect::LeavePairing)));
        assert_eq!(actions.last(), Some(&Action::Close));
    }
}

/// Runs a pairing with the real client core holding `client_pin` against
/// the host's `host_pin`, up to the host's answer to `confirm`.
fn pair_until_confirm(
    t: Instant,
    client_pin: &str,
    host_pin: &str,
) -> (HostConnection, ClientAwaitingConfirm, Vec<Action>) {
    pair_from(awaiting_pake(t), t, client_pin, host_pin)
}

/// [`pair_until_confirm`] on a connection that awaits `pake`.
fn pair_from(
    mut c: HostConnection,
    t: Instant,
    client_pin: &str,
    host_pin: &str,
) -> (HostConnection, ClientAwaitingConfirm, Vec<Action>) {
    let mut rng = rng();
    let (client, pake) = ClientPairing::start(&pin(client_pin), binding(), &mut rng).unwrap();
    c.on_message(pake, t);
    assert_eq!(
        drain(&mut c),
        [
            effect(Effect::BeginExchange(claimant())),
            effect(Effect::TakePin(claimant()))
        ],
        "§ 6.5: the PIN is taken when pake arrives"
    );
    assert_eq!(c.poll_timeout(), None);
    c.on_pin(Some(secret(host_pin)), &mut rng, t);
    let host_pake = match drain(&mut c).as_slice() {
        [Action::Send(m @ Message::Pake(_))] => m.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(c.poll_timeout(), Some(t + timeouts::HOST_PAIRING_STEP));
    let (awaiting, confirm) = client.on_message(host_pake).unwrap();
    c.on_message(confirm, t);
    let actions = drain(&mut c);
    (c, awaiting, actions)
}

#[test]
fn the_right_pin_stores_the_device_before_confirming() {
    let t = Instant::now();
    let (mut c, client, actions) = pair_until_confirm(t, "4821", "4821");
    assert_eq!(
        actions,
        [effect(Effect::Store {
            name: device_name(),
            via: Via::Pin
        })]
    );
    c.on_stored(Ok(play()), t);
    let actions = drain(&mut c);
    assert_eq!(
        actions[..2],
        [
            effect(Effect::ReportPin(Some(client_fp()))),
            effect(Effect::LeavePairing)
        ]
    );
    let [Action::Send(confirm)] = &actions[2..] else {
        panic!("{actions:?}")
    };
    assert_eq!(client.on_message(confirm.clone()).unwrap().host, host_fp());
    assert_eq!(c.state_name(), "session");
}

#[test]
fn a_wrong_pin_is_spent_and_recorded_before_the_client_hears() {
    let t = Instant::now();
    let (_, _, actions) = pair_until_confirm(t, "4821", "4822");
    assert_eq!(
        actions[..2],
        [effect(Effect::ReportPin(None)), effect(Effect::AwaitAudit)]
    );
    assert_eq!(closed_with(&actions), Some(ErrorCode::PinRejected));
    assert!(actions.contains(&effect(Effect::LeavePairing)));
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::Send(Message::Confirm(_)))),
        "nothing keyed goes out before the client's MAC checks"
    );
}

#[test]
fn a_paired_device_the_host_cannot_store_is_internal_and_spends_the_pin() {
    let t = Instant::now();
    let (mut c, _, _) = pair_until_confirm(t, "0000", "0000");
    c.on_stored(Err(None), t);
    let actions = drain(&mut c);
    assert_eq!(closed_with(&actions), Some(ErrorCode::Internal));
    assert!(actions.contains(&effect(Effect::ReportPin(None))));
    assert!(!actions
        .iter()
        .any(|a| matches!(a, Action::Send(Message::Confirm(_)))));
}

#[test]
fn a_pin_gone_meanwhile_is_not_armed_and_nothing_to_report() {
    let t = Instant::now();
    let mut c = awaiting_pake(t);
    let (_, pake) = ClientPairing::start(&pin("1111"), binding(), &mut rng()).unwrap();
    c.on_message(pake, t);
    drain(&mut c);
    c.on_pin(None, &mut rng(), t);
    let actions = drain(&mut c);
    assert_eq!(closed_with(&actions), Some(ErrorCode::NotArmed));
    assert!(!actions
        .iter()
        .any(|a| matches!(a, Action::Effect(Effect::ReportPin(_)))));
    assert!(actions.contains(&effect(Effect::LeavePairing)));
}

#[test]
fn after_the_pin_is_taken_every_way_out_spends_it() {
    let t = Instant::now();
    for input in 0..5 {
        let mut rng = rng();
        let mut c = awaiting_pake(t);
        let (_, pake) = ClientPairing::start(&pin("1234"), binding(), &mut rng).unwrap();
        c.on_message(pake, t);
        c.on_pin(Some(secret("1234")), &mut rng, t);
        drain(&mut c);
        match input {
            0 => c.on_timeout(t + timeouts::HOST_PAIRING_STEP),
            1 => c.on_read_failed(ReadFailure::Closed),
            2 => c.on_read_failed(ReadFailure::Malformed("x".into())),
            3 => c.on_message(Message::Ping, t),
            _ => c.on_message(Message::error(ErrorCode::Internal, "gave up"), t),
        }
        let actions = drain(&mut c);
        let reports = actions
            .iter()
            .filter(|a| matches!(a, Action::Effect(Effect::ReportPin(None))))
            .count();
        assert_eq!(reports, 1, "input {input}: {actions:?}");
        assert_eq!(actions.last(), Some(&Action::Close));
    }
}

#[test]
fn a_mac_of_the_wrong_shape_is_a_rejected_pin_too() {
    let t = Instant::now();
    let mut rng = rng();
    let mut c = awaiting_pake(t);
    let (_, pake) = ClientPairing::start(&pin("1234"), binding(), &mut rng).unwrap();
    c.on_message(pake, t);
    c.on_pin(Some(secret("1234")), &mut rng, t);
    drain(&mut c);
    c.on_message(Message::Confirm(Confirm { mac: [0; 32] }), t);
    assert_eq!(closed_with(&drain(&mut c)), Some(ErrorCode::PinRejected));
}

#[test]
fn nothing_follows_close() {
    let t = Instant::now();
    let mut c = session(t);
    c.on_device_removed(&client_fp());
    drain(&mut c);
    assert!(c.is_closed());
    c.on_message(Message::Ping, t);
    c.on_read_failed(ReadFailure::Closed);
    c.on_timeout(t + Duration::from_secs(3600));
    c.on_device_removed(&client_fp());
    c.on_stored(Ok(play()), t);
    c.on_trust_stopped();
    assert!(drain(&mut c).is_empty());
}

// ---- every path, at random ----

#[derive(Debug, Clone)]
enum Input {
    Hello(bool, bool, bool, bool),
    Pake(bool),
    Confirm,
    Ping,
    Junk,
    ClientError,
    Read(u8),
    Wait(u16),
    Stored(bool),
    Knock(bool),
    Pin(bool),
    Ended(u8, bool),
    Removed(bool),
    Stopped,
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>())
            .prop_map(|(a, b, c, d)| Input::Hello(a, b, c, d)),
        any::<bool>().prop_map(Input::Pake),
        Just(Input::Confirm),
        Just(Input::Ping),
        Just(Input::Junk),
        Just(Input::ClientError),
        (0u8..4).prop_map(Input::Read),
        (0u16..400).prop_map(Input::Wait),
        any::<bool>().prop_map(Input::Stored),
        any::<bool>().prop_map(Input::Knock),
        any::<bool>().prop_map(Input::Pin),
        (0u8..5, any::<bool>()).prop_map(|(o, t)| Input::Ended(o, t)),
        any::<bool>().prop_map(Input::Removed),
        Just(Input::Stopped),
    ]
}

/// A plausible start (a pairing, a knock, an open admission, a trusted
/// connect) cut short anywhere, then anything at all: random inputs alone
/// would rarely get as far as a taken PIN.
fn inputs() -> impl Strategy<Value = Vec<Input>> {
    let start =
        (0usize..4, any::<bool>(), any::<bool>(), 0usize..6).prop_map(|(flow, a, b, cut)| {
            let flow = match flow {
                0 => vec![
                    Input::Hello(false, true, true, true),
                    Input::Pake(a),
                    Input::Pin(true),
                    Input::Confirm,
                    Input::Stored(b),
                    Input::Ping,
                ],
                1 => vec![
                    Input::Hello(false, false, false, false),
                    Input::Knock(true),
                    Input::Ping,
                    Input::Ended(if a { 0 } else { 1 }, b),
                    Input::Ping,
                ],
                2 => vec![
                    Input::Hello(false, false, false, false),
                    Input::Stored(a),
                    Input::Ping,
                ],
                _ => vec![
                    Input::Hello(true, a, b, false),
                    Input::Ping,
                    Input::Removed(a),
                ],
            };
            flow.into_iter().take(cut).collect::<Vec<_>>()
        });
    (start, proptest::collection::vec(input(), 0..24)).prop_map(|(mut start, tail)| {
        start.extend(tail);
        start
    })
}

proptest! {
    /// Whatever arrives in whatever order: nothing after `Close`; the PIN
    /// is taken only after a `pake`, at most once, and a taken PIN is
    /// reported exactly once by the time the connection is closed or in a
    /// session; the pairing slot goes back exactly once; nothing keyed is
    /// sent before a PIN; a session needs trust, a store or an approval.
    #[test]
    fn the_core_keeps_its_promises(policy in 0u8..3, inputs in inputs()) {
        let policy = [UnknownDevices::Knock, UnknownDevices::Refuse, UnknownDevices::DangerAdmitOpen][policy as usize];
        let mut now = Instant::now();
        let mut rng = rng();
        let mut c = new_conn(policy, now);
        let mut log: Vec<Action> = Vec::new();
        let mut client: Option<ClientPairing> = None;
        let mut awaiting: Option<ClientAwaitingConfirm> = None;
        let (mut pake_seen, mut pin_asked, mut pins_given, mut slots) = (false, false, 0, 0);
        let mut may_enter_session = false;
        for input in inputs {
            match input {
                Input::Hello(trusted, place_free, armed, pair) => {
                    let mut facts = Facts { trusted, denied: None, place_free, armed, asked: vec![] };
                    let first = c.wants_hello();
                    c.on_hello(hello(if pair { Intent::Pair } else { Intent::Connect }), &mut facts, now);
                    if first && facts.asked.contains(&"place") && place_free {
                        slots += 1;
                    }
                    if first && trusted && !pair {
                        may_enter_session = true;
                    }
                }
                Input::Pake(right) => {
                    let (cl, msg) = ClientPairing::start(&pin(if right { "2468" } else { "1357" }), binding(), &mut rng).unwrap();
                    client = Some(cl);
                    if c.state_name() == "await_pake" { pake_seen = true; }
                    c.on_message(msg, now);
                }
                Input::Confirm => {
                    let host_pake = log.iter().rev().find_map(|a| match a {
                        Action::Send(m @ Message::Pake(_)) => Some(m.clone()),
                        _ => None,
                    });
                    let msg = match (client.take(), host_pake) {
                        (Some(cl), Some(hp)) => match cl.on_message(hp) {
                            Ok((aw, confirm)) => { awaiting = Some(aw); confirm }
                            Err(_) => Message::Confirm(Confirm { mac: [1; 32] }),
                        },
                        _ => Message::Confirm(Confirm { mac: [1; 32] }),
                    };
                    c.on_message(msg, now);
                }
                Input::Ping => c.on_message(Message::Ping, now),
                Input::Junk => c.on_message(Message::Pong, now),
                Input::ClientError => c.on_message(Message::error(ErrorCode::Internal, "x"), now),
                Input::Read(k) => c.on_read_failed(match k {
                    0 => ReadFailure::Closed,
                    1 => ReadFailure::Broken,
                    2 => ReadFailure::TooSlow,
                    _ => ReadFailure::Malformed("x".into()),
                }),
                Input::Wait(s) => {
                    now += Duration::from_secs(u64::from(s));
                    c.on_timeout(now);
                }
                Input::Stored(ok) => {
                    if ok && c.state_name() == "storing" { may_enter_session = true; }
                    c.on_stored(if ok { Ok(play()) } else { Err(None) }, now);
                }
                Input::Knock(ok) => c.on_knock_added(if ok { Ok(id()) } else { Err(GateError::TooManyPending.into()) }, now),
                Input::Pin(armed) => {
                    let given = armed && pin_asked && c.state_name() == "taking_pin";
                    if given { pins_given += 1; }
                    c.on_pin(armed.then(|| secret("2468")), &mut rng, now);
                }
                Input::Ended(o, trusted) => {
                    let outcome = [RequestEnd::Approved, RequestEnd::Denied, RequestEnd::Expired, RequestEnd::Replaced].get(o as usize).copied();
                    if outcome == Some(RequestEnd::Approved) && trusted && c.waiting_on().is_some() {
                        may_enter_session = true;
                    }
                    c.on_request_ended(outcome, access(trusted), now);
                }
                Input::Removed(own) => c.on_device_removed(&if own { client_fp() } else { other_fp() }),
                Input::Stopped => c.on_trust_stopped(),
            }
            for a in drain(&mut c) {
                prop_assert!(log.last() != Some(&Action::Close), "{a:?} after Close");
                if let Action::Effect(Effect::TakePin(_)) = a {
                    prop_assert!(pake_seen && !pin_asked, "PIN taken without a pake, or twice");
                    pin_asked = true;
                }
                if let Action::Send(Message::Pake(_)) = a {
                    prop_assert!(pins_given == 1, "keyed reply without a PIN");
                }
                log.push(a);
            }
            let reports = log.iter().filter(|a| matches!(a, Action::Effect(Effect::ReportPin(_)))).count();
            let leaves = log.iter().filter(|a| matches!(a, Action::Effect(Effect::LeavePairing))).count();
            prop_assert!(reports <= pins_given && pins_given <= 1);
            prop_assert!(leaves <= slots && slots <= 1);
            if c.is_closed() || c.state_name() == "session" {
                prop_assert_eq!(reports, pins_given);
                prop_assert_eq!(leaves, slots);
            }
            if c.state_name() == "session" {
                prop_assert!(may_enter_session || log.contains(&effect(Effect::ReportPin(Some(client_fp())))));
            }
        }
        let _ = awaiting;
    }
}

// ---- the `grant` feature (§ 4.1, § 4.9) ----

/// A `hello` that offers `grant` (and a feature of a later version).
fn hello_offering_grant(intent: Intent) -> Message {
    let Message::Hello(mut h) = hello(intent) else {
        unreachable!()
    };
    h.features = Features {
        grant: true,
        ..Features::default()
    };
    Message::Hello(h)
}

fn greeted_offering_grant(
    policy: UnknownDevices,
    intent: Intent,
    facts: &mut Facts,
) -> (HostConnection, Vec<Action>) {
    let t = Instant::now();
    let mut c = new_conn(policy, t);
    c.on_hello(hello_offering_grant(intent), facts, t);
    let actions = drain(&mut c);
    (c, actions)
}

fn sent_welcome(actions: &[Action]) -> Welcome {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Send(Message::Welcome(w)) => Some(w.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no welcome in {actions:?}"))
}

fn watch() -> Grant {
    Grant {
        permissions: vec!["list".into(), "view".into()],
        expires_at: Some(1_798_135_200),
    }
}

#[test]
fn welcome_says_which_offered_features_the_host_speaks_and_carries_the_grant() {
    let (_, actions) = greeted_offering_grant(
        UnknownDevices::Refuse,
        Intent::Connect,
        &mut Facts::trusted(),
    );
    let w = sent_welcome(&actions);
    assert_eq!(
        (w.status, w.features, w.grant),
        (
            Status::Trusted,
            Features {
                grant: true,
                ..Features::default()
            },
            Some(play())
        )
    );
    // A v1 client that offers nothing still gets the grant in welcome
    // (unknown fields are ignored, § 4), and no feature.
    let w = sent_welcome(&drain(&mut session_of(hello(Intent::Connect))));
    assert_eq!((w.features, w.grant), (Features::default(), Some(play())));
    // Statuses that open no session carry no grant.
    let (_, actions) =
        greeted_offering_grant(UnknownDevices::Refuse, Intent::Pair, &mut Facts::pairable());
    let w = sent_welcome(&actions);
    assert_eq!(
        (w.status, w.features, w.grant),
        (
            Status::Pairing,
            Features {
                grant: true,
                ..Features::default()
            },
            None
        )
    );
}

fn session_of(hello: Message) -> HostConnection {
    let t = Instant::now();
    let mut c = new_conn(UnknownDevices::Knock, t);
    c.on_hello(hello, &mut Facts::trusted(), t);
    c
}

#[test]
fn a_grant_change_reaches_a_session_that_speaks_grant_once_and_only_its_own() {
    let (mut c, _) = greeted_offering_grant(
        UnknownDevices::Refuse,
        Intent::Connect,
        &mut Facts::trusted(),
    );
    c.on_grant_changed(&client_fp(), play());
    assert_eq!(drain(&mut c), [], "welcome told it this grant already");
    c.on_grant_changed(&other_fp(), watch());
    assert_eq!(drain(&mut c), [], "another device's grant");
    c.on_grant_changed(&client_fp(), watch());
    assert_eq!(drain(&mut c), [Action::Send(Message::Grant(watch()))]);
    c.on_grant_changed(&client_fp(), watch());
    assert_eq!(drain(&mut c), [], "no change, no message");
    assert_eq!(c.state_name(), "session");

    // A client that did not offer `grant` never gets the message.
    let mut v1 = session_of(hello(Intent::Connect));
    drain(&mut v1);
    v1.on_grant_changed(&client_fp(), watch());
    assert_eq!(drain(&mut v1), []);
}

#[test]
fn a_session_opened_by_approval_or_pairing_hears_its_grant_next() {
    let t = Instant::now();
    // Knock, then approval: decision, then grant.
    let (mut c, _) = greeted_offering_grant(
        UnknownDevices::Knock,
        Intent::Connect,
        &mut Facts::default(),
    );
    c.on_knock_added(Ok(id()), t);
    drain(&mut c);
    c.on_grant_changed(&client_fp(), watch());
    assert_eq!(drain(&mut c), [], "not a session yet");
    c.on_request_ended(Some(RequestEnd::Approved), Ok(watch()), t);
    assert_eq!(
        drain(&mut c),
        [
            effect(Effect::AwaitAudit),
            Action::Send(Message::Decision(Decision::Approved)),
            Action::Send(Message::Grant(watch())),
        ]
    );

    // The PIN ceremony: confirm{cB}, then grant.
    let (c, _) =
        greeted_offering_grant(UnknownDevices::Refuse, Intent::Pair, &mut Facts::pairable());
    let (mut c, client, _) = pair_from(c, t, "4821", "4821");
    c.on_stored(Ok(watch()), t);
    let actions = drain(&mut c);
    let [.., Action::Send(confirm), Action::Send(Message::Grant(g))] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(client.on_message(confirm.clone()).unwrap().host, host_fp());
    assert_eq!(*g, watch());
}

// ---- console actions (§ 4.10) ----

fn console_session(offer: Features, host: Features) -> HostConnection {
    let t = Instant::now();
    let mut c = HostConnection::new(
        HostSide {
            name: host_name(),
            fingerprint: host_fp(),
            unknown_devices: UnknownDevices::Refuse,
            features: host,
        },
        Peer {
            address: peer_addr(),
            fingerprint: client_fp(),
            exporter: exporter(),
        },
        t,
    );
    let Message::Hello(mut h) = hello(Intent::Connect) else {
        unreachable!()
    };
    h.features = offer;
    c.on_hello(Message::Hello(h), &mut Facts::trusted(), t);
    drain(&mut c);
    c
}

fn watch_request(reference: u32) -> Message {
    Message::Console(ConsoleRequest {
        reference,
        action: ConsoleAction::Watch,
    })
}

#[test]
fn console_actions_go_to_the_driver_only_where_both_sides_speak_console() {
    let t = Instant::now();
    let mut c = console_session(Features::ALL, Features::ALL);
    c.on_message(watch_request(4), t);
    let actions = drain(&mut c);
    let [Action::Effect(Effect::Console(request))] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(
        (request.reference, &request.action),
        (4, &ConsoleAction::Watch)
    );
    let reply = ConsoleReply {
        reference: 4,
        outcome: Ok(serde_json::json!({})),
    };
    c.on_console_reply(reply.clone());
    let waiting = Waiting { requests: vec![] };
    c.on_waiting(waiting.clone());
    assert_eq!(
        drain(&mut c),
        [
            Action::Send(Message::ConsoleReply(reply)),
            Action::Send(Message::Waiting(waiting.clone()))
        ]
    );
    // A host without a console door, or a client that did not offer it:
    // a console message is out of place, and nothing is pushed.
    for (offer, host) in [
        (
            Features::ALL,
            Features {
                console: false,
                ..Features::ALL
            },
        ),
        (
            Features {
                console: false,
                ..Features::ALL
            },
            Features::ALL,
        ),
    ] {
        let mut c = console_session(offer, host);
        c.on_waiting(waiting.clone());
        assert_eq!(drain(&mut c), []);
        c.on_message(watch_request(1), t);
        assert_eq!(closed_with(&drain(&mut c)), Some(ErrorCode::BadMessage));
    }
}
