//! # punktfunk-client-ffi: the native client for the Apple app
//!
//! The punktfunk app pairs and connects with the same code as the reference
//! client (`punktfunk pair` / `connect`) and the tests: this crate wraps
//! [`punktfunk_native::Client`] for Swift (and Python, which the tests use)
//! through UniFFI proc-macros. It implements no part of the protocol itself.
//!
//! ## Threading
//!
//! Every network call **blocks** the calling thread until it finishes, its
//! `timeout_ms` passes ([`PunktfunkError::Timeout`]), or the
//! [`Cancellation`] passed to it is cancelled from another thread
//! ([`PunktfunkError::Cancelled`]). Swift callers run them off the main
//! thread (a `Task.detached`, a background queue). Blocking calls were
//! chosen over UniFFI's async functions because cancelling a Swift `Task`
//! does not reach the Rust future, while a wait for the host owner's
//! approval must be cancellable from the UI; a cancelled call drops its
//! connection at once. The calls run on one small tokio runtime owned by
//! this library; a [`Client`] may be used from several threads at once.
//!
//! Errors are one enum, [`PunktfunkError`], with a variant per code of
//! `docs/native-protocol.md` § 5 (plus the client-side codes), each
//! carrying the message to show.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use punktfunk_native::client::{ClientError, Failure, HostAddr, HostTrust, NewHost};
use punktfunk_native::{Connected, DisplayName, ErrorCode, PairingLink, Pin, Status};
use tokio::runtime::Runtime;
use tokio::sync::watch;

uniffi::setup_scaffolding!("punktfunk_client");

/// Why a call failed: the § 5 code as the variant, and the message to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum PunktfunkError {
    /// `not_armed`: pairing is not armed on the host (or its PIN was used).
    #[error("{message}")]
    NotArmed { message: String },
    /// `pin_rejected`: the PIN was wrong; the host disarmed pairing.
    #[error("{message}")]
    PinRejected { message: String },
    /// `pairing_busy`: another device is pairing, or the waiting list is full.
    #[error("{message}")]
    PairingBusy { message: String },
    /// `denied`: the host's owner denied this device.
    #[error("{message}")]
    Denied { message: String },
    /// `expired`: nobody approved this device in time, or (from the host)
    /// its access to the host expired: ask the host's owner to renew it.
    #[error("{message}")]
    Expired { message: String },
    /// `not_paired`: this device is not paired with the host.
    #[error("{message}")]
    NotPaired { message: String },
    /// `revoked`: the host removed this device.
    #[error("{message}")]
    Revoked { message: String },
    /// `disabled`: the host's owner disabled this device; it stays paired
    /// and connects again once enabled.
    #[error("{message}")]
    Disabled { message: String },
    /// `unsupported_version`: the host speaks another protocol version.
    #[error("{message}")]
    UnsupportedVersion { message: String },
    /// `bad_message`: a malformed or unexpected message.
    #[error("{message}")]
    BadMessage { message: String },
    /// `timeout`: the host (or the call's `timeout_ms`) ran out of time.
    #[error("{message}")]
    Timeout { message: String },
    /// `internal`: the host or this client could not do its part.
    #[error("{message}")]
    Internal { message: String },
    /// `host_identity_changed`: the host presented another certificate than
    /// the one on record (or than the pairing link's). Suspect an attack.
    #[error("{message}")]
    HostIdentityChanged { message: String },
    /// `host_confirmation_failed`: the host's pairing proof did not verify.
    #[error("{message}")]
    HostConfirmationFailed { message: String },
    /// `host_not_accepted`: an unknown host, and `accept_new_host` was false.
    #[error("{message}")]
    HostNotAccepted { message: String },
    /// `connection_failed`: no connection, or it broke.
    #[error("{message}")]
    ConnectionFailed { message: String },
    /// The call's [`Cancellation`] was cancelled.
    #[error("{message}")]
    Cancelled { message: String },
    /// An argument is malformed (a PIN, a link, a host, a name).
    #[error("{message}")]
    InvalidArgument { message: String },
}

