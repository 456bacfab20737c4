//! # punktfunk-native: the native protocol, without I/O
//!
//! The wire format and the pairing cores of punktfunk's native front door
//! (the Apple app and the reference client), as specified in
//! `docs/native-protocol.md` (cited below as § N). Everything here is a pure
//! function of its inputs: bytes, decoded messages, a PIN, a
//! [`ChannelBinding`] taken from the TLS session, and an injected RNG.
//!
//! - [`frame`]: u32 big-endian length + payload, capped at 16 KiB *before*
//!   allocating ([`check_header`] for `read_exact` loops, [`FrameDecoder`]
//!   for "feed what arrived" loops).
//! - [`message`]: the typed v1 messages; [`Message::decode`] refuses unknown
//!   `type`s, bounds every string, sanitises names.
//! - [`handshake`]: the checks on `hello`, `welcome` and `decision`.
//! - [`pairing`]: SPAKE2 (Ed25519, client = side A, host = side B) plus
//!   HKDF-derived per-direction keys and HMAC key confirmation, as
//!   typestates ([`ClientPairing`] → [`ClientAwaitingConfirm`] → [`Paired`];
//!   [`HostPairing`] → [`HostAwaitingStore`]).
//! - [`link`]: the pairing link a QR code carries ([`PairingLink`], § 12):
//!   addresses, port, host fingerprint, PIN and host name in one URI.
//!
//! - [`connection`]: the host side of one connection (§ 7.1) as a state
//!   machine ([`HostConnection`]): fed messages, read failures, timeouts,
//!   trust events and effect results; emits messages, effects (take the
//!   PIN, store the device, list a knock …) and its next deadline.
//!
//! Around that core, two thin tokio + openssl shells:
//!
//! - [`endpoint`]: the host's TLS 1.3 endpoint ([`Endpoint`]), the driver of
//!   [`HostConnection`] against the shared [`punktfunk_certs::Trust`].
//! - [`client`]: the reference client ([`Client`]): identity, known hosts,
//!   pairing (with a PIN, or with a [`PairingLink`]), connecting, TOFU.
//!
//! ## What the core does not do
//!
//! The modules above `endpoint` and `client` have no sockets, no TLS, no
//! clock, no files, no registry and no gate. The
//! shell does the TLS handshake, computes the
//! [`ChannelBinding`] (both certificate fingerprints and the § 6.2 exporter
//! value), applies the [`timeouts`], asks the registry and gate what to
//! answer to a `hello`, executes [`HostEffect`]s, and closes connections.
//! The cores never log and never see the registry.
//!
//! ## Calling contract (host)
//!
//! [`HostConnection`] keeps this contract; a host drives it rather than
//! the pairing core directly. What it does, step by step:
//!
//! 1. After the TLS handshake, read frames with [`check_header`] (or
//!    [`FrameDecoder`]) and parse each with [`Message::decode`]. Any frame or
//!    parse error: send `error{bad_message}` (best effort) and close.
//! 2. First message: [`handshake::read_hello`]. Decide from the registry
//!    (client fingerprint), the gate and the mode (§ 7.1), then send
//!    [`handshake::welcome`] or [`Message::error`].
//! 3. `pairing`: when `Message::Pake(pake)` arrives (any other message:
//!    `bad_message`, PIN untouched), **take the PIN out of the gate right
//!    then** (not at `hello`), and call [`HostPairing::respond`] with both. The PIN is spent whatever happens next: one online guess per
//!    arming, and nothing an attacker can test offline, because the host
//!    never sends anything keyed before it has checked the client's
//!    confirmation (§ 6.5). If the gate has no PIN any more, send
//!    `error{not_armed}` (or `pairing_busy`) instead.
//! 4. Next message: [`HostPairing::on_message`]. `Ok((HostEffect::StoreDevice(device),
//!    awaiting))`: store the device durably (admitted via `pin`), then send
//!    [`HostAwaitingStore::stored`]; the connection is now a trusted
//!    session. `Err(e)`: send [`PairingError::to_message`] (for a wrong PIN
//!    that is `pin_rejected`), tell the gate the arming failed, close.
//!
//! ## Calling contract (client)
//!
//! Send [`handshake::hello`]; check the answer with
//! [`handshake::read_welcome`] (and the pin / TOFU rule of § 2). On
//! `pairing`: [`ClientPairing::start`] → send; feed the host's next message
//! to [`ClientPairing::on_message`] → send; feed the next to
//! [`ClientAwaitingConfirm::on_message`] → [`Paired`]: pin its `host`.
//!
//! ```text
//! client (side A)                                   host (side B)
//!   |  TLS 1.3, both certificates ----------------------> |
//!   |  hello{protocol:1, device_name, intent:"pair"} ---> |  registry/gate
//!   | <-- welcome{status:"pairing", host_name, host_fp}   |  (armed?)
//!   |  pake{msg: msgA} ---------------------------------> |  gate: take PIN
//!   | <---------------------------------- pake{msg: msgB} |  HostPairing::respond
//!   |  confirm{mac: cA} --------------------------------> |  verify cA (constant time)
//!   |                                                     |  StoreDevice, durably
//!   | <--------------------------------- confirm{mac: cB} |  stored()
//!   |  verify cB; pin host fingerprint                    |
//!   |  ... trusted session (ping/pong) ...                |
//! ```
//!
//! Typestates make misuse a compile error: a pairing state is consumed by
//! the message it accepts, [`HostEffect::StoreDevice`] carries a
//! [`VerifiedDevice`] only [`HostPairing::on_message`] can build after the
//! MAC check, and the two confirmation keys have distinct direction types.

