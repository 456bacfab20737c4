//! The messages of protocol v1 (docs/native-protocol.md § 4 "Messages").
//!
//! Decoding is two-layered: serde reads the frame into a private wire enum
//! whose `type` tag must be known, then every field is checked (lengths,
//! base64, hex, enum values) into the public types below. Nothing past
//! [`Message::decode`] sees an unchecked string.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use punktfunk_identity::Fingerprint;
use serde::{Deserialize, Serialize};

use crate::frame::{encode_frame, FrameError};

/// The protocol version this crate speaks (§ 4.1 `hello.protocol`).
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest `device_name` / `host_name` accepted on the wire, in bytes (§ 4.2).
pub const MAX_NAME_BYTES: usize = 256;

/// Longest name kept after sanitising, in characters (§ 4.2).
pub const MAX_NAME_CHARS: usize = punktfunk_identity::name::MAX_NAME_CHARS;

/// Largest `error.message` accepted on the wire, in bytes (§ 4.8).
pub const MAX_ERROR_MESSAGE_BYTES: usize = 1024;

/// Longest error message kept after sanitising, in characters (§ 4.8).
pub const MAX_ERROR_MESSAGE_CHARS: usize = 256;

/// Length of a SPAKE2 message: side byte + compressed Edwards point (§ 6.1).
pub const PAKE_MSG_LEN: usize = 33;

/// Length of a confirmation MAC (HMAC-SHA256, § 6.4).
pub const MAC_LEN: usize = 32;

/// Most entries accepted in `hello.features` / `welcome.features` (§ 4.1).
pub const MAX_FEATURES: usize = 16;

/// Most names accepted in a grant's `permissions` (§ 4.9).
pub const MAX_PERMISSIONS: usize = 32;

/// Longest feature or permission name accepted, in bytes (§ 4.1, § 4.9).
pub const MAX_TOKEN_BYTES: usize = 32;

/// Why a frame's payload is not a v1 message. The reply is always
/// `error{code: bad_message}` and the connection closes (§ 4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Not one JSON object with a known `type` and the fields that type needs.
    #[error("the peer sent a frame that is not a valid v1 message: {0}")]
    Json(String),
    /// A field is present but out of bounds or badly encoded.
    #[error("the peer sent a `{ty}` message whose `{field}` is invalid: {why}")]
    Field {
        /// Message type.
        ty: &'static str,
        /// Field name.
        field: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A `hello` for a protocol version other than this one. Its other
    /// fields are not checked: a later version may change every one of them
    /// (§ 4.1), and such a client should learn the version is the problem.
    #[error("the client speaks protocol version {got}; this host speaks version {PROTOCOL_VERSION}; update the app or the host")]
    UnsupportedVersion {
        /// The version the `hello` named.
        got: u32,
    },
}

/// One decoded v1 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Client → host, first message of every connection (§ 4.1).
    Hello(Hello),
    /// Host → client answer to `hello` (§ 4.3).
    Welcome(Welcome),
    /// SPAKE2 message, client (side A) then host (side B) (§ 4.4).
    Pake(Pake),
    /// Key confirmation MAC, client first, host second (§ 4.5).
    Confirm(Confirm),
    /// Host → client: the console's answer to a knock (§ 4.6).
    Decision(Decision),
    /// Keep-alive request (§ 4.7).
    Ping,
    /// Keep-alive answer (§ 4.7).
    Pong,
    /// Either side, just before closing (§ 4.8).
    Error(ErrorMessage),
    /// Host → client: what the device may do now (§ 4.9); only to a client
    /// whose `welcome.features` holds `grant`.
    Grant(Grant),
    /// Client → host: a console action (§ 4.10), in a session of a client
    /// whose `welcome.features` holds `console`.
    Console(ConsoleRequest),
    /// Host → client: the answer to one `console` message (§ 4.10).
    ConsoleReply(ConsoleReply),
    /// Host → client: the requests waiting for the console, whenever they
    /// change, to a signed-in session that asked to watch them (§ 4.10).
    Waiting(Waiting),
}

/// `hello{protocol, device_name, intent}` (§ 4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The version the client speaks. Any u32 parses, so a host can answer
    /// `unsupported_version` rather than `bad_message`.
    pub protocol: u32,
    /// The client's sanitised self-chosen name (attacker-controlled).
    pub device_name: DisplayName,
    /// What the client wants.
    pub intent: Intent,
    /// What the client offers beyond v1's first messages (§ 4.1).
    pub features: Features,
}

/// The optional parts of the protocol a side speaks (`hello.features`, and
/// the host's answer in `welcome.features`, § 4.1). Unknown names are
/// ignored, so a later one can be offered to any host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Features {
    /// `grant`: the host sends a `grant` message when a session opens
    /// without `welcome{trusted|open}` and whenever the grant changes
    /// (§ 4.9).
    pub grant: bool,
    /// `console`: the session may carry console actions (§ 4.10).
    pub console: bool,
}

impl Features {
    /// Every feature this version knows.
    pub const ALL: Features = Features {
        grant: true,
        console: true,
    };

    /// What both sides speak.
    pub fn both(self, other: Features) -> Features {
        Features {
            grant: self.grant && other.grant,
            console: self.console && other.console,
        }
    }

    fn to_wire(self) -> Option<Vec<String>> {
        let names: Vec<String> = [(self.grant, "grant"), (self.console, "console")]
            .into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, name)| name.to_owned())
            .collect();
        (!names.is_empty()).then_some(names)
    }

    fn from_wire(ty: &'static str, names: Option<Vec<String>>) -> Result<Self, MessageError> {
        let names = names.unwrap_or_default();
        if names.len() > MAX_FEATURES {
            return Err(field(ty, "features", "more than 16 entries"));
        }
        let mut features = Features::default();
        for name in &names {
            check_token(ty, "features", name)?;
            match name.as_str() {
                "grant" => features.grant = true,
                "console" => features.console = true,
                _ => {}
            }
        }
        Ok(features)
    }
}

