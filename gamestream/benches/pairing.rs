//! The server side of a full GameStream pairing through the sans-IO core:
//! query parsing, phase 1 (`getservercert` + PIN entry), phase 2
//! (`clientchallenge`), phase 3 (`serverchallengeresp`, an RSA-2048
//! signature) and phase 4 (`clientpairingsecret`, an RSA verification).
//!
//! The client side is pre-computed: the queries moonlight-python sent in
//! `tests/data/vectors.json`, replayed against the host randomness it was
//! recorded with, so every iteration is a successful pairing and only the
//! host's work is timed.

use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use punktfunk_certs::Identity;
use punktfunk_gamestream::{
    Effect, InvalidQuery, PairQuery, PairRequest, PairingEnd, PairingSession, Pin,
};

const HOST_CRT: &str = include_str!("../tests/data/host.crt");
const HOST_KEY: &str = include_str!("../tests/data/host.key");
const VECTORS: &str = include_str!("../tests/data/vectors.json");

#[path = "../tests/support/replay.rs"]
mod replay;
use replay::Replay;

/// What the shell does with a query string.
fn parse(query: &str) -> Result<PairQuery, InvalidQuery> {
    PairQuery::parse(query.split('&').filter_map(|kv| kv.split_once('=')))
}

struct Fixture {
    host: Identity,
    pin: Pin,
    /// The host randomness of the recording (server secret, challenge).
    rng_bytes: Vec<u8>,
    /// The client's four `/pair` queries.
    queries: [String; 4],
}

impl Fixture {
    fn load() -> Self {
        let v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
        let hex_of = |name: &str| hex::decode(v[name].as_str().unwrap()).unwrap();
        let mut rng_bytes = hex_of("server_secret");
        rng_bytes.extend(hex_of("server_challenge"));
        let queries: Vec<String> = v["transcripts"]["success"]
            .as_array()
            .unwrap()
            .iter()
            .take(4)
            .map(|t| t["query"].as_str().unwrap().to_owned())
            .collect();
        Self {
            host: Identity::from_pem(HOST_CRT.as_bytes(), HOST_KEY.as_bytes()).unwrap(),
            pin: v["pin"].as_str().unwrap().parse().unwrap(),
            rng_bytes,
            queries: queries.try_into().unwrap(),
        }
    }

    /// One whole pairing, as the HTTP shell drives the core.
    fn pair(&self, rng: &mut Replay) -> PairingEnd {
        let now = Instant::now();
        let q = parse(&self.queries[0]).unwrap();
        let PairRequest::GetServerCert(g) = q.request else {
            panic!("not phase 1")
        };
        let session = PairingSession::start(q.unique_id, g);
        let mut step = session.pin_entered(&self.pin, &self.host, now).unwrap();
        for query in &self.queries[1..] {
            let request = parse(query).unwrap().request;
            step = step
                .session
                .take()
                .expect("the attempt goes on")
                .step(request, &self.host, rng, now)
                .unwrap();
        }
        match step.effects.pop() {
            Some(Effect::Finished(outcome)) => outcome,
            other => panic!("no outcome: {other:?}"),
        }
    }
}

fn bench(c: &mut Criterion) {
    let f = Fixture::load();
    // Sanity: the replay is a successful pairing.
    let outcome = f.pair(&mut Replay(f.rng_bytes.clone()));
    assert!(matches!(outcome, PairingEnd::Paired(_)), "{outcome:?}");

    c.bench_function("gamestream pairing, server side (phases 1-4)", |b| {
        b.iter_batched(
            || Replay(f.rng_bytes.clone()),
            |mut rng| f.pair(&mut rng),
            BatchSize::SmallInput,
        )
    });
    c.bench_function(
        "gamestream phase 1 parse (getservercert with clientcert)",
        |b| b.iter(|| parse(std::hint::black_box(&f.queries[0])).unwrap()),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
