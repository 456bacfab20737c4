//! The SPAKE2 + key-confirmation cores (docs/native-protocol.md § 6).
//!
//! Both sides are typestates: each state is a struct that a message
//! consumes, so a step cannot run twice or out of order, and SPAKE2 state is
//! never cloned or serialised.
//!
//! ```text
//! client                                         host
//! ClientPairing::start ── pake{msgA} ──────────▶ HostPairing::respond(pake) (PIN taken now)
//! ClientPairing::on_message ◀── pake{msgB} ────
//! ClientAwaitingConfirm ── confirm{cA} ─────────▶ HostPairing::on_message (cA checked)
//!                                                   → HostEffect::StoreDevice, durably
//! ClientAwaitingConfirm::on_message ◀ confirm{cB} ─ HostAwaitingStore::stored
//! → Paired { host }  (pin it)
//! ```

use std::fmt;
use std::marker::PhantomData;

use curve25519_dalek::edwards::CompressedEdwardsY;
use hkdf::Hkdf;
use hmac::{Hmac, Mac as _};
use punktfunk_identity::{ct_eq, Fingerprint};
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use spake2::{Ed25519Group, Identity, Password, Spake2};
use zeroize::Zeroizing;

use crate::message::{
    Confirm, DisplayName, ErrorCode, ErrorMessage, Message, Pake, MAC_LEN, PAKE_MSG_LEN,
};

/// TLS exporter label (§ 6.2): RFC 8446 § 7.5, no context, 32 bytes.
pub const EXPORTER_LABEL: &str = "EXPORTER-punktfunk-native-pair-v1";

/// Bytes taken from the TLS exporter (§ 6.2).
pub const EXPORTER_LEN: usize = 32;

/// First bytes of the transcript hash input (§ 6.3), NUL included.
pub const TRANSCRIPT_LABEL: &[u8] = b"punktfunk native pairing v1\0";

/// HKDF `info` for the client → host confirmation key (§ 6.4).
pub const CLIENT_CONFIRM_INFO: &[u8] = b"punktfunk native v1 client confirm";

/// HKDF `info` for the host → client confirmation key (§ 6.4).
pub const HOST_CONFIRM_INFO: &[u8] = b"punktfunk native v1 host confirm";

const SIDE_A: u8 = 0x41;
const SIDE_B: u8 = 0x42;

/// The 4-digit pairing PIN (§ 6.1: the password is its 4 ASCII digits):
/// the gate's own type, so the PIN the host takes from the gate goes into
/// SPAKE2 as it is.
pub use punktfunk_identity::Pin;

/// A pairing link's one-time secret (§ 12): the SPAKE2 password of a link
/// pairing, its 16 raw bytes.
pub use punktfunk_identity::LinkSecret;

/// The typed PIN or the link's secret, as the host's gate hands it out.
pub use punktfunk_identity::Secret;

/// What SPAKE2 may run with (§ 6.1 `pw`): the 4 ASCII digits of a typed
/// PIN, or the 16 bytes of a pairing link's secret.
pub trait PairingPassword {
    /// The password bytes.
    fn password(&self) -> &[u8];
}

impl PairingPassword for Pin {
    fn password(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PairingPassword for LinkSecret {
    fn password(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PairingPassword for Secret {
    fn password(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// A TLS exporter value (§ 6.2).
#[derive(Clone, PartialEq, Eq)]
pub struct Exporter(pub [u8; EXPORTER_LEN]);

impl fmt::Debug for Exporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Exporter(..)")
    }
}

/// What this TLS session binds the exchange to, as *this side* saw it (§ 6.2).
///
/// The shell fills it from the live TLS connection, never from messages:
/// `client` = SHA-256 of the client certificate's DER, `host` = SHA-256 of
/// the host certificate's DER, `exporter` = the § 6.2 exporter output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelBinding {
    /// Client certificate fingerprint (SPAKE2 identity A).
    pub client: Fingerprint,
    /// Host certificate fingerprint (SPAKE2 identity B).
    pub host: Fingerprint,
    /// TLS exporter value.
    pub exporter: Exporter,
}

/// Why a pairing exchange ended. [`PairingError::code`] is what goes on the
/// wire (§ 5); the exchange is over after any of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairingError {
    /// The peer sent a message this step does not accept.
    #[error("expected a `{expected}` message, the peer sent `{got}`")]
    Unexpected {
        /// What this step accepts.
        expected: &'static str,
        /// What arrived.
        got: &'static str,
    },
    /// The peer's SPAKE2 message is not a valid message for its side.
    #[error("the peer's SPAKE2 message is invalid: {0}")]
    BadPake(&'static str),
    /// Host side: the client's confirmation did not verify. The PIN was
    /// wrong or someone is in the middle; re-arm pairing and try again.
    #[error(
        "the client's confirmation did not verify: wrong PIN, or the connection was intercepted"
    )]
    PinRejected,
    /// Client side: the host's confirmation did not verify, so the host
    /// could not prove it knew the PIN on this exact connection.
    #[error("the host's confirmation did not verify: the connection may have been intercepted; do not trust this host")]
    HostConfirmationFailed,
    /// The peer ended the exchange with an `error` message.
    #[error("the peer refused: {}: {}", .0.code, .0.message)]
    Peer(ErrorMessage),
    /// A "cannot happen" in a crypto primitive; never a panic.
    #[error("internal error in {0}; this is a bug")]
    Unreachable(&'static str),
}

impl PairingError {
    /// The error code to report (sent by the host; shown by the client).
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Unexpected { .. } | Self::BadPake(_) => ErrorCode::BadMessage,
            Self::PinRejected => ErrorCode::PinRejected,
            Self::HostConfirmationFailed => ErrorCode::HostConfirmationFailed,
            Self::Peer(e) => e.code,
            Self::Unreachable(_) => ErrorCode::Internal,
        }
    }

