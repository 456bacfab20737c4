//! A Moonlight client's side of GameStream pairing (moonlight-qt
//! `nvpairingmanager.cpp`), restated one phase at a time.
//!
//! ```text
//! client                                            host
//!   | getservercert(salt, client cert)  -- HTTP -->  |  held until the PIN is entered
//!   | <-- plaincert (host cert)                      |
//!   | clientchallenge(AES(challenge))   -- HTTP -->  |
//!   | <-- challengeresponse(AES(hash ‖ server challenge))
//!   | serverchallengeresp(AES(hash))    -- HTTP -->  |
//!   | <-- pairingsecret(secret ‖ host signature)     |  client checks signature, then hash
//!   | clientpairingsecret(secret ‖ sig) -- HTTP -->  |  host stores the device
//!   | pairchallenge                     -- HTTPS -->  |  with the new client certificate
//! ```
//!
//! [`Client`] builds each request's query parameters and reads each
//! reply's value; the AES key is the first 16 bytes of SHA-256(salt ‖ PIN)
//! and every encryption is AES-128-ECB without padding ([`aes_128_ecb`]).
//! Nothing here does I/O, so the same steps drive the sans-IO core, a raw
//! socket and the load generator's async connections.

use std::borrow::Borrow;

use openssl::sha::sha256;
use openssl::symm::{Cipher, Crypter};
use punktfunk_certs::{Fingerprint, Identity};
use rand::RngCore;

pub use openssl::symm::Mode;

/// What every stock Moonlight client sends as `uniqueid`.
pub const UNIQUE_ID: &str = "0123456789ABCDEF";

/// The parameters every Moonlight pairing request starts with, without
/// the random `uuid` (moonlight-qt sends `devicename=roth&updateState=1`
/// on every phase).
pub const PREFIX: &str = "uniqueid=0123456789ABCDEF&devicename=roth&updateState=1";

/// `PREFIX` and `rest`: a pairing query as the recorded vectors hold it
/// (without `uuid`).
pub fn query(rest: &str) -> String {
    format!("{PREFIX}&{rest}")
}

/// A pairing query as Moonlight sends it over the wire: `uniqueid`, a
/// fresh random `uuid`, then `devicename`, `updateState` and `rest`.
pub fn query_with_uuid(rest: &str) -> String {
    format!(
        "uniqueid={UNIQUE_ID}&uuid={}&devicename=roth&updateState=1&{rest}",
        hex::encode(random16())
    )
}

/// Sixteen bytes from the OS RNG.
pub fn random16() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

/// AES-128-ECB without padding, both directions: what GameStream uses for
/// the challenges. `data` must be whole blocks.
///
/// # Panics
/// On a key that is not 16 bytes or data that is not whole blocks (test
/// code: a wrong input is the test's bug).
pub fn aes_128_ecb(mode: Mode, key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut c = Crypter::new(Cipher::aes_128_ecb(), mode, key, None).expect("AES-128 key");
    c.pad(false);
    let mut out = vec![0; data.len() + 16];
    let n = c.update(data, &mut out).expect("whole AES blocks");
    let m = c.finalize(&mut out[n..]).expect("whole AES blocks");
    out.truncate(n + m);
    out
}

/// A random salt for which SHA-256(salt ‖ `entered`) has no zero byte in
/// its first 15 bytes. A failed pairing with a salt that has one is, to the
/// host, moonlight-qt's key bug (`moonlight_qt_bug`), not a wrong PIN; a
/// test of a wrong PIN `entered` on the host uses this salt, so that it
/// cannot meet that case by chance (1 in 18).
pub fn salt_clear_of_moonlight_qt_bug(entered: &str) -> [u8; 16] {
    loop {
        let salt = random16();
        let mut salted = salt.to_vec();
        salted.extend_from_slice(entered.as_bytes());
        if !sha256(&salted)[..15].contains(&0) {
            return salt;
        }
    }
}

/// The pairing key: the first 16 bytes of SHA-256(salt ‖ PIN).
pub fn pin_key(salt: &[u8; 16], pin: &str) -> [u8; 16] {
    let mut salted = salt.to_vec();
    salted.extend_from_slice(pin.as_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&sha256(&salted)[..16]);
    key
}

