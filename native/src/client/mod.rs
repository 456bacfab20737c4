//! The reference client (docs/native-protocol.md § 2, § 7.2): its own
//! long-term identity, a known-hosts file of pinned host fingerprints, PIN
//! pairing, connecting (trusted, open, knock) and holding a session.
//!
//! Everything lives in one client dir: `client.crt` and `client.key`
//! (0600, created on first use) and `known_hosts` (one line per host,
//! [`KnownHost`]):
//!
//! ```text
//! # punktfunk known hosts: HOST:PORT SHA-256 fingerprint [accepted]
//! 192.168.1.20:47991 3f0c…9a                 <- pinned: the host trusts us
//! 192.168.1.30:47991 77d1…02 accepted        <- accepted, not yet trusted
//! ```
//!
//! Host checks (§ 2): a known host must present exactly the certificate on
//! record; the check runs inside the TLS handshake, so a client never even
//! sends its certificate, let alone `hello`, to an impostor. Pairing with an
//! unpinned host accepts any certificate and pins it once SPAKE2 proved the
//! host knew the PIN. Pairing with a [`PairingLink`] (§ 12) needs no such
//! leap: the link names the host's fingerprint, which binds the handshake
//! from the first connection on. Connecting to an unknown host is trust on first use:
//! the caller must accept the host's fingerprint first ([`NewHost`]).
//!
//! A fingerprint the user accepted is remembered once the host answers
//! `approval_pending` (the device knocked): that is
//! what lets "approve in the console, connect again" work without asking the
//! user about the same fingerprint a second time. It is promoted to pinned
//! when the host answers `trusted` or `open` (or `decision{approved}`).
//! Either way, a different certificate later is `host_identity_changed`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openssl::ssl::{Ssl, SslContext, SslMethod, SslMode, SslVerifyMode, SslVersion};
use punktfunk_identity::{Fingerprint, Identity, IdentityError};
use rand_core::OsRng;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_openssl::SslStream;

use crate::handshake::{self, HandshakeError};
use crate::io::{self as frame_io, FrameReader, ReadError, WriteError};
use crate::link::PairingLink;
use crate::message::{
    Decision, DisplayName, ErrorCode, ErrorMessage, Features, Grant, Intent, Message, Status,
    Welcome,
};
use crate::pairing::{
    ChannelBinding, ClientPairing, Exporter, PairingError, PairingPassword, Pin, EXPORTER_LABEL,
};
use crate::ALPN_WIRE;
use crate::{timeouts, DEFAULT_PORT};

mod addr;
mod known_hosts;
mod session;
mod tls;

pub use addr::{HostAddr, HostAddrError};
use known_hosts::KnownHosts;
pub use known_hosts::KnownHostsError;
pub use session::Session;
use tls::{read_error, Tls};

/// Client certificate file in the client dir.
pub const CLIENT_CERT_FILE: &str = "client.crt";
/// Client key file in the client dir (0600).
pub const CLIENT_KEY_FILE: &str = "client.key";
/// Pinned hosts file in the client dir.
pub const KNOWN_HOSTS_FILE: &str = "known_hosts";

/// Longest known-hosts file read, in bytes.
const MAX_KNOWN_HOSTS_BYTES: u64 = 1024 * 1024;

/// Marker after the fingerprint of a known-hosts line whose fingerprint the
/// user accepted but the host has not admitted this device yet. Lines
/// without it (all lines of files written before it existed) are pinned.
const ACCEPTED_MARKER: &str = "accepted";

/// How long [`Client::pair`] keeps trying while the host answers
/// `hello{intent: pair}` with `error{pairing_busy}`: the host has no room
/// for another connection in the pairing steps (from this address, or in
/// all) for a few seconds (until the host's per-step deadline); a real user
/// typing a PIN should not lose to that. After this window the client gives
/// up with the host's `pairing_busy`.
pub const PAIRING_BUSY_RETRY_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

