//! The steps around pairing: `hello`, `welcome`, `decision`
//! (docs/native-protocol.md § 4 and § 7).
//!
//! These are the checks both sides must make on those messages; what the
//! host *answers* to a hello (trusted, open, knock, pairing, refusal) is
//! decided by the shell from the registry and the gate, then built with
//! [`welcome`] or [`Message::error`].

use punktfunk_identity::Fingerprint;

use crate::message::{
    Decision, DisplayName, ErrorCode, ErrorMessage, Features, Hello, Intent, Message, Status,
    Welcome, PROTOCOL_VERSION,
};

/// Why a `hello`/`welcome`/`decision` step failed. [`HandshakeError::code`]
/// is the § 5 code to send (host) or report (client).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The peer sent a message this step does not accept.
    #[error("expected a `{expected}` message, the peer sent `{got}`")]
    Unexpected {
        /// What this step accepts.
        expected: &'static str,
        /// What arrived.
        got: &'static str,
    },
    /// Host side: the client speaks another protocol version.
    #[error("the client speaks protocol version {got}; this host speaks version {PROTOCOL_VERSION}; update the app or the host")]
    UnsupportedVersion {
        /// The version in `hello`.
        got: u32,
    },
    /// Client side: `welcome.host_fingerprint` is not the certificate the
    /// host presented in TLS.
    #[error("the host announced fingerprint {announced} but presented a certificate with fingerprint {seen}")]
    FingerprintMismatch {
        /// From `welcome`.
        announced: Fingerprint,
        /// From the TLS session.
        seen: Fingerprint,
    },
    /// Client side: the host answered `pairing` to `connect` or the
    /// reverse.
    #[error("the host answered `{status}` to intent `{intent}`")]
    StatusForOtherIntent {
        /// The intent sent.
        intent: &'static str,
        /// The status received.
        status: &'static str,
    },
    /// The peer ended the connection with an `error` message.
    #[error("the peer refused: {}: {}", .0.code, .0.message)]
    Peer(ErrorMessage),
}

impl HandshakeError {
    /// The error code to send (host) or report (client).
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Unexpected { .. }
            | Self::FingerprintMismatch { .. }
            | Self::StatusForOtherIntent { .. } => ErrorCode::BadMessage,
            Self::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            Self::Peer(e) => e.code,
        }
    }

    /// The `error` message to send before closing; `None` when the peer
    /// itself sent the error.
    pub fn to_message(&self) -> Option<Message> {
        match self {
            Self::Peer(_) => None,
            _ => Some(Message::error(self.code(), &self.to_string())),
        }
    }
}

/// Client: the first message of a connection (§ 4.1), offering nothing
/// beyond v1's first messages.
pub fn hello(device_name: DisplayName, intent: Intent) -> Message {
    hello_offering(device_name, intent, Features::default())
}

/// Client: the first message of a connection, offering `features` (§ 4.1).
pub fn hello_offering(device_name: DisplayName, intent: Intent, features: Features) -> Message {
    Message::Hello(Hello {
        protocol: PROTOCOL_VERSION,
        device_name,
        intent,
        features,
    })
}

/// Host: checks the first message of a connection (§ 7.1 state
/// `AwaitHello`). On error send [`HandshakeError::to_message`] and close.
pub fn read_hello(msg: Message) -> Result<Hello, HandshakeError> {
    match msg {
        Message::Hello(h) if h.protocol == PROTOCOL_VERSION => Ok(h),
        Message::Hello(h) => Err(HandshakeError::UnsupportedVersion { got: h.protocol }),
        other => Err(unexpected("hello", other)),
    }
}

/// Host: the `welcome` for a decided status (§ 4.3), to a client that
/// offered no features, without a grant.
pub fn welcome(status: Status, host_name: DisplayName, host_fingerprint: Fingerprint) -> Message {
    Message::Welcome(Welcome {
        status,
        host_name,
        host_fingerprint,
        features: Features::default(),
        grant: None,
    })
}

/// Client: checks the answer to `hello` (§ 7.2 state `AwaitWelcome`).
///
/// `seen_host` is the fingerprint of the certificate the host presented in
/// this TLS session; pinning (or TOFU) is the caller's check, done before
/// trusting the returned status.
pub fn read_welcome(
    msg: Message,
    intent: Intent,
    seen_host: Fingerprint,
) -> Result<Welcome, HandshakeError> {
    let w = match msg {
        Message::Welcome(w) => w,
        other => return Err(unexpected("welcome", other)),
    };
    if w.host_fingerprint != seen_host {
        return Err(HandshakeError::FingerprintMismatch {
            announced: w.host_fingerprint,
            seen: seen_host,
        });
    }
    let fits = match intent {
        Intent::Pair | Intent::PairLink => w.status == Status::Pairing,
        Intent::Connect => w.status != Status::Pairing,
    };
    if !fits {
        return Err(HandshakeError::StatusForOtherIntent {
            intent: match intent {
                Intent::Pair | Intent::PairLink => "pair",
                Intent::Connect => "connect",
            },
            status: match w.status {
                Status::Trusted => "trusted",
                Status::Open => "open",
                Status::ApprovalPending => "approval_pending",
                Status::Pairing => "pairing",
            },
        });
    }
    Ok(w)
}

/// Client: what a waiting knock can receive (§ 7.2 state `AwaitDecision`):
/// `Some(decision)`, or `None` for a `pong` (keep waiting).
pub fn read_decision(msg: Message) -> Result<Option<Decision>, HandshakeError> {
    match msg {
        Message::Decision(d) => Ok(Some(d)),
        Message::Pong => Ok(None),
        other => Err(unexpected("decision", other)),
    }
}

fn unexpected(expected: &'static str, got: Message) -> HandshakeError {
    match got {
        Message::Error(e) => HandshakeError::Peer(e),
        other => HandshakeError::Unexpected {
            expected,
            got: other.type_name(),
        },
    }
}