impl PunktfunkError {
    /// The § 5 (or client-side) code, as the protocol document spells it.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotArmed { .. } => "not_armed",
            Self::PinRejected { .. } => "pin_rejected",
            Self::PairingBusy { .. } => "pairing_busy",
            Self::Denied { .. } => "denied",
            Self::Expired { .. } => "expired",
            Self::NotPaired { .. } => "not_paired",
            Self::Revoked { .. } => "revoked",
            Self::Disabled { .. } => "disabled",
            Self::UnsupportedVersion { .. } => "unsupported_version",
            Self::BadMessage { .. } => "bad_message",
            Self::Timeout { .. } => "timeout",
            Self::Internal { .. } => "internal",
            Self::HostIdentityChanged { .. } => "host_identity_changed",
            Self::HostConfirmationFailed { .. } => "host_confirmation_failed",
            Self::HostNotAccepted { .. } => "host_not_accepted",
            Self::ConnectionFailed { .. } => "connection_failed",
            Self::Cancelled { .. } => "cancelled",
            Self::InvalidArgument { .. } => "invalid_argument",
        }
    }

    fn new(failure: Failure, message: String) -> Self {
        match failure {
            Failure::Code(code) => match code {
                ErrorCode::NotArmed => Self::NotArmed { message },
                ErrorCode::PinRejected => Self::PinRejected { message },
                ErrorCode::PairingBusy => Self::PairingBusy { message },
                ErrorCode::Denied => Self::Denied { message },
                ErrorCode::Expired => Self::Expired { message },
                ErrorCode::NotPaired => Self::NotPaired { message },
                ErrorCode::Revoked => Self::Revoked { message },
                ErrorCode::Disabled => Self::Disabled { message },
                ErrorCode::UnsupportedVersion => Self::UnsupportedVersion { message },
                ErrorCode::BadMessage => Self::BadMessage { message },
                ErrorCode::Timeout => Self::Timeout { message },
                ErrorCode::Internal => Self::Internal { message },
                ErrorCode::HostIdentityChanged => Self::HostIdentityChanged { message },
                ErrorCode::HostConfirmationFailed => Self::HostConfirmationFailed { message },
            },
            Failure::HostNotAccepted => Self::HostNotAccepted { message },
            Failure::ConnectionFailed => Self::ConnectionFailed { message },
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            message: message.into(),
        }
    }
}

impl From<ClientError> for PunktfunkError {
    fn from(e: ClientError) -> Self {
        Self::new(e.failure(), e.to_string())
    }
}

/// The code of an error, for callers that switch on the wire spelling.
#[uniffi::export]
pub fn error_code(error: &PunktfunkError) -> String {
    error.code().to_owned()
}

/// Cancels the calls it was passed to, from any thread.
#[derive(Debug, uniffi::Object)]
pub struct Cancellation {
    cancelled: watch::Sender<bool>,
}

#[uniffi::export]
impl Cancellation {
    /// A fresh token, not cancelled.
    #[uniffi::constructor]
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            cancelled: watch::Sender::new(false),
        })
    }

    /// Cancels every call running with this token, and every later one.
    pub fn cancel(&self) {
        self.cancelled.send_replace(true);
    }

    /// Whether [`Cancellation::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        *self.cancelled.borrow()
    }
}

/// The runtime every call runs on: two workers are plenty for a client.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("punktfunk-client")
            .enable_all()
            .build()
            // Without threads or timers nothing here can work at all.
            .unwrap_or_else(|e| panic!("cannot start the punktfunk client runtime: {e}"))
    })
}

