//! Certificate identities: the host's (RSA-2048, the GameStream `plaincert`)
//! and clients' (the native reference client), plus the few crypto helpers
//! both front doors share: signing with the identity key, verifying with a
//! peer certificate, constant-time comparison.
//!
//! The host identity is created once, on first start, and afterwards loaded
//! byte-for-byte: Moonlight pins the exact certificate it received while
//! pairing (`plaincert`), so it must never change.

use std::io;
use std::path::{Path, PathBuf};

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private, Public};
use openssl::rsa::Rsa;
use openssl::sign::{Signer, Verifier};
use openssl::x509::extension::{BasicConstraints, SubjectKeyIdentifier};
use openssl::x509::{X509NameBuilder, X509};

use crate::fingerprint::Fingerprint;
use crate::fsutil::write_atomic;

/// Days a generated certificate is valid: 30 years. GameStream clients never
/// renew a pinned host certificate, so it must outlive the installation.
const VALIDITY_DAYS: u32 = 30 * 365;

/// File names inside a state dir.
pub const HOST_CERT_FILE: &str = "host.crt";
/// The host's private key, mode 0600.
pub const HOST_KEY_FILE: &str = "host.key";
/// The host's stable UUID (GameStream `uniqueid`), one line.
pub const HOST_ID_FILE: &str = "host.id";

/// Errors creating, loading or using an identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A file of the identity could not be read or written.
    #[error("cannot access {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A file exists but does not hold what it should.
    #[error("{} is not a valid {what}; restore it from a backup or move the state dir aside to create a new identity (paired clients will have to pair again)", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What it should hold.
        what: &'static str,
    },
    /// One of certificate and key exists without the other.
    #[error("{} exists but {} does not; refusing to create a new identity over a partial one", present.display(), missing.display())]
    Partial {
        /// The file that exists.
        present: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },
    /// The key in the key file does not belong to the certificate.
    #[error("{} does not belong to {}", key.display(), cert.display())]
    Mismatch {
        /// Key file.
        key: PathBuf,
        /// Certificate file.
        cert: PathBuf,
    },
    /// OpenSSL failed (out of memory, broken library).
    #[error("crypto library error: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
}

/// A certificate with its private key.
pub struct Identity {
    cert: X509,
    key: PKey<Private>,
    cert_der: Vec<u8>,
    cert_pem: String,
    fingerprint: Fingerprint,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Creates a new self-signed RSA-2048 X.509 v3 certificate, SHA-256
    /// signature, random 127-bit serial, valid for 30 years.
    pub fn generate(common_name: &str) -> Result<Self, IdentityError> {
        let key = PKey::from_rsa(Rsa::generate(2048)?)?;
        Self::self_signed(common_name, key)
    }