#![warn(missing_docs, unreachable_pub)]

pub mod client;
#[cfg(feature = "host")]
pub mod connection;
#[cfg(feature = "host")]
pub mod endpoint;
pub mod frame;
pub mod handshake;
mod io;
pub mod link;
pub mod message;
pub mod pairing;

pub use client::{
    Client, ClientDirError, ClientError, Connected, Failure, HostAddr, HostAddrError, HostTrust,
    KnownHost, KnownHostsError, NewHost, Session, LINK_CONNECT_TIMEOUT,
    PAIRING_BUSY_RETRY_INTERVAL, PAIRING_BUSY_RETRY_WINDOW,
};
#[cfg(feature = "host")]
pub use connection::{HostConnection, UnknownDevices};
#[cfg(feature = "host")]
pub use endpoint::{Endpoint, EndpointConfig, EndpointError};
pub use frame::{check_header, encode_frame, FrameDecoder, FrameError, MAX_FRAME_LEN};
pub use handshake::HandshakeError;
pub use link::{is_linkable, LinkError, PairingLink, MAX_LINK_ADDRESSES, MAX_LINK_LEN};
pub use message::{
    Confirm, Decision, DisplayName, ErrorCode, ErrorMessage, Features, Grant, Hello, Intent,
    Message, MessageError, Pake, Status, Welcome, PROTOCOL_VERSION,
};
pub use pairing::{
    ChannelBinding, ClientAwaitingConfirm, ClientPairing, Exporter, HostAwaitingStore, HostEffect,
    HostPairing, LinkSecret, Paired, PairingError, PairingPassword, Pin, Secret, VerifiedDevice,
    EXPORTER_LABEL, EXPORTER_LEN,
};

/// The TCP port of the native endpoint (§ 2).
pub const DEFAULT_PORT: u16 = 47991;

/// ALPN protocol id the client offers and the host selects (§ 2).
pub const ALPN: &[u8] = b"punktfunk/1";

/// [`ALPN`] in wire format: one length byte, then the id.
pub(crate) const ALPN_WIRE: &[u8] = b"\x0bpunktfunk/1";

/// The deadlines the shell enforces (§ 8). On expiry the host sends
/// `error{timeout}` (best effort) and closes.
pub mod timeouts {
    use std::time::Duration;

    /// TCP accept to completed TLS handshake.
    pub const TLS_HANDSHAKE: Duration = Duration::from_secs(10);
    /// Completed TLS handshake to a complete `hello` frame.
    pub const HELLO: Duration = Duration::from_secs(10);
    /// Client side: each wait for the host's answer during pairing.
    pub const PAIRING_STEP: Duration = Duration::from_secs(30);
    /// Host side: each pairing step, `welcome{pairing}` → `pake` and host
    /// `pake` → `confirm`. Short, because a client that asks to pair already
    /// has the PIN (or the link); waiting for `pake` holds nothing.
    pub const HOST_PAIRING_STEP: Duration = Duration::from_secs(5);
    /// Time a single frame may take to arrive once its header has.
    pub const FRAME_BODY: Duration = Duration::from_secs(10);
    /// A session (or a waiting knock) with no frame from the client for
    /// this long is closed; clients `ping` every [`PING_INTERVAL`].
    pub const SESSION_IDLE: Duration = Duration::from_secs(90);
    /// How often a client keeps an idle session alive.
    pub const PING_INTERVAL: Duration = Duration::from_secs(30);
}

#[cfg(test)]
mod vectors;
