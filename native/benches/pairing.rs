//! A native SPAKE2 pairing, both sides, in memory: `hello`, `welcome`,
//! both `pake` messages, both key confirmations, every message encoded to a
//! frame and decoded again as the shells do (no TLS, no registry, no gate).

use criterion::{criterion_group, criterion_main, Criterion};
use punktfunk_certs::Fingerprint;
use punktfunk_native::handshake::{self, read_hello, read_welcome};
use punktfunk_native::{
    ChannelBinding, ClientPairing, DisplayName, Exporter, FrameDecoder, HostEffect, HostPairing,
    Intent, Message, Pin, Status,
};
use rand_chacha::rand_core::SeedableRng as _;
use rand_chacha::ChaCha20Rng;

/// One frame across the "network": encode, decode, parse.
fn transfer(m: Message) -> Message {
    let frame = m.to_frame().unwrap();
    let mut input = &frame[..];
    let payload = FrameDecoder::new().decode(&mut input).unwrap().unwrap();
    Message::decode(&payload).unwrap()
}

fn name(s: &str) -> DisplayName {
    DisplayName::sanitize(s).unwrap()
}

/// A whole honest pairing; returns the fingerprint the host stored.
fn pair(binding: &ChannelBinding, pin: &str, rng: &mut ChaCha20Rng) -> Fingerprint {
    let hello = read_hello(transfer(handshake::hello(name("Bench iPad"), Intent::Pair))).unwrap();
    let welcome = handshake::welcome(Status::Pairing, name("Bench Host"), binding.host);
    read_welcome(transfer(welcome), Intent::Pair, binding.host).unwrap();

    let pin: Pin = pin.parse().unwrap();
    let (client, m) = ClientPairing::start(&pin, binding.clone(), rng).unwrap();
    let Message::Pake(pake) = transfer(m) else {
        panic!("not a pake")
    };
    let (host, m) =
        HostPairing::respond(pin, binding.clone(), hello.device_name, pake, rng).unwrap();
    let (client, m) = client.on_message(transfer(m)).unwrap();
    let (HostEffect::StoreDevice(device), awaiting) = host.on_message(transfer(m)).unwrap();
    let paired = client.on_message(transfer(awaiting.stored())).unwrap();
    assert_eq!(paired.host, binding.host);
    device.fingerprint()
}

fn bench(c: &mut Criterion) {
    let binding = ChannelBinding {
        client: Fingerprint::of_der(b"client certificate"),
        host: Fingerprint::of_der(b"host certificate"),
        exporter: Exporter(*Fingerprint::of_der(b"tls session").as_bytes()),
    };
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    assert_eq!(pair(&binding, "4711", &mut rng), binding.client);

    c.bench_function("native SPAKE2 pairing, both sides (in memory)", |b| {
        b.iter(|| pair(&binding, "4711", &mut rng))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