/// Runs `work` on the runtime until it ends, `timeout_ms` passes (0: no
/// limit but the protocol's own), or `cancel` is cancelled.
fn block<T>(
    timeout_ms: u64,
    cancel: Option<Arc<Cancellation>>,
    work: impl Future<Output = Result<T, PunktfunkError>>,
) -> Result<T, PunktfunkError> {
    runtime().block_on(async move {
        let mut cancelled = cancel.map(|c| c.cancelled.subscribe());
        let cancelled = async {
            match &mut cancelled {
                Some(rx) => {
                    // A dropped sender cannot happen (the token holds it).
                    let _ = rx.wait_for(|c| *c).await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let limit = async {
            if timeout_ms == 0 {
                std::future::pending::<()>().await
            }
            tokio::time::sleep(Duration::from_millis(timeout_ms)).await
        };
        tokio::select! {
            r = work => r,
            () = cancelled => Err(PunktfunkError::Cancelled {
                message: "the call was cancelled".into(),
            }),
            () = limit => Err(PunktfunkError::Timeout {
                message: format!("no answer within {timeout_ms} ms"),
            }),
        }
    })
}

/// How a connection was let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ConnectStatus {
    /// Paired (or just approved): a trusted session.
    Trusted,
    /// Let in by an open host, without pairing.
    Open,
    /// The knock waits for the host owner's approval (`wait` was false).
    ApprovalPending,
}

/// The result of [`Client::connect`].
#[derive(Debug, uniffi::Record)]
pub struct Connection {
    /// How the host answered.
    pub status: ConnectStatus,
    /// The open session, unless the knock still waits.
    pub session: Option<Arc<Session>>,
}

/// The result of a pairing.
#[derive(Debug, uniffi::Record)]
pub struct Paired {
    /// The address that answered, `HOST:PORT`.
    pub host: String,
    /// The host's certificate fingerprint (64 hex digits), now pinned.
    pub host_fingerprint: String,
    /// The host's name.
    pub host_name: String,
    /// The session the pairing opened.
    pub session: Arc<Session>,
}

/// What the client has on record for a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum KnownHostTrust {
    /// Paired with, or let in by: this fingerprint is required.
    Pinned,
    /// Accepted by the user at a knock; not admitted yet.
    Accepted,
}

/// One line of the client's known hosts.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct KnownHostEntry {
    /// `HOST:PORT` as it was typed or linked.
    pub host: String,
    /// The fingerprint on record.
    pub fingerprint: String,
    /// Pinned or accepted.
    pub trust: KnownHostTrust,
}

/// How a held session ended.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum SessionEnd {
    /// The host removed this device (`error{revoked}`): pair again.
    Revoked { message: String },
    /// The host's owner disabled this device (`error{disabled}`).
    Disabled { message: String },
    /// This device's access to the host expired (`error{expired}`).
    Expired { message: String },
    /// The host closed the connection.
    HostClosed { message: String },
    /// The host ended it with another error, or the connection failed.
    Failed { code: String, message: String },
    /// `seconds` passed; this side closed it.
    TimeUp,
    /// The [`Cancellation`] was cancelled; the connection was dropped.
    Cancelled,
    /// It had been held or closed before.
    AlreadyEnded,
}

/// What this device may do on the host, and until when
/// (docs/native-protocol.md § 4.9).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Grant {
    /// Permission names (`input_controller`, `input_kbd`, `list`, `view`,
    /// `launch` …, docs/streamer-api.md); a name the app does not know is a
    /// permission it does not know.
    pub permissions: Vec<String>,
    /// Unix seconds at which this device's access ends; `None`: no end.
    pub expires_at: Option<u64>,
}

impl From<punktfunk_native::Grant> for Grant {
    fn from(g: punktfunk_native::Grant) -> Self {
        Self {
            permissions: g.permissions,
            expires_at: g.expires_at,
        }
    }
}

/// What [`Session::wait`] saw.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum SessionEvent {
    /// The host changed what this device may do; the session stays open.
    GrantChanged { grant: Grant },
    /// `seconds` passed without a change; the session stays open.
    StillOpen,
    /// The session is over, and why.
    Ended { end: SessionEnd },
}