    /// Like [`Identity::generate`] but with an ECDSA P-256 key: much faster
    /// to create, for clients that do not speak GameStream (which needs RSA).
    pub fn generate_p256(common_name: &str) -> Result<Self, IdentityError> {
        let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1)?;
        let key = PKey::from_ec_key(openssl::ec::EcKey::generate(&group)?)?;
        Self::self_signed(common_name, key)
    }

    fn self_signed(common_name: &str, key: PKey<Private>) -> Result<Self, IdentityError> {
        let mut name = X509NameBuilder::new()?;
        name.append_entry_by_text("CN", common_name)?;
        let name = name.build();

        let mut b = X509::builder()?;
        b.set_version(2)?; // 2 means v3
        let mut serial = BigNum::new()?;
        serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
        // A zero serial is not allowed; the odds are 2^-127, but make it impossible.
        serial.add_word(1)?;
        b.set_serial_number(Asn1Integer::from_bn(&serial)?.as_ref())?;
        b.set_subject_name(&name)?;
        b.set_issuer_name(&name)?;
        b.set_pubkey(&key)?;
        // Start a day back so a client whose clock is slightly behind accepts it.
        let not_before = Asn1Time::from_unix(unix_now() - 86_400)?;
        b.set_not_before(&not_before)?;
        b.set_not_after(Asn1Time::days_from_now(VALIDITY_DAYS)?.as_ref())?;
        b.append_extension(BasicConstraints::new().critical().build()?)?;
        let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
        b.append_extension(ski)?;
        b.sign(&key, MessageDigest::sha256())?;
        Self::from_parts(b.build(), key)
    }

    /// Builds an identity from PEM certificate and PEM (PKCS#8 or PKCS#1) key.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, IdentityError> {
        let cert = X509::from_pem(cert_pem)?;
        let key = PKey::private_key_from_pem(key_pem)?;
        Self::from_parts(cert, key)
    }

    fn from_parts(cert: X509, key: PKey<Private>) -> Result<Self, IdentityError> {
        let cert_der = cert.to_der()?;
        let cert_pem = String::from_utf8_lossy(&cert.to_pem()?).into_owned();
        let fingerprint = Fingerprint::of_der(&cert_der);
        Ok(Self {
            cert,
            key,
            cert_der,
            cert_pem,
            fingerprint,
        })
    }

    /// Loads the identity from `cert_path`/`key_path`, or creates and stores a
    /// new one when neither exists. Returns whether it was created.
    pub fn load_or_create(
        cert_path: &Path,
        key_path: &Path,
        common_name: &str,
    ) -> Result<(Self, bool), IdentityError> {
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => Ok((Self::load(cert_path, key_path)?, false)),
            (false, false) => {
                let id = Self::generate(common_name)?;
                id.save(cert_path, key_path)?;
                Ok((id, true))
            }
            (true, false) => Err(IdentityError::Partial {
                present: cert_path.into(),
                missing: key_path.into(),
            }),
            (false, true) => Err(IdentityError::Partial {
                present: key_path.into(),
                missing: cert_path.into(),
            }),
        }
    }

    /// Loads an existing identity, checking that the key matches the certificate.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, IdentityError> {
        let cert_bytes = read(cert_path)?;
        let key_bytes = read(key_path)?;
        let cert = X509::from_pem(&cert_bytes).map_err(|_| IdentityError::Invalid {
            path: cert_path.into(),
            what: "PEM certificate",
        })?;
        let key = PKey::private_key_from_pem(&key_bytes).map_err(|_| IdentityError::Invalid {
            path: key_path.into(),
            what: "PEM private key",
        })?;
        if !cert.public_key()?.public_eq(&key) {
            return Err(IdentityError::Mismatch {
                key: key_path.into(),
                cert: cert_path.into(),
            });
        }
        let id = Self::from_parts(cert, key)?;
        // Keep the file's exact PEM text: it is what clients pinned.
        Ok(Self {
            cert_pem: String::from_utf8_lossy(&cert_bytes).into_owned(),
            ..id
        })
    }

    /// Writes certificate and key (both 0600, durably).
    pub fn save(&self, cert_path: &Path, key_path: &Path) -> Result<(), IdentityError> {
        let key_pem = self.key.private_key_to_pem_pkcs8()?;
        write_atomic(key_path, &key_pem).map_err(|source| IdentityError::Io {
            path: key_path.into(),
            source,
        })?;
        write_atomic(cert_path, self.cert_pem.as_bytes()).map_err(|source| IdentityError::Io {
            path: cert_path.into(),
            source,
        })
    }

    /// The certificate.
    pub fn cert(&self) -> &X509 {
        &self.cert
    }

    /// The private key.
    pub fn key(&self) -> &PKey<Private> {
        &self.key
    }

    /// DER bytes of the certificate.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// PEM text of the certificate, exactly as stored.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// SHA-256 of the certificate's DER.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// Signs `data` with the identity key, SHA-256 (PKCS#1 v1.5 for RSA).
    pub fn sign_sha256(&self, data: &[u8]) -> Result<Vec<u8>, IdentityError> {
        let mut signer = Signer::new(MessageDigest::sha256(), &self.key)?;
        signer.update(data)?;
        Ok(signer.sign_to_vec()?)
    }
}

/// Verifies a SHA-256 signature made by the key of `cert`. Any failure,
/// including a malformed signature, is `false`.
pub fn verify_sha256(cert: &X509, data: &[u8], signature: &[u8]) -> bool {
    let Ok(public): Result<PKey<Public>, _> = cert.public_key() else {
        return false;
    };
    let Ok(mut verifier) = Verifier::new(MessageDigest::sha256(), &public) else {
        return false;
    };
    verifier.verify_oneshot(signature, data).unwrap_or(false)
}

/// Compares two secrets-derived byte strings in constant time (for equal
/// lengths; a length difference is not secret and returns early).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && openssl::memcmp::eq(a, b)
}

/// The host's identity plus its stable GameStream `uniqueid`.
#[derive(Debug)]
pub struct HostIdentity {
    /// Certificate and key.
    pub identity: Identity,
    /// Stable host UUID, lowercase hyphenated form.
    pub uuid: String,
    /// Whether this start created the identity.
    pub created: bool,
}

