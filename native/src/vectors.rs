//! Checks the test vectors published in docs/native-protocol.md § 10 against
//! this implementation, and recomputes every intermediate value from the
//! formulas the document states (so the document, not just the code, is
//! tested). Regenerate with:
//!
//! ```text
//! cargo test -p punktfunk-native vectors::print -- --ignored --nocapture
//! ```

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::scalar::Scalar;
use hkdf::Hkdf;
use hmac::{Hmac, Mac as _};
use punktfunk_identity::Fingerprint;
use rand_chacha::rand_core::SeedableRng as _;
use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::handshake;
use crate::message::{DisplayName, ErrorCode, Intent, Message, Status};
use crate::pairing::{
    derive_keys, ChannelBinding, ClientPairing, Exporter, HostEffect, HostPairing, LinkSecret,
    PairingError, Pin, Secret, TranscriptHash, CLIENT_CONFIRM_INFO, HOST_CONFIRM_INFO,
    TRANSCRIPT_LABEL,
};

const DOC: &str = include_str!("../../docs/native-protocol.md");
const BEGIN: &str = "<!-- test-vectors:begin -->";
const END: &str = "<!-- test-vectors:end -->";

/// The vector file format of § 10 (all byte strings are lowercase hex).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Vectors {
    pin: String,
    device_name: String,
    host_name: String,
    client_fingerprint: String,
    host_fingerprint: String,
    exporter: String,
    client_rng_chacha20_seed: String,
    client_rng_bytes: String,
    client_scalar_x: String,
    host_rng_chacha20_seed: String,
    host_rng_bytes: String,
    host_scalar_y: String,
    password_scalar_w: String,
    msg_a: String,
    msg_b: String,
    shared_point_k: String,
    spake2_key: String,
    transcript_input: String,
    transcript_hash: String,
    client_confirm_key: String,
    host_confirm_key: String,
    client_mac: String,
    host_mac: String,
    frames: Vec<Frame>,
    wrong_pin: WrongPin,
    link: LinkVectors,
}

