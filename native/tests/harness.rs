//! An in-memory client ↔ host pair driven through the public API the way
//! the tokio shell will drive it, with a hook that tampers with every frame
//! in transit (docs/native-protocol.md § 6.5, § 7).

use curve25519_dalek::edwards::CompressedEdwardsY;
use punktfunk_certs::Fingerprint;
use punktfunk_native::handshake::{self, read_hello, read_welcome};
use punktfunk_native::{
    check_header, ChannelBinding, ClientPairing, DisplayName, ErrorCode, Exporter, FrameDecoder,
    FrameError, HostEffect, HostPairing, Intent, Message, PairingError, Pake, Pin, Status,
    VerifiedDevice, MAX_FRAME_LEN,
};
use rand_chacha::rand_core::SeedableRng as _;
use rand_chacha::ChaCha20Rng;

fn fp(tag: &str) -> Fingerprint {
    Fingerprint::of_der(tag.as_bytes())
}

fn binding(client: &str, host: &str, session: &str) -> ChannelBinding {
    ChannelBinding {
        client: fp(client),
        host: fp(host),
        exporter: Exporter(*fp(session).as_bytes()),
    }
}

fn name(s: &str) -> DisplayName {
    DisplayName::sanitize(s).unwrap()
}

/// Who stopped the exchange, and with which § 5 code.
#[derive(Debug, PartialEq)]
enum Outcome {
    Paired {
        stored: VerifiedDevice,
        pinned: Fingerprint,
    },
    Host(ErrorCode),
    /// The client refused; `stored` says whether the host already stored it.
    Client {
        code: ErrorCode,
        stored: bool,
    },
}

struct Run {
    client_view: ChannelBinding,
    host_view: ChannelBinding,
    client_pin: &'static str,
    host_pin: &'static str,
    /// A MITM rewrites `welcome.host_fingerprint` to its own certificate.
    welcome_announces: Option<Fingerprint>,
    seed: u64,
}

impl Run {
    fn honest() -> Self {
        let b = binding("client cert", "host cert", "session 1");
        Self {
            client_view: b.clone(),
            host_view: b,
            client_pin: "4711",
            host_pin: "4711",
            welcome_announces: None,
            seed: 1,
        }
    }
}

/// Moves one frame across the "network": exactly one complete frame, as the
/// shell's read loop would see it.
fn transfer(frame: &[u8]) -> Result<Message, ErrorCode> {
    let mut input = frame;
    let mut dec = FrameDecoder::new();
    let payload = match dec.decode(&mut input) {
        Ok(Some(p)) => p,
        Ok(None) | Err(_) => return Err(ErrorCode::BadMessage),
    };
    if !input.is_empty() {
        return Err(ErrorCode::BadMessage);
    }
    Message::decode(&payload).map_err(|_| ErrorCode::BadMessage)
}

/// Steps: 0 hello, 1 welcome, 2 client pake, 3 host pake, 4 client confirm,
/// 5 host confirm. `tamper` may change each frame (and record it).
fn run(r: &Run, tamper: &mut dyn FnMut(usize, &mut Vec<u8>)) -> Outcome {
    let mut rng = ChaCha20Rng::seed_from_u64(r.seed);
    let mut send = |step: usize, m: Message| -> Result<Message, ErrorCode> {
        let mut f = m.to_frame().unwrap();
        tamper(step, &mut f);
        transfer(&f)
    };
    // Client hello → host.
    let msg = match send(0, handshake::hello(name("Test iPad"), Intent::Pair)) {
        Ok(m) => m,
        Err(c) => return Outcome::Host(c),
    };
    let hello = match read_hello(msg) {
        Ok(h) => h,
        Err(e) => return Outcome::Host(e.code()),
    };
    if hello.intent != Intent::Pair {
        return Outcome::Host(ErrorCode::NotArmed);
    }
    // Host welcome → client.
    let announced = r.welcome_announces.unwrap_or(r.host_view.host);
    let welcome = handshake::welcome(Status::Pairing, name("Test Host"), announced);
    let msg = match send(1, welcome) {
        Ok(m) => m,
        Err(c) => return client(c, false),
    };
    if let Err(e) = read_welcome(msg, Intent::Pair, r.client_view.host) {
        return client(e.code(), false);
    }
    // Client pake → host; the gate hands out the PIN now.
    let pin: Pin = r.client_pin.parse().unwrap();
    let (c, m) = ClientPairing::start(&pin, r.client_view.clone(), &mut rng).unwrap();
    let msg = match send(2, m) {
        Ok(m) => m,
        Err(code) => return Outcome::Host(code),
    };
    // The shell matches the type first: a non-pake never touches the PIN.
    let pake = match msg {
        Message::Pake(p) => p,
        _ => return Outcome::Host(ErrorCode::BadMessage),
    };
    let gate_pin: Pin = r.host_pin.parse().unwrap();
    let (h, m) = match HostPairing::respond(
        gate_pin,
        r.host_view.clone(),
        hello.device_name,
        pake,
        &mut rng,
    ) {
        Ok(x) => x,
        Err(e) => return Outcome::Host(e.code()),
    };
    // Host pake → client.
    let msg = match send(3, m) {
        Ok(m) => m,
        Err(code) => return client(code, false),
    };
    let (c, m) = match c.on_message(msg) {
        Ok(x) => x,
        Err(e) => return client(e.code(), false),
    };
    // Client confirm → host: constant-time check, store, confirm.
    let msg = match send(4, m) {
        Ok(m) => m,
        Err(code) => return Outcome::Host(code),
    };
    let (effect, awaiting) = match h.on_message(msg) {
        Ok(x) => x,
        Err(e) => return Outcome::Host(e.code()),
    };
    let HostEffect::StoreDevice(stored) = effect;
    let m = awaiting.stored();
    // Host confirm → client.
    let msg = match send(5, m) {
        Ok(m) => m,
        Err(code) => return client(code, true),
    };
    match c.on_message(msg) {
        Ok(p) => Outcome::Paired {
            stored,
            pinned: p.host,
        },
        Err(e) => client(e.code(), true),
    }
}

