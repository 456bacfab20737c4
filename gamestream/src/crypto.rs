//! The fixed-input AES/SHA steps of GameStream pairing (generation 7,
//! SHA-256), each a pure function so it can be checked against vectors
//! recorded from the real client (`tests/data/vectors.json`).
//!
//! Notation as in `research/gamestream.md` §3.2: K = AES-128 key, E/D =
//! AES-128-ECB without padding, H = SHA-256, sig(cert) = the raw signature
//! bytes of an X.509 certificate.
//!
//! Signing with the host key and verifying with a client certificate are not
//! here: they are `punktfunk_certs::Identity::sign_sha256` and
//! `punktfunk_certs::verify_sha256`, shared with the native front door.

use std::fmt;

use openssl::error::ErrorStack;
use openssl::sha::Sha256;
use openssl::symm::{Cipher, Crypter, Mode};
use openssl::x509::{X509Ref, X509};
use punktfunk_certs::Pin;

/// The AES-128 key of one pairing attempt.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct AesKey([u8; 16]);

impl fmt::Debug for AesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AesKey(..)")
    }
}

impl AesKey {
    /// K = first 16 bytes of H(salt ‖ PIN as ASCII), as every client derives
    /// it for generation-7 hosts (moonlight-qt `NvPairingManager::saltPin`
    /// and the SHA-256 branch of its key derivation).
    pub(crate) fn derive(salt: &[u8; 16], pin: &Pin) -> Self {
        let mut h = Sha256::new();
        h.update(salt);
        h.update(pin.as_bytes());
        let digest = h.finish();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        Self(key)
    }

    /// A key as given (a client's, in tests).
    #[cfg(test)]
    pub(crate) fn from_bytes(key: [u8; 16]) -> Self {
        Self(key)
    }

    #[cfg(test)]
    pub(crate) fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// E_K(data), ECB, no padding. `N` must be a multiple of 16.
    pub(crate) fn encrypt<const N: usize>(&self, data: &[u8; N]) -> Result<[u8; N], ErrorStack> {
        self.run(Mode::Encrypt, data)
    }

    /// D_K(data), ECB, no padding. `N` must be a multiple of 16.
    pub(crate) fn decrypt<const N: usize>(&self, data: &[u8; N]) -> Result<[u8; N], ErrorStack> {
        self.run(Mode::Decrypt, data)
    }

    fn run<const N: usize>(&self, mode: Mode, data: &[u8; N]) -> Result<[u8; N], ErrorStack> {
        const { assert!(N.is_multiple_of(16) && N > 0) };
        let cipher = Cipher::aes_128_ecb();
        let mut c = Crypter::new(cipher, mode, &self.0, None)?;
        c.pad(false);
        // OpenSSL wants room for one extra block even without padding.
        let mut out = vec![0u8; N + cipher.block_size()];
        let mut n = c.update(data, &mut out)?;
        n += c.finalize(&mut out[n..])?;
        let mut result = [0u8; N];
        match out.get(..N) {
            Some(bytes) if n == N => result.copy_from_slice(bytes),
            // Without padding, N block-aligned bytes in give N bytes out.
            _ => return Err(ErrorStack::get()),
        }
        Ok(result)
    }
}

/// Whether moonlight-qt derives a wrong key from this salt and PIN.
///
/// moonlight-qt (`NvPairingManager::pair` in `nvpairingmanager.cpp`) makes
/// its key with `QByteArray(hash.constData())` and `truncate(16)`: the
/// `const char*` constructor copies H(salt ‖ PIN) only up to its first zero
/// byte, and OpenSSL then reads 16 bytes from that buffer anyway. So its key
/// is the hash up to the zero, the zero (the string's terminator), then
/// whatever memory follows; with the first zero at byte 15 the terminator
/// sits where the hash's own zero was and the key is right. A zero among
/// bytes 0..15 (exclusive) therefore makes a wrong key: about 1 attempt in
/// 18 (1 − (255/256)^15 ≈ 5.7 %), each a correct PIN that fails as "Incorrect
/// PIN". Other clients (moonlight-embedded, -android, -ios) copy 16 bytes and
/// pair.
///
/// The host can only know that this key was at risk, not verify a reply
/// under the broken key: the bytes after the terminator are uninitialised
/// memory in the client, and everything it encrypts under the key is random
/// (CC) or hashes its random secret (CS).
pub(crate) fn moonlight_qt_key_is_wrong(salt: &[u8; 16], pin: &Pin) -> bool {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(pin.as_bytes());
    h.finish()[..15].contains(&0)
}