/// The same exchange with a pairing link's secret as the password (§ 12):
/// the client's `hello` says `via: link`, the RNG bytes are the same.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct LinkVectors {
    secret: String,
    hello: Frame,
    password_scalar_w: String,
    msg_a: String,
    msg_b: String,
    shared_point_k: String,
    spake2_key: String,
    transcript_hash: String,
    client_mac: String,
    host_mac: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Frame {
    from: String,
    json: String,
    hex: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct WrongPin {
    client_pin: String,
    client_mac: String,
    host_reply: Frame,
}

/// Hands out fixed bytes, so the vectors do not depend on ChaCha20.
struct ReplayRng(Vec<u8>);

impl RngCore for ReplayRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        assert!(dest.len() <= self.0.len(), "vector RNG exhausted");
        let rest = self.0.split_off(dest.len());
        dest.copy_from_slice(&self.0);
        self.0 = rest;
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl CryptoRng for ReplayRng {}

fn h(bytes: impl AsRef<[u8]>) -> String {
    hex::encode(bytes)
}

fn unhex<const N: usize>(s: &str) -> [u8; N] {
    hex::decode(s).unwrap().try_into().unwrap()
}

fn frame(from: &str, m: &Message) -> Frame {
    Frame {
        from: from.into(),
        json: String::from_utf8(m.to_json().unwrap()).unwrap(),
        hex: h(m.to_frame().unwrap()),
    }
}

/// The fixed inputs of § 10.
struct Inputs {
    pin: &'static str,
    device_name: &'static str,
    host_name: &'static str,
    client_fp: [u8; 32],
    host_fp: [u8; 32],
    exporter: [u8; 32],
    client_seed: [u8; 32],
    host_seed: [u8; 32],
    wrong_pin: &'static str,
    link_secret: [u8; 16],
}

fn inputs() -> Inputs {
    Inputs {
        pin: "0427",
        device_name: "Test iPad",
        host_name: "Test Host",
        client_fp: Sha256::digest(b"punktfunk test vector: client certificate DER").into(),
        host_fp: Sha256::digest(b"punktfunk test vector: host certificate DER").into(),
        exporter: Sha256::digest(b"punktfunk test vector: TLS exporter output").into(),
        client_seed: [0x11; 32],
        host_seed: [0x22; 32],
        wrong_pin: "1234",
        link_secret: Sha256::digest(b"punktfunk test vector: pairing link secret")[..16]
            .try_into()
            .unwrap(),
    }
}

fn chacha_bytes(seed: [u8; 32]) -> [u8; 64] {
    let mut out = [0; 64];
    ChaCha20Rng::from_seed(seed).fill_bytes(&mut out);
    out
}

/// Runs the real API end to end on the inputs and records everything.
fn generate() -> Vectors {
    let i = inputs();
    let binding = ChannelBinding {
        client: Fingerprint::from_bytes(i.client_fp),
        host: Fingerprint::from_bytes(i.host_fp),
        exporter: Exporter(i.exporter),
    };
    let client_rng = chacha_bytes(i.client_seed);
    let host_rng = chacha_bytes(i.host_seed);
    let device_name = DisplayName::sanitize(i.device_name).unwrap();
    let host_name = DisplayName::sanitize(i.host_name).unwrap();

    let hello = handshake::hello(device_name.clone(), Intent::Pair);
    let welcome = handshake::welcome(Status::Pairing, host_name, binding.host);
    let pin: Pin = i.pin.parse().unwrap();
    let (client, pake_a) =
        ClientPairing::start(&pin, binding.clone(), &mut ReplayRng(client_rng.to_vec())).unwrap();
    let (host, pake_b) = HostPairing::respond(
        pin,
        binding.clone(),
        device_name.clone(),
        as_pake(&pake_a),
        &mut ReplayRng(host_rng.to_vec()),
    )
    .unwrap();
    let (client, confirm_a) = client.on_message(pake_b.clone()).unwrap();
    let (effect, awaiting) = host.on_message(confirm_a.clone()).unwrap();
    let HostEffect::StoreDevice(device) = effect;
    assert_eq!(device.fingerprint(), binding.client);
    assert_eq!(device.device_name(), &device_name);
    let confirm_b = awaiting.stored();
    let paired = client.on_message(confirm_b.clone()).unwrap();
    assert_eq!(paired.host, binding.host);

    let (Message::Pake(a), Message::Pake(b), Message::Confirm(ca), Message::Confirm(cb)) =
        (&pake_a, &pake_b, &confirm_a, &confirm_b)
    else {
        panic!("wrong message types");
    };

    // Internals, through the crate's own functions.
    let w = password_scalar(i.pin.as_bytes());
    let x = Scalar::from_bytes_mod_order_wide(&client_rng);
    let y = Scalar::from_bytes_mod_order_wide(&host_rng);
    let k = shared_point(&b.msg, x, w, N_HEX);
    let key = spake2_key(
        i.pin.as_bytes(),
        &i.client_fp,
        &i.host_fp,
        &a.msg,
        &b.msg,
        &k,
    );
    let th = TranscriptHash::new(&binding, &a.msg, &b.msg);
    let (kc, kh) = derive_keys(&key, &th).unwrap();
    let mut transcript_input = TRANSCRIPT_LABEL.to_vec();
    for part in [&i.client_fp[..], &i.host_fp, &a.msg, &b.msg, &i.exporter] {
        transcript_input.extend_from_slice(part);
    }

    // Wrong PIN: a client holding 1234 against a host holding 0427.
    let wrong: Pin = i.wrong_pin.parse().unwrap();
    let (client, pake_a) =
        ClientPairing::start(&wrong, binding.clone(), &mut ReplayRng(client_rng.to_vec())).unwrap();
    let (host, pake_b) = HostPairing::respond(
        i.pin.parse::<Pin>().unwrap(),
        binding.clone(),
        device_name.clone(),
        as_pake(&pake_a),
        &mut ReplayRng(host_rng.to_vec()),
    )
    .unwrap();
    let (_, wrong_confirm) = client.on_message(pake_b).unwrap();
    let Message::Confirm(wrong_mac) = &wrong_confirm else {
        panic!("not a confirm");
    };
    let err = host.on_message(wrong_confirm.clone()).err().unwrap();
    assert_eq!(err, PairingError::PinRejected);
    let reply = err.to_message().unwrap();

    let link = link_exchange(&i, &binding, &client_rng, &host_rng, &device_name);

    Vectors {
        link,
        pin: i.pin.into(),
        device_name: i.device_name.into(),
        host_name: i.host_name.into(),
        client_fingerprint: h(i.client_fp),
        host_fingerprint: h(i.host_fp),
        exporter: h(i.exporter),
        client_rng_chacha20_seed: h(i.client_seed),
        client_rng_bytes: h(client_rng),
        client_scalar_x: h(x.as_bytes()),
        host_rng_chacha20_seed: h(i.host_seed),
        host_rng_bytes: h(host_rng),
        host_scalar_y: h(y.as_bytes()),
        password_scalar_w: h(w.as_bytes()),
        msg_a: h(a.msg),
        msg_b: h(b.msg),
        shared_point_k: h(k),
        spake2_key: h(key),
        transcript_input: h(transcript_input),
        transcript_hash: h(th.0),
        client_confirm_key: h(&kc.key[..]),
        host_confirm_key: h(&kh.key[..]),
        client_mac: h(ca.mac),
        host_mac: h(cb.mac),
        frames: vec![
            frame("client", &hello),
            frame("host", &welcome),
            frame("client", &Message::Pake(a.clone())),
            frame("host", &Message::Pake(b.clone())),
            frame("client", &confirm_a),
            frame("host", &confirm_b),
        ],
        wrong_pin: WrongPin {
            client_pin: i.wrong_pin.into(),
            client_mac: h(wrong_mac.mac),
            host_reply: frame("host", &reply),
        },
    }
}

/// The link ceremony through the real API, with the § 10 RNG bytes.
fn link_exchange(
    i: &Inputs,
    binding: &ChannelBinding,
    client_rng: &[u8; 64],
    host_rng: &[u8; 64],
    device_name: &DisplayName,
) -> LinkVectors {
    let secret = LinkSecret::from_bytes(i.link_secret);
    let hello = handshake::hello(device_name.clone(), Intent::PairLink);
    let (client, pake_a) = ClientPairing::start(
        &secret,
        binding.clone(),
        &mut ReplayRng(client_rng.to_vec()),
    )
    .unwrap();
    let (host, pake_b) = HostPairing::respond(
        Secret::Link(secret.clone()),
        binding.clone(),
        device_name.clone(),
        as_pake(&pake_a),
        &mut ReplayRng(host_rng.to_vec()),
    )
    .unwrap();
    let (client, confirm_a) = client.on_message(pake_b.clone()).unwrap();
    let (_, awaiting) = host.on_message(confirm_a.clone()).unwrap();
    let confirm_b = awaiting.stored();
    let _ = client.on_message(confirm_b.clone()).unwrap();
    let (Message::Pake(a), Message::Pake(b), Message::Confirm(ca), Message::Confirm(cb)) =
        (&pake_a, &pake_b, &confirm_a, &confirm_b)
    else {
        panic!("wrong message types");
    };
    let w = password_scalar(secret.as_bytes());
    let x = Scalar::from_bytes_mod_order_wide(client_rng);
    let k = shared_point(&b.msg, x, w, N_HEX);
    let key = spake2_key(
        secret.as_bytes(),
        &i.client_fp,
        &i.host_fp,
        &a.msg,
        &b.msg,
        &k,
    );
    let th = TranscriptHash::new(binding, &a.msg, &b.msg);
    LinkVectors {
        secret: h(i.link_secret),
        hello: frame("client", &hello),
        password_scalar_w: h(w.as_bytes()),
        msg_a: h(a.msg),
        msg_b: h(b.msg),
        shared_point_k: h(k),
        spake2_key: h(key),
        transcript_hash: h(th.0),
        client_mac: h(ca.mac),
        host_mac: h(cb.mac),
    }
}

fn as_pake(m: &Message) -> crate::message::Pake {
    match m {
        Message::Pake(p) => p.clone(),
        other => panic!("expected pake, got {other:?}"),
    }
}

// ---- § 6.1 formulas, written from the document, independent of spake2 ----

const M_HEX: &str = "15cfd18e385952982b6a8f8c7854963b58e34388c8e6dae891db756481a02312";
const N_HEX: &str = "f04f2e7eb734b2a8f8b472eaf9c3c632576ac64aea650b496a8a20ff00e583c3";

fn point(hex32: &str) -> curve25519_dalek::EdwardsPoint {
    CompressedEdwardsY(unhex(hex32)).decompress().unwrap()
}

/// w = HKDF-SHA256(salt = "", IKM = PIN, info = "SPAKE2 pw", 48 bytes), read
/// as a big-endian integer, mod ℓ.
fn password_scalar(pin: &[u8]) -> Scalar {
    let mut okm = [0u8; 48];
    Hkdf::<Sha256>::new(Some(b""), pin)
        .expand(b"SPAKE2 pw", &mut okm)
        .unwrap();
    let mut le = [0u8; 64];
    for (i, b) in okm.iter().enumerate() {
        le[47 - i] = *b;
    }
    Scalar::from_bytes_mod_order_wide(&le)
}

/// K = secret · (peer − w · unblind), compressed.
fn shared_point(peer_msg: &[u8; 33], secret: Scalar, w: Scalar, unblind: &str) -> [u8; 32] {
    let peer = CompressedEdwardsY(peer_msg[1..].try_into().unwrap())
        .decompress()
        .unwrap();
    (secret * (peer - w * point(unblind))).compress().to_bytes()
}

/// key = SHA256(SHA256(pw) ‖ SHA256(idA) ‖ SHA256(idB) ‖ X ‖ Y ‖ K).
fn spake2_key(
    pin: &[u8],
    id_a: &[u8],
    id_b: &[u8],
    a: &[u8; 33],
    b: &[u8; 33],
    k: &[u8],
) -> [u8; 32] {
    let mut t = Sha256::new();
    t.update(Sha256::digest(pin));
    t.update(Sha256::digest(id_a));
    t.update(Sha256::digest(id_b));
    t.update(&a[1..]);
    t.update(&b[1..]);
    t.update(k);
    t.finalize().into()
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().into()
}

fn published() -> Vectors {
    let start = DOC.find(BEGIN).expect("vector begin marker in the doc") + BEGIN.len();
    let end = DOC.find(END).expect("vector end marker in the doc");
    let block = DOC[start..end].trim();
    let json = block
        .strip_prefix("```json")
        .and_then(|b| b.strip_suffix("```"))
        .expect("vectors are one ```json block");
    serde_json::from_str(json).expect("vectors parse")
}

#[test]
fn published_vectors_match_the_implementation() {
    let doc = published();
    let ours = generate();
    // Field by field first, for a readable failure.
    assert_eq!(doc.msg_a, ours.msg_a, "msg_a");
    assert_eq!(doc.msg_b, ours.msg_b, "msg_b");
    assert_eq!(doc.spake2_key, ours.spake2_key, "spake2_key");
    assert_eq!(doc.transcript_hash, ours.transcript_hash, "transcript_hash");
    assert_eq!(doc.client_mac, ours.client_mac, "client_mac");
    assert_eq!(doc.host_mac, ours.host_mac, "host_mac");
    assert_eq!(doc.frames, ours.frames, "frames");
    assert_eq!(doc, ours);
}

#[test]
fn published_vectors_follow_the_documented_formulas() {
    let v = published();
    let pin = v.pin.as_bytes();
    let (client_fp, host_fp, exporter) = (
        unhex::<32>(&v.client_fingerprint),
        unhex::<32>(&v.host_fingerprint),
        unhex::<32>(&v.exporter),
    );
    // RNG → scalars (64 bytes, little-endian, mod ℓ).
    let client_rng = unhex::<64>(&v.client_rng_bytes);
    let host_rng = unhex::<64>(&v.host_rng_bytes);
    assert_eq!(client_rng, chacha_bytes(unhex(&v.client_rng_chacha20_seed)));
    assert_eq!(host_rng, chacha_bytes(unhex(&v.host_rng_chacha20_seed)));
    let x = Scalar::from_bytes_mod_order_wide(&client_rng);
    let y = Scalar::from_bytes_mod_order_wide(&host_rng);
    assert_eq!(h(x.as_bytes()), v.client_scalar_x);
    assert_eq!(h(y.as_bytes()), v.host_scalar_y);
    let w = password_scalar(pin);
    assert_eq!(h(w.as_bytes()), v.password_scalar_w);
    // Messages: side byte ‖ compress(s·B + w·M or N).
    let msg_a = unhex::<33>(&v.msg_a);
    let msg_b = unhex::<33>(&v.msg_b);
    let x_pt = (ED25519_BASEPOINT_POINT * x + point(M_HEX) * w).compress();
    let y_pt = (ED25519_BASEPOINT_POINT * y + point(N_HEX) * w).compress();
    assert_eq!(msg_a[0], b'A');
    assert_eq!(msg_b[0], b'B');
    assert_eq!(&msg_a[1..], x_pt.as_bytes());
    assert_eq!(&msg_b[1..], y_pt.as_bytes());
    // Both sides reach the same K.
    let k_client = shared_point(&msg_b, x, w, N_HEX);
    let k_host = shared_point(&msg_a, y, w, M_HEX);
    assert_eq!(k_client, k_host);
    assert_eq!(h(k_client), v.shared_point_k);
    let key = spake2_key(pin, &client_fp, &host_fp, &msg_a, &msg_b, &k_client);
    assert_eq!(h(key), v.spake2_key);
    // Transcript.
    let mut input = b"punktfunk native pairing v1\0".to_vec();
    for part in [&client_fp[..], &host_fp, &msg_a, &msg_b, &exporter] {
        input.extend_from_slice(part);
    }
    assert_eq!(input.len(), 28 + 32 + 32 + 33 + 33 + 32);
    assert_eq!(h(&input), v.transcript_input);
    let th: [u8; 32] = Sha256::digest(&input).into();
    assert_eq!(h(th), v.transcript_hash);
    // Key schedule and MACs.
    let prk = Hkdf::<Sha256>::new(Some(&th), &key);
    let (mut kc, mut kh) = ([0u8; 32], [0u8; 32]);
    prk.expand(b"punktfunk native v1 client confirm", &mut kc)
        .unwrap();
    prk.expand(b"punktfunk native v1 host confirm", &mut kh)
        .unwrap();
    assert_eq!(CLIENT_CONFIRM_INFO, b"punktfunk native v1 client confirm");
    assert_eq!(HOST_CONFIRM_INFO, b"punktfunk native v1 host confirm");
    assert_eq!(h(kc), v.client_confirm_key);
    assert_eq!(h(kh), v.host_confirm_key);
    assert_eq!(h(hmac(&kc, &th)), v.client_mac);
    assert_eq!(h(hmac(&kh, &th)), v.host_mac);
    // Frames: 4-byte big-endian length ‖ the JSON text, and each parses.
    for f in &v.frames {
        let bytes = hex::decode(&f.hex).unwrap();
        assert_eq!(&bytes[4..], f.json.as_bytes());
        assert_eq!(
            u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize,
            f.json.len()
        );
        Message::decode(f.json.as_bytes()).unwrap();
    }
    // The wrong-PIN host reply is `pin_rejected`.
    let reply = Message::decode(v.wrong_pin.host_reply.json.as_bytes()).unwrap();
    assert!(matches!(reply, Message::Error(e) if e.code == ErrorCode::PinRejected));

    // The link exchange: the same formulas with pw = the secret's 16 bytes.
    let l = &v.link;
    let pw = unhex::<16>(&l.secret);
    let w = password_scalar(&pw);
    assert_eq!(h(w.as_bytes()), l.password_scalar_w);
    let msg_a = unhex::<33>(&l.msg_a);
    let msg_b = unhex::<33>(&l.msg_b);
    let x_pt = (ED25519_BASEPOINT_POINT * x + point(M_HEX) * w).compress();
    let y_pt = (ED25519_BASEPOINT_POINT * y + point(N_HEX) * w).compress();
    assert_eq!(&msg_a[1..], x_pt.as_bytes());
    assert_eq!(&msg_b[1..], y_pt.as_bytes());
    let k = shared_point(&msg_b, x, w, N_HEX);
    assert_eq!(k, shared_point(&msg_a, y, w, M_HEX));
    assert_eq!(h(k), l.shared_point_k);
    let key = spake2_key(&pw, &client_fp, &host_fp, &msg_a, &msg_b, &k);
    assert_eq!(h(key), l.spake2_key);
    let mut input = b"punktfunk native pairing v1\0".to_vec();
    for part in [&client_fp[..], &host_fp, &msg_a, &msg_b, &exporter] {
        input.extend_from_slice(part);
    }
    let th: [u8; 32] = Sha256::digest(&input).into();
    assert_eq!(h(th), l.transcript_hash);
    let prk = Hkdf::<Sha256>::new(Some(&th), &key);
    let (mut kc, mut kh) = ([0u8; 32], [0u8; 32]);
    prk.expand(b"punktfunk native v1 client confirm", &mut kc)
        .unwrap();
    prk.expand(b"punktfunk native v1 host confirm", &mut kh)
        .unwrap();
    assert_eq!(h(hmac(&kc, &th)), l.client_mac);
    assert_eq!(h(hmac(&kh, &th)), l.host_mac);
    let hello = hex::decode(&l.hello.hex).unwrap();
    assert_eq!(&hello[4..], l.hello.json.as_bytes());
    assert!(matches!(
        Message::decode(l.hello.json.as_bytes()).unwrap(),
        Message::Hello(h) if h.intent == Intent::PairLink
    ));
}

#[test]
#[ignore = "prints the vectors to paste into docs/native-protocol.md"]
fn print() {
    println!("{}", serde_json::to_string_pretty(&generate()).unwrap());
}
