//! What the core is fed and what it asks for: the host's settings, the
//! peer, the facts `hello` needs, read failures, and the [`Action`]s and
//! [`Effect`]s the driver carries out.

use punktfunk_certs::Denied;

use super::*;

/// What the host does with a device it does not know (§ 7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownDevices {
    /// Pairing required, knocks recorded: `connect` from an unknown device
    /// becomes a pending request the console can approve (`serve --native`).
    Knock,
    /// Pairing required, no knocks: `error{not_paired}` (`m3-host
    /// --require-pairing`, which has no console to approve anything).
    Refuse,
    /// DANGER: open mode. Any device that connects is stored as admitted
    /// via `open` and let in. Anyone on the network, including an attacker,
    /// gets a trusted session without a PIN or an approval; only for a fully
    /// trusted single-user network (`serve --native --open`).
    DangerAdmitOpen,
}

/// The host's side of the connection, fixed for its lifetime.
#[derive(Debug, Clone)]
pub struct HostSide {
    /// The host's display name, sent in `welcome`.
    pub name: DisplayName,
    /// The host certificate's fingerprint, sent in `welcome` and bound
    /// into pairing.
    pub fingerprint: Fingerprint,
    /// Policy for unknown devices.
    pub unknown_devices: UnknownDevices,
    /// The optional parts of the protocol this host speaks (§ 4.1):
    /// `console` only when the driver has a console door.
    pub features: Features,
}

/// What the TLS handshake established about the client.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Where the connection comes from.
    pub address: SocketAddr,
    /// The fingerprint of the certificate the client presented.
    pub fingerprint: Fingerprint,
    /// The § 6.2 exporter value of this TLS session.
    pub exporter: Exporter,
}

/// What the core asks about the host when `hello` arrives, and only what
/// the intent needs: a `connect` never takes a place in the pairing steps.
pub trait HelloFacts {
    /// What the client's certificate may do, if it may connect: paired at
    /// this door, enabled and not expired (`Trust::authorize`); or why not.
    fn authorize(&mut self) -> Result<Grant, Denied>;
    /// Lists this connection among those waiting for their `pake` (§ 6.5),
    /// if its source address and the host have room (§ 8.2). Nothing
    /// exclusive: the driver only counts it, until [`Effect::LeavePairing`]
    /// or the end of the connection.
    fn wait_for_pake(&mut self) -> bool;
    /// Whether pairing is armed right now for this password: the typed PIN
    /// (armed and not taken yet), or the pairing link's secret (`link`:
    /// the arming has not ended).
    fn is_armed(&mut self, link: bool) -> bool;
}

/// Why reading the next message failed, as far as the protocol cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadFailure {
    /// The peer closed the connection at a frame boundary.
    Closed,
    /// The transport failed.
    Broken,
    /// A frame was started but not finished in time (§ 8).
    TooSlow,
    /// A frame or message was refused (§ 3, § 4); the reason is sent back.
    Malformed(String),
    /// A `hello` of another protocol version whose other fields are not
    /// valid v1 (§ 4.1): still `unsupported_version`, not `bad_message`.
    UnsupportedVersion(u32),
}

/// Something the driver does against the trust service for the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// The trusted client connected: note it as seen (coarse, may write;
    /// keep it off the reply path).
    Touch,
    /// Store the client's certificate as a paired device, durably, then
    /// call [`HostConnection::on_stored`].
    Store {
        /// The name it goes by.
        name: DisplayName,
        /// How it was admitted.
        via: Via,
    },
    /// List the client as a request waiting for approval, then call
    /// [`HostConnection::on_knock_added`].
    AddKnock {
        /// The name the console shows.
        name: DisplayName,
    },
    /// Show `claimant` in the console as the device in the pairing
    /// exchange.
    BeginExchange(Claimant),
    /// Take the armed PIN out of the gate for `claimant` (§ 6.5), then call
    /// [`HostConnection::on_pin`].
    TakePin(Claimant),
    /// Get the arming's link secret from the gate for `claimant` (§ 12; no
    /// guess uses it up), then call [`HostConnection::on_pin`].
    UseLink(Claimant),
    /// `claimant` said `hello{intent: pair}` and sent no `pake` before its
    /// deadline (or went away): record who, so the console can name a
    /// device that keeps pairing busy.
    RecordStall(Claimant),
    /// The taken PIN paired this device (`Some`), or is spent without
    /// pairing (`None`: record `pin_rejected`). Emitted exactly once per
    /// taken PIN.
    ReportPin(Option<Fingerprint>),
    /// The connection left the pairing steps: end the exchange the console
    /// shows and give its place among the waiting connections back.
    LeavePairing,
    /// Wait until every audit entry queued so far is durable before
    /// carrying on with the next action.
    AwaitAudit,
    /// Carry out a console action for this device's session (§ 4.10),
    /// then call [`HostConnection::on_console_reply`].
    Console(crate::message::ConsoleRequest),
}

/// What the driver does next, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write this message.
    Send(Message),
    /// Run this effect.
    Effect(Effect),
    /// Close the connection; nothing follows.
    Close,
}