    /// The `error` message a host sends for this failure before closing.
    /// `None` when the peer itself sent the error (nothing to answer).
    pub fn to_message(&self) -> Option<Message> {
        match self {
            Self::Peer(_) => None,
            _ => Some(Message::error(self.code(), &self.to_string())),
        }
    }
}

// ---------------------------------------------------------------- client

/// Client, step 1: `pake{msgA}` sent, waiting for the host's `pake{msgB}`.
pub struct ClientPairing {
    spake: Spake2<Ed25519Group>,
    binding: ChannelBinding,
    msg_a: [u8; PAKE_MSG_LEN],
}

/// Client, step 2: `confirm{cA}` sent, waiting for the host's `confirm{cB}`.
pub struct ClientAwaitingConfirm {
    host_key: ConfirmKey<HostToClient>,
    transcript: TranscriptHash,
    host: Fingerprint,
}

/// A finished pairing on the client: pin `host` in the known-hosts file
/// (§ 7.2).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "the client must pin the host fingerprint"]
pub struct Paired {
    /// The host certificate's fingerprint, as seen in this TLS session.
    pub host: Fingerprint,
}

impl ClientPairing {
    /// Starts SPAKE2 as side A after `welcome{status: pairing}` (§ 6.1).
    /// Send the returned message.
    pub fn start<R: RngCore + CryptoRng>(
        pin: &impl PairingPassword,
        binding: ChannelBinding,
        rng: &mut R,
    ) -> Result<(Self, Message), PairingError> {
        let (spake, msg) = Spake2::<Ed25519Group>::start_a_with_rng(
            &Password::new(pin.password()),
            &Identity::new(binding.client.as_bytes()),
            &Identity::new(binding.host.as_bytes()),
            rng,
        );
        let msg_a: [u8; PAKE_MSG_LEN] = msg
            .as_slice()
            .try_into()
            .map_err(|_| PairingError::Unreachable("spake2 message length"))?;
        let out = Message::Pake(Pake { msg: msg_a });
        Ok((
            Self {
                spake,
                binding,
                msg_a,
            },
            out,
        ))
    }

    /// Takes the host's `pake{msgB}`; returns the `confirm{cA}` to send.
    pub fn on_message(
        self,
        msg: Message,
    ) -> Result<(ClientAwaitingConfirm, Message), PairingError> {
        let msg_b = match msg {
            Message::Pake(p) => p.msg,
            other => return Err(unexpected("pake", other)),
        };
        check_pake(&msg_b, SIDE_B)?;
        let key = Zeroizing::new(
            self.spake
                .finish(&msg_b)
                .map_err(|e| PairingError::BadPake(spake_error(e)))?,
        );
        let transcript = TranscriptHash::new(&self.binding, &self.msg_a, &msg_b);
        let (client_key, host_key) = derive_keys(&key, &transcript)?;
        let mac = client_key.mac(&transcript)?;
        Ok((
            ClientAwaitingConfirm {
                host_key,
                transcript,
                host: self.binding.host,
            },
            Message::Confirm(Confirm { mac }),
        ))
    }
}

impl ClientAwaitingConfirm {
    /// Takes the host's `confirm{cB}` and checks it in constant time (§ 6.4).
    pub fn on_message(self, msg: Message) -> Result<Paired, PairingError> {
        let mac = match msg {
            Message::Confirm(c) => c.mac,
            other => return Err(unexpected("confirm", other)),
        };
        if self.host_key.verify(&self.transcript, &mac)? {
            Ok(Paired { host: self.host })
        } else {
            Err(PairingError::HostConfirmationFailed)
        }
    }
}

