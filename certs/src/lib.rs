//! # punktfunk-certs: who is trusted, and how a device becomes trusted
//!
//! This crate owns the trust state of a punktfunk host, shared by every front
//! door (GameStream, native, console):
//!
//! - [`identity`], [`Fingerprint`], [`name`], [`secret`], [`fsutil`]: the
//!   primitives a client shares, from `punktfunk-identity` (re-exported).
//! - [`registry`]: the durable allow-list of paired devices. One write path,
//!   [`Registry::modify`]; lookups never block. [`Trust::registry`] hands
//!   out only a read-only view ([`Devices`]): every change goes through a
//!   `Trust` method that records it.
//! - [`gate`]: the armed PIN (single use) and the requests waiting for
//!   approval or a PIN. Pure: time and randomness are arguments.
//! - [`otp`]: one-time PINs for Moonlight-family clients (Apollo-compatible).
//! - [`Trust`]: registry + gate behind one handle, with their events on one
//!   broadcast channel.
//! - [`door`]: the contract front doors call: [`Trust::authorize`] →
//!   [`Grant`], [`Trust::knock`] → [`Refusal`], [`Trust::take_pin`] →
//!   [`PinAttempt`], [`Trust::collect_pin`] → [`CollectedPin`],
//!   [`Trust::store_device`].
//! - [`Trust::run_expiry`]: the one expiry timer.
//! - [`TokenBucket`]: the one token bucket (the audit trail's noise budget,
//!   the console's login budget).
//! - [`operator`]: what the console, the CLI or the host decides about
//!   pairing (arm, deny, block, …), each with its audit entry.
//! - [`audit`]: the durable trail of every trust decision (`audit.jsonl`).
//! - [`StateDir`]: the locked directory all of it lives in.
//!
//! What it deliberately does not do: HTTP, XML, TLS sessions or any wire
//! format. Those live in `punktfunk-gamestream`, `punktfunk-native` and the
//! binary.
//!
//! Calling contract for a front door ([`door`]):
//!
//! 1. On every authenticated request (or session), authorise the peer
//!    certificate's fingerprint with [`Trust::authorize`] for this door
//!    (never by name or id), and note the device as seen with
//!    [`Trust::seen`].
//! 2. To list a device that asks to be let in, [`Trust::knock`], and map
//!    its [`Refusal`] to the wire; wait for its fate with
//!    [`Trust::request_update`].
//! 3. To pair with the armed PIN, take it with [`Trust::take_pin`] at the
//!    moment the exchange commits to a guess, and on success
//!    [`PinAttempt::store`] the device, which is durable *before* the
//!    client is told; any other end of the attempt drops it, which spends
//!    the PIN and records `pin_rejected`.
//! 4. Run [`Trust::run_expiry`] once: it is the only expiry timer.
//! 5. Watch [`Trust::subscribe`] for [`TrustEvent::DeviceRemoved`] and end
//!    that device's connections.

#![warn(missing_docs, unreachable_pub)]

pub mod audit;
pub mod bucket;
pub mod door;
mod events;
mod expiry;
pub mod gate;
pub mod grant;
pub mod operator;
pub mod otp;
pub mod registry;
mod statedir;
mod trust;
mod vocab;

// The primitives a client shares, re-exported so that the host's crates
// name them in one place.
pub use punktfunk_identity::{fingerprint, fsutil, identity, name, secret};

pub use audit::{AuditError, AuditLog, Door, Entry, Event, Outcome};
pub use bucket::TokenBucket;
pub use door::{
    AccessUpdate, AccessWatch, CollectedPin, Denied, ExchangeShown, Grant, OtpProof, PairWith,
    PinAttempt, PinFailure, Refusal, StoreError,
};
pub use events::TrustEvent;
pub use fingerprint::{Fingerprint, ParseFingerprintError};
pub use gate::{
    AddressKey, Claimant, Gate, GateConfig, GateError, LinkSecret, Needs, PendingId,
    PendingRequest, Pin, RequestEnd, Secret,
};
pub use grant::{Access, AccessChange, May, Permissions, Preset, Until};
pub use identity::{ct_eq, verify_sha256, HostIdentity, Identity, IdentityError};
pub use name::{DisplayName, Label, LabelError};
pub use registry::{
    CertificateError, Device, Devices, FrontDoor, Registry, RegistryError, ResolveError, Via,
};
pub use statedir::{StateDir, StateDirError, LOCK_FILE};
pub use trust::{Actor, Admitted, Clock, GateView, RequestUpdate, SystemClock, Trust, TrustError};