/// The pause between two attempts within [`PAIRING_BUSY_RETRY_WINDOW`];
/// each attempt is a new TLS connection. Only `pairing_busy` to `hello{intent:
/// pair}` is retried: every other answer (e.g. `not_armed`) is final, and
/// `connect` never retries.
pub const PAIRING_BUSY_RETRY_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// How long [`Client::pair_link`] waits for a TCP connection to each
/// address of a link before it tries the next one. Shorter than the 10 s of
/// a typed address: a link may list addresses this client cannot reach (a
/// host's other networks), and the PIN it carries only lives 180 s. On a
/// LAN a connection takes milliseconds.
pub const LINK_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Why a client operation failed. [`ClientError::code`] is the § 5 code the
/// CLI prints.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The host refused with `error{code, message}`.
    #[error("{}", .0.message)]
    Host(ErrorMessage),
    /// The console denied the knock (`decision{denied}`).
    #[error("the host's owner denied this device; knocking again later is allowed")]
    Denied,
    /// Nobody decided in time (`decision{expired}`).
    #[error("nobody approved this device in time; connect again to knock again")]
    Expired,
    /// The host presented a certificate other than the one on record
    /// (pinned, or accepted by the user earlier).
    #[error("{addr} presented certificate {}, but this client has {} on record for it; if the host was reinstalled, remove its line from {} and pair again, otherwise suspect an attack", .seen.grouped(), .pinned.grouped(), .known_hosts.display())]
    HostIdentityChanged {
        /// The host.
        addr: HostAddr,
        /// What is on record (pinned or accepted).
        pinned: Fingerprint,
        /// What it presented.
        seen: Fingerprint,
        /// Where the pin lives.
        known_hosts: PathBuf,
    },
    /// Pairing with a link: one of its addresses is pinned to a different
    /// host than the link names. Nothing was sent anywhere.
    #[error("the pairing link names host {link}, but this client has {pinned} pinned for {addr}; if the host was reinstalled, remove the line for {addr} from {} and scan the code again, otherwise suspect an attack", .known_hosts.display())]
    LinkConflictsWithPin {
        /// The address pinned to another host.
        addr: HostAddr,
        /// What is pinned for it.
        pinned: Fingerprint,
        /// What the link says.
        link: Fingerprint,
        /// Where the pin lives.
        known_hosts: PathBuf,
    },
    /// Pairing with a link: a host presented a certificate other than the
    /// link's. The handshake was aborted, so it received nothing, and the
    /// PIN was offered to nobody (it stays armed on the real host).
    #[error("{addr} presented certificate {}, not {} from the pairing link, so this client sent it nothing; make sure the code is the one your host shows now, otherwise suspect an attack", .seen.grouped(), .expected.grouped())]
    LinkHostMismatch {
        /// The address that answered.
        addr: HostAddr,
        /// The link's fingerprint.
        expected: Fingerprint,
        /// What it presented.
        seen: Fingerprint,
    },
    /// Pairing with a link: none of its addresses answered.
    #[error("no address in the pairing link answered ({}); is this device on the host's network, and is the host running?", .attempts.join("; "))]
    LinkUnreachable {
        /// One line per address tried: the address and what went wrong.
        attempts: Vec<String>,
    },
    /// The user did not accept an unpinned host's fingerprint (TOFU).
    #[error("the fingerprint of {addr} ({}) was not accepted; pair with a PIN, or accept it if it matches the one the host shows", .seen.grouped())]
    HostNotAccepted {
        /// The host.
        addr: HostAddr,
        /// What it presented.
        seen: Fingerprint,
    },
    /// The pairing exchange failed (wrong PIN, MITM, a malformed message).
    #[error(transparent)]
    Pairing(#[from] PairingError),
    /// `hello`/`welcome`/`decision` checks failed.
    #[error(transparent)]
    Handshake(HandshakeError),
    /// The host sent something this client cannot read.
    #[error("the host sent a malformed message: {0}")]
    BadMessage(String),
    /// The host did not answer in time.
    #[error("the host did not answer in time ({0})")]
    Timeout(&'static str),
    /// No TCP or TLS connection could be made, or it broke.
    #[error("cannot talk to {addr}: {reason}")]
    Connection {
        /// The host.
        addr: HostAddr,
        /// What went wrong.
        reason: String,
    },
    /// The client's own files could not be read or written.
    #[error("client dir {}: {source}", .dir.display())]
    ClientDir {
        /// The client dir.
        dir: PathBuf,
        /// What went wrong, with which file.
        source: ClientDirError,
    },
}

/// What went wrong with a file in the client dir ([`ClientError::ClientDir`]).
#[derive(Debug, thiserror::Error)]
pub enum ClientDirError {
    /// The dir itself could not be created.
    #[error("cannot create it ({0}); check that its parent exists and is writable, or pass another client dir")]
    Create(#[source] std::io::Error),
    /// `client.crt`/`client.key` could not be loaded or created.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The known-hosts file could not be read, parsed or written.
    #[error(transparent)]
    KnownHosts(#[from] KnownHostsError),
}

/// What went wrong, as a caller switches on it: a § 5 code, or one of the
/// reference client's own two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// A § 5 code: sent by the host, or the client's own refusal with the
    /// same meaning.
    Code(ErrorCode),
    /// An unknown host, and the caller did not accept new hosts.
    HostNotAccepted,
    /// No connection, or it broke.
    ConnectionFailed,
}

impl Failure {
    /// As printed and documented: the § 5 spelling, `host_not_accepted` or
    /// `connection_failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Code(code) => code.as_str(),
            Self::HostNotAccepted => "host_not_accepted",
            Self::ConnectionFailed => "connection_failed",
        }
    }
}

