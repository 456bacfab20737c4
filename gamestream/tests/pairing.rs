//! Full pairings through the public API, the way the HTTP shell drives the
//! core, against a Rust re-statement of moonlight-qt's client steps
//! (`nvpairingmanager.cpp`, as ported byte-for-byte by moonlight-python).
//!
//! The fixed inputs and the client's expected requests come from
//! `data/vectors.json`, recorded from moonlight-python by
//! `data/make_vectors.py`.

use std::time::{Duration, Instant};

use openssl::x509::X509;
use punktfunk_certs::{Fingerprint, Identity};
use punktfunk_gamestream::{
    Effect, InvalidQuery, PairError, PairQuery, PairRequest, PairingEnd, PairingSession,
    ParseError, Phrase, Pin, Rejection, Reply, Step, PHASE_TIMEOUT,
};
use punktfunk_testsupport::moonlight::{self, StepError};
use punktfunk_testsupport::xml;
use rand::RngCore;

const HOST_CRT: &str = include_str!("data/host.crt");
const HOST_KEY: &str = include_str!("data/host.key");
const CLIENT_CRT: &str = include_str!("data/client.crt");
const CLIENT_KEY: &str = include_str!("data/client.key");
const VECTORS: &str = include_str!("data/vectors.json");

// ---------------------------------------------------------------------------
// Fixtures

struct Vectors(serde_json::Value);

impl Vectors {
    fn load() -> Self {
        Self(serde_json::from_str(VECTORS).unwrap())
    }
    fn str(&self, name: &str) -> &str {
        self.0[name].as_str().unwrap()
    }
    fn arr<const N: usize>(&self, name: &str) -> [u8; N] {
        hex::decode(self.str(name)).unwrap().try_into().unwrap()
    }
    /// The recorded client queries of a transcript, without the random `uuid`.
    fn queries(&self, transcript: &str) -> Vec<String> {
        self.0["transcripts"][transcript]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| without_uuid(t["query"].as_str().unwrap()))
            .collect()
    }
}

fn without_uuid(query: &str) -> String {
    query
        .split('&')
        .filter(|kv| !kv.starts_with("uuid="))
        .collect::<Vec<_>>()
        .join("&")
}

fn host() -> Identity {
    Identity::from_pem(HOST_CRT.as_bytes(), HOST_KEY.as_bytes()).unwrap()
}

#[path = "support/replay.rs"]
mod replay;
use replay::Replay;

/// What a shell does with a query string: split and percent-free decode
/// (every value here is hex or plain ASCII).
fn parse(query: &str) -> Result<PairQuery, InvalidQuery> {
    PairQuery::parse(query.split('&').filter_map(|kv| kv.split_once('=')))
}

// ---------------------------------------------------------------------------
// The client, restated (punktfunk-testsupport), fed from the core's replies

struct Client(moonlight::Client);

impl Client {
    fn new(pin: &str, salt: [u8; 16], challenge: [u8; 16], secret: [u8; 16]) -> Self {
        let identity = Identity::from_pem(CLIENT_CRT.as_bytes(), CLIENT_KEY.as_bytes()).unwrap();
        Self(moonlight::Client::new(
            identity, pin, salt, challenge, secret,
        ))
    }

    fn from_vectors(v: &Vectors, pin: &str) -> Self {
        Self::new(
            pin,
            v.arr("salt"),
            v.arr("client_challenge"),
            v.arr("client_secret"),
        )
    }

    fn prefix() -> &'static str {
        moonlight::PREFIX
    }

    fn secret(&self) -> [u8; 16] {
        self.0.secret()
    }

    fn phase1(&self) -> String {
        moonlight::query(&self.0.getservercert())
    }

    fn phase2(&mut self, reply: &Reply) -> String {
        assert_eq!(reply.status_code(), 200);
        assert_eq!(reply.field("paired"), Some("1"));
        self.0
            .read_plaincert(reply.field("plaincert").expect("plaincert"))
            .unwrap();
        moonlight::query(&self.0.clientchallenge())
    }

    fn phase3(&mut self, reply: &Reply) -> String {
        assert_eq!(reply.field("paired"), Some("1"));
        self.0
            .read_challengeresponse(reply.field("challengeresponse").unwrap())
            .unwrap();
        moonlight::query(&self.0.serverchallengeresp())
    }

    /// The client's own checks after phase 3: the host's signature (else
    /// "MITM detected"), then the hash (else "Incorrect PIN").
    fn check_phase3(&self, reply: &Reply) -> Result<(), StepError> {
        self.0
            .check_pairingsecret(reply.field("pairingsecret").unwrap())
    }

    fn phase4(&self) -> String {
        moonlight::query(&self.0.clientpairingsecret())
    }
}