fn client(code: ErrorCode, stored: bool) -> Outcome {
    Outcome::Client { code, stored }
}

fn untouched(_: usize, _: &mut Vec<u8>) {}

fn assert_paired_honestly(o: &Outcome, r: &Run) {
    match o {
        Outcome::Paired { stored, pinned } => {
            assert_eq!(stored.fingerprint(), r.host_view.client);
            assert_eq!(*pinned, r.client_view.host);
        }
        other => panic!("expected a pairing, got {other:?}"),
    }
}

#[test]
fn honest_pairing_succeeds_and_binds_both_fingerprints() {
    let r = Run::honest();
    let o = run(&r, &mut untouched);
    assert_paired_honestly(&o, &r);
    let Outcome::Paired { stored, .. } = o else {
        unreachable!()
    };
    assert_eq!(stored.device_name().as_str(), "Test iPad");
}

#[test]
fn wrong_pin_is_rejected_by_the_host_before_anything_is_stored() {
    let r = Run {
        client_pin: "4712",
        ..Run::honest()
    };
    assert_eq!(
        run(&r, &mut untouched),
        Outcome::Host(ErrorCode::PinRejected)
    );
}

#[test]
fn every_pin_pair_succeeds_only_when_equal() {
    for (a, b) in [
        ("0000", "0000"),
        ("0000", "0001"),
        ("9999", "0999"),
        ("1234", "1234"),
    ] {
        let r = Run {
            client_pin: a,
            host_pin: b,
            ..Run::honest()
        };
        let o = run(&r, &mut untouched);
        assert_eq!(
            matches!(o, Outcome::Paired { .. }),
            a == b,
            "{a} vs {b}: {o:?}"
        );
    }
}

#[test]
fn flipping_any_byte_of_a_pairing_message_fails_the_exchange() {
    let r = Run::honest();
    let mut baseline = Vec::new();
    run(&r, &mut |_, f| baseline.push(f.clone()));
    for (step, frame) in baseline.iter().enumerate().skip(2) {
        for pos in 0..frame.len() {
            for mask in [0x01u8, 0x80] {
                let o = run(&r, &mut |s, f| {
                    if s == step {
                        f[pos] ^= mask;
                    }
                });
                assert!(
                    !matches!(o, Outcome::Paired { .. }),
                    "step {step} byte {pos} ^ {mask:#x} still paired"
                );
                if step < 4 {
                    // Nothing was confirmed, so nothing can have been stored.
                    assert!(!matches!(o, Outcome::Client { stored: true, .. }));
                }
            }
        }
    }
}

#[test]
fn flipping_bytes_of_hello_or_welcome_never_pairs_the_wrong_identities() {
    let r = Run::honest();
    let mut baseline = Vec::new();
    run(&r, &mut |_, f| baseline.push(f.clone()));
    for (step, frame) in baseline.iter().enumerate().take(2) {
        for pos in 0..frame.len() {
            let o = run(&r, &mut |s, f| {
                if s == step {
                    f[pos] ^= 0x01;
                }
            });
            // A flip inside a name may still pair (names are not
            // authenticated, TLS protects them); identities must hold.
            if matches!(o, Outcome::Paired { .. }) {
                assert_paired_honestly(&o, &r);
            }
        }
    }
}

