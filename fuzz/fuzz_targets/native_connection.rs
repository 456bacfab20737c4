//! The host connection core (docs/native-protocol.md § 7.1) driven by an
//! arbitrary sequence of inputs — messages of every type with arbitrary
//! contents, SPAKE2 messages of a real client, read failures, timeouts,
//! facts and effect results in any order: never panics, nothing follows
//! `Close`, the PIN is taken at most once and reported at most once.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use punktfunk_certs::{Denied, Fingerprint, GateError, RequestEnd, Secret};
use punktfunk_native::connection::{
    Action, Effect, HelloFacts, HostConnection, HostSide, Peer, ReadFailure,
};
use punktfunk_native::message::{Confirm, Pake, PAKE_MSG_LEN};
use punktfunk_native::{
    handshake, ChannelBinding, ClientPairing, Decision, DisplayName, ErrorCode, Exporter, Intent,
    Message, Pin, UnknownDevices, EXPORTER_LEN,
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
    fn authorize(&mut self) -> Result<(), Denied> {
        match (self.0 & 1 != 0, self.0 & 0x18) {
            (true, _) => Ok(()),
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

fn message(input: &mut Bytes) -> Message {
    match input.byte() % 9 {
        0 => handshake::hello(
            name(),
            if input.byte() & 1 == 0 {
                Intent::Connect
            } else {
                Intent::Pair
            },
        ),
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
        },
        Peer {
            address: "192.0.2.1:4000".parse().expect("an address"),
            fingerprint: client,
            exporter: exporter.clone(),
        },
        now,
    );
    let (mut closed, mut takes, mut reports) = (false, 0, 0);
    while !input.0.is_empty() {
        match input.byte() % 14 {
            0 => c.on_hello(message(&mut input), &mut Facts(input.byte()), now),
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
                    Ok(())
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
                c.on_request_ended(outcome, input.byte() & 1 == 0, now);
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