/// Longest `console` password accepted, in bytes (the web console's cap).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Longest request id, label or PIN in a `console` message, in bytes.
pub const MAX_CONSOLE_FIELD_BYTES: usize = 256;

/// Most waiting requests one `waiting` message lists (the gate's cap).
pub const MAX_WAITING: usize = 256;

/// `console{ref, op, …}` (§ 4.10): one console action, answered by the
/// `console_reply` with the same `ref`.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsoleRequest {
    /// The client's number for it, echoed in the reply.
    pub reference: u32,
    /// What it asks.
    pub action: ConsoleAction,
}

/// The console actions (`console.op`, § 4.10).
#[derive(Clone, PartialEq, Eq)]
pub enum ConsoleAction {
    /// `login{password}`: a console session for this device.
    Login {
        /// The console password (never logged).
        password: String,
    },
    /// `logout`: ends this device's console session.
    Logout,
    /// `watch`: send `waiting` now and whenever the waiting requests change.
    Watch,
    /// `approve{id, label?, grant?}`.
    Approve {
        /// The waiting request.
        id: String,
        /// The label its device gets.
        label: Option<String>,
        /// The grant picker, as the console API's `Grant` (checked there).
        grant: Option<serde_json::Value>,
    },
    /// `deny{id}`.
    Deny {
        /// The waiting request.
        id: String,
    },
    /// `arm{grant?}`: the PIN and the pairing link.
    Arm {
        /// The grant picker.
        grant: Option<serde_json::Value>,
    },
    /// `disarm`.
    Disarm,
    /// `enter_pin{id, pin, label?}`: a Moonlight request's PIN.
    EnterPin {
        /// The waiting request.
        id: String,
        /// The PIN Moonlight shows.
        pin: String,
        /// The label its device gets.
        label: Option<String>,
    },
    /// `devices`: the paired devices.
    Devices,
    /// `revoke{fingerprint}`.
    Revoke {
        /// The device to remove.
        fingerprint: Fingerprint,
    },
}

impl ConsoleAction {
    /// The wire name (`console.op`).
    pub fn op(&self) -> &'static str {
        match self {
            Self::Login { .. } => "login",
            Self::Logout => "logout",
            Self::Watch => "watch",
            Self::Approve { .. } => "approve",
            Self::Deny { .. } => "deny",
            Self::Arm { .. } => "arm",
            Self::Disarm => "disarm",
            Self::EnterPin { .. } => "enter_pin",
            Self::Devices => "devices",
            Self::Revoke { .. } => "revoke",
        }
    }
}

/// Its op, and never the password or a PIN.
impl fmt::Debug for ConsoleAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Approve { id, label, .. } => write!(f, "approve({id}, {label:?})"),
            Self::Deny { id } => write!(f, "deny({id})"),
            Self::EnterPin { id, .. } => write!(f, "enter_pin({id})"),
            Self::Revoke { fingerprint } => write!(f, "revoke({})", fingerprint.short()),
            other => f.write_str(other.op()),
        }
    }
}

/// Never prints the password or a PIN.
impl fmt::Debug for ConsoleRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Console({} {})", self.reference, self.action.op())
    }
}

/// `console_reply{ref, ok | error}` (§ 4.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleReply {
    /// The `ref` of the `console` message it answers.
    pub reference: u32,
    /// The outcome: as the console's HTTP API answers the same action
    /// (`docs/console-api.json`), or why not.
    pub outcome: Result<serde_json::Value, ConsoleError>,
}

/// Why a console action was refused; the session goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleError {
    /// `not_signed_in`, `wrong_password`, `rate_limited`, or a code of the
    /// console API's `Error` (`unknown_request`, `bad_request` …).
    pub code: String,
    /// For people; never parse it.
    pub message: String,
}

/// `waiting{requests}` (§ 4.10): every request waiting for the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// As the console API's `Pending` objects.
    pub requests: Vec<serde_json::Value>,
}

/// What a device may do and until when, as the host tells it (§ 4.9): in
/// `welcome{trusted|open}` and in the `grant` message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Grant {
    /// Permission names, as `docs/streamer-api.md` lists them
    /// (`input_controller`, `list`, `view`, `launch` …), in the host's
    /// order. A name a client does not know is a permission it does not
    /// know, never one it does.
    pub permissions: Vec<String>,
    /// Unix seconds at which the device's access ends; `None`: no end.
    pub expires_at: Option<u64>,
}

impl Grant {
    /// Whether the grant names `permission`.
    pub fn may(&self, permission: &str) -> bool {
        self.permissions.iter().any(|p| p == permission)
    }

    fn to_wire(&self) -> WireGrant {
        WireGrant {
            permissions: self.permissions.clone(),
            expires_at: self.expires_at,
        }
    }

    fn from_wire(ty: &'static str, wire: WireGrant) -> Result<Self, MessageError> {
        if wire.permissions.len() > MAX_PERMISSIONS {
            return Err(field(ty, "permissions", "more than 32 entries"));
        }
        for p in &wire.permissions {
            check_token(ty, "permissions", p)?;
        }
        Ok(Grant {
            permissions: wire.permissions,
            expires_at: wire.expires_at,
        })
    }
}

/// A feature or permission name: 1–32 bytes of `a-z`, `0-9` and `_`.
fn check_token(ty: &'static str, f: &'static str, name: &str) -> Result<(), MessageError> {
    let ok = (1..=MAX_TOKEN_BYTES).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(field(ty, f, "a name that is not 1-32 of a-z, 0-9 and _"))
    }
}