#[test]
fn a_man_in_the_middle_with_the_right_pin_is_rejected() {
    // The MITM terminates TLS on both sides with its own certificates and
    // relays every message unchanged (and rewrites the announced host
    // fingerprint so the client's welcome check passes).
    let honest = Run::honest();
    let cases = [
        // Client sees the attacker's host cert; host sees the real client.
        (
            binding("client cert", "attacker host cert", "session c-m"),
            binding("client cert", "host cert", "session m-h"),
        ),
        // Host sees the attacker's client cert; client sees the real host.
        (
            binding("client cert", "host cert", "session c-m"),
            binding("attacker client cert", "host cert", "session m-h"),
        ),
        // Both certificates swapped.
        (
            binding("client cert", "attacker host cert", "session c-m"),
            binding("attacker client cert", "host cert", "session m-h"),
        ),
        // Same certificates but two TLS sessions (exporters differ).
        (
            binding("client cert", "host cert", "session c-m"),
            binding("client cert", "host cert", "session m-h"),
        ),
    ];
    for (client_view, host_view) in cases {
        let r = Run {
            welcome_announces: Some(client_view.host),
            client_view,
            host_view,
            ..honest
        };
        assert_eq!(
            run(&r, &mut untouched),
            Outcome::Host(ErrorCode::PinRejected)
        );
    }
}

#[test]
fn a_swapped_host_certificate_without_rewriting_welcome_is_caught_at_welcome() {
    let r = Run {
        client_view: binding("client cert", "attacker host cert", "s"),
        ..Run::honest()
    };
    assert_eq!(
        run(&r, &mut untouched),
        client(ErrorCode::BadMessage, false)
    );
}

#[test]
fn replaying_a_previous_session_fails() {
    let first = Run::honest();
    let mut old = Vec::new();
    assert_paired_honestly(&run(&first, &mut |_, f| old.push(f.clone())), &first);
    // Session 2: new TLS session (exporter), new randomness, same PIN.
    let second = Run {
        client_view: binding("client cert", "host cert", "session 2"),
        host_view: binding("client cert", "host cert", "session 2"),
        seed: 2,
        ..Run::honest()
    };
    // The attacker replays the old client pake and confirm to the host...
    let o = run(&second, &mut |s, f| {
        if s == 2 || s == 4 {
            *f = old[s].clone();
        }
    });
    assert_eq!(o, Outcome::Host(ErrorCode::PinRejected));
    // ... or only the old confirm.
    let o = run(&second, &mut |s, f| {
        if s == 4 {
            *f = old[s].clone();
        }
    });
    assert_eq!(o, Outcome::Host(ErrorCode::PinRejected));
    // ... or the old host pake and confirm to the client.
    let o = run(&second, &mut |s, f| {
        if s == 3 || s == 5 {
            *f = old[s].clone();
        }
    });
    assert!(!matches!(o, Outcome::Paired { .. }), "{o:?}");
    // A message replayed into the wrong step is out of order.
    let o = run(&second, &mut |s, f| {
        if s == 4 {
            *f = old[2].clone();
        }
    });
    assert_eq!(o, Outcome::Host(ErrorCode::BadMessage));
}

#[test]
fn tampered_host_confirmation_fails_on_the_client_after_the_host_stored() {
    let r = Run::honest();
    let o = run(&r, &mut |s, f| {
        if s == 5 {
            // Same length, still valid base64: the first MAC character.
            let i = f.len() - 40;
            f[i] = if f[i] == b'A' { b'B' } else { b'A' };
        }
    });
    assert_eq!(o, client(ErrorCode::HostConfirmationFailed, true));
}

