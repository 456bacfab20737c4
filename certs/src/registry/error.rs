//! What goes wrong with the registry, in words a user can act on.

use std::io;
use std::path::PathBuf;

use crate::fingerprint::Fingerprint;

use super::{FrontDoor, FORMAT_VERSION, MAX_CERT_PEM_BYTES};

/// Errors of the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The file exists but cannot be read.
    #[error("cannot read the trust registry {}: {source}; fix its permissions or restore it from a backup", path.display())]
    Unreadable {
        /// The registry file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The file is not a valid registry.
    #[error("the trust registry {} is corrupt ({reason}); it was left untouched: restore it from a backup, or move it aside to start with no paired devices", path.display())]
    Corrupt {
        /// The registry file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file was written by a newer (or unknown) version.
    #[error("the trust registry {} has format version {found}, this build reads version {FORMAT_VERSION}; run a newer punktfunk", path.display())]
    UnknownVersion {
        /// The registry file.
        path: PathBuf,
        /// The version found.
        found: u64,
    },
    /// Writing the new registry failed; nothing changed.
    #[error("cannot save the trust registry {}: {source}; nothing was changed", path.display())]
    Write {
        /// The registry file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// No device with this fingerprint.
    #[error("no paired device has fingerprint {0}")]
    NotFound(Fingerprint),
    /// A device's certificate is not acceptable.
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    /// Something that cannot happen did (an invariant of this code broke);
    /// nothing was changed.
    #[error("internal error: {0}; nothing was changed, please report this")]
    Unreachable(&'static str),
    /// The certificate is already paired through the other front door. A
    /// device is trusted only at the door it was admitted through, and the
    /// registry keeps one entry (one door) per certificate, so the second
    /// door's pairing is refused rather than moving the device.
    #[error("this certificate is already paired with this host as a {} device; a device is trusted only as what it paired as: remove it in the console first, or give this client its own certificate", paired_at.door_name())]
    PairedAtOtherDoor {
        /// The door it is paired at.
        paired_at: FrontDoor,
    },
}

/// What is wrong with a device's certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// Not a DER X.509 certificate.
    #[error("the certificate is not valid DER")]
    NotDer,
    /// OpenSSL could not write it as PEM.
    #[error("the certificate cannot be encoded as PEM")]
    CannotEncode,
    /// Over [`MAX_CERT_PEM_BYTES`].
    #[error("the certificate is larger than {MAX_CERT_PEM_BYTES} bytes")]
    TooLarge,
    /// Not one PEM `CERTIFICATE` block.
    #[error("the certificate is not valid PEM")]
    NotPem,
    /// The fingerprint stored with it is not its SHA-256.
    #[error("fingerprint {} does not match its certificate", .0.short())]
    FingerprintMismatch(Fingerprint),
}

/// Fewest hex digits [`Registry::resolve`] accepts.
pub const MIN_PREFIX_DIGITS: usize = 4;

/// Why a fingerprint prefix names no single device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// Not hex, or too short or long.
    #[error(
        "{0:?} is not a fingerprint or a prefix of one (at least {MIN_PREFIX_DIGITS} hex digits)"
    )]
    Invalid(String),
    /// No paired device has it.
    #[error(
        "no paired device has a fingerprint starting with {0}; `punktfunk devices list` shows them"
    )]
    Unknown(String),
    /// More than one device has it.
    #[error("{prefix} matches {count} devices; give more digits")]
    Ambiguous {
        /// What was given.
        prefix: String,
        /// How many devices match.
        count: usize,
    },
}