// ---------------------------------------------------------------------------
// A minimal shell: what an actix handler does, minus HTTP.

struct Harness {
    host: Identity,
    rng: Replay,
    now: Instant,
    session: Option<PairingSession>,
}

impl Harness {
    fn new(v: &Vectors) -> Self {
        let mut bytes = v.arr::<16>("server_secret").to_vec();
        bytes.extend(v.arr::<16>("server_challenge"));
        Self {
            host: host(),
            rng: Replay(bytes),
            now: Instant::now(),
            session: None,
        }
    }

    /// Phase 1 and PIN entry; returns the held reply.
    fn get_server_cert(&mut self, query: &str, pin: &str) -> Reply {
        let q = parse(query).unwrap();
        let PairRequest::GetServerCert(g) = q.request else {
            panic!("not phase 1")
        };
        let session = PairingSession::start(q.unique_id, g);
        assert_eq!(
            session.fingerprint(),
            Fingerprint::of_der(
                &X509::from_pem(CLIENT_CRT.as_bytes())
                    .unwrap()
                    .to_der()
                    .unwrap()
            )
        );
        let pin: Pin = pin.parse().unwrap();
        let step = session.pin_entered(&pin, &self.host, self.now).unwrap();
        assert!(step.effects.is_empty());
        self.session = step.session;
        well_formed(step.reply)
    }

    fn step(&mut self, query: &str) -> Result<Step, PairError> {
        let q = parse(query).unwrap();
        let session = self.session.take().ok_or(PairError::NoSession)?;
        let mut step = session.step(q.request, &self.host, &mut self.rng, self.now)?;
        step.reply = well_formed(step.reply);
        Ok(step)
    }

    /// Steps and keeps the next session.
    fn step_ok(&mut self, query: &str) -> Step {
        let mut step = self.step(query).unwrap();
        self.session = step.session.take();
        step
    }
}

/// `reply`, once its rendering has parsed as well-formed XML that says
/// the same status code.
fn well_formed(reply: Reply) -> Reply {
    let parsed = xml::reply(&reply.to_xml());
    assert_eq!(parsed.status_code(), reply.status_code().to_string());
    reply
}

fn client_fingerprint() -> Fingerprint {
    Fingerprint::of_der(
        &X509::from_pem(CLIENT_CRT.as_bytes())
            .unwrap()
            .to_der()
            .unwrap(),
    )
}

