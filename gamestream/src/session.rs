//! The pairing state machine: one [`PairingSession`] per pairing attempt,
//! one variant per message it expects next.

use std::time::{Duration, Instant};

use openssl::x509::X509;
use punktfunk_certs::{Fingerprint, Identity, Pin};
use rand::{CryptoRng, RngCore};

use crate::crypto::{self, AesKey, ClientVerified, Rejection};
use crate::request::{
    ClientCert, ClientPairingSecret, DeviceName, GetServerCert, PairRequest, Phrase, UniqueId,
};
use crate::xml::Reply;

/// How long the host waits for the next phase after answering one. Clients
/// send phases 2–4 back to back with a 5 s timeout each (moonlight-qt
/// `nvpairingmanager.cpp`); the wait for the PIN before phase 1 is the gate's
/// business, not this one.
pub const PHASE_TIMEOUT: Duration = Duration::from_secs(30);

/// A pairing attempt, by the message it expects next. Each step consumes it;
/// an error drops it, which ends the attempt, as Sunshine's `fail_pair`
/// deletes the session ("force a re-pair").
#[derive(Debug)]
pub enum PairingSession {
    /// Phase 1 arrived; the HTTP response is held until the PIN is entered.
    AwaitingPin(AwaitingPin),
    /// Phase 1 answered; phase 2 (`clientchallenge`) expected.
    AwaitingClientChallenge(AwaitingClientChallenge),
    /// Phase 2 answered; phase 3 (`serverchallengeresp`) expected.
    AwaitingServerChallengeResp(AwaitingServerChallengeResp),
    /// Phase 3 answered; phase 4 (`clientpairingsecret`) expected.
    AwaitingClientPairingSecret(AwaitingClientPairingSecret),
}

/// The client as phase 1 described it; carried through every state.
#[derive(Debug, Clone)]
struct Client {
    unique_id: UniqueId,
    device_name: Option<DeviceName>,
    cert: ClientCert,
}

/// State before the PIN is known.
#[derive(Debug)]
pub struct AwaitingPin {
    client: Client,
    salt: [u8; 16],
    /// Phase 1 carried `otpauth`: only Artemis sends it, never moonlight-qt,
    /// and a mismatch enters a random PIN, so no failure of this attempt
    /// is moonlight-qt's key bug.
    otp: bool,
}

/// State after phase 1.
#[derive(Debug)]
pub struct AwaitingClientChallenge {
    client: Client,
    key: AesKey,
    qt_key_wrong: bool,
    deadline: Instant,
}

/// State after phase 2.
#[derive(Debug)]
pub struct AwaitingServerChallengeResp {
    client: Client,
    key: AesKey,
    qt_key_wrong: bool,
    server_secret: [u8; 16],
    server_challenge: [u8; 16],
    deadline: Instant,
}

/// State after phase 3.
#[derive(Debug)]
pub struct AwaitingClientPairingSecret {
    client: Client,
    server_challenge: [u8; 16],
    client_hash: [u8; 32],
    qt_key_wrong: bool,
    deadline: Instant,
}

/// The result of a step that did not fail.
#[derive(Debug)]
pub struct Step {
    /// The attempt in its next state; `None` when it is over.
    pub session: Option<PairingSession>,
    /// What to answer, once every effect has been carried out.
    pub reply: Reply,
    /// What the shell must do, in order, before sending `reply`.
    pub effects: Vec<Effect>,
}

/// Work for the shell. Carry effects out in order; if one fails, send
/// [`PairError::reply`] of [`PairError::Host`] instead of the step's reply and
/// report [`PairingEnd::Failed`].
#[derive(Debug)]
pub enum Effect {
    /// Store the device in the registry, durably, before the reply is sent:
    /// the reply tells the client it is paired.
    StoreDevice(NewDevice),
    /// The attempt is over; report this to the gate and so to the console.
    Finished(PairingEnd),
}