/// Why the client stops, or why a reply's value cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// The host's `pairingsecret` is not signed by the certificate it sent
    /// in phase 1 (moonlight-qt's words).
    #[error("MITM detected")]
    MitmDetected,
    /// The host's hash does not match: the PINs differ (moonlight-qt's words).
    #[error("Incorrect PIN")]
    IncorrectPin,
    /// A reply's value is not what the protocol says it is.
    #[error("malformed {field}: {why}")]
    Malformed {
        /// The XML element the value came from.
        field: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// A step that needs an earlier reply came before it.
    #[error("{0} before the reply it needs")]
    OutOfOrder(&'static str),
}

fn malformed(field: &'static str, why: impl ToString) -> StepError {
    StepError::Malformed {
        field,
        why: why.to_string(),
    }
}

/// One Moonlight client's pairing attempt: its identity, the PIN it shows,
/// its random salt, challenge and secret, and what it learnt from the
/// host's replies so far. It owns its identity (`Client<Identity>`) or
/// borrows one that outlives it (`Client<&Identity>`, the load generator's
/// identities are made before it measures).
pub struct Client<I = Identity> {
    identity: I,
    salt: [u8; 16],
    challenge: [u8; 16],
    secret: [u8; 16],
    aes_key: [u8; 16],
    server_cert: Option<openssl::x509::X509>,
    /// The host's hash from `challengeresponse` (the first 32 bytes).
    server_response: Vec<u8>,
    /// The host's challenge from `challengeresponse` (bytes 32 to 48);
    /// empty until read, so a test can send phase 3 out of order.
    server_challenge: Vec<u8>,
}

impl<I: Borrow<Identity>> Client<I> {
    /// An attempt with fixed inputs (recorded vectors).
    pub fn new(
        identity: I,
        pin: &str,
        salt: [u8; 16],
        challenge: [u8; 16],
        secret: [u8; 16],
    ) -> Self {
        Client {
            identity,
            aes_key: pin_key(&salt, pin),
            salt,
            challenge,
            secret,
            server_cert: None,
            server_response: Vec::new(),
            server_challenge: Vec::new(),
        }
    }

    /// An attempt with fresh random salt, challenge and secret.
    pub fn random(identity: I, pin: &str) -> Self {
        Client::new(identity, pin, random16(), random16(), random16())
    }

    /// The client's identity (certificate and key).
    pub fn identity(&self) -> &Identity {
        self.identity.borrow()
    }

    /// The fingerprint the host keys this client by.
    pub fn fingerprint(&self) -> Fingerprint {
        self.identity().fingerprint()
    }

    /// The client's pairing secret (phase 4 sends it with its signature).
    pub fn secret(&self) -> [u8; 16] {
        self.secret
    }

    /// Phase 1's parameters: `phrase=getservercert&salt=…&clientcert=…`.
    pub fn getservercert(&self) -> String {
        format!(
            "phrase=getservercert&salt={}&clientcert={}",
            hex::encode(self.salt),
            hex::encode(self.identity().cert_pem())
        )
    }

    /// Reads phase 1's `plaincert` (hex of the host's PEM certificate).
    pub fn read_plaincert(&mut self, plaincert: &str) -> Result<(), StepError> {
        let pem = hex::decode(plaincert).map_err(|e| malformed("plaincert", e))?;
        let cert = openssl::x509::X509::from_pem(&pem).map_err(|e| malformed("plaincert", e))?;
        self.server_cert = Some(cert);
        Ok(())
    }

    /// Phase 2's parameters: `clientchallenge=AES(challenge)`.
    pub fn clientchallenge(&self) -> String {
        let enc = aes_128_ecb(Mode::Encrypt, &self.aes_key, &self.challenge);
        format!("clientchallenge={}", hex::encode(enc))
    }

    /// Reads phase 2's `challengeresponse`: the host's hash and challenge,
    /// 48 bytes under the pairing key.
    pub fn read_challengeresponse(&mut self, response: &str) -> Result<(), StepError> {
        let enc = hex::decode(response).map_err(|e| malformed("challengeresponse", e))?;
        if enc.len() != 48 {
            return Err(malformed(
                "challengeresponse",
                format!("{} bytes, not 48", enc.len()),
            ));
        }
        let dec = aes_128_ecb(Mode::Decrypt, &self.aes_key, &enc);
        self.server_response = dec[..32].to_vec();
        self.server_challenge = dec[32..48].to_vec();
        Ok(())
    }

    /// Replaces the host's challenge with `forged`, for a test that sends
    /// phase 3 without having read phase 2's reply.
    pub fn forge_server_challenge(&mut self, forged: [u8; 16]) {
        self.server_challenge = forged.to_vec();
    }

    /// Phase 3's parameters: `serverchallengeresp=AES(SHA-256(server
    /// challenge ‖ client cert signature ‖ client secret))`.
    pub fn serverchallengeresp(&self) -> String {
        let mut data = self.server_challenge.clone();
        data.extend_from_slice(self.identity().cert().signature().as_slice());
        data.extend_from_slice(&self.secret);
        let enc = aes_128_ecb(Mode::Encrypt, &self.aes_key, &sha256(&data));
        format!("serverchallengeresp={}", hex::encode(enc))
    }

    /// The client's own checks of phase 3's `pairingsecret`, in
    /// moonlight-qt's order: the host's signature over its secret (else
    /// "MITM detected"), then the hash from phase 2 (else "Incorrect PIN").
    pub fn check_pairingsecret(&self, pairingsecret: &str) -> Result<(), StepError> {
        let secret = hex::decode(pairingsecret).map_err(|e| malformed("pairingsecret", e))?;
        if secret.len() < 16 {
            return Err(malformed("pairingsecret", "shorter than its secret"));
        }
        let (ss, sig) = secret.split_at(16);
        let server_cert = self
            .server_cert
            .as_ref()
            .ok_or(StepError::OutOfOrder("the pairingsecret check"))?;
        if !punktfunk_certs::verify_sha256(server_cert, ss, sig) {
            return Err(StepError::MitmDetected);
        }
        let mut data = self.challenge.to_vec();
        data.extend_from_slice(server_cert.signature().as_slice());
        data.extend_from_slice(ss);
        if sha256(&data).as_slice() != self.server_response.as_slice() {
            return Err(StepError::IncorrectPin);
        }
        Ok(())
    }

    /// Phase 4's parameters: `clientpairingsecret=secret ‖ signature`.
    pub fn clientpairingsecret(&self) -> String {
        let mut cps = self.secret.to_vec();
        cps.extend(
            self.identity()
                .sign_sha256(&self.secret)
                .expect("signing with the client's own key"),
        );
        format!("clientpairingsecret={}", hex::encode(cps))
    }
}

/// Phase 5's parameters (sent over HTTPS with the client certificate).
pub const PAIRCHALLENGE: &str = "phrase=pairchallenge";