/// sig(cert): the certificate's own signature bytes (the signatureValue BIT
/// STRING), which the pairing hashes bind instead of a fingerprint.
pub(crate) fn cert_signature(cert: &X509Ref) -> &[u8] {
    cert.signature().as_slice()
}

/// H(parts[0] ‖ parts[1] ‖ …).
pub(crate) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in parts {
        h.update(part);
    }
    h.finish()
}

/// Proof that phase 4 verified both the client's hash and its signature.
/// Only [`verify_client`] makes one, so a device cannot be stored before
/// the checks pass.
#[derive(Debug)]
pub(crate) struct ClientVerified(());

/// Why phase 4 did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// H(SC ‖ sig(client cert) ‖ CS) differs from the hash the client sent
    /// in phase 3: the client derived a different key (wrong PIN) or the
    /// exchange was tampered with.
    HashMismatch,
    /// The signature over CS does not verify with the certificate the
    /// client sent in phase 1.
    BadSignature,
    /// The client called `/unpair` after the PIN was entered: moonlight-qt
    /// does that when its own check of phase 3 fails, i.e. a wrong PIN.
    ClientGaveUp,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.why())
    }
}

impl Rejection {
    /// What went wrong, in the words for a PIN that may have been wrong.
    pub(crate) fn why(&self) -> &'static str {
        match self {
            Self::HashMismatch => "the client's hash does not match (wrong PIN?)",
            Self::BadSignature => "the client's signature does not verify",
            Self::ClientGaveUp => "the client gave up after the PIN was entered (wrong PIN?)",
        }
    }

    /// What this failure means once the PIN is known to have been right
    /// (a one-time PIN whose `otpauth` matched): never "wrong PIN".
    pub(crate) fn after_right_pin(&self) -> &'static str {
        match self {
            Self::HashMismatch => "the client's answer does not match",
            Self::BadSignature => "the client's signature does not verify",
            Self::ClientGaveUp => "the client gave up; try again on the device",
        }
    }
}

/// Phase-4 check, in Sunshine's order (`clientpairingsecret` in
/// src/nvhttp.cpp): first the hash, compared in constant time, and only if it
/// matches the signature.
pub(crate) fn verify_client(
    client_cert: &X509,
    server_challenge: &[u8; 16],
    expected_hash: &[u8; 32],
    client_secret: &[u8; 16],
    signature: &[u8],
) -> Result<ClientVerified, Rejection> {
    let hash = sha256(&[server_challenge, cert_signature(client_cert), client_secret]);
    if !punktfunk_certs::ct_eq(&hash, expected_hash) {
        return Err(Rejection::HashMismatch);
    }
    if !punktfunk_certs::verify_sha256(client_cert, client_secret, signature) {
        return Err(Rejection::BadSignature);
    }
    Ok(ClientVerified(()))
}

#[cfg(test)]
mod tests {
    use openssl::x509::X509;

    use super::*;
    use crate::testdata::Vectors;

    #[test]
    fn pin_accepts_exactly_four_digits() {
        assert!("0000".parse::<Pin>().is_ok());
        for bad in ["", "123", "12345", "12a4", "١٢٣٤", " 123"] {
            assert!(bad.parse::<Pin>().is_err(), "{bad:?}");
        }
        assert_eq!(format!("{:?}", "1234".parse::<Pin>().unwrap()), "Pin(****)");
    }

    /// A salt and PIN whose H(salt ‖ PIN) has a zero at `at` (a few tries
    /// of a counter salt find one).
    fn salt_with_zero_at(pin: &Pin, at: usize) -> [u8; 16] {
        (0u64..)
            .map(|i| {
                let mut salt = [0u8; 16];
                salt[..8].copy_from_slice(&i.to_le_bytes());
                salt
            })
            .find(|salt| {
                let h = sha256(&[salt, pin.as_bytes()]);
                h[..at].iter().all(|&b| b != 0) && h[at] == 0
            })
            .unwrap()
    }

