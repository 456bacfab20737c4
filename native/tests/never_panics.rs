//! Property tests: nothing a peer sends can make the decoder, the parser or
//! the pairing cores panic (docs/native-protocol.md § 3, § 4).

use proptest::prelude::*;
use punktfunk_certs::Fingerprint;
use punktfunk_native::{
    ChannelBinding, ClientPairing, Confirm, DisplayName, Exporter, FrameDecoder, HostPairing,
    Message, Pake, Pin, MAX_FRAME_LEN,
};
use rand_chacha::rand_core::SeedableRng as _;
use rand_chacha::ChaCha20Rng;

fn binding() -> ChannelBinding {
    ChannelBinding {
        client: Fingerprint::from_bytes([1; 32]),
        host: Fingerprint::from_bytes([2; 32]),
        exporter: Exporter([3; 32]),
    }
}

/// JSON-ish payloads near the real grammar, so the parser's field checks
/// run, not only serde's syntax errors.
fn near_json() -> impl Strategy<Value = Vec<u8>> {
    let ty = prop_oneof![
        Just("hello"),
        Just("welcome"),
        Just("pake"),
        Just("confirm"),
        Just("decision"),
        Just("ping"),
        Just("pong"),
        Just("error"),
        Just("x"),
    ];
    let key = prop_oneof![
        Just("protocol"),
        Just("device_name"),
        Just("intent"),
        Just("status"),
        Just("host_name"),
        Just("host_fingerprint"),
        Just("msg"),
        Just("mac"),
        Just("outcome"),
        Just("code"),
        Just("message"),
        Just("type"),
    ];
    let value = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        "[A-Za-z0-9+/=]{0,60}".prop_map(|s| format!("\"{s}\"")),
        "\\PC{0,80}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        Just("null".to_owned()),
        Just("{}".to_owned()),
        Just("\"pair\"".to_owned()),
        Just("\"approval_pending\"".to_owned()),
    ];
    (ty, prop::collection::vec((key, value), 0..6)).prop_map(|(ty, fields)| {
        let mut s = format!("{{\"type\":\"{ty}\"");
        for (k, v) in fields {
            s.push_str(&format!(",\"{k}\":{v}"));
        }
        s.push('}');
        s.into_bytes()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn frame_decoder_never_panics_and_stays_bounded(
        bytes in prop::collection::vec(any::<u8>(), 0..40_000),
        chunk in 1usize..5000,
    ) {
        let mut dec = FrameDecoder::new();
        for piece in bytes.chunks(chunk) {
            let mut input = piece;
            while !input.is_empty() {
                match dec.decode(&mut input) {
                    Ok(Some(frame)) => {
                        prop_assert!(!frame.is_empty() && frame.len() <= MAX_FRAME_LEN);
                        let _ = Message::decode(&frame);
                    }
                    Ok(None) => prop_assert!(input.is_empty()),
                    Err(_) => break,
                }
            }
        }
        let _ = dec.finish();
    }

    #[test]
    fn parser_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Message::decode(&bytes);
    }

    #[test]
    fn parser_never_panics_near_the_grammar_and_round_trips(payload in near_json()) {
        if let Ok(m) = Message::decode(&payload) {
            // Whatever parses re-encodes to something that parses the same.
            let again = Message::decode(&m.to_json().unwrap()).unwrap();
            prop_assert_eq!(again, m);
        }
    }

    #[test]
    fn names_are_always_bounded_and_clean(raw in "\\PC{0,300}|[\\x00-\\x20\u{200B}\u{202E}a]{0,100}") {
        if let Some(n) = DisplayName::sanitize(&raw) {
            let s = n.as_str();
            prop_assert!(s.chars().count() <= 64);
            prop_assert!(!s.starts_with(' ') && !s.ends_with(' '));
            let (rlo, zwsp) = ('\u{202E}', '\u{200B}');
            let dirty = s.chars().any(|c| c.is_control() || c == rlo || c == zwsp);
            prop_assert!(!dirty);
            prop_assert!(!s.contains("  "));
        }
    }
}

proptest! {
    // SPAKE2 in a debug build takes milliseconds; fewer cases.
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn pairing_cores_never_panic_on_arbitrary_messages(
        msg in prop::collection::vec(any::<u8>(), 33),
        mac in prop::array::uniform32(any::<u8>()),
        seed in any::<u64>(),
    ) {
        let msg: [u8; 33] = msg.try_into().unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let pin: Pin = "0000".parse().unwrap();
        let name = DisplayName::sanitize("x").unwrap();
        // Host: arbitrary msgA, then arbitrary cA: never pairs.
        if let Ok((host, _)) = HostPairing::respond(
            pin.clone(), binding(), name, Pake { msg }, &mut rng,
        ) {
            let confirm = Message::Confirm(Confirm { mac });
            let refused = host.on_message(confirm).is_err();
            prop_assert!(refused);
        }
        // Client: arbitrary msgB, then arbitrary cB: never pairs.
        let (client, _) = ClientPairing::start(&pin, binding(), &mut rng).unwrap();
        if let Ok((client, _)) = client.on_message(Message::Pake(Pake { msg })) {
            let confirm = Message::Confirm(Confirm { mac });
            let refused = client.on_message(confirm).is_err();
            prop_assert!(refused);
        }
    }

    #[test]
    fn pairing_succeeds_iff_the_pins_match(a in 0u16..10_000, b in 0u16..10_000, seed in any::<u64>()) {
        let (a, b) = (format!("{a:04}"), format!("{b:04}"));
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let (client, m) = ClientPairing::start(&a.parse::<Pin>().unwrap(), binding(), &mut rng).unwrap();
        let Message::Pake(m) = m else { unreachable!() };
        let (host, m) = HostPairing::respond(
            b.parse::<Pin>().unwrap(), binding(), DisplayName::sanitize("x").unwrap(), m, &mut rng,
        ).unwrap();
        let (_, m) = client.on_message(m).unwrap();
        prop_assert_eq!(host.on_message(m).is_ok(), a == b);
    }
}