impl ClientError {
    /// What went wrong, to switch on.
    pub fn failure(&self) -> Failure {
        let code = match self {
            Self::Host(e) => e.code,
            Self::Denied => ErrorCode::Denied,
            Self::Expired => ErrorCode::Expired,
            Self::HostIdentityChanged { .. }
            | Self::LinkConflictsWithPin { .. }
            | Self::LinkHostMismatch { .. } => ErrorCode::HostIdentityChanged,
            Self::HostNotAccepted { .. } => return Failure::HostNotAccepted,
            Self::Pairing(e) => e.code(),
            Self::Handshake(e) => e.code(),
            Self::BadMessage(_) => ErrorCode::BadMessage,
            Self::Timeout(_) => ErrorCode::Timeout,
            Self::Connection { .. } | Self::LinkUnreachable { .. } => {
                return Failure::ConnectionFailed
            }
            Self::ClientDir { .. } => ErrorCode::Internal,
        };
        Failure::Code(code)
    }

    /// The code to print ([`Failure::as_str`]).
    pub fn code(&self) -> &'static str {
        self.failure().as_str()
    }

    fn from_handshake(e: HandshakeError) -> Self {
        match e {
            HandshakeError::Peer(m) => Self::Host(m),
            other => Self::Handshake(other),
        }
    }

    fn from_pairing(e: PairingError) -> Self {
        match e {
            PairingError::Peer(m) => Self::Host(m),
            other => Self::Pairing(other),
        }
    }
}

/// How to treat a host that is not known yet when connecting (§ 2, trust
/// on first use). A known host (pinned or accepted, [`KnownHost`]) is always
/// held to the fingerprint on record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewHost {
    /// Refuse it (`host_not_accepted`).
    Refuse,
    /// The user saw and accepted this fingerprint (e.g. after
    /// [`Client::probe`]); the host must present exactly it.
    Accepted(Fingerprint),
    /// DANGER: accept whatever certificate the host presents and remember
    /// it (`--accept-new-host`). An attacker on the path at first contact
    /// becomes "the host" for good.
    DangerAcceptAny,
}

/// How far this client trusts a host in its known-hosts file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostTrust {
    /// The host admitted this device (`trusted`, `open`,
    /// `decision{approved}`) or proved the PIN (pairing).
    Pinned,
    /// The user accepted the host's fingerprint (trust on first use) and
    /// the host recorded this device's knock (`approval_pending`), but has
    /// not admitted it yet. The next connect expects this fingerprint
    /// without asking again; PIN pairing may replace it, since SPAKE2
    /// authenticates the host on its own.
    Accepted,
}