impl HostIdentity {
    /// Loads the host identity from `dir`, creating it on first start.
    pub fn load_or_create(dir: &Path, host_name: &str) -> Result<Self, IdentityError> {
        let (identity, created) = Identity::load_or_create(
            &dir.join(HOST_CERT_FILE),
            &dir.join(HOST_KEY_FILE),
            &format!("punktfunk host {host_name}"),
        )?;
        let id_path = dir.join(HOST_ID_FILE);
        let uuid = if id_path.exists() {
            let text = read(&id_path)?;
            let text = String::from_utf8_lossy(&text).trim().to_owned();
            uuid::Uuid::parse_str(&text).map_err(|_| IdentityError::Invalid {
                path: id_path.clone(),
                what: "host UUID",
            })?;
            text
        } else {
            let uuid = uuid::Uuid::new_v4().hyphenated().to_string();
            write_atomic(&id_path, format!("{uuid}\n").as_bytes()).map_err(|source| {
                IdentityError::Io {
                    path: id_path.clone(),
                    source,
                }
            })?;
            uuid
        };
        Ok(Self {
            identity,
            uuid,
            created,
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, IdentityError> {
    crate::fsutil::read(path).map_err(|source| IdentityError::Io {
        path: path.into(),
        source,
    })
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    #[cfg(unix)]
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generated_certificate_has_the_promised_shape() {
        let id = Identity::generate("test").unwrap();
        let cert = id.cert();
        assert_eq!(cert.version(), 2);
        assert_eq!(
            cert.signature_algorithm().object().nid(),
            openssl::nid::Nid::SHA256WITHRSAENCRYPTION
        );
        assert_eq!(cert.public_key().unwrap().bits(), 2048);
        let in_20_years = Asn1Time::days_from_now(20 * 366).unwrap();
        assert!(cert.not_after() > in_20_years);
        assert_eq!(Fingerprint::of_der(id.cert_der()), id.fingerprint());
        let other = Identity::generate("test").unwrap();
        assert_ne!(
            cert.serial_number().to_bn().unwrap(),
            other.cert().serial_number().to_bn().unwrap()
        );
    }

    #[test]
    fn p256_identity_signs_and_verifies() {
        let id = Identity::generate_p256("client").unwrap();
        assert_eq!(id.cert().version(), 2);
        let sig = id.sign_sha256(b"data").unwrap();
        assert!(verify_sha256(id.cert(), b"data", &sig));
        assert!(!verify_sha256(id.cert(), b"other", &sig));
    }

    #[test]
    fn sign_verify_and_tamper() {
        let id = Identity::generate("t").unwrap();
        let sig = id.sign_sha256(b"data").unwrap();
        assert!(verify_sha256(id.cert(), b"data", &sig));
        assert!(!verify_sha256(id.cert(), b"datb", &sig));
        assert!(!verify_sha256(id.cert(), b"data", &sig[1..]));
        assert!(!verify_sha256(id.cert(), b"data", b""));
    }

    #[test]
    fn host_identity_is_created_once_then_loaded_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let first = HostIdentity::load_or_create(dir.path(), "box").unwrap();
        assert!(first.created);
        let crt = fs::read(dir.path().join(HOST_CERT_FILE)).unwrap();
        let key = fs::read(dir.path().join(HOST_KEY_FILE)).unwrap();
        #[cfg(unix)]
        assert_eq!(
            fs::metadata(dir.path().join(HOST_KEY_FILE))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        let second = HostIdentity::load_or_create(dir.path(), "box").unwrap();
        assert!(!second.created);
        assert_eq!(second.uuid, first.uuid);
        assert_eq!(second.identity.fingerprint(), first.identity.fingerprint());
        assert_eq!(second.identity.cert_pem().as_bytes(), &crt[..]);
        assert_eq!(fs::read(dir.path().join(HOST_CERT_FILE)).unwrap(), crt);
        assert_eq!(fs::read(dir.path().join(HOST_KEY_FILE)).unwrap(), key);
    }

    #[test]
    fn partial_or_mismatched_identity_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        HostIdentity::load_or_create(dir.path(), "box").unwrap();
        let other = Identity::generate("other").unwrap();
        let key_path = dir.path().join(HOST_KEY_FILE);
        fs::write(&key_path, other.key().private_key_to_pem_pkcs8().unwrap()).unwrap();
        assert!(matches!(
            HostIdentity::load_or_create(dir.path(), "box"),
            Err(IdentityError::Mismatch { .. })
        ));
        fs::remove_file(&key_path).unwrap();
        assert!(matches!(
            HostIdentity::load_or_create(dir.path(), "box"),
            Err(IdentityError::Partial { .. })
        ));
        fs::write(&key_path, b"garbage").unwrap();
        assert!(matches!(
            HostIdentity::load_or_create(dir.path(), "box"),
            Err(IdentityError::Invalid { .. })
        ));
    }

    #[test]
    fn ct_eq_compares() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