/// Runs phases 1–3 and returns the harness awaiting phase 4.
fn through_phase3(v: &Vectors, client: &mut Client, host_pin: &str) -> (Harness, Reply) {
    let mut h = Harness::new(v);
    let reply = h.get_server_cert(&client.phase1(), host_pin);
    let q2 = client.phase2(&reply);
    let r2 = h.step_ok(&q2).reply;
    let q3 = client.phase3(&r2);
    let r3 = h.step_ok(&q3).reply;
    (h, r3)
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn client_restatement_sends_what_moonlight_python_sent() {
    let v = Vectors::load();
    let recorded = v.queries("success");
    let mut client = Client::from_vectors(&v, v.str("pin"));
    let mut h = Harness::new(&v);

    let q1 = client.phase1();
    assert_eq!(q1, recorded[0]);
    let r1 = h.get_server_cert(&q1, v.str("pin"));
    let q2 = client.phase2(&r1);
    assert_eq!(q2, recorded[1]);
    let r2 = h.step_ok(&q2).reply;
    let q3 = client.phase3(&r2);
    assert_eq!(q3, recorded[2]);
    let r3 = h.step_ok(&q3).reply;
    client.check_phase3(&r3).unwrap();
    let q4 = client.phase4();
    assert_eq!(q4, recorded[3]);
    let step = h.step_ok(&q4);
    assert_eq!(step.reply.status_code(), 200);
    assert_eq!(step.reply.field("paired"), Some("1"));
    assert!(h.session.is_none(), "the attempt ends after phase 4");

    let [Effect::StoreDevice(device), Effect::Finished(PairingEnd::Paired(fp))] = &step.effects[..]
    else {
        panic!("unexpected effects {:?}", step.effects)
    };
    assert_eq!(device.fingerprint(), client_fingerprint());
    assert_eq!(*fp, client_fingerprint());
    assert_eq!(device.unique_id().as_str(), "0123456789ABCDEF");

    // Phase 5 goes over HTTPS; the shell has authorised the certificate.
    let q5 = parse(&recorded[4]).unwrap();
    assert!(matches!(q5.request, PairRequest::PairChallenge));
    let r5 = punktfunk_gamestream::xml::pair_challenge(
        punktfunk_gamestream::xml::Channel::AuthorizedHttps,
    );
    assert_eq!(r5.field("paired"), Some("1"));
}

#[test]
fn pairs_with_fresh_randomness() {
    let v = Vectors::load();
    let mut r = [[0u8; 16]; 3];
    for x in &mut r {
        rand::rngs::OsRng.fill_bytes(x);
    }
    let mut client = Client::new("0042", r[0], r[1], r[2]);
    let host = host();
    let now = Instant::now();
    let q = parse(&client.phase1()).unwrap();
    let PairRequest::GetServerCert(g) = q.request else {
        panic!()
    };
    let session = PairingSession::start(q.unique_id, g);
    let step = session
        .pin_entered(&"0042".parse().unwrap(), &host, now)
        .unwrap();
    let q2 = client.phase2(&step.reply);
    let mut rng = rand::rngs::OsRng;
    let step = step
        .session
        .unwrap()
        .step(parse(&q2).unwrap().request, &host, &mut rng, now)
        .unwrap();
    let q3 = client.phase3(&step.reply);
    let step = step
        .session
        .unwrap()
        .step(parse(&q3).unwrap().request, &host, &mut rng, now)
        .unwrap();
    client.check_phase3(&step.reply).unwrap();
    let step = step
        .session
        .unwrap()
        .step(
            parse(&client.phase4()).unwrap().request,
            &host,
            &mut rng,
            now,
        )
        .unwrap();
    assert_eq!(step.reply.field("paired"), Some("1"));
    assert!(matches!(step.effects[0], Effect::StoreDevice(_)));
    let _ = v;
}

#[test]
fn wrong_pin_is_caught_by_the_client_after_phase3() {
    let v = Vectors::load();
    let mut client = Client::from_vectors(&v, v.str("wrong_pin"));
    let (h, r3) = through_phase3(&v, &mut client, v.str("pin"));
    assert_eq!(client.check_phase3(&r3), Err(StepError::IncorrectPin));
    // The recorded client then called /unpair.
    let outcome = h.session.unwrap().cancelled_by_client();
    assert_eq!(outcome, PairingEnd::PinRejected(Rejection::ClientGaveUp));
}

#[test]
fn wrong_pin_is_caught_by_the_host_in_phase4() {
    let v = Vectors::load();
    // A client that ignores its own check and sends phase 4 anyway.
    let mut client = Client::from_vectors(&v, v.str("wrong_pin"));
    let (mut h, _) = through_phase3(&v, &mut client, v.str("pin"));
    let step = h.step_ok(&client.phase4());
    assert_eq!(step.reply.status_code(), 200);
    assert_eq!(step.reply.field("paired"), Some("0"));
    assert!(h.session.is_none());
    assert!(matches!(
        &step.effects[..],
        [Effect::Finished(PairingEnd::PinRejected(
            Rejection::HashMismatch
        ))]
    ));
}

#[test]
fn bad_signature_in_phase4_stores_nothing() {
    let v = Vectors::load();
    let mut client = Client::from_vectors(&v, v.str("pin"));
    let (mut h, r3) = through_phase3(&v, &mut client, v.str("pin"));
    client.check_phase3(&r3).unwrap();
    let mut q4 = client.phase4();
    // Flip the last hex digit of the signature.
    let last = q4.pop().unwrap();
    q4.push(if last == '0' { '1' } else { '0' });
    let step = h.step_ok(&q4);
    assert_eq!(step.reply.field("paired"), Some("0"));
    assert!(matches!(
        &step.effects[..],
        [Effect::Finished(PairingEnd::PinRejected(
            Rejection::BadSignature
        ))]
    ));
}

#[test]
fn signature_by_another_key_is_refused() {
    let v = Vectors::load();
    let mut client = Client::from_vectors(&v, v.str("pin"));
    let (mut h, _) = through_phase3(&v, &mut client, v.str("pin"));
    // Right secret, signed by the host key instead of the phase-1 certificate's.
    let sig = host().sign_sha256(&client.secret()).unwrap();
    let mut cps = client.secret().to_vec();
    cps.extend(sig);
    let q4 = format!(
        "{}&clientpairingsecret={}",
        Client::prefix(),
        hex::encode(cps)
    );
    let step = h.step_ok(&q4);
    assert!(matches!(
        &step.effects[..],
        [Effect::Finished(PairingEnd::PinRejected(
            Rejection::BadSignature
        ))]
    ));
}

#[test]
fn phases_out_of_order_end_the_attempt() {
    let v = Vectors::load();
    let mut client = Client::from_vectors(&v, v.str("pin"));
    let mut h = Harness::new(&v);
    let r1 = h.get_server_cert(&client.phase1(), v.str("pin"));
    let _ = client.phase2(&r1);
    // Phase 4 where phase 2 is expected.
    let err = h.step(&client.phase4()).unwrap_err();
    assert!(matches!(
        err,
        PairError::UnexpectedPhrase {
            expected: Phrase::ClientChallenge,
            got: Phrase::ClientPairingSecret
        }
    ));
    assert_eq!(err.outcome(), PairingEnd::Failed);
    let reply = err.reply();
    assert_eq!(reply.status_code(), 400);
    assert_eq!(reply.field("paired"), Some("0"));
    assert!(reply
        .status_message()
        .unwrap()
        .contains("out of order call to clientpairingsecret"));
    // The session was consumed: the correct phase now finds nothing.
    let q2 = client.phase2(&r1);
    assert!(matches!(h.step(&q2), Err(PairError::NoSession)));
}

#[test]
fn every_wrong_phrase_is_unexpected_in_every_state() {
    let v = Vectors::load();
    let mut client = Client::from_vectors(&v, v.str("pin"));
    let host = host();
    let now = Instant::now();
    let q1 = client.phase1();
    let start = || {
        let q = parse(&q1).unwrap();
        let PairRequest::GetServerCert(g) = q.request else {
            panic!()
        };
        PairingSession::start(q.unique_id, g)
    };
    // Awaiting the PIN, nothing is a valid step.
    for query in [
        q1.as_str(),
        &format!("{}&phrase=pairchallenge", Client::prefix()),
    ] {
        let err = start()
            .step(
                parse(query).unwrap().request,
                &host,
                &mut Replay(vec![]),
                now,
            )
            .unwrap_err();
        assert!(
            matches!(
                err,
                PairError::UnexpectedPhrase {
                    expected: Phrase::GetServerCert,
                    ..
                }
            ),
            "{err}"
        );
    }
    // After the PIN, a repeated getservercert is out of order too.
    let step = start()
        .pin_entered(&v.str("pin").parse().unwrap(), &host, now)
        .unwrap();
    let _ = client.phase2(&step.reply);
    let err = step
        .session
        .unwrap()
        .step(parse(&q1).unwrap().request, &host, &mut Replay(vec![]), now)
        .unwrap_err();
    assert!(matches!(
        err,
        PairError::UnexpectedPhrase {
            expected: Phrase::ClientChallenge,
            got: Phrase::GetServerCert
        }
    ));
    // pin_entered on a session past phase 1.
    let step = start()
        .pin_entered(&v.str("pin").parse().unwrap(), &host, now)
        .unwrap();
    let err = step
        .session
        .unwrap()
        .pin_entered(&v.str("pin").parse().unwrap(), &host, now)
        .unwrap_err();
    assert!(matches!(err, PairError::UnexpectedPhrase { .. }));
}

#[test]
fn a_late_phase_expires() {
    let v = Vectors::load();
    let mut client = Client::from_vectors(&v, v.str("pin"));
    let mut h = Harness::new(&v);
    let r1 = h.get_server_cert(&client.phase1(), v.str("pin"));
    let q2 = client.phase2(&r1);
    let later = h.now + PHASE_TIMEOUT + Duration::from_secs(1);
    assert!(!h
        .session
        .as_ref()
        .unwrap()
        .is_expired(h.now + PHASE_TIMEOUT));
    assert!(h.session.as_ref().unwrap().is_expired(later));
    h.now = later;
    let err = h.step(&q2).unwrap_err();
    assert!(matches!(
        err,
        PairError::Expired {
            expected: Phrase::ClientChallenge
        }
    ));
    assert_eq!(err.reply().field("paired"), Some("0"));
}

#[test]
fn awaiting_the_pin_never_expires_in_the_core_and_unpair_abandons() {
    let v = Vectors::load();
    let client = Client::from_vectors(&v, v.str("pin"));
    let q = parse(&client.phase1()).unwrap();
    let PairRequest::GetServerCert(g) = q.request else {
        panic!()
    };
    let session = PairingSession::start(q.unique_id, g);
    assert_eq!(session.expected(), Phrase::GetServerCert);
    assert!(!session.is_expired(Instant::now() + Duration::from_secs(86_400)));
    assert_eq!(session.fingerprint(), client_fingerprint());
    assert_eq!(session.cancelled_by_client(), PairingEnd::Abandoned);
}

#[test]
fn malformed_phases_are_refused_with_xml() {
    let p = Client::prefix();
    let cert = hex::encode(CLIENT_CRT);
    let salt = "00".repeat(16);
    let cases: Vec<(String, ParseError)> = vec![
        (
            format!("{p}&phrase=getservercert&salt=0011&clientcert={cert}"),
            ParseError::WrongLength {
                param: "salt",
                expected: 16,
                got: 4,
            },
        ),
        (
            format!("{p}&phrase=getservercert&salt={salt}&clientcert=zz{cert}"),
            ParseError::NotHex("clientcert"),
        ),
        (
            format!(
                "{p}&phrase=getservercert&salt={salt}&clientcert={}",
                "41".repeat(5000)
            ),
            ParseError::TooLong {
                param: "clientcert",
                max: punktfunk_gamestream::MAX_CLIENT_CERT_HEX,
            },
        ),
        (
            format!("{p}&clientchallenge={}", "xy".repeat(16)),
            ParseError::NotHex("clientchallenge"),
        ),
        (
            format!("{p}&serverchallengeresp={}", "00".repeat(31)),
            ParseError::WrongLength {
                param: "serverchallengeresp",
                expected: 32,
                got: 62,
            },
        ),
        (
            format!("{p}&clientpairingsecret={}", "00".repeat(16)),
            ParseError::PairingSecretTooShort,
        ),
        (
            format!("{p}&clientpairingsecret={}", "00".repeat(16 + 1025)),
            ParseError::TooLong {
                param: "clientpairingsecret",
                max: 2 * (16 + punktfunk_gamestream::MAX_SIGNATURE_LEN),
            },
        ),
        (
            format!("{p}&phrase=nonsense"),
            ParseError::UnknownPhrase("nonsense".into()),
        ),
    ];
    for (query, expected) in cases {
        let err = parse(&query).unwrap_err();
        assert_eq!(err.error, expected, "{query:.80}");
        assert_eq!(err.unique_id.as_ref().unwrap().as_str(), "0123456789ABCDEF");
        let reply = Reply::from(&err);
        assert_eq!(reply.status_code(), 400);
        assert_eq!(reply.field("paired"), Some("0"));
    }
    let err = parse(p).unwrap_err();
    assert_eq!(Reply::from(&err).status_code(), 404);
}

#[test]
fn refusals_render_readable_errors() {
    for (err, status) in [
        (PairError::Declined, 403),
        (PairError::PinTimeout, 408),
        (PairError::Superseded, 409),
        (PairError::NoSession, 400),
        (
            PairError::Host(punktfunk_gamestream::HostFault::Registry(
                punktfunk_certs::RegistryError::Write {
                    path: "/secret/path/trust.json".into(),
                    source: std::io::Error::other("disk full"),
                },
            )),
            500,
        ),
    ] {
        let reply = err.reply();
        assert_eq!(reply.status_code(), status, "{err}");
        assert_eq!(reply.field("paired"), Some("0"));
        let xml = reply.to_xml();
        assert!(!xml.contains("/secret/path"), "host details leak: {xml}");
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<root status_code="));
        let parsed = xml::reply(&xml);
        assert_eq!(parsed.status_code(), status.to_string());
    }
}

#[test]
fn core_types_can_cross_threads_and_awaits() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<PairingSession>();
    assert_send_sync::<Step>();
    assert_send_sync::<Reply>();
    assert_send_sync::<PairError>();
    assert_send_sync::<InvalidQuery>();
}

#[test]
fn outcomes_have_console_names() {
    assert_eq!(PairingEnd::Paired(client_fingerprint()).as_str(), "paired");
    assert_eq!(
        PairingEnd::PinRejected(Rejection::HashMismatch).as_str(),
        "pin_rejected"
    );
    assert_eq!(PairingEnd::Failed.as_str(), "failed");
    assert_eq!(PairingEnd::Abandoned.as_str(), "abandoned");
}