/// A host in the known-hosts file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownHost {
    /// The SHA-256 fingerprint of its certificate.
    pub fingerprint: Fingerprint,
    /// Pinned or only accepted.
    pub trust: HostTrust,
}

/// What `connect` got.
#[derive(Debug)]
pub enum Connected {
    /// `trusted` or `open` (or `approved` after waiting): a session.
    Session(Box<Session>),
    /// `approval_pending` and the caller did not want to wait.
    ApprovalPending,
}

/// The reference client: identity + known hosts + device name.
pub struct Client {
    dir: PathBuf,
    identity: Identity,
    device_name: DisplayName,
    known: KnownHosts,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("dir", &self.dir)
            .field("fingerprint", &self.identity.fingerprint())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Opens the client dir (mode 0700, created if needed), loading or
    /// creating the client identity and reading the known hosts.
    pub fn open(dir: &Path, device_name: DisplayName) -> Result<Self, ClientError> {
        let dir_err = |source: ClientDirError| ClientError::ClientDir {
            dir: dir.to_path_buf(),
            source,
        };
        create_private_dir(dir).map_err(|e| dir_err(ClientDirError::Create(e)))?;
        let (identity, _) = Identity::load_or_create(
            &dir.join(CLIENT_CERT_FILE),
            &dir.join(CLIENT_KEY_FILE),
            "punktfunk client",
        )
        .map_err(|e| dir_err(e.into()))?;
        let known = KnownHosts::load(&dir.join(KNOWN_HOSTS_FILE)).map_err(|e| dir_err(e.into()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            identity,
            device_name,
            known,
        })
    }

    /// This client's certificate fingerprint (what the host's console shows).
    pub fn fingerprint(&self) -> Fingerprint {
        self.identity.fingerprint()
    }

    /// The fingerprint pinned for `addr`, if any (not one only accepted).
    pub fn pinned(&self, addr: &HostAddr) -> Option<Fingerprint> {
        self.known
            .get(addr)
            .filter(|k| k.trust == HostTrust::Pinned)
            .map(|k| k.fingerprint)
    }

    /// What the known-hosts file says about `addr`: pinned, accepted, or
    /// nothing (then `connect` needs a [`NewHost`] decision).
    pub fn known_host(&self, addr: &HostAddr) -> Option<KnownHost> {
        self.known.get(addr)
    }

    /// Every host on record, as `HOST:PORT` keys, in the file's order.
    pub fn known_hosts(&self) -> Vec<(String, KnownHost)> {
        self.known.entries.clone()
    }

    /// Forgets the fingerprint on record for `addr` (a reinstalled host,
    /// a host given away); the next connect treats it as new. Whether it
    /// was on record.
    pub fn forget_host(&mut self, addr: &HostAddr) -> Result<bool, ClientError> {
        self.known.remove(addr).map_err(|e| self.dir_error(e))
    }

    /// Runs only the TLS handshake and returns the host's fingerprint,
    /// sending nothing else: what a TOFU prompt shows. Checks the
    /// fingerprint on record if there is one.
    pub async fn probe(&self, addr: &HostAddr) -> Result<Fingerprint, ClientError> {
        let expect = self.known.get(addr).map(|k| k.fingerprint);
        let mut tls = self.tls_connect(addr, expect).await?;
        let fp = tls.host_fp;
        frame_io::close(&mut tls.writer).await;
        Ok(fp)
    }

    /// PIN pairing (§ 6, § 7.2). On success the host is pinned and the
    /// connection is a trusted session.
    ///
    /// A pinned host must present its pinned certificate. A fingerprint
    /// that was only accepted (TOFU) does not bind pairing: SPAKE2 proves
    /// which host knows the PIN, and that one is pinned in its place.
    ///
    /// While the host answers `pairing_busy` (no room in its pairing
    /// steps), this retries on a new connection every
    /// [`PAIRING_BUSY_RETRY_INTERVAL`] for up to
    /// [`PAIRING_BUSY_RETRY_WINDOW`].
    pub async fn pair(&mut self, addr: &HostAddr, pin: &Pin) -> Result<Session, ClientError> {
        let pinned = self.pinned(addr);
        let give_up = Instant::now() + PAIRING_BUSY_RETRY_WINDOW;
        let tls = self.tls_connect(addr, pinned).await?;
        self.pair_over(tls, Intent::Pair, pin, pinned, give_up)
            .await
    }