/// An open session with a host.
#[derive(uniffi::Object)]
pub struct Session {
    inner: Mutex<Option<punktfunk_native::Session>>,
    grant: Mutex<Option<Grant>>,
    host_fingerprint: String,
    host_name: String,
    trusted: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("host_fingerprint", &self.host_fingerprint)
            .finish_non_exhaustive()
    }
}

impl Session {
    fn new(session: punktfunk_native::Session) -> Arc<Self> {
        Arc::new(Self {
            host_fingerprint: session.host_fingerprint().to_hex(),
            host_name: session.host_name().as_str().to_owned(),
            trusted: session.status() == Status::Trusted,
            grant: Mutex::new(session.grant().cloned().map(Grant::from)),
            inner: Mutex::new(Some(session)),
        })
    }

    fn take(&self) -> Option<punktfunk_native::Session> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// How a session's error ends it, in the app's words.
fn session_end(e: ClientError) -> SessionEnd {
    match PunktfunkError::from(e) {
        PunktfunkError::Revoked { message } => SessionEnd::Revoked { message },
        PunktfunkError::Disabled { message } => SessionEnd::Disabled { message },
        PunktfunkError::Expired { message } => SessionEnd::Expired { message },
        PunktfunkError::ConnectionFailed { message } => SessionEnd::HostClosed { message },
        other => SessionEnd::Failed {
            code: other.code().to_owned(),
            message: other.to_string(),
        },
    }
}

#[uniffi::export]
impl Session {
    /// The host's certificate fingerprint (64 hex digits).
    pub fn host_fingerprint(&self) -> String {
        self.host_fingerprint.clone()
    }

    /// The host's name.
    pub fn host_name(&self) -> String {
        self.host_name.clone()
    }

    /// `Trusted`, or `Open` (let in by an open host).
    pub fn status(&self) -> ConnectStatus {
        if self.trusted {
            ConnectStatus::Trusted
        } else {
            ConnectStatus::Open
        }
    }