#[test]
fn reflected_small_order_off_curve_and_non_canonical_pake_messages_are_bad_messages() {
    let host = binding("c", "h", "s");
    let pin = || "1111".parse::<Pin>().unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let respond = |msg: [u8; 33], rng: &mut ChaCha20Rng| {
        HostPairing::respond(pin(), host.clone(), name("x"), Pake { msg }, rng)
            .err()
            .map(|e| e.code())
    };
    // The client's own message reflected: side byte 'B' at the host.
    let (_, Message::Pake(a)) = ClientPairing::start(&pin(), host.clone(), &mut rng).unwrap()
    else {
        unreachable!()
    };
    let mut reflected = a.msg;
    reflected[0] = b'B';
    assert_eq!(respond(reflected, &mut rng), Some(ErrorCode::BadMessage));
    // Identity point (small order) and a y with no point.
    let mut identity = [0u8; 33];
    identity[0] = b'A';
    identity[1] = 1;
    assert_eq!(respond(identity, &mut rng), Some(ErrorCode::BadMessage));
    let off_curve = (2u8..=255)
        .map(|y| {
            let mut m = [0u8; 33];
            m[0] = b'A';
            m[1] = y;
            m
        })
        .find(|m| {
            CompressedEdwardsY(m[1..].try_into().unwrap())
                .decompress()
                .is_none()
        })
        .unwrap();
    assert_eq!(respond(off_curve, &mut rng), Some(ErrorCode::BadMessage));
    // A non-canonical encoding (§ 6.1): y = 3 + p, which `decompress`
    // reduces to the point with y = 3; the canonical bytes of that point
    // are y = 3 itself.
    let mut non_canonical = [0xffu8; 33];
    non_canonical[0] = b'A';
    non_canonical[1] = 0xf0; // 2^255 - 19 + 3 = 2^255 - 16, little-endian
    non_canonical[32] = 0x7f;
    let reduced = CompressedEdwardsY(non_canonical[1..].try_into().unwrap()).decompress();
    assert!(reduced.is_some(), "y = 3 + p decodes to a point");
    assert_eq!(reduced.unwrap().compress().as_bytes()[0], 3);
    assert_eq!(
        respond(non_canonical, &mut rng),
        Some(ErrorCode::BadMessage)
    );
    assert_eq!(respond(a.msg, &mut rng), None);
    // And the client refuses its own message reflected back.
    let (c, Message::Pake(a)) = ClientPairing::start(&pin(), host.clone(), &mut rng).unwrap()
    else {
        unreachable!()
    };
    let e = c.on_message(Message::Pake(a)).err().unwrap();
    assert!(matches!(e, PairingError::BadPake(_)));
}

#[test]
fn out_of_order_and_peer_errors_end_the_exchange() {
    let b = binding("c", "h", "s");
    let pin: Pin = "1111".parse().unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    // Host expects confirm, gets ping.
    let (_, Message::Pake(a)) = ClientPairing::start(&pin, b.clone(), &mut rng).unwrap() else {
        unreachable!()
    };
    let (host, _) = HostPairing::respond(pin.clone(), b.clone(), name("x"), a, &mut rng).unwrap();
    let e = host.on_message(Message::Ping).err().unwrap();
    assert_eq!(
        e,
        PairingError::Unexpected {
            expected: "confirm",
            got: "ping"
        }
    );
    assert_eq!(e.code(), ErrorCode::BadMessage);
    assert!(e.to_message().is_some());
    // Client gets an error from the host instead of pake.
    let (c, _) = ClientPairing::start(&pin, b, &mut rng).unwrap();
    let e = c
        .on_message(Message::error(ErrorCode::NotArmed, "pairing is not armed"))
        .err()
        .unwrap();
    assert_eq!(e.code(), ErrorCode::NotArmed);
    assert_eq!(e.to_message(), None, "never answer an error with an error");
}

#[test]
fn truncated_and_oversized_frames_are_refused() {
    let f = handshake::hello(name("x"), Intent::Connect)
        .to_frame()
        .unwrap();
    for cut in 0..f.len() {
        let mut dec = FrameDecoder::new();
        let mut input = &f[..cut];
        assert_eq!(dec.decode(&mut input), Ok(None));
        assert_eq!(dec.finish().is_err(), cut > 0);
        assert_eq!(transfer(&f[..cut]), Err(ErrorCode::BadMessage));
    }
    let over = u32::try_from(MAX_FRAME_LEN + 1).unwrap().to_be_bytes();
    assert_eq!(
        check_header(over),
        Err(FrameError::TooLarge {
            len: (MAX_FRAME_LEN + 1) as u64
        })
    );
    let mut big = over.to_vec();
    big.extend(std::iter::repeat_n(b' ', 64));
    assert_eq!(transfer(&big), Err(ErrorCode::BadMessage));
}

#[test]
fn hello_version_and_welcome_checks() {
    let raw = br#"{"type":"hello","protocol":2,"device_name":"x","intent":"connect"}"#;
    let e = read_hello(Message::decode(raw).unwrap()).err().unwrap();
    assert_eq!(e.code(), ErrorCode::UnsupportedVersion);
    let host = fp("host cert");
    let w = handshake::welcome(Status::Trusted, name("h"), host);
    assert!(read_welcome(w.clone(), Intent::Connect, host).is_ok());
    assert_eq!(
        read_welcome(w, Intent::Pair, host).err().unwrap().code(),
        ErrorCode::BadMessage
    );
    let d = handshake::read_decision(Message::Pong).unwrap();
    assert_eq!(d, None);
}