/// `hello.intent` (§ 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Intent {
    /// Use an existing trust (or knock, or be let in on an open host).
    Connect,
    /// Run the PIN ceremony with the typed PIN (`intent: pair`, no `via`
    /// or `via: pin`).
    Pair,
    /// Run the same ceremony with a pairing link's secret as the password
    /// (`intent: pair, via: link`, § 12.3).
    PairLink,
}

impl Intent {
    /// Whether this is a pairing ceremony (either password).
    pub fn is_pair(self) -> bool {
        matches!(self, Intent::Pair | Intent::PairLink)
    }
}

/// `welcome{status, host_name, host_fingerprint}` (§ 4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// What happens next on this connection.
    pub status: Status,
    /// The host's sanitised display name.
    pub host_name: DisplayName,
    /// The host certificate's fingerprint as the host knows it; the client
    /// checks it against the certificate it saw in TLS (§ 4.3).
    pub host_fingerprint: Fingerprint,
    /// The features of `hello.features` the host speaks on this
    /// connection (§ 4.1).
    pub features: Features,
    /// What the device may do, with `status` `trusted` or `open` (§ 4.9);
    /// `None` from a host older than grants, and with the other statuses.
    pub grant: Option<Grant>,
}

/// `welcome.status` (§ 4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// The client certificate is in the registry; the session is open.
    Trusted,
    /// The host lets unknown devices in (open mode); the session is open.
    Open,
    /// A knock was recorded; wait for `decision`.
    ApprovalPending,
    /// Pairing is armed; send `pake` next.
    Pairing,
}

/// `pake{msg}`: one SPAKE2 message, 33 bytes (§ 4.4, § 6.1).
#[derive(Clone, PartialEq, Eq)]
pub struct Pake {
    /// Side byte (`0x41` 'A' or `0x42` 'B') followed by a compressed point.
    pub msg: [u8; PAKE_MSG_LEN],
}

/// `confirm{mac}`: a key confirmation MAC (§ 4.5, § 6.4).
#[derive(Clone, PartialEq, Eq)]
pub struct Confirm {
    /// HMAC-SHA256 output.
    pub mac: [u8; MAC_LEN],
}

/// `decision{outcome}` (§ 4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// The console approved the device; the session is open.
    Approved,
    /// The console dismissed the knock; the host closes.
    Denied,
    /// Nobody decided in time; the host closes.
    Expired,
}

/// `error{code, message}` (§ 4.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorMessage {
    /// Machine-readable reason.
    pub code: ErrorCode,
    /// Human-readable detail, sanitised; never parse it.
    pub message: String,
}

/// The closed set of error codes (§ 5).
///
/// Codes marked "client-local" are never sent on the wire by a v1 host; a
/// client uses them to report its own refusals with the same vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `intent: pair` but pairing is not armed (or the PIN is already spent).
    NotArmed,
    /// The client's confirmation MAC did not verify: wrong PIN or a MITM.
    PinRejected,
    /// Another pairing exchange holds the PIN, or too many knocks wait.
    PairingBusy,
    /// The console denied the knock (client-local; on the wire it is
    /// `decision{outcome: denied}`).
    Denied,
    /// The knock or the armed PIN expired (client-local for knocks); on the
    /// wire, the device's access expired (at `hello`, or ending a session).
    Expired,
    /// The device is unknown and this host neither pairs it now nor records
    /// knocks.
    NotPaired,
    /// The device was revoked while connected.
    Revoked,
    /// The host's owner disabled the device (at `hello`, or ending a
    /// session); it stays paired.
    Disabled,
    /// `hello.protocol` is not a version this host speaks.
    UnsupportedVersion,
    /// The frame or message was malformed or out of order.
    BadMessage,
    /// A step took too long.
    Timeout,
    /// The host failed internally (e.g. storing the device); try again.
    Internal,
    /// Client-local: the host's certificate differs from the pinned one.
    HostIdentityChanged,
    /// Client-local: the host's confirmation MAC did not verify.
    HostConfirmationFailed,
}

impl ErrorCode {
    /// Every code, in documentation order.
    pub const ALL: [ErrorCode; 14] = [
        Self::NotArmed,
        Self::PinRejected,
        Self::PairingBusy,
        Self::Denied,
        Self::Expired,
        Self::NotPaired,
        Self::Revoked,
        Self::Disabled,
        Self::UnsupportedVersion,
        Self::BadMessage,
        Self::Timeout,
        Self::Internal,
        Self::HostIdentityChanged,
        Self::HostConfirmationFailed,
    ];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotArmed => "not_armed",
            Self::PinRejected => "pin_rejected",
            Self::PairingBusy => "pairing_busy",
            Self::Denied => "denied",
            Self::Expired => "expired",
            Self::NotPaired => "not_paired",
            Self::Revoked => "revoked",
            Self::Disabled => "disabled",
            Self::UnsupportedVersion => "unsupported_version",
            Self::BadMessage => "bad_message",
            Self::Timeout => "timeout",
            Self::Internal => "internal",
            Self::HostIdentityChanged => "host_identity_changed",
            Self::HostConfirmationFailed => "host_confirmation_failed",
        }
    }

    /// Parses the wire spelling; `None` for a code this version does not know.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name shown to people, sanitised and bounded by the one name rule of
/// every door (§ 4.2, `punktfunk_identity::name`).
pub use punktfunk_identity::DisplayName;

impl fmt::Debug for Pake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pake({})", hex_prefix(&self.msg))
    }
}

impl fmt::Debug for Confirm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Confirm({})", hex_prefix(&self.mac))
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

impl ErrorMessage {
    /// An error with its message sanitised and bounded like a received one.
    pub fn new(code: ErrorCode, message: &str) -> Self {
        Self {
            code,
            message: punktfunk_identity::name::sanitize(message, MAX_ERROR_MESSAGE_CHARS),
        }
    }
}