    /// Pairing with a [`PairingLink`] (§ 12): the host's fingerprint comes
    /// from the link and binds the TLS handshake from the first connection
    /// on, so no certificate but the host's ever receives a PIN-derived
    /// message (no trust on first use).
    ///
    /// - A pin on record for one of the link's addresses that differs from
    ///   the link's fingerprint is refused before anything is sent
    ///   ([`ClientError::LinkConflictsWithPin`]).
    /// - The addresses are tried in the link's order on its port: one that
    ///   refuses, cannot be reached, or does not complete TCP within
    ///   [`LINK_CONNECT_TIMEOUT`] (or the TLS handshake within 10 s) is
    ///   skipped. A certificate other than the link's stops everything
    ///   ([`ClientError::LinkHostMismatch`]): the PIN is not offered to
    ///   anyone else.
    /// - The first address whose TLS handshake shows the link's certificate
    ///   is the host: the ceremony runs there (with the `pairing_busy`
    ///   retries of [`Client::pair`]), and its outcome is final.
    ///
    /// On success the fingerprint is pinned under that address (and the
    /// link's port), which is returned with the session.
    pub async fn pair_link(
        &mut self,
        link: &PairingLink,
    ) -> Result<(HostAddr, Session), ClientError> {
        let expect = link.host_fingerprint;
        let candidates: Vec<HostAddr> = link
            .addresses
            .iter()
            .map(|ip| HostAddr::from_ip(*ip, link.port))
            .collect();
        for addr in &candidates {
            if let Some(pinned) = self.pinned(addr).filter(|p| *p != expect) {
                return Err(ClientError::LinkConflictsWithPin {
                    addr: addr.clone(),
                    pinned,
                    link: expect,
                    known_hosts: self.known.path.clone(),
                });
            }
        }
        let mut failures = Vec::new();
        for addr in candidates {
            let give_up = Instant::now() + PAIRING_BUSY_RETRY_WINDOW;
            match self
                .tls_connect_within(&addr, Some(expect), LINK_CONNECT_TIMEOUT)
                .await
            {
                Ok(tls) => {
                    let session = self
                        .pair_over(tls, Intent::PairLink, &link.secret, Some(expect), give_up)
                        .await?;
                    return Ok((addr, session));
                }
                Err(ClientError::HostIdentityChanged { addr, seen, .. }) => {
                    return Err(ClientError::LinkHostMismatch {
                        addr,
                        expected: expect,
                        seen,
                    })
                }
                // Nothing was sent there: the next address may be the one.
                Err(e @ (ClientError::Connection { .. } | ClientError::Timeout(_))) => {
                    failures.push(format!("{addr}: {e}"))
                }
                Err(e) => return Err(e),
            }
        }
        Err(ClientError::LinkUnreachable { attempts: failures })
    }