// ---------------------------------------------------------------- host

/// Host, step 1: `pake{msgB}` sent, waiting for the client's `confirm{cA}`.
///
/// Holds no PIN: it was used once in [`HostPairing::respond`] and dropped.
pub struct HostPairing {
    client_key: ConfirmKey<ClientToHost>,
    host_key: ConfirmKey<HostToClient>,
    transcript: TranscriptHash,
    device: VerifiedDevice,
}

/// Host, step 2: the client proved the PIN; the device must be stored
/// durably before [`HostAwaitingStore::stored`] releases `confirm{cB}`.
#[must_use = "store the device, then send the host confirmation"]
pub struct HostAwaitingStore {
    host_mac: [u8; MAC_LEN],
}

/// An effect the host shell must execute (§ 7.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEffect {
    /// Add (or replace) this device in the registry, admitted via `pin`,
    /// durably, then call [`HostAwaitingStore::stored`]. If storing fails,
    /// send `error{internal}` instead and close.
    StoreDevice(VerifiedDevice),
}

/// A device that proved knowledge of the PIN on this TLS session. Only
/// [`HostPairing::on_message`] builds one, after the constant-time check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedDevice {
    fingerprint: Fingerprint,
    device_name: DisplayName,
}

impl VerifiedDevice {
    /// The client certificate fingerprint from the TLS session.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The sanitised name the client gave in `hello`.
    pub fn device_name(&self) -> &DisplayName {
        &self.device_name
    }
}

impl HostPairing {
    /// Answers the client's `pake{msgA}` as SPAKE2 side B (§ 6.1).
    ///
    /// Calling contract (§ 7.1): the shell matches `Message::Pake(pake)`
    /// (anything else in this state is `bad_message`, PIN untouched), then
    /// takes `pin` out of the gate *right before* this call and never gives
    /// it back, whatever this returns: one online guess per arming.
    /// `device_name` is the one from this connection's `hello`. Send the
    /// returned message; on error send [`PairingError::to_message`] and
    /// report a failed pairing to the gate.
    pub fn respond<R: RngCore + CryptoRng>(
        pin: impl PairingPassword,
        binding: ChannelBinding,
        device_name: DisplayName,
        client_pake: Pake,
        rng: &mut R,
    ) -> Result<(Self, Message), PairingError> {
        let msg_a = client_pake.msg;
        check_pake(&msg_a, SIDE_A)?;
        let (spake, msg) = Spake2::<Ed25519Group>::start_b_with_rng(
            &Password::new(pin.password()),
            &Identity::new(binding.client.as_bytes()),
            &Identity::new(binding.host.as_bytes()),
            rng,
        );
        drop(pin);
        let msg_b: [u8; PAKE_MSG_LEN] = msg
            .as_slice()
            .try_into()
            .map_err(|_| PairingError::Unreachable("spake2 message length"))?;
        let key = Zeroizing::new(
            spake
                .finish(&msg_a)
                .map_err(|e| PairingError::BadPake(spake_error(e)))?,
        );
        let transcript = TranscriptHash::new(&binding, &msg_a, &msg_b);
        let (client_key, host_key) = derive_keys(&key, &transcript)?;
        Ok((
            Self {
                client_key,
                host_key,
                transcript,
                device: VerifiedDevice {
                    fingerprint: binding.client,
                    device_name,
                },
            },
            Message::Pake(Pake { msg: msg_b }),
        ))
    }

    /// Takes the client's `confirm{cA}` and verifies it in constant time
    /// (§ 6.4). On success, execute the effect, then call
    /// [`HostAwaitingStore::stored`]. On [`PairingError::PinRejected`], send
    /// `error{pin_rejected}` and report the failure to the gate.
    pub fn on_message(self, msg: Message) -> Result<(HostEffect, HostAwaitingStore), PairingError> {
        let mac = match msg {
            Message::Confirm(c) => c.mac,
            other => return Err(unexpected("confirm", other)),
        };
        if !self.client_key.verify(&self.transcript, &mac)? {
            return Err(PairingError::PinRejected);
        }
        let host_mac = self.host_key.mac(&self.transcript)?;
        Ok((
            HostEffect::StoreDevice(self.device),
            HostAwaitingStore { host_mac },
        ))
    }
}

impl HostAwaitingStore {
    /// Call once the device is durably stored; send the returned
    /// `confirm{cB}`. From then on the connection is a trusted session.
    pub fn stored(self) -> Message {
        Message::Confirm(Confirm { mac: self.host_mac })
    }
}

// ---------------------------------------------------------------- schedule