impl Message {
    /// The `type` tag, for logs and "expected X, got Y" errors.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Hello(_) => "hello",
            Self::Welcome(_) => "welcome",
            Self::Pake(_) => "pake",
            Self::Confirm(_) => "confirm",
            Self::Decision(_) => "decision",
            Self::Ping => "ping",
            Self::Pong => "pong",
            Self::Error(_) => "error",
            Self::Grant(_) => "grant",
            Self::Console(_) => "console",
            Self::ConsoleReply(_) => "console_reply",
            Self::Waiting(_) => "waiting",
        }
    }

    /// Shorthand for an `error` message.
    pub fn error(code: ErrorCode, message: &str) -> Self {
        Self::Error(ErrorMessage::new(code, message))
    }

    /// Parses one frame payload (§ 4). Never panics; any failure means
    /// `bad_message`, except [`MessageError::UnsupportedVersion`].
    pub fn decode(payload: &[u8]) -> Result<Self, MessageError> {
        // A valid `hello` of another version decodes (the host's
        // `read_hello` answers it); an invalid one is told apart here.
        serde_json::from_slice::<Wire>(payload)
            .map_err(|e| MessageError::Json(e.to_string()))
            .and_then(Self::from_wire)
            .map_err(|e| other_version(payload).unwrap_or(e))
    }

    /// The JSON payload (no length prefix), compact, `type` first.
    pub fn to_json(&self) -> Result<Vec<u8>, FrameError> {
        // An enum of strings (no maps with non-string keys, no custom
        // Serialize impls): cannot fail.
        serde_json::to_vec(&self.to_wire())
            .map_err(|_| FrameError::Unreachable("a message could not be serialised"))
    }

    /// The complete frame: length prefix + JSON (§ 3).
    pub fn to_frame(&self) -> Result<Vec<u8>, FrameError> {
        encode_frame(&self.to_json()?)
    }

    fn to_wire(&self) -> Wire {
        match self {
            Self::Hello(h) => Wire::Hello {
                protocol: h.protocol,
                device_name: h.device_name.as_str().to_owned(),
                intent: match h.intent {
                    Intent::Connect => "connect",
                    Intent::Pair | Intent::PairLink => "pair",
                }
                .to_owned(),
                // Absent for the typed PIN: v1 PIN frames are unchanged.
                via: (h.intent == Intent::PairLink).then(|| "link".to_owned()),
                features: h.features.to_wire(),
            },
            Self::Welcome(w) => Wire::Welcome {
                status: match w.status {
                    Status::Trusted => "trusted",
                    Status::Open => "open",
                    Status::ApprovalPending => "approval_pending",
                    Status::Pairing => "pairing",
                }
                .to_owned(),
                host_name: w.host_name.as_str().to_owned(),
                host_fingerprint: w.host_fingerprint.to_hex(),
                features: w.features.to_wire(),
                grant: w.grant.as_ref().map(Grant::to_wire),
            },
            Self::Pake(p) => Wire::Pake {
                msg: BASE64.encode(p.msg),
            },
            Self::Confirm(c) => Wire::Confirm {
                mac: BASE64.encode(c.mac),
            },
            Self::Decision(d) => Wire::Decision {
                outcome: match d {
                    Decision::Approved => "approved",
                    Decision::Denied => "denied",
                    Decision::Expired => "expired",
                }
                .to_owned(),
            },
            Self::Ping => Wire::Ping {},
            Self::Pong => Wire::Pong {},
            Self::Error(e) => Wire::Error {
                code: e.code.as_str().to_owned(),
                message: e.message.clone(),
            },
            Self::Grant(g) => Wire::Grant(g.to_wire()),
            Self::Console(c) => console_to_wire(c),
            Self::ConsoleReply(r) => {
                let (ok, error) = match &r.outcome {
                    Ok(value) => (Some(value.clone()), None),
                    Err(e) => (
                        None,
                        Some(WireError {
                            code: e.code.clone(),
                            message: e.message.clone(),
                        }),
                    ),
                };
                Wire::ConsoleReply {
                    reference: r.reference,
                    ok,
                    error,
                }
            }
            Self::Waiting(w) => Wire::Waiting {
                requests: w.requests.clone(),
            },
        }
    }

    fn from_wire(wire: Wire) -> Result<Self, MessageError> {
        Ok(match wire {
            Wire::Hello {
                protocol,
                device_name,
                intent,
                via,
                features,
            } => Self::Hello(Hello {
                protocol,
                device_name: name("hello", "device_name", &device_name)?,
                intent: intent_from_wire(&intent, via.as_deref())?,
                features: Features::from_wire("hello", features)?,
            }),
            Wire::Welcome {
                status,
                host_name,
                host_fingerprint,
                features,
                grant,
            } => Self::Welcome(Welcome {
                status: match status.as_str() {
                    "trusted" => Status::Trusted,
                    "open" => Status::Open,
                    "approval_pending" => Status::ApprovalPending,
                    "pairing" => Status::Pairing,
                    _ => return Err(field("welcome", "status", "not a v1 status")),
                },
                host_name: name("welcome", "host_name", &host_name)?,
                host_fingerprint: host_fingerprint.parse().map_err(|_| {
                    field("welcome", "host_fingerprint", "not 64 hexadecimal digits")
                })?,
                features: Features::from_wire("welcome", features)?,
                grant: grant.map(|g| Grant::from_wire("welcome", g)).transpose()?,
            }),
            Wire::Pake { msg } => Self::Pake(Pake {
                msg: base64_exact("pake", "msg", &msg)?,
            }),
            Wire::Confirm { mac } => Self::Confirm(Confirm {
                mac: base64_exact("confirm", "mac", &mac)?,
            }),
            Wire::Decision { outcome } => Self::Decision(match outcome.as_str() {
                "approved" => Decision::Approved,
                "denied" => Decision::Denied,
                "expired" => Decision::Expired,
                _ => return Err(field("decision", "outcome", "not a v1 outcome")),
            }),
            Wire::Ping {} => Self::Ping,
            Wire::Pong {} => Self::Pong,
            Wire::Error { code, message } => Self::Error(error_from_wire(&code, &message)?),
            Wire::Grant(g) => Self::Grant(Grant::from_wire("grant", g)?),
            Wire::Console(c) => Self::Console(console_from_wire(c)?),
            Wire::ConsoleReply {
                reference,
                ok,
                error,
            } => Self::ConsoleReply(ConsoleReply {
                reference,
                outcome: match (ok, error) {
                    (Some(value), None) => Ok(value),
                    (None, Some(e)) if e.code.len() <= 64 => Err(ConsoleError {
                        code: e.code,
                        message: punktfunk_identity::name::sanitize(
                            &e.message,
                            MAX_ERROR_MESSAGE_CHARS,
                        ),
                    }),
                    _ => {
                        return Err(field(
                            "console_reply",
                            "ok",
                            "not exactly one of `ok` and `error`",
                        ))
                    }
                },
            }),
            Wire::Waiting { requests } if requests.len() <= MAX_WAITING => {
                Self::Waiting(Waiting { requests })
            }
            Wire::Waiting { .. } => {
                return Err(field("waiting", "requests", "more than 256 entries"))
            }
        })
    }
}