    /// What this device may do on the host, as the host last said (at
    /// connect, or a change [`Session::wait`] or [`Session::hold`] saw);
    /// `None` from a host older than grants.
    pub fn grant(&self) -> Option<Grant> {
        self.grant.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Keeps the session open, answering the host's liveness checks, until
    /// the host changes this device's grant, `seconds` pass, the host ends
    /// the session, or `cancel` is cancelled (which drops the connection);
    /// says which. Call it again to go on; one call at a time.
    pub fn wait(&self, seconds: u64, cancel: Option<Arc<Cancellation>>) -> SessionEvent {
        let Some(mut session) = self.take() else {
            return SessionEvent::Ended {
                end: SessionEnd::AlreadyEnded,
            };
        };
        let until = tokio::time::Instant::now() + Duration::from_secs(seconds);
        let waited = block(0, cancel, async { Ok(session.next_change(until).await) });
        let event = match waited {
            Ok(Ok(Some(grant))) => {
                let grant = Grant::from(grant);
                *self.grant.lock().unwrap_or_else(|p| p.into_inner()) = Some(grant.clone());
                SessionEvent::GrantChanged { grant }
            }
            Ok(Ok(None)) => SessionEvent::StillOpen,
            Ok(Err(e)) => {
                return SessionEvent::Ended {
                    end: session_end(e),
                }
            }
            Err(_) => {
                return SessionEvent::Ended {
                    end: SessionEnd::Cancelled,
                }
            }
        };
        *self.inner.lock().unwrap_or_else(|p| p.into_inner()) = Some(session);
        event
    }

    /// Keeps the session open, answering the host's liveness checks, until
    /// the host ends it, `seconds` pass, or `cancel` is cancelled; says
    /// which. The session is over afterwards either way.
    pub fn hold(&self, seconds: u64, cancel: Option<Arc<Cancellation>>) -> SessionEnd {
        let Some(session) = self.take() else {
            return SessionEnd::AlreadyEnded;
        };
        let until = tokio::time::Instant::now() + Duration::from_secs(seconds);
        let held = block(0, cancel, async move {
            let mut session = session;
            loop {
                match session.next_change(until).await {
                    Ok(Some(grant)) => {
                        *self.grant.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(Grant::from(grant));
                    }
                    Ok(None) => break,
                    Err(e) => return Ok(Err(e)),
                }
            }
            session.close().await;
            Ok(Ok(()))
        });
        match held {
            Ok(Ok(())) => SessionEnd::TimeUp,
            Ok(Err(e)) => session_end(e),
            Err(_) => SessionEnd::Cancelled,
        }
    }

    /// Ends the session now (TLS close_notify).
    pub fn close(&self) {
        if let Some(session) = self.take() {
            runtime().block_on(session.close());
        }
    }
}

/// This device as a punktfunk client: its identity and known hosts live in
/// `client_dir` (created 0700 on first use).
#[derive(Debug, uniffi::Object)]
pub struct Client {
    dir: PathBuf,
    fingerprint: String,
    /// One call at a time touches the known-hosts file.
    files: tokio::sync::Mutex<()>,
}

impl Client {
    fn open(&self, device_name: &str) -> Result<punktfunk_native::Client, PunktfunkError> {
        let name = DisplayName::sanitize(device_name).ok_or_else(|| {
            PunktfunkError::invalid(
                "the device name is empty once cleaned; give this device a name",
            )
        })?;
        Ok(punktfunk_native::Client::open(&self.dir, name)?)
    }
}

fn host_addr(host: &str, port: u16) -> Result<HostAddr, PunktfunkError> {
    let typed = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    HostAddr::parse(&typed).map_err(|e| PunktfunkError::invalid(e.to_string()))
}

#[uniffi::export]
impl Client {
    /// Opens (or creates) the client in `client_dir`.
    #[uniffi::constructor]
    pub fn new(client_dir: String) -> Result<Arc<Self>, PunktfunkError> {
        let dir = PathBuf::from(client_dir);
        let client =
            punktfunk_native::Client::open(&dir, DisplayName::sanitize_or("", "punktfunk app"))?;
        Ok(Arc::new(Self {
            dir,
            fingerprint: client.fingerprint().to_hex(),
            files: tokio::sync::Mutex::new(()),
        }))
    }

    /// This device's certificate fingerprint (64 hex digits): what the
    /// host's console shows for it.
    pub fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    /// Pairs with the 4-digit `pin` the host shows, as `device_name`;
    /// pins the host and returns the open session.
    pub fn pair(
        &self,
        host: String,
        port: u16,
        pin: String,
        device_name: String,
        timeout_ms: u64,
        cancel: Option<Arc<Cancellation>>,
    ) -> Result<Paired, PunktfunkError> {
        let addr = host_addr(&host, port)?;
        let pin = pin
            .trim()
            .parse::<Pin>()
            .map_err(|e| PunktfunkError::invalid(e.to_string()))?;
        block(timeout_ms, cancel, async {
            let _files = self.files.lock().await;
            let mut client = self.open(&device_name)?;
            let session = client.pair(&addr, &pin).await?;
            Ok(paired(addr, session))
        })
    }

    /// Pairs with the pairing link of the host's QR code
    /// (`punktfunk://pair?…`): the host is pinned before anything is sent.
    pub fn pair_link(
        &self,
        link: String,
        device_name: String,
        timeout_ms: u64,
        cancel: Option<Arc<Cancellation>>,
    ) -> Result<Paired, PunktfunkError> {
        let link =
            PairingLink::parse(link.trim()).map_err(|e| PunktfunkError::invalid(e.to_string()))?;
        block(timeout_ms, cancel, async {
            let _files = self.files.lock().await;
            let mut client = self.open(&device_name)?;
            let (addr, session) = client.pair_link(&link).await?;
            Ok(paired(addr, session))
        })
    }

