//! The GameStream pairing core driven by arbitrary requests after a valid
//! phase 1: one line of input is one query string. Whatever arrives, the
//! session answers or ends with an error; it never panics and never stores
//! a device (the fuzzer cannot know the client's private key).
#![no_main]

use std::sync::OnceLock;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use punktfunk_certs::Identity;
use punktfunk_gamestream::{Effect, PairQuery, PairRequest, PairingSession};
use rand::SeedableRng;

const HOST_CRT: &str = include_str!("../../gamestream/tests/data/host.crt");
const HOST_KEY: &str = include_str!("../../gamestream/tests/data/host.key");
const CLIENT_CRT: &str = include_str!("../../gamestream/tests/data/client.crt");

fn host() -> &'static Identity {
    static HOST: OnceLock<Identity> = OnceLock::new();
    HOST.get_or_init(|| Identity::from_pem(HOST_CRT.as_bytes(), HOST_KEY.as_bytes()).expect("fixture"))
}

fn query(line: &str) -> Option<PairQuery> {
    let pairs: Vec<(String, String)> = line
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    PairQuery::parse(pairs).ok()
}

fuzz_target!(|data: &[u8]| {
    let start = format!(
        "uniqueid=0123456789ABCDEF&devicename=roth&updateState=1&phrase=getservercert&salt=00112233445566778899aabbccddeeff&clientcert={}",
        hex_upper(CLIENT_CRT.as_bytes())
    );
    let Some(first) = query(&start) else { return };
    let PairRequest::GetServerCert(g) = first.request else { return };
    let session = PairingSession::start(first.unique_id, g);
    let now = Instant::now();
    let Ok(step) = session.pin_entered(&"1234".parse().expect("pin"), host(), now) else { return };
    let mut session = step.session;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    for line in String::from_utf8_lossy(data).lines() {
        let Some(s) = session.take() else { return };
        let Some(q) = query(line) else { return };
        match s.step(q.request, host(), &mut rng, now) {
            Ok(step) => {
                assert!(!step.effects.iter().any(|e| matches!(e, Effect::StoreDevice(_))));
                session = step.session;
            }
            Err(_) => return,
        }
    }
});

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}