/// `hello`'s `intent` and `via`.
fn intent_from_wire(intent: &str, via: Option<&str>) -> Result<Intent, MessageError> {
    match (intent, via) {
        ("connect", _) => Ok(Intent::Connect),
        ("pair", None | Some("pin")) => Ok(Intent::Pair),
        ("pair", Some("link")) => Ok(Intent::PairLink),
        ("pair", Some(_)) => Err(field("hello", "via", "not `pin` or `link`")),
        _ => Err(field("hello", "intent", "not `connect` or `pair`")),
    }
}

/// `error`'s `code` and `message`. § 5: an unknown code is treated as
/// `internal`, keeping the original spelling visible to the person
/// reading it.
fn error_from_wire(code: &str, message: &str) -> Result<ErrorMessage, MessageError> {
    if message.len() > MAX_ERROR_MESSAGE_BYTES {
        return Err(field("error", "message", "longer than 1024 bytes"));
    }
    match ErrorCode::parse(code) {
        Some(code) => Ok(ErrorMessage::new(code, message)),
        None if code.len() <= 64 => Ok(ErrorMessage::new(
            ErrorCode::Internal,
            &format!("({code}) {message}"),
        )),
        None => Err(field("error", "code", "longer than 64 bytes")),
    }
}

/// What serde sees. Unknown `type` values and missing fields fail here;
/// unknown extra fields are ignored (§ 4: forward compatibility).
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Wire {
    Hello {
        protocol: u32,
        device_name: String,
        intent: String,
        /// `pin` (the default) or `link`, for `intent: pair` (§ 4.1).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        via: Option<String>,
        /// § 4.1: absent on a v1 client that offers nothing more.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        features: Option<Vec<String>>,
    },
    Welcome {
        status: String,
        host_name: String,
        host_fingerprint: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        features: Option<Vec<String>>,
        /// § 4.9: with `trusted` and `open`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grant: Option<WireGrant>,
    },
    Pake {
        msg: String,
    },
    Confirm {
        mac: String,
    },
    Decision {
        outcome: String,
    },
    Ping {},
    Pong {},
    Error {
        code: String,
        /// § 4.8: absent reads as empty (the code is what a receiver acts on).
        #[serde(default)]
        message: String,
    },
    Grant(WireGrant),
    Console(WireConsole),
    ConsoleReply {
        #[serde(rename = "ref")]
        reference: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ok: Option<serde_json::Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<WireError>,
    },
    Waiting {
        requests: Vec<serde_json::Value>,
    },
}

/// A `console` message's fields: which ones an `op` needs is checked in
/// [`console_from_wire`].
#[derive(Serialize, Deserialize)]
struct WireConsole {
    #[serde(rename = "ref")]
    reference: u32,
    op: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    grant: Option<serde_json::Value>,
}

#[derive(Serialize, Deserialize)]
struct WireError {
    code: String,
    #[serde(default)]
    message: String,
}

fn console_to_wire(c: &ConsoleRequest) -> Wire {
    let mut w = WireConsole {
        reference: c.reference,
        op: c.action.op().to_owned(),
        password: None,
        id: None,
        label: None,
        pin: None,
        fingerprint: None,
        grant: None,
    };
    match &c.action {
        ConsoleAction::Login { password } => w.password = Some(password.clone()),
        ConsoleAction::Approve { id, label, grant } => {
            w.id = Some(id.clone());
            w.label.clone_from(label);
            w.grant.clone_from(grant);
        }
        ConsoleAction::Deny { id } => w.id = Some(id.clone()),
        ConsoleAction::Arm { grant } => w.grant.clone_from(grant),
        ConsoleAction::EnterPin { id, pin, label } => {
            w.id = Some(id.clone());
            w.pin = Some(pin.clone());
            w.label.clone_from(label);
        }
        ConsoleAction::Revoke { fingerprint } => w.fingerprint = Some(fingerprint.to_hex()),
        ConsoleAction::Logout
        | ConsoleAction::Watch
        | ConsoleAction::Disarm
        | ConsoleAction::Devices => {}
    }
    Wire::Console(w)
}