/// § 6.3: SHA-256 over the label, both fingerprints, both SPAKE2 messages
/// and the exporter value, all fixed-length.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct TranscriptHash(pub(crate) [u8; 32]);

impl TranscriptHash {
    pub(crate) fn new(
        binding: &ChannelBinding,
        msg_a: &[u8; PAKE_MSG_LEN],
        msg_b: &[u8; PAKE_MSG_LEN],
    ) -> Self {
        let mut h = Sha256::new();
        h.update(TRANSCRIPT_LABEL);
        h.update(binding.client.as_bytes());
        h.update(binding.host.as_bytes());
        h.update(msg_a);
        h.update(msg_b);
        h.update(binding.exporter.0);
        Self(h.finalize().into())
    }
}

/// Which way a confirmation key proves knowledge (§ 6.4). The type
/// parameter keeps the client-confirm key out of the host-confirm slot.
pub(crate) trait Direction {
    const INFO: &'static [u8];
}

/// Client → host: the key behind `cA`.
pub(crate) enum ClientToHost {}

/// Host → client: the key behind `cB`.
pub(crate) enum HostToClient {}

impl Direction for ClientToHost {
    const INFO: &'static [u8] = CLIENT_CONFIRM_INFO;
}

impl Direction for HostToClient {
    const INFO: &'static [u8] = HOST_CONFIRM_INFO;
}

/// A 32-byte confirmation key for one direction; zeroed on drop.
pub(crate) struct ConfirmKey<D: Direction> {
    pub(crate) key: Zeroizing<[u8; 32]>,
    _direction: PhantomData<D>,
}

impl<D: Direction> ConfirmKey<D> {
    /// HKDF-Expand(PRK, D::INFO, 32).
    fn expand(prk: &Hkdf<Sha256>) -> Result<Self, PairingError> {
        let mut key = Zeroizing::new([0u8; 32]);
        prk.expand(D::INFO, &mut key[..])
            .map_err(|_| PairingError::Unreachable("HKDF expand length"))?;
        Ok(Self {
            key,
            _direction: PhantomData,
        })
    }

    /// HMAC-SHA256(key, transcript hash).
    pub(crate) fn mac(&self, th: &TranscriptHash) -> Result<[u8; MAC_LEN], PairingError> {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.key[..])
            .map_err(|_| PairingError::Unreachable("HMAC key length"))?;
        m.update(&th.0);
        Ok(m.finalize().into_bytes().into())
    }

    /// Recomputes the MAC and compares in constant time.
    fn verify(&self, th: &TranscriptHash, received: &[u8; MAC_LEN]) -> Result<bool, PairingError> {
        let expected = Zeroizing::new(self.mac(th)?);
        Ok(ct_eq(&expected[..], received))
    }
}

/// § 6.4: PRK = HKDF-Extract(salt = TH, IKM = SPAKE2 key); one key per
/// direction.
pub(crate) fn derive_keys(
    spake_key: &[u8],
    th: &TranscriptHash,
) -> Result<(ConfirmKey<ClientToHost>, ConfirmKey<HostToClient>), PairingError> {
    let prk = Hkdf::<Sha256>::new(Some(&th.0), spake_key);
    Ok((ConfirmKey::expand(&prk)?, ConfirmKey::expand(&prk)?))
}

/// § 6.1: right side byte, and a point that decodes and is not of small
/// order (which would make the shared point independent of the peer's
/// secret).
fn check_pake(msg: &[u8; PAKE_MSG_LEN], side: u8) -> Result<(), PairingError> {
    if msg[0] != side {
        return Err(PairingError::BadPake(
            "wrong side byte (a reflected or misrouted message)",
        ));
    }
    let point = CompressedEdwardsY::from_slice(&msg[1..])
        .map_err(|_| PairingError::BadPake("wrong point length"))?
        .decompress()
        .ok_or(PairingError::BadPake("not a curve point"))?;
    // One point, one encoding: `decompress` also takes a y of p or more
    // (reduced mod p), which no honest peer sends (§ 6.1).
    if point.compress().as_bytes()[..] != msg[1..] {
        return Err(PairingError::BadPake("a non-canonical point encoding"));
    }
    if point.is_small_order() {
        return Err(PairingError::BadPake("a small-order point"));
    }
    Ok(())
}

fn spake_error(e: spake2::Error) -> &'static str {
    match e {
        spake2::Error::BadSide => "wrong side byte",
        spake2::Error::CorruptMessage => "not a curve point",
        spake2::Error::WrongLength => "wrong length",
    }
}

fn unexpected(expected: &'static str, got: Message) -> PairingError {
    match got {
        Message::Error(e) => PairingError::Peer(e),
        other => PairingError::Unexpected {
            expected,
            got: other.type_name(),
        },
    }
}
