//! # punktfunk-certs: who is trusted, and how a device becomes trusted
//!
//! This crate owns the trust state of a punktfunk host, shared by every front
//! door (GameStream, native, console):
//!
//! - [`identity`]: the host's certificate and key (created once, never
//!   changed), client identities, and the crypto helpers both front doors
//!   share (signing, verifying, constant-time comparison).
//! - [`Fingerprint`]: the SHA-256 of a certificate's DER, the only name a
//!   device has.
//!
//! What it deliberately does not do: HTTP, XML, TLS sessions or any wire
//! format. Those live in `punktfunk-gamestream`, `punktfunk-native` and the
//! binary.

#![warn(missing_docs, unreachable_pub)]

mod fingerprint;
mod fsutil;
pub mod identity;

pub use fingerprint::{Fingerprint, ParseFingerprintError};
pub use identity::{ct_eq, verify_sha256, HostIdentity, Identity, IdentityError};