/// Checks a `console` message: the fields its `op` needs, each bounded.
fn console_from_wire(w: WireConsole) -> Result<ConsoleRequest, MessageError> {
    let bounded = |f: &'static str, v: Option<String>, max: usize| match v {
        Some(v) if v.len() <= max => Ok(Some(v)),
        Some(_) => Err(field("console", f, "too long")),
        None => Ok(None),
    };
    let needed = |f: &'static str, v: Option<String>, max: usize| {
        bounded(f, v, max)?.ok_or_else(|| field("console", f, "missing for this op"))
    };
    let id = || needed("id", w.id.clone(), MAX_CONSOLE_FIELD_BYTES);
    let label = || bounded("label", w.label.clone(), MAX_CONSOLE_FIELD_BYTES);
    let action = match w.op.as_str() {
        "login" => ConsoleAction::Login {
            password: needed("password", w.password, MAX_PASSWORD_BYTES)?,
        },
        "logout" => ConsoleAction::Logout,
        "watch" => ConsoleAction::Watch,
        "approve" => ConsoleAction::Approve {
            id: id()?,
            label: label()?,
            grant: w.grant,
        },
        "deny" => ConsoleAction::Deny { id: id()? },
        "arm" => ConsoleAction::Arm { grant: w.grant },
        "disarm" => ConsoleAction::Disarm,
        "enter_pin" => ConsoleAction::EnterPin {
            id: id()?,
            pin: needed("pin", w.pin, MAX_CONSOLE_FIELD_BYTES)?,
            label: label()?,
        },
        "devices" => ConsoleAction::Devices,
        "revoke" => ConsoleAction::Revoke {
            fingerprint: needed("fingerprint", w.fingerprint, 64)?
                .parse()
                .map_err(|_| field("console", "fingerprint", "not 64 hexadecimal digits"))?,
        },
        _ => return Err(field("console", "op", "not a console action")),
    };
    Ok(ConsoleRequest {
        reference: w.reference,
        action,
    })
}

/// A grant on the wire (§ 4.9): `expires_at` is always written, `null`
/// for no end.
#[derive(Serialize, Deserialize)]
struct WireGrant {
    permissions: Vec<String>,
    expires_at: Option<u64>,
}

/// § 4.1: a `hello` whose `protocol` is an integer other than this version
/// is `unsupported_version` whatever its other fields hold; only `type` and
/// `protocol` are read (repeated keys still refuse it as `bad_message`).
fn other_version(payload: &[u8]) -> Option<MessageError> {
    #[derive(Deserialize)]
    struct VersionOnly {
        #[serde(rename = "type")]
        ty: String,
        protocol: u32,
    }
    let probe: VersionOnly = serde_json::from_slice(payload).ok()?;
    (probe.ty == "hello" && probe.protocol != PROTOCOL_VERSION).then_some(
        MessageError::UnsupportedVersion {
            got: probe.protocol,
        },
    )
}

fn field(ty: &'static str, field: &'static str, why: &'static str) -> MessageError {
    MessageError::Field { ty, field, why }
}

fn name(ty: &'static str, f: &'static str, raw: &str) -> Result<DisplayName, MessageError> {
    if raw.len() > MAX_NAME_BYTES {
        return Err(field(ty, f, "longer than 256 bytes"));
    }
    DisplayName::sanitize(raw).ok_or_else(|| field(ty, f, "empty after sanitising"))
}

