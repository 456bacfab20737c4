//! What an arming holds and hands out: the [`Armed`] state the console
//! shows, and the ticket an exchange holds while it uses the secret.

use super::*;

/// The current arming, as shown in the console: the typed PIN (one
/// guess) and the pairing link's secret (no guess uses it up).
#[derive(Debug, Clone)]
pub struct Armed {
    /// The PIN.
    pub pin: Pin,
    /// Whether an exchange took the PIN already (it failed, or still
    /// runs): the PIN is spent, the link still pairs.
    pub pin_taken: bool,
    /// The secret of this arming's pairing link.
    pub link: LinkSecret,
    /// When it stops being valid.
    pub expires: Instant,
    /// What the device it pairs may do (a guest invite); `None`: the
    /// host's default.
    pub access: Option<Access>,
}

/// The armed PIN (or the link's secret) handed to the exchange that uses
/// it. Hand it back to [`Gate::report`] with the result.
#[derive(Debug)]
pub struct TakenSecret {
    pub(super) secret: Secret,
    pub(super) arming: u64,
    /// Who uses the link's secret (shown once it paired).
    pub(super) by: Option<Claimant>,
    /// The arming's [`Armed::access`].
    pub(super) access: Option<Access>,
}

impl TakenSecret {
    /// What to run the exchange with.
    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// What the device it pairs may do ([`Armed::access`]).
    pub fn access(&self) -> Option<Access> {
        self.access
    }

    /// Whether this is the link's secret rather than the typed PIN.
    pub fn is_link(&self) -> bool {
        matches!(self.secret, Secret::Link(_))
    }
}
