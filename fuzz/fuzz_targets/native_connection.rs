//! The host connection core (docs/native-protocol.md § 7.1) driven by an
//! arbitrary sequence of inputs — messages of every type with arbitrary
//! contents, SPAKE2 messages of a real client, read failures, timeouts,
//! facts, effect results and grant changes in any order: never panics,
//! nothing follows `Close`, the PIN is taken at most once and reported at
//! most once, and only a client that offered `grant` is sent one.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use punktfunk_certs::{Denied, Fingerprint, GateError, RequestEnd, Secret};
use punktfunk_native::connection::{
    Action, Effect, HelloFacts, HostConnection, HostSide, Peer, ReadFailure,
};
use punktfunk_native::message::{Confirm, Pake, PAKE_MSG_LEN};
use punktfunk_native::{
    handshake, ChannelBinding, ClientPairing, Decision, DisplayName, ErrorCode, Exporter, Features,
    Grant, Intent, Message, Pin, UnknownDevices, EXPORTER_LEN,
};
use rand::rngs::StdRng;
use rand::SeedableRng;

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        for x in &mut a {
            *x = self.byte();
        }
        a
    }
}

struct Facts(u8);

impl HelloFacts for Facts {
    fn authorize(&mut self) -> Result<Grant, Denied> {
        match (self.0 & 1 != 0, self.0 & 0x18) {
            (true, _) => Ok(grant(self.0)),
            (false, 0x08) => Err(Denied::Disabled),
            (false, 0x10) => Err(Denied::Expired),
            (false, _) => Err(Denied::NotPaired),
        }
    }
    fn wait_for_pake(&mut self) -> bool {
        self.0 & 2 != 0
    }
    fn is_armed(&mut self, _link: bool) -> bool {
        self.0 & 4 != 0
    }
}

fn name() -> DisplayName {
    DisplayName::sanitize("fuzz").expect("a valid name")
}

fn pin(b: u8) -> Pin {
    format!("{:04}", u16::from(b) * 39)
        .parse()
        .expect("4 digits")
}

/// One of a few grants, picked by `b`.
fn grant(b: u8) -> Grant {
    let names = ["list", "view", "launch", "input_kbd"];
    Grant {
        permissions: names
            .iter()
            .enumerate()
            .filter(|(i, _)| b >> i & 1 != 0)
            .map(|(_, n)| (*n).to_owned())
            .collect(),
        expires_at: (b & 0x80 != 0).then_some(u64::from(b) * 1000),
    }
}