    #[test]
    fn moonlight_qt_key_is_wrong_exactly_with_a_zero_in_the_first_15_bytes() {
        let pin: Pin = "5170".parse().unwrap();
        for at in [0, 7, 14] {
            let salt = salt_with_zero_at(&pin, at);
            assert!(moonlight_qt_key_is_wrong(&salt, &pin), "zero at {at}");
        }
        // The first zero at byte 15: the string's terminator lands on it.
        let salt = salt_with_zero_at(&pin, 15);
        assert!(!moonlight_qt_key_is_wrong(&salt, &pin));
        // A vector salt without any zero in its first 16 bytes.
        let v = Vectors::load();
        let salt: [u8; 16] = v.arr("salt");
        assert!(!sha256(&[&salt, v.pin().as_bytes()])[..16].contains(&0));
        assert!(!moonlight_qt_key_is_wrong(&salt, &v.pin()));
    }

    #[test]
    fn key_derivation_matches_the_client() {
        let v = Vectors::load();
        let key = AesKey::derive(&v.arr("salt"), &v.pin());
        assert_eq!(key.as_bytes(), &v.arr::<16>("aes_key"));
        let wrong = AesKey::derive(&v.arr("salt"), &v.str("wrong_pin").parse().unwrap());
        assert_eq!(wrong.as_bytes(), &v.arr::<16>("wrong_pin_aes_key"));
    }

    #[test]
    fn aes_matches_the_client_and_round_trips() {
        let v = Vectors::load();
        let key = AesKey::derive(&v.arr("salt"), &v.pin());
        let cc: [u8; 16] = v.arr("client_challenge");
        let enc = key.encrypt(&cc).unwrap();
        assert_eq!(enc, v.arr::<16>("encrypted_client_challenge"));
        assert_eq!(key.decrypt(&enc).unwrap(), cc);
        let hash: [u8; 32] = v.arr("client_hash");
        assert_eq!(
            key.encrypt(&hash).unwrap(),
            v.arr::<32>("encrypted_client_hash")
        );
    }

    #[test]
    fn hashes_and_signatures_match_the_client() {
        let v = Vectors::load();
        let host = X509::from_pem(crate::testdata::HOST_CRT.as_bytes()).unwrap();
        let client = X509::from_pem(crate::testdata::CLIENT_CRT.as_bytes()).unwrap();
        assert_eq!(cert_signature(&host), v.bytes("host_cert_signature"));
        assert_eq!(cert_signature(&client), v.bytes("client_cert_signature"));
        let h1 = sha256(&[
            &v.bytes("client_challenge"),
            cert_signature(&host),
            &v.bytes("server_secret"),
        ]);
        assert_eq!(h1.to_vec(), v.bytes("server_response_hash"));
        let ch = sha256(&[
            &v.bytes("server_challenge"),
            cert_signature(&client),
            &v.bytes("client_secret"),
        ]);
        assert_eq!(ch.to_vec(), v.bytes("client_hash"));
        let host_id = crate::testdata::host_identity();
        assert_eq!(
            host_id.sign_sha256(&v.bytes("server_secret")).unwrap(),
            v.bytes("server_secret_signature")
        );
    }

    #[test]
    fn verify_client_checks_hash_then_signature() {
        let v = Vectors::load();
        let client = X509::from_pem(crate::testdata::CLIENT_CRT.as_bytes()).unwrap();
        let sc: [u8; 16] = v.arr("server_challenge");
        let hash: [u8; 32] = v.arr("client_hash");
        let cs: [u8; 16] = v.arr("client_secret");
        let sig = v.bytes("client_secret_signature");
        assert!(verify_client(&client, &sc, &hash, &cs, &sig).is_ok());

        let mut bad_hash = hash;
        bad_hash[0] ^= 1;
        assert_eq!(
            verify_client(&client, &sc, &bad_hash, &cs, &sig).unwrap_err(),
            Rejection::HashMismatch
        );
        let mut bad_sig = sig.clone();
        bad_sig[10] ^= 1;
        assert_eq!(
            verify_client(&client, &sc, &hash, &cs, &bad_sig).unwrap_err(),
            Rejection::BadSignature
        );
        // A valid signature, but by the host key instead of the client's.
        let host_sig = crate::testdata::host_identity().sign_sha256(&cs).unwrap();
        assert_eq!(
            verify_client(&client, &sc, &hash, &cs, &host_sig).unwrap_err(),
            Rejection::BadSignature
        );
    }
}
