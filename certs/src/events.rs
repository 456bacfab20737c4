//! Trust events: what changed, broadcast to whoever watches (the console's
//! live view, open native connections that must end on revocation, a
//! GameStream request waiting for its PIN).

use crate::fingerprint::Fingerprint;
use crate::vocab::{PendingId, RequestEnd};

/// Something changed in the registry or the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustEvent {
    /// A device was stored (new, or replacing the entry with its fingerprint).
    DeviceAdded {
        /// The device.
        fingerprint: Fingerprint,
        /// Whether an entry with this fingerprint existed before.
        replaced: bool,
    },
    /// A device was revoked: its connections must end now.
    DeviceRemoved {
        /// The device.
        fingerprint: Fingerprint,
    },
    /// What a device may do changed: its permissions, enabled or not, its
    /// expiry (set, or reached). Its doors authorise it again and end
    /// what it may no longer do.
    AccessChanged {
        /// The device.
        fingerprint: Fingerprint,
        /// The change took its access away (disabled, or its end reached):
        /// what hangs on that access (a console session signed in on it)
        /// ends for good, whatever a later change gives back.
        ended: bool,
    },
    /// A device's label or last-seen time changed.
    DeviceChanged {
        /// The device.
        fingerprint: Fingerprint,
    },
    /// Pairing was armed with a new PIN.
    Armed,
    /// Pairing was disarmed (by the console, or because the PIN expired).
    Disarmed,
    /// The armed PIN was taken by a pairing exchange.
    PinTaken,
    /// The exchange that took the PIN finished.
    PinAttemptFinished {
        /// Whether the device was paired.
        paired: bool,
    },
    /// A native pairing exchange started or ended.
    ExchangeChanged,
    /// A one-time PIN was made, tried, used, cancelled or expired.
    OtpChanged,
    /// An address was blocked, or its block ended.
    BlocksChanged,
    /// A device is waiting for approval or for its PIN.
    PendingAdded {
        /// The request.
        id: PendingId,
    },
    /// A waiting request's deadline moved (its door keeps it for its next
    /// step).
    PendingChanged {
        /// The request.
        id: PendingId,
    },
    /// The console entered the PIN for a waiting request.
    PinEntered {
        /// The request.
        id: PendingId,
    },
    /// A waiting request ended.
    PendingRemoved {
        /// The request.
        id: PendingId,
        /// How it ended.
        outcome: RequestEnd,
    },
    /// Audit entries up to `seq` are on disk.
    Audited {
        /// The newest one.
        seq: u64,
    },
}