fn message(input: &mut Bytes) -> Message {
    match input.byte() % 10 {
        0 => {
            let b = input.byte();
            handshake::hello_offering(
                name(),
                if b & 1 == 0 {
                    Intent::Connect
                } else {
                    Intent::Pair
                },
                Features { grant: b & 2 != 0, console: b & 4 != 0 },
            )
        }
        1 => Message::Ping,
        2 => Message::Pong,
        3 => Message::Pake(Pake {
            msg: input.array::<PAKE_MSG_LEN>(),
        }),
        4 => Message::Confirm(Confirm { mac: input.array() }),
        5 => Message::Decision(Decision::Approved),
        6 => Message::error(ErrorCode::Internal, "fuzz"),
        7 => handshake::welcome(
            punktfunk_native::Status::Trusted,
            name(),
            Fingerprint::from_bytes([1; 32]),
        ),
        8 => Message::Grant(grant(input.byte())),
        _ => match Message::decode(&input.array::<24>()) {
            Ok(m) => m,
            Err(_) => Message::Ping,
        },
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes(data);
    let host = Fingerprint::from_bytes([0xAA; 32]);
    let client = Fingerprint::from_bytes([0xCC; 32]);
    let exporter = Exporter([7; EXPORTER_LEN]);
    let policy = match input.byte() % 3 {
        0 => UnknownDevices::Knock,
        1 => UnknownDevices::Refuse,
        _ => UnknownDevices::DangerAdmitOpen,
    };
    let mut now = Instant::now();
    let mut rng = StdRng::seed_from_u64(u64::from(input.byte()));
    let mut c = HostConnection::new(
        HostSide {
            name: name(),
            fingerprint: host,
            unknown_devices: policy,
            features: Features::ALL,
        },
        Peer {
            address: "192.0.2.1:4000".parse().expect("an address"),
            fingerprint: client,
            exporter: exporter.clone(),
        },
        now,
    );
    let (mut closed, mut takes, mut reports) = (false, 0, 0);
    let mut offered = false;
    while !input.0.is_empty() {
        match input.byte() % 15 {
            0 => {
                let msg = message(&mut input);
                if c.wants_hello() {
                    offered = matches!(&msg, Message::Hello(h) if h.features.grant);
                }
                c.on_hello(msg, &mut Facts(input.byte()), now)
            }
            1 | 2 => c.on_message(message(&mut input), now),
            3 => {
                // A real client's SPAKE2 message with a PIN the host may share.
                let binding = ChannelBinding {
                    client,
                    host,
                    exporter: exporter.clone(),
                };
                if let Ok((_, msg)) = ClientPairing::start(&pin(input.byte()), binding, &mut rng) {
                    c.on_message(msg, now);
                }
            }
            4 => c.on_read_failed(match input.byte() % 4 {
                0 => ReadFailure::Closed,
                1 => ReadFailure::Broken,
                2 => ReadFailure::TooSlow,
                _ => ReadFailure::Malformed("fuzz".into()),
            }),
            5 => {
                now += Duration::from_millis(u64::from(input.byte()) * 1000);
                c.on_timeout(now);
            }
            6 => c.on_stored(
                if input.byte() & 1 == 0 {
                    Ok(grant(input.byte()))
                } else {
                    Err(None)
                },
                now,
            ),
            7 => {
                let added = match input.byte() % 3 {
                    0 => Ok("7".parse().expect("an id")),
                    1 => Err(GateError::TooManyPending.into()),
                    _ => Err(GateError::UnknownRequest.into()),
                };
                c.on_knock_added(added, now);
            }
            8 => {
                let b = input.byte();
                c.on_pin(
                    (b & 1 == 0).then(|| Secret::Pin(pin(b >> 1))),
                    &mut rng,
                    now,
                );
            }
            9 => {
                let outcome = [
                    RequestEnd::Approved,
                    RequestEnd::Denied,
                    RequestEnd::Expired,
                    RequestEnd::Replaced,
                ]
                .get(usize::from(input.byte() % 5))
                .copied();
                let access = if input.byte() & 1 == 0 {
                    Ok(grant(input.byte()))
                } else {
                    Err(Denied::NotPaired)
                };
                c.on_request_ended(outcome, access, now);
            }
            10 => c.on_device_removed(if input.byte() & 1 == 0 {
                &client
            } else {
                &host
            }),
            11 => c.on_trust_stopped(),
            12 => {
                let b = input.byte();
                let denied =
                    [Denied::NotPaired, Denied::Disabled, Denied::Expired][usize::from(b % 3)];
                c.on_access_ended(if b & 4 == 0 { &client } else { &host }, denied);
            }
            13 => {
                let b = input.byte();
                c.on_grant_changed(if b & 1 == 0 { &client } else { &host }, grant(b));
            }
            _ => {
                let _ = c.poll_timeout();
                let _ = c.waiting_on();
            }
        }
        while let Some(action) = c.poll_action() {
            assert!(!closed, "{action:?} after Close");
            match action {
                Action::Close => closed = true,
                Action::Effect(Effect::TakePin(_)) => takes += 1,
                Action::Effect(Effect::ReportPin(_)) => reports += 1,
                Action::Send(Message::Grant(_)) => {
                    assert!(offered, "a grant to a client that did not offer it")
                }
                _ => {}
            }
        }
        assert!(
            takes <= 1 && reports <= 1,
            "PIN taken {takes}×, reported {reports}×"
        );
        assert_eq!(closed, c.is_closed());
    }
});