fn base64_exact<const N: usize>(
    ty: &'static str,
    f: &'static str,
    text: &str,
) -> Result<[u8; N], MessageError> {
    // Standard alphabet, padded, canonical (the engine refuses non-zero
    // trailing bits), so one value has exactly one encoding (§ 4).
    if text.len() != N.div_ceil(3) * 4 {
        return Err(field(ty, f, "wrong length"));
    }
    let bytes = BASE64
        .decode(text)
        .map_err(|_| field(ty, f, "not canonical standard base64"))?;
    bytes
        .try_into()
        .map_err(|_| field(ty, f, "wrong decoded length"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Result<Message, MessageError> {
        Message::decode(s.as_bytes())
    }

    #[test]
    fn every_message_round_trips() {
        let fp = Fingerprint::from_bytes([7; 32]);
        let name = DisplayName::sanitize("Living Room").unwrap();
        let all = vec![
            Message::Hello(Hello {
                protocol: 1,
                device_name: name.clone(),
                intent: Intent::Pair,
                features: Features {
                    grant: true,
                    ..Features::default()
                },
            }),
            Message::Welcome(Welcome {
                status: Status::ApprovalPending,
                host_name: name.clone(),
                host_fingerprint: fp,
                features: Features::default(),
                grant: None,
            }),
            Message::Welcome(Welcome {
                status: Status::Trusted,
                host_name: name,
                host_fingerprint: fp,
                features: Features {
                    grant: true,
                    ..Features::default()
                },
                grant: Some(Grant {
                    permissions: vec!["list".into(), "view".into()],
                    expires_at: Some(1_798_135_200),
                }),
            }),
            Message::Grant(Grant {
                permissions: vec![],
                expires_at: None,
            }),
            Message::Console(ConsoleRequest {
                reference: 7,
                action: ConsoleAction::Approve {
                    id: "3".into(),
                    label: Some("TV".into()),
                    grant: Some(serde_json::json!({"may": "watch"})),
                },
            }),
            Message::Console(ConsoleRequest {
                reference: 8,
                action: ConsoleAction::Revoke { fingerprint: fp },
            }),
            Message::ConsoleReply(ConsoleReply {
                reference: 7,
                outcome: Ok(serde_json::json!({"result": "approved"})),
            }),
            Message::ConsoleReply(ConsoleReply {
                reference: 9,
                outcome: Err(ConsoleError {
                    code: "not_signed_in".into(),
                    message: "sign in first".into(),
                }),
            }),
            Message::Waiting(Waiting {
                requests: vec![serde_json::json!({"id": "3"})],
            }),
            Message::Pake(Pake { msg: [0x41; 33] }),
            Message::Confirm(Confirm { mac: [9; 32] }),
            Message::Decision(Decision::Expired),
            Message::Ping,
            Message::Pong,
            Message::error(ErrorCode::PinRejected, "wrong PIN"),
        ];
        for m in all {
            let frame = m.to_frame().unwrap();
            assert_eq!(Message::decode(&frame[4..]).unwrap(), m);
        }
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
    }

    #[test]
    fn hello_via_link_is_a_field_a_pin_hello_does_not_carry() {
        let name = DisplayName::sanitize("x").unwrap();
        let hello = |intent| {
            Message::Hello(Hello {
                protocol: 1,
                device_name: name.clone(),
                intent,
                features: Features::default(),
            })
        };
        assert_eq!(
            hello(Intent::PairLink).to_json().unwrap(),
            br#"{"type":"hello","protocol":1,"device_name":"x","intent":"pair","via":"link"}"#
        );
        assert_eq!(
            hello(Intent::Pair).to_json().unwrap(),
            br#"{"type":"hello","protocol":1,"device_name":"x","intent":"pair"}"#
        );
        let pin = r#"{"type":"hello","protocol":1,"device_name":"x","intent":"pair","via":"pin"}"#;
        assert_eq!(dec(pin).unwrap(), hello(Intent::Pair));
        let odd = r#"{"type":"hello","protocol":1,"device_name":"x","intent":"pair","via":"qr"}"#;
        assert!(dec(odd).is_err());
        let link =
            r#"{"type":"hello","protocol":1,"device_name":"x","intent":"pair","via":"link"}"#;
        assert_eq!(dec(link).unwrap(), hello(Intent::PairLink));
    }

    #[test]
    fn a_hello_of_another_version_is_unsupported_whatever_else_it_holds() {
        // § 4.1: a later version may rename or drop every other field.
        for other in [
            r#"{"type":"hello","protocol":2}"#,
            r#"{"type":"hello","protocol":2,"device_name":"","intent":"pair"}"#,
            r#"{"type":"hello","protocol":7,"device_name":7,"intent":"watch","via":1}"#,
            r#"{"protocol":4294967295,"type":"hello"}"#,
        ] {
            assert!(
                matches!(dec(other), Err(MessageError::UnsupportedVersion { .. })),
                "{other}"
            );
        }
        // This version with bad fields, or a version that is not a u32:
        // bad_message (a plain parse error).
        for bad in [
            r#"{"type":"hello","protocol":1}"#,
            r#"{"type":"hello","protocol":1,"device_name":"","intent":"pair"}"#,
            r#"{"type":"hello","protocol":"2"}"#,
            r#"{"type":"hello","protocol":-2}"#,
            r#"{"type":"hello","protocol":2.5}"#,
            r#"{"type":"welcome","protocol":2}"#,
        ] {
            let e = dec(bad).unwrap_err();
            assert!(
                !matches!(e, MessageError::UnsupportedVersion { .. }),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn repeated_keys_are_refused() {
        // § 4 / § 11: keys must not repeat; a parser that keeps the last
        // value would read something else than this host.
        for bad in [
            r#"{"type":"hello","protocol":1,"device_name":"a","device_name":"b","intent":"pair"}"#,
            r#"{"type":"hello","protocol":1,"protocol":1,"device_name":"a","intent":"pair"}"#,
            r#"{"type":"ping","type":"ping"}"#,
            r#"{"type":"ping","type":"pong"}"#,
            r#"{"type":"error","code":"internal","code":"revoked","message":""}"#,
        ] {
            assert!(dec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn features_are_offered_by_name_and_unknown_ones_ignored() {
        let hello = |features: &str| {
            dec(&format!(
                r#"{{"type":"hello","protocol":1,"device_name":"x","intent":"connect"{features}}}"#
            ))
        };
        let offered = |m: Result<Message, MessageError>| match m {
            Ok(Message::Hello(h)) => Ok(h.features),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        assert_eq!(offered(hello("")), Ok(Features::default()));
        assert_eq!(
            offered(hello(r#","features":["later","grant"]"#)),
            Ok(Features {
                grant: true,
                ..Features::default()
            })
        );
        assert_eq!(offered(hello(r#","features":[]"#)), Ok(Features::default()));
        let many: Vec<String> = (0..=MAX_FEATURES).map(|i| format!("\"f{i}\"")).collect();
        for bad in [
            r#","features":"grant""#.to_owned(),
            r#","features":["GRANT"]"#.to_owned(),
            r#","features":[""]"#.to_owned(),
            format!(r#","features":[{}]"#, many.join(",")),
        ] {
            assert!(offered(hello(&bad)).is_err(), "{bad}");
        }
        // Written only when offered: a v1 hello's bytes are unchanged.
        let plain = Message::Hello(Hello {
            protocol: 1,
            device_name: DisplayName::sanitize("x").unwrap(),
            intent: Intent::Connect,
            features: Features::default(),
        });
        assert!(!String::from_utf8(plain.to_json().unwrap())
            .unwrap()
            .contains("features"));
    }

    #[test]
    fn a_console_message_needs_the_fields_of_its_op_and_hides_secrets() {
        let ok = |s: &str| match dec(s) {
            Ok(Message::Console(c)) => c,
            other => panic!("{s}: {other:?}"),
        };
        let login = ok(r#"{"type":"console","ref":1,"op":"login","password":"hunter2"}"#);
        assert_eq!(
            login.action,
            ConsoleAction::Login {
                password: "hunter2".into()
            }
        );
        assert!(!format!("{login:?}").contains("hunter2"), "{login:?}");
        let pin = ok(r#"{"type":"console","ref":2,"op":"enter_pin","id":"4","pin":"1234"}"#);
        assert!(!format!("{pin:?}").contains("1234"));
        assert_eq!(
            ok(r#"{"type":"console","ref":3,"op":"watch"}"#).action,
            ConsoleAction::Watch
        );
        let long = "x".repeat(MAX_PASSWORD_BYTES + 1);
        for bad in [
            r#"{"type":"console","ref":1,"op":"login"}"#.to_owned(),
            r#"{"type":"console","ref":1,"op":"approve"}"#.to_owned(),
            r#"{"type":"console","ref":1,"op":"enter_pin","id":"4"}"#.to_owned(),
            r#"{"type":"console","ref":1,"op":"revoke","fingerprint":"abc"}"#.to_owned(),
            r#"{"type":"console","ref":1,"op":"format_disk"}"#.to_owned(),
            r#"{"type":"console","op":"watch"}"#.to_owned(),
            r#"{"type":"console","ref":-1,"op":"watch"}"#.to_owned(),
            format!(r#"{{"type":"console","ref":1,"op":"login","password":"{long}"}}"#),
            r#"{"type":"console_reply","ref":1}"#.to_owned(),
            r#"{"type":"console_reply","ref":1,"ok":{},"error":{"code":"x"}}"#.to_owned(),
        ] {
            assert!(dec(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_error_without_a_message_reads_as_an_empty_one() {
        let m = dec(r#"{"type":"error","code":"revoked"}"#).unwrap();
        assert_eq!(m, Message::error(ErrorCode::Revoked, ""));
    }

    #[test]
    fn an_uppercase_host_fingerprint_is_the_same_fingerprint() {
        let fp = "AB".repeat(32);
        let m = dec(&format!(
            r#"{{"type":"welcome","status":"trusted","host_name":"h","host_fingerprint":"{fp}"}}"#
        ))
        .unwrap();
        let Message::Welcome(w) = m else {
            panic!("{m:?}")
        };
        assert_eq!(w.host_fingerprint.to_hex(), fp.to_lowercase());
    }

    #[test]
    fn type_comes_first_and_output_is_compact() {
        let json = Message::Decision(Decision::Approved).to_json().unwrap();
        assert_eq!(json, br#"{"type":"decision","outcome":"approved"}"#);
    }

    #[test]
    fn unknown_type_and_missing_fields_are_refused() {
        assert!(dec(r#"{"type":"hack"}"#).is_err());
        assert!(dec(r#"{"type":"hello","protocol":1,"intent":"pair"}"#).is_err());
        assert!(dec(r#"{"protocol":1}"#).is_err());
        assert!(dec(r#"[]"#).is_err());
        assert!(dec(r#"{"type":"ping"} x"#).is_err());
        assert!(dec("\u{FEFF}{\"type\":\"ping\"}").is_err());
        assert!(
            dec(r#"{"type":"hello","protocol":1,"device_name":"x","intent":"steal"}"#).is_err()
        );
        assert!(
            dec(r#"{"type":"hello","protocol":-1,"device_name":"x","intent":"pair"}"#).is_err()
        );
    }

    #[test]
    fn unknown_fields_are_ignored_and_versions_parse() {
        let m = dec(r#"{"type":"hello","protocol":7,"device_name":"x","intent":"pair","new":[1]}"#)
            .unwrap();
        assert!(matches!(m, Message::Hello(Hello { protocol: 7, .. })));
        assert_eq!(dec(r#"{"type":"ping","pad":"x"}"#).unwrap(), Message::Ping);
    }

    #[test]
    fn base64_must_be_canonical_and_exact() {
        let good = BASE64.encode([1u8; 32]);
        assert!(dec(&format!(r#"{{"type":"confirm","mac":"{good}"}}"#)).is_ok());
        let short = BASE64.encode([1u8; 31]);
        assert!(dec(&format!(r#"{{"type":"confirm","mac":"{short}"}}"#)).is_err());
        let unpadded = good.trim_end_matches('=');
        assert!(dec(&format!(r#"{{"type":"confirm","mac":"{unpadded}"}}"#)).is_err());
        // Same length, non-zero trailing bits: not canonical.
        let mut bad = good.clone().into_bytes();
        bad[42] = b'B';
        let bad = String::from_utf8(bad).unwrap();
        assert!(dec(&format!(r#"{{"type":"confirm","mac":"{bad}"}}"#)).is_err());
        let urlsafe = BASE64.encode([0xfb; 33]).replace('+', "-");
        assert!(dec(&format!(r#"{{"type":"pake","msg":"{urlsafe}"}}"#)).is_err());
    }

    #[test]
    fn names_are_sanitised_and_bounded() {
        let n = |s: &str| DisplayName::sanitize(s).map(|d| d.as_str().to_owned());
        assert_eq!(n("  Living\t\nRoom  "), Some("Living Room".into()));
        assert_eq!(n("a\u{202E}b\u{200B}c\u{7}d"), Some("abcd".into()));
        assert_eq!(n(" \u{200B}\u{0} "), None);
        assert_eq!(n(&"é".repeat(100)).unwrap().chars().count(), 64);
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        let msg =
            format!(r#"{{"type":"hello","protocol":1,"device_name":"{long}","intent":"pair"}}"#);
        assert!(dec(&msg).is_err());
        let empty = r#"{"type":"hello","protocol":1,"device_name":"\u200b","intent":"pair"}"#;
        assert!(dec(empty).is_err());
    }

    #[test]
    fn unknown_error_codes_become_internal() {
        let m = dec(r#"{"type":"error","code":"future_thing","message":"hi"}"#).unwrap();
        assert_eq!(
            m,
            Message::Error(ErrorMessage {
                code: ErrorCode::Internal,
                message: "(future_thing) hi".into()
            })
        );
    }
}