/// How a pairing attempt ended, for the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairingEnd {
    /// Verified and stored.
    Paired(Fingerprint),
    /// The PIN did not match (or the exchange was tampered with).
    PinRejected(Rejection),
    /// The client's answer failed the way moonlight-qt's known key bug
    /// fails (SHA-256(salt ‖ PIN) of this attempt has a zero byte in its
    /// first 15 bytes, see `crypto::moonlight_qt_key_is_wrong`): most likely a correct PIN that moonlight-qt
    /// cannot pair with this salt. A new attempt (new salt, new PIN) pairs.
    MoonlightQtBug(Rejection),
    /// The client broke the protocol or timed out; see the [`PairError`].
    Failed,
    /// The client went away before the PIN was entered.
    Abandoned,
}

impl PairingEnd {
    /// The console's word for it: `paired`, `pin_rejected`,
    /// `moonlight_qt_bug`, `failed` or `abandoned` (the vocabulary of
    /// `POST /api/pending/{id}/pin`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Paired(_) => "paired",
            Self::PinRejected(_) => "pin_rejected",
            Self::MoonlightQtBug(_) => "moonlight_qt_bug",
            Self::Failed => "failed",
            Self::Abandoned => "abandoned",
        }
    }
}

/// A device that passed phase 4. Only this module can build one, and only
/// with the proof that the hash and signature checks passed.
#[derive(Debug)]
pub struct NewDevice {
    unique_id: UniqueId,
    device_name: Option<DeviceName>,
    cert: ClientCert,
    _verified: ClientVerified,
}

impl NewDevice {
    /// The certificate's fingerprint: the registry key.
    pub fn fingerprint(&self) -> Fingerprint {
        self.cert.fingerprint()
    }

    /// The certificate.
    pub fn cert(&self) -> &X509 {
        self.cert.x509()
    }

    /// The certificate as PEM (canonical OpenSSL encoding).
    pub fn cert_pem(&self) -> &str {
        self.cert.pem()
    }

    /// The certificate's DER.
    pub fn cert_der(&self) -> &[u8] {
        self.cert.der()
    }

    /// The `devicename` the client sent, cleaned.
    pub fn device_name(&self) -> Option<&DeviceName> {
        self.device_name.as_ref()
    }

    /// The client's `uniqueid`, for information only.
    pub fn unique_id(&self) -> &UniqueId {
        &self.unique_id
    }
}