    /// Connects: `Trusted` or `Open` with a session, or a knock. An unknown
    /// host is refused (`HostNotAccepted`, its fingerprint in the message)
    /// unless `accept_new_host`; with `wait` the call waits (up to the
    /// host's 5 minutes) for the owner's decision, else it returns
    /// `ApprovalPending`.
    // Flat arguments become Swift's labelled ones (`connect(host:port:…)`);
    // a struct of them would be one more type to build at each call.
    #[allow(clippy::too_many_arguments)]
    pub fn connect(
        &self,
        host: String,
        port: u16,
        device_name: String,
        accept_new_host: bool,
        wait: bool,
        timeout_ms: u64,
        cancel: Option<Arc<Cancellation>>,
    ) -> Result<Connection, PunktfunkError> {
        let addr = host_addr(&host, port)?;
        let new_host = if accept_new_host {
            NewHost::DangerAcceptAny
        } else {
            NewHost::Refuse
        };
        block(timeout_ms, cancel, async {
            let _files = self.files.lock().await;
            let mut client = self.open(&device_name)?;
            Ok(match client.connect(&addr, new_host, wait).await? {
                Connected::Session(session) => {
                    let session = Session::new(*session);
                    Connection {
                        status: session.status(),
                        session: Some(session),
                    }
                }
                Connected::ApprovalPending => Connection {
                    status: ConnectStatus::ApprovalPending,
                    session: None,
                },
            })
        })
    }

    /// The hosts on record.
    pub fn known_hosts(&self) -> Result<Vec<KnownHostEntry>, PunktfunkError> {
        let client = self.open("punktfunk app")?;
        Ok(client
            .known_hosts()
            .into_iter()
            .map(|(host, k)| KnownHostEntry {
                host,
                fingerprint: k.fingerprint.to_hex(),
                trust: match k.trust {
                    HostTrust::Pinned => KnownHostTrust::Pinned,
                    HostTrust::Accepted => KnownHostTrust::Accepted,
                },
            })
            .collect())
    }

    /// Forgets the host at `host`:`port` (reinstalled, or given away): the
    /// next connect treats it as new. Whether it was on record.
    pub fn forget_host(&self, host: String, port: u16) -> Result<bool, PunktfunkError> {
        let addr = host_addr(&host, port)?;
        runtime().block_on(async {
            let _files = self.files.lock().await;
            let mut client = self.open("punktfunk app")?;
            Ok(client.forget_host(&addr)?)
        })
    }
}

fn paired(addr: HostAddr, session: punktfunk_native::Session) -> Paired {
    let session = Session::new(session);
    Paired {
        host: addr.to_string(),
        host_fingerprint: session.host_fingerprint(),
        host_name: session.host_name(),
        session,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_protocol_code_has_its_own_variant() {
        for code in ErrorCode::ALL {
            let e = PunktfunkError::new(Failure::Code(code), "m".into());
            assert_eq!(e.code(), code.as_str());
            assert_eq!(e.to_string(), "m");
        }
        for local in [Failure::HostNotAccepted, Failure::ConnectionFailed] {
            assert_eq!(
                PunktfunkError::new(local, String::new()).code(),
                local.as_str()
            );
        }
    }

    #[test]
    fn hosts_are_typed_as_the_cli_types_them() {
        assert_eq!(
            host_addr("192.168.1.5", 47991).unwrap().to_string(),
            "192.168.1.5:47991"
        );
        assert_eq!(
            host_addr("fd00::5", 47991).unwrap().to_string(),
            "[fd00::5]:47991"
        );
        assert_eq!(
            host_addr("[fd00::5]", 1).unwrap().to_string(),
            "[fd00::5]:1"
        );
        assert!(host_addr("", 1).is_err());
    }

    #[test]
    fn a_cancelled_or_timed_out_call_ends_at_once() {
        let cancel = Cancellation::new();
        cancel.cancel();
        let r: Result<(), _> = block(0, Some(cancel), std::future::pending());
        assert_eq!(r.unwrap_err().code(), "cancelled");
        let r: Result<(), _> = block(10, None, std::future::pending());
        assert_eq!(r.unwrap_err().code(), "timeout");
    }
}
