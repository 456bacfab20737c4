//! # punktfunk-identity: what a host and its clients both need
//!
//! - [`identity`]: a certificate and key of one's own (created once, never
//!   changed), and the crypto helpers both sides share.
//! - [`Fingerprint`]: the SHA-256 of a certificate's DER, the only name a
//!   device or a host has.
//! - [`name`]: the one rule for names people read ([`DisplayName`],
//!   [`Label`]).
//! - [`secret`]: the PIN and the pairing link's secret.
//! - [`fsutil`]: atomic, durable file writes and opens that follow no
//!   symlink.
//!
//! The host's trust service (`punktfunk-certs`) builds on this; a client
//! (and the Apple app's library) needs only this, not the gate, the
//! registry or the audit trail.

#![warn(missing_docs, unreachable_pub)]

pub mod fingerprint;
pub mod fsutil;
pub mod identity;
pub mod name;
pub mod secret;

pub use fingerprint::{Fingerprint, ParseFingerprintError};
pub use identity::{ct_eq, verify_sha256, HostIdentity, Identity, IdentityError};
pub use name::{DisplayName, Label, LabelError};
pub use secret::{BadPin, LinkSecret, Pin, Secret, LINK_SECRET_LEN};