    /// The ceremony on a connection whose host certificate passed the
    /// checks (`expect`: the fingerprint every reconnect must show too).
    /// `intent` says which password `pin` is (§ 4.1: the typed PIN, or the
    /// link's secret with `via: link`).
    async fn pair_over(
        &mut self,
        mut tls: Tls,
        intent: Intent,
        pin: &impl PairingPassword,
        expect: Option<Fingerprint>,
        give_up: Instant,
    ) -> Result<Session, ClientError> {
        let addr = tls.addr.clone();
        let welcome = loop {
            match tls.hello(&self.device_name, intent).await {
                Ok(welcome) => break welcome,
                Err(ClientError::Host(e))
                    if e.code == ErrorCode::PairingBusy
                        && Instant::now() + PAIRING_BUSY_RETRY_INTERVAL <= give_up =>
                {
                    // The host closes after an error; close our end too.
                    frame_io::close(&mut tls.writer).await;
                    tokio::time::sleep(PAIRING_BUSY_RETRY_INTERVAL).await;
                    tls = self.tls_connect(&addr, expect).await?;
                }
                Err(e) => return Err(e),
            }
        };
        let binding = ChannelBinding {
            client: self.identity.fingerprint(),
            host: tls.host_fp,
            exporter: tls.exporter.clone(),
        };
        let (state, msg_a) =
            ClientPairing::start(pin, binding, &mut OsRng).map_err(ClientError::from_pairing)?;
        tls.send(&msg_a).await?;
        let reply = tls.recv(timeouts::PAIRING_STEP, "pake").await?;
        let (state, confirm) = state.on_message(reply).map_err(ClientError::from_pairing)?;
        tls.send(&confirm).await?;
        let reply = tls.recv(timeouts::PAIRING_STEP, "confirm").await?;
        let paired = state.on_message(reply).map_err(ClientError::from_pairing)?;
        self.pin(&addr, paired.host)?;
        tls.into_session(welcome, Status::Trusted).await
    }

    /// Connects with `intent: connect` (§ 7.2). `wait`: on
    /// `approval_pending`, wait on the connection for the decision.
    pub async fn connect(
        &mut self,
        addr: &HostAddr,
        new_host: NewHost,
        wait: bool,
    ) -> Result<Connected, ClientError> {
        let known = self.known.get(addr);
        let expect = match (known, new_host) {
            (Some(k), _) => Some(k.fingerprint),
            (None, NewHost::Accepted(fp)) => Some(fp),
            (None, NewHost::DangerAcceptAny) => None,
            (None, NewHost::Refuse) => {
                let seen = self.probe(addr).await?;
                return Err(ClientError::HostNotAccepted {
                    addr: addr.clone(),
                    seen,
                });
            }
        };
        let mut tls = self.tls_connect(addr, expect).await?;
        let welcome = tls.hello(&self.device_name, Intent::Connect).await?;
        match welcome.status {
            Status::Trusted | Status::Open => {
                self.pin(addr, tls.host_fp)?;
                let status = welcome.status;
                let session = tls.into_session(welcome, status).await?;
                Ok(Connected::Session(Box::new(session)))
            }
            // The host holds the accepted certificate's key and recorded
            // the knock: remember the user's answer (before waiting, which
            // may be interrupted), so the connect after approval goes
            // straight through instead of asking about the same
            // fingerprint again.
            Status::ApprovalPending if !wait => {
                self.accept(addr, tls.host_fp)?;
                frame_io::close(&mut tls.writer).await;
                Ok(Connected::ApprovalPending)
            }
            Status::ApprovalPending => {
                self.accept(addr, tls.host_fp)?;
                match tls.await_decision().await? {
                    Decision::Approved => {}
                    Decision::Denied => return Err(ClientError::Denied),
                    Decision::Expired => return Err(ClientError::Expired),
                }
                self.pin(addr, tls.host_fp)?;
                let session = tls.into_session(welcome, Status::Trusted).await?;
                Ok(Connected::Session(Box::new(session)))
            }
            // read_welcome refuses `pairing` for intent connect.
            Status::Pairing => Err(ClientError::BadMessage(
                "the host answered `pairing` to `connect`".into(),
            )),
        }
    }

    /// Records `fp` for `addr` as pinned (promoting an accepted one).
    fn pin(&mut self, addr: &HostAddr, fp: Fingerprint) -> Result<(), ClientError> {
        self.known.pin(addr, fp).map_err(|e| self.dir_error(e))
    }

    /// Records `fp` for `addr` as accepted, unless `addr` is known already.
    fn accept(&mut self, addr: &HostAddr, fp: Fingerprint) -> Result<(), ClientError> {
        self.known.accept(addr, fp).map_err(|e| self.dir_error(e))
    }

    fn dir_error(&self, e: KnownHostsError) -> ClientError {
        ClientError::ClientDir {
            dir: self.dir.clone(),
            source: e.into(),
        }
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

#[cfg(test)]
mod tests;