/// Why a step failed. The attempt is over; answer with [`PairError::reply`].
#[derive(Debug, thiserror::Error)]
pub enum PairError {
    /// A phase arrived that the attempt did not expect (Sunshine: "Out of
    /// order call to …", since its fix 89f097ae6 for unordered phases).
    #[error("out of order call to {got}: {expected} was expected")]
    UnexpectedPhrase {
        /// What the attempt expected.
        expected: Phrase,
        /// What arrived.
        got: Phrase,
    },
    /// Phases 2–4 from a client with no attempt in progress (Sunshine:
    /// "Invalid uniqueid").
    #[error("no pairing is in progress for this client; start pairing again")]
    NoSession,
    /// The next phase came too late.
    #[error("the pairing attempt timed out waiting for {expected}; start pairing again")]
    Expired {
        /// What the attempt expected.
        expected: Phrase,
    },
    /// The console denied the request.
    #[error("the pairing request was declined on the host")]
    Declined,
    /// Nobody entered the PIN before the request expired.
    #[error("nobody entered the PIN on the host in time; start pairing again")]
    PinTimeout,
    /// A newer `getservercert` from the same client replaced this one.
    #[error("a newer pairing request from this client replaced this one")]
    Superseded,
    /// The client itself called `/unpair` while this request waited.
    #[error("the pairing request was cancelled")]
    Cancelled,
    /// Too many pairing requests are waiting on the host.
    #[error("too many pairing requests are waiting on the host; try again in a few minutes")]
    Busy,
    /// The client sent `otpauth` but no one-time PIN is active (none made,
    /// expired, or used). Apollo's exact words, which Artemis shows.
    #[error("OTP auth not available.")]
    OtpNotAvailable,
    /// The host is stopping.
    #[error("the host is shutting down; try again when it is back")]
    ShuttingDown,
    /// The host failed (crypto library, storage). The client is not at fault.
    #[error("the host failed: {0}")]
    Host(#[from] HostFault),
}

/// What failed inside the host during a pairing step (for its log; the
/// client only hears that the host failed).
#[derive(Debug, thiserror::Error)]
pub enum HostFault {
    /// OpenSSL refused.
    #[error("crypto library: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
    /// The host's own identity could not be used.
    #[error("host identity: {0}")]
    Identity(#[from] punktfunk_certs::IdentityError),
    /// The transport gave no peer address.
    #[error("the request has no peer address")]
    NoPeerAddress,
    /// The gate refused in a way no client request can cause.
    #[error("gate: {0}")]
    Gate(#[from] punktfunk_certs::GateError),
    /// The device could not be stored.
    #[error("registry: {0}")]
    Registry(#[from] punktfunk_certs::RegistryError),
    /// The audit trail failed.
    #[error("audit trail: {0}")]
    Audit(#[from] punktfunk_certs::AuditError),
    /// The blocking task that stores the device did not finish.
    #[error("the storing task failed: {0}")]
    Task(String),
}

impl PairError {
    /// The XML answer: `paired=0` with a status code and readable message.
    /// Host failures say only that the host failed; details belong in its log.
    pub fn reply(&self) -> Reply {
        let (status, message) = match self {
            Self::Host(_) => (
                500,
                "The host failed to process the pairing request".to_owned(),
            ),
            Self::Declined => (403, self.to_string()),
            Self::PinTimeout | Self::Expired { .. } => (408, self.to_string()),
            Self::Superseded => (409, self.to_string()),
            Self::Cancelled => (400, self.to_string()),
            Self::Busy | Self::ShuttingDown | Self::OtpNotAvailable => (503, self.to_string()),
            Self::UnexpectedPhrase { .. } | Self::NoSession => (400, self.to_string()),
        };
        Reply::error(status, message).with("paired", "0")
    }

    /// The outcome to report to the gate.
    pub fn outcome(&self) -> PairingEnd {
        PairingEnd::Failed
    }
}

impl From<openssl::error::ErrorStack> for PairError {
    fn from(e: openssl::error::ErrorStack) -> Self {
        Self::Host(e.into())
    }
}

impl From<punktfunk_certs::IdentityError> for PairError {
    fn from(e: punktfunk_certs::IdentityError) -> Self {
        Self::Host(e.into())
    }
}

impl PairingSession {
    /// Phase 1 arrived. The shell registers the request with the gate
    /// (replacing an older one for the same `uniqueid` and peer address),
    /// from the [`GetServerCert`] it parsed, and holds the HTTP response
    /// until [`pin_entered`](Self::pin_entered) or a refusal
    /// ([`PairError::Declined`], [`PairError::PinTimeout`],
    /// [`PairError::Superseded`]).
    pub fn start(unique_id: UniqueId, request: GetServerCert) -> Self {
        Self::AwaitingPin(AwaitingPin {
            client: Client {
                unique_id,
                device_name: request.device_name,
                cert: request.client_cert,
            },
            salt: request.salt,
            otp: request.otpauth.is_some(),
        })
    }

    /// The PIN for this request was entered: answers phase 1 with the host
    /// certificate (`plaincert`, hex of its PEM text, which the client pins).
    ///
    /// The host cannot tell a wrong PIN here: it only changes the key, and
    /// the client finds out after phase 3. So this never fails on a wrong PIN,
    /// and the console must not call it a success yet (Sunshine #3944).
    pub fn pin_entered(self, pin: &Pin, host: &Identity, now: Instant) -> Result<Step, PairError> {
        let s = match self {
            Self::AwaitingPin(s) => s,
            other => {
                return Err(PairError::UnexpectedPhrase {
                    expected: other.expected(),
                    got: Phrase::GetServerCert,
                })
            }
        };
        // Sunshine `getservercert`: K = SHA-256(salt ‖ PIN)[..16] for gen 7.
        let key = AesKey::derive(&s.salt, pin);
        // Known now, so that a failure later can be told apart from a wrong PIN.
        let qt_key_wrong = !s.otp && crypto::moonlight_qt_key_is_wrong(&s.salt, pin);
        let reply = Reply::ok()
            .with("paired", "1")
            .with("plaincert", hex::encode_upper(host.cert_pem().as_bytes()));
        Ok(Step {
            session: Some(Self::AwaitingClientChallenge(AwaitingClientChallenge {
                client: s.client,
                key,
                qt_key_wrong,
                deadline: now + PHASE_TIMEOUT,
            })),
            reply,
            effects: Vec::new(),
        })
    }

    /// Phases 2–4. `PairRequest::GetServerCert` and `PairRequest::PairChallenge`
    /// are not steps of an attempt: the first starts a new one
    /// ([`start`](Self::start)), the second is answered by
    /// [`crate::xml::pair_challenge`]; here they are out of order.
    pub fn step<R>(
        self,
        request: PairRequest,
        host: &Identity,
        rng: &mut R,
        now: Instant,
    ) -> Result<Step, PairError>
    where
        R: RngCore + CryptoRng + ?Sized,
    {
        if let Some(deadline) = self.deadline() {
            if now > deadline {
                return Err(PairError::Expired {
                    expected: self.expected(),
                });
            }
        }
        match (self, request) {
            (Self::AwaitingClientChallenge(s), PairRequest::ClientChallenge(enc)) => {
                s.client_challenge(&enc, host, rng, now)
            }
            (Self::AwaitingServerChallengeResp(s), PairRequest::ServerChallengeResp(enc)) => {
                s.server_challenge_resp(&enc, host, now)
            }
            (Self::AwaitingClientPairingSecret(s), PairRequest::ClientPairingSecret(secret)) => {
                Ok(s.client_pairing_secret(&secret))
            }
            (session, request) => Err(PairError::UnexpectedPhrase {
                expected: session.expected(),
                got: request.phrase(),
            }),
        }
    }

    /// The client called `/unpair` during this attempt. moonlight-qt does
    /// that after every failure past phase 1, most often when its own check
    /// after phase 3 finds a wrong PIN, so once the PIN was entered this is
    /// the host's only news of a wrong PIN. After phase 3, with a salt and
    /// PIN that break moonlight-qt's key, it is that bug's failure instead.
    pub fn cancelled_by_client(self) -> PairingEnd {
        match self {
            Self::AwaitingPin(_) => PairingEnd::Abandoned,
            Self::AwaitingClientPairingSecret(s) if s.qt_key_wrong => {
                PairingEnd::MoonlightQtBug(Rejection::ClientGaveUp)
            }
            _ => PairingEnd::PinRejected(Rejection::ClientGaveUp),
        }
    }

    /// The phase this attempt expects next.
    pub fn expected(&self) -> Phrase {
        match self {
            Self::AwaitingPin(_) => Phrase::GetServerCert,
            Self::AwaitingClientChallenge(_) => Phrase::ClientChallenge,
            Self::AwaitingServerChallengeResp(_) => Phrase::ServerChallengeResp,
            Self::AwaitingClientPairingSecret(_) => Phrase::ClientPairingSecret,
        }
    }

    /// Whether the attempt timed out waiting for its next phase (always
    /// `false` while waiting for the PIN: the gate expires those). The
    /// shell gives such attempts up when it needs their places; report
    /// [`PairingEnd::Abandoned`].
    pub fn is_expired(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|d| now > d)
    }

    /// The fingerprint of the client certificate this attempt is bound to.
    pub fn fingerprint(&self) -> Fingerprint {
        self.client().cert.fingerprint()
    }

    /// The client's `uniqueid`.
    pub fn unique_id(&self) -> &UniqueId {
        &self.client().unique_id
    }

    fn client(&self) -> &Client {
        match self {
            Self::AwaitingPin(s) => &s.client,
            Self::AwaitingClientChallenge(s) => &s.client,
            Self::AwaitingServerChallengeResp(s) => &s.client,
            Self::AwaitingClientPairingSecret(s) => &s.client,
        }
    }

    /// When the client's next phase is due (`None` while it waits for the
    /// PIN, which the trust service times).
    pub fn deadline(&self) -> Option<Instant> {
        match self {
            Self::AwaitingPin(_) => None,
            Self::AwaitingClientChallenge(s) => Some(s.deadline),
            Self::AwaitingServerChallengeResp(s) => Some(s.deadline),
            Self::AwaitingClientPairingSecret(s) => Some(s.deadline),
        }
    }
}

impl AwaitingClientChallenge {
    /// Phase 2 (Sunshine `clientchallenge`): decrypt CC, draw the server
    /// secret SS and server challenge SC, answer E_K(H(CC ‖ sig(host cert) ‖
    /// SS) ‖ SC). The client checks that hash after phase 3; it is how a
    /// wrong PIN shows.
    fn client_challenge<R>(
        self,
        encrypted: &[u8; 16],
        host: &Identity,
        rng: &mut R,
        now: Instant,
    ) -> Result<Step, PairError>
    where
        R: RngCore + CryptoRng + ?Sized,
    {
        let challenge = self.key.decrypt(encrypted)?;
        let mut server_secret = [0u8; 16];
        let mut server_challenge = [0u8; 16];
        rng.fill_bytes(&mut server_secret);
        rng.fill_bytes(&mut server_challenge);
        let hash = crypto::sha256(&[
            &challenge,
            crypto::cert_signature(host.cert()),
            &server_secret,
        ]);
        let mut plain = [0u8; 48];
        plain[..32].copy_from_slice(&hash);
        plain[32..].copy_from_slice(&server_challenge);
        let response = self.key.encrypt(&plain)?;
        Ok(Step {
            session: Some(PairingSession::AwaitingServerChallengeResp(
                AwaitingServerChallengeResp {
                    client: self.client,
                    key: self.key,
                    qt_key_wrong: self.qt_key_wrong,
                    server_secret,
                    server_challenge,
                    deadline: now + PHASE_TIMEOUT,
                },
            )),
            reply: Reply::ok()
                .with("paired", "1")
                .with("challengeresponse", hex::encode_upper(response)),
            effects: Vec::new(),
        })
    }
}

impl AwaitingServerChallengeResp {
    /// Phase 3 (Sunshine `serverchallengeresp`): keep D_K(client hash) for
    /// phase 4 and reveal SS with the host's signature over it (PKCS#1 v1.5,
    /// SHA-256, over SS alone, which is what every client verifies). Like
    /// every host, nothing is checked here.
    fn server_challenge_resp(
        self,
        encrypted: &[u8; 32],
        host: &Identity,
        now: Instant,
    ) -> Result<Step, PairError> {
        let client_hash = self.key.decrypt(encrypted)?;
        let signature = host.sign_sha256(&self.server_secret)?;
        let mut secret = self.server_secret.to_vec();
        secret.extend_from_slice(&signature);
        Ok(Step {
            session: Some(PairingSession::AwaitingClientPairingSecret(
                AwaitingClientPairingSecret {
                    client: self.client,
                    server_challenge: self.server_challenge,
                    client_hash,
                    qt_key_wrong: self.qt_key_wrong,
                    deadline: now + PHASE_TIMEOUT,
                },
            )),
            reply: Reply::ok()
                .with("paired", "1")
                .with("pairingsecret", hex::encode_upper(secret)),
            effects: Vec::new(),
        })
    }
}

impl AwaitingClientPairingSecret {
    /// Phase 4 (Sunshine `clientpairingsecret`): the client hash from phase 3
    /// must equal H(SC ‖ sig(client cert) ‖ CS), and the signature over CS
    /// must verify with the phase-1 certificate. Both pass: store, then
    /// `paired=1`. Either fails: `paired=0` with status 200, as Sunshine.
    fn client_pairing_secret(self, secret: &ClientPairingSecret) -> Step {
        match crypto::verify_client(
            self.client.cert.x509(),
            &self.server_challenge,
            &self.client_hash,
            &secret.secret,
            &secret.signature,
        ) {
            Ok(verified) => {
                let fingerprint = self.client.cert.fingerprint();
                let device = NewDevice {
                    unique_id: self.client.unique_id,
                    device_name: self.client.device_name,
                    cert: self.client.cert,
                    _verified: verified,
                };
                Step {
                    session: None,
                    reply: Reply::ok().with("paired", "1"),
                    effects: vec![
                        Effect::StoreDevice(device),
                        Effect::Finished(PairingEnd::Paired(fingerprint)),
                    ],
                }
            }
            Err(rejection) => {
                // A client that sends phase 4 despite a wrong key shows it
                // as a hash mismatch; a bad signature is no key's doing.
                let outcome = match rejection {
                    Rejection::HashMismatch if self.qt_key_wrong => {
                        PairingEnd::MoonlightQtBug(rejection)
                    }
                    _ => PairingEnd::PinRejected(rejection),
                };
                Step {
                    session: None,
                    reply: Reply::ok().with("paired", "0"),
                    effects: vec![Effect::Finished(outcome)],
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::PairQuery;
    use crate::testdata::{host_identity, Replay, Vectors};

    fn parse(query: &str) -> PairQuery {
        let pairs: Vec<(String, String)> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        PairQuery::parse(pairs).unwrap()
    }

    fn transcript(v: &Vectors, name: &str) -> Vec<(String, String, String)> {
        v.0["transcripts"][name]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["path"].as_str().unwrap().to_owned(),
                    t["query"].as_str().unwrap().to_owned(),
                    t["reply"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    fn server_rng(v: &Vectors) -> Replay {
        let mut bytes = v.bytes("server_secret");
        bytes.extend(v.bytes("server_challenge"));
        Replay(bytes)
    }

    /// Replays the recorded moonlight-python conversation against the core and
    /// checks that every host reply field is byte-for-byte what the real client
    /// accepted.
    #[test]
    fn replays_the_recorded_successful_pairing() {
        let v = Vectors::load();
        let host = host_identity();
        let mut rng = server_rng(&v);
        let now = Instant::now();
        let t = transcript(&v, "success");
        assert_eq!(t.len(), 5);

        let q = parse(&t[0].1);
        let PairRequest::GetServerCert(g) = q.request else {
            panic!("phase 1 expected")
        };
        assert_eq!(g.device_name.as_ref().unwrap().as_str(), "roth");
        let session = PairingSession::start(q.unique_id, g);
        assert_eq!(session.unique_id().as_str(), "0123456789ABCDEF");
        let step = session.pin_entered(&v.pin(), &host, now).unwrap();
        let mut session = step.session.unwrap();
        // The whole document, byte for byte, as the real client accepted it.
        assert_eq!(step.reply.to_xml(), t[0].2);

        let mut effects = Vec::new();
        for (i, (_, query, recorded)) in t.iter().enumerate().skip(1).take(3) {
            let step = session
                .step(parse(query).request, &host, &mut rng, now)
                .unwrap();
            assert_eq!(&step.reply.to_xml(), recorded, "phase {}", i + 1);
            effects = step.effects;
            match step.session {
                Some(next) => session = next,
                None => break,
            }
        }
        assert_eq!(
            crate::xml::pair_challenge(crate::xml::Channel::AuthorizedHttps).to_xml(),
            t[4].2
        );
        let [Effect::StoreDevice(device), Effect::Finished(PairingEnd::Paired(fp))] = &effects[..]
        else {
            panic!("unexpected effects {effects:?}")
        };
        let client = ClientCert::from_pem(crate::testdata::CLIENT_CRT.as_bytes()).unwrap();
        assert_eq!(device.fingerprint(), client.fingerprint());
        assert_eq!(*fp, client.fingerprint());
        assert_eq!(device.cert_pem(), crate::testdata::CLIENT_CRT);
        assert_eq!(device.device_name().unwrap().as_str(), "roth");
        assert!(
            rng.0.is_empty(),
            "the core drew more randomness than recorded"
        );
    }

    /// The client with a wrong PIN stops after phase 3 and calls `/unpair`;
    /// the host's replies up to there still match, and the `/unpair` tells
    /// the console the PIN was rejected.
    #[test]
    fn replays_the_recorded_wrong_pin_attempt() {
        let v = Vectors::load();
        let host = host_identity();
        let mut rng = server_rng(&v);
        let now = Instant::now();
        let t = transcript(&v, "wrong_pin");
        assert_eq!(t.len(), 4);
        assert_eq!(t[3].0, "/unpair");

        let q = parse(&t[0].1);
        let PairRequest::GetServerCert(g) = q.request else {
            panic!("phase 1 expected")
        };
        let session = PairingSession::start(q.unique_id, g);
        let mut session = session
            .pin_entered(&v.pin(), &host, now)
            .unwrap()
            .session
            .unwrap();
        for (_, query, recorded) in &t[1..3] {
            let step = session
                .step(parse(query).request, &host, &mut rng, now)
                .unwrap();
            assert_eq!(&step.reply.to_xml(), recorded);
            session = step.session.unwrap();
        }
        assert_eq!(
            session.cancelled_by_client(),
            PairingEnd::PinRejected(Rejection::ClientGaveUp)
        );
        assert_eq!(crate::xml::unpair().to_xml(), t[3].2);
    }

    /// A salt for which H(salt ‖ `pin`) has a zero byte among its first 15
    /// (`breaks`), or none in its first 16 (`!breaks`).
    fn salt_for(pin: &Pin, breaks: bool) -> [u8; 16] {
        (0u64..)
            .map(|i| {
                let mut salt = [0x5a; 16];
                salt[..8].copy_from_slice(&i.to_le_bytes());
                salt
            })
            .find(|salt| {
                let h = crypto::sha256(&[salt, pin.as_bytes()]);
                if breaks {
                    h[..15].contains(&0)
                } else {
                    !h[..16].contains(&0)
                }
            })
            .unwrap()
    }

    /// moonlight-qt's key (`QByteArray(hash.constData())`, `truncate(16)`):
    /// the hash up to its first zero byte, the terminator, then memory the
    /// client never wrote (here 0xEE).
    fn moonlight_qt_key(salt: &[u8; 16], pin: &Pin) -> AesKey {
        let h = crypto::sha256(&[salt, pin.as_bytes()]);
        let mut key = [0xEE; 16];
        let cut = h.iter().position(|&b| b == 0).unwrap_or(16).min(16);
        key[..cut].copy_from_slice(&h[..cut]);
        if cut < 16 {
            key[cut] = 0;
        }
        AesKey::from_bytes(key)
    }

    /// Phase 1 of the recorded conversation, with another salt.
    fn started_with_salt(t: &[(String, String, String)], salt: [u8; 16]) -> PairingSession {
        let q = parse(&t[0].1);
        let PairRequest::GetServerCert(mut g) = q.request else {
            panic!("phase 1 expected")
        };
        g.salt = salt;
        PairingSession::start(q.unique_id, g)
    }

    /// A correct PIN with a salt that breaks moonlight-qt's key: the client,
    /// deriving the key as moonlight-qt does, finds the host's phase-2 answer
    /// wrong after phase 3 and unpairs, and the host reports the bug, not a
    /// wrong PIN. The same salt and PIN with a right key would have paired:
    /// the host's key is the one every other client derives.
    #[test]
    fn a_correct_pin_with_a_salt_that_breaks_moonlight_qts_key_is_that_bug() {
        let v = Vectors::load();
        let host = host_identity();
        let now = Instant::now();
        let pin = v.pin();
        let salt = salt_for(&pin, true);
        assert!(crypto::moonlight_qt_key_is_wrong(&salt, &pin));
        let qt_key = moonlight_qt_key(&salt, &pin);
        assert_ne!(qt_key, AesKey::derive(&salt, &pin));

        let t = transcript(&v, "wrong_pin");
        let session = started_with_salt(&t, salt);
        let mut session = session
            .pin_entered(&pin, &host, now)
            .unwrap()
            .session
            .unwrap();
        // Phase 2 as moonlight-qt makes it: E_K'(CC).
        let cc = [7u8; 16];
        let step = session
            .step(
                PairRequest::ClientChallenge(qt_key.encrypt(&cc).unwrap()),
                &host,
                &mut rand::rngs::OsRng,
                now,
            )
            .unwrap();
        assert!(step.effects.is_empty());
        session = step.session.unwrap();
        // Phase 3: the client decrypts the host's answer under its key…
        let answer = hex::decode(field(&step.reply, "challengeresponse")).unwrap();
        let plain = qt_key.decrypt::<48>(&answer.try_into().unwrap()).unwrap();
        let step = session
            .step(
                PairRequest::ServerChallengeResp(qt_key.encrypt(&[9u8; 32]).unwrap()),
                &host,
                &mut rand::rngs::OsRng,
                now,
            )
            .unwrap();
        session = step.session.unwrap();
        // …and its check of H(CC ‖ sig(host) ‖ SS) fails: "Incorrect PIN".
        let secret = hex::decode(field(&step.reply, "pairingsecret")).unwrap();
        let expected = crypto::sha256(&[&cc, crypto::cert_signature(host.cert()), &secret[..16]]);
        assert_ne!(plain[..32], expected);
        // moonlight-qt unpairs.
        assert_eq!(
            session.cancelled_by_client(),
            PairingEnd::MoonlightQtBug(Rejection::ClientGaveUp)
        );
        assert_eq!(
            PairingEnd::MoonlightQtBug(Rejection::ClientGaveUp).as_str(),
            "moonlight_qt_bug"
        );
    }

    fn field(reply: &Reply, name: &str) -> String {
        let xml = reply.to_xml();
        let start = xml.find(&format!("<{name}>")).unwrap() + name.len() + 2;
        let end = xml.find(&format!("</{name}>")).unwrap();
        xml[start..end].to_owned()
    }

    /// Without the bug's salt the same failure is a wrong PIN; with it, a
    /// failure before the client could check the PIN (an unpair before phase
    /// 3) is still no sign of the bug; and a client that goes on to phase 4
    /// with the wrong key fails as a hash mismatch, which is the bug too.
    #[test]
    fn only_a_failed_pin_check_with_the_bugs_salt_is_the_bug() {
        let v = Vectors::load();
        let host = host_identity();
        let now = Instant::now();
        let pin = v.pin();
        let t = transcript(&v, "wrong_pin");
        for (breaks, expected) in [
            (true, PairingEnd::MoonlightQtBug(Rejection::ClientGaveUp)),
            (false, PairingEnd::PinRejected(Rejection::ClientGaveUp)),
        ] {
            let mut rng = server_rng(&v);
            let session = started_with_salt(&t, salt_for(&pin, breaks));
            let mut session = session
                .pin_entered(&pin, &host, now)
                .unwrap()
                .session
                .unwrap();
            for (_, query, _) in &t[1..3] {
                let step = session
                    .step(parse(query).request, &host, &mut rng, now)
                    .unwrap();
                session = step.session.unwrap();
            }
            assert_eq!(session.cancelled_by_client(), expected, "breaks: {breaks}");
        }

        // Unpaired after phase 1 or 2: not a PIN check.
        let mut rng = server_rng(&v);
        let session = started_with_salt(&t, salt_for(&pin, true));
        let session = session
            .pin_entered(&pin, &host, now)
            .unwrap()
            .session
            .unwrap();
        let step = session
            .step(parse(&t[1].1).request, &host, &mut rng, now)
            .unwrap();
        assert_eq!(
            step.session.unwrap().cancelled_by_client(),
            PairingEnd::PinRejected(Rejection::ClientGaveUp)
        );

        // A one-time PIN's attempt (Artemis, never moonlight-qt; a wrong
        // passphrase enters a random PIN) is never the bug.
        let mut rng = server_rng(&v);
        let q = parse(&t[0].1);
        let PairRequest::GetServerCert(mut g) = q.request else {
            panic!("phase 1 expected")
        };
        g.salt = salt_for(&pin, true);
        g.otpauth = Some([0; 32]);
        let session = PairingSession::start(q.unique_id, g);
        let mut session = session
            .pin_entered(&pin, &host, now)
            .unwrap()
            .session
            .unwrap();
        for (_, query, _) in &t[1..3] {
            let step = session
                .step(parse(query).request, &host, &mut rng, now)
                .unwrap();
            session = step.session.unwrap();
        }
        assert_eq!(
            session.cancelled_by_client(),
            PairingEnd::PinRejected(Rejection::ClientGaveUp)
        );

        // Phase 4 after a key mismatch: the recorded client's hash was made
        // under the recorded salt's key.
        let t = transcript(&v, "success");
        for (breaks, expected) in [
            (true, PairingEnd::MoonlightQtBug(Rejection::HashMismatch)),
            (false, PairingEnd::PinRejected(Rejection::HashMismatch)),
        ] {
            let mut rng = server_rng(&v);
            let session = started_with_salt(&t, salt_for(&pin, breaks));
            let mut session = session
                .pin_entered(&pin, &host, now)
                .unwrap()
                .session
                .unwrap();
            let mut effects = Vec::new();
            for (_, query, _) in &t[1..4] {
                let step = session
                    .step(parse(query).request, &host, &mut rng, now)
                    .unwrap();
                effects = step.effects;
                match step.session {
                    Some(next) => session = next,
                    None => break,
                }
            }
            let [Effect::Finished(outcome)] = &effects[..] else {
                panic!("unexpected effects {effects:?}")
            };
            assert_eq!(*outcome, expected, "breaks: {breaks}");
        }
    }
}
