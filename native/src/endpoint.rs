//! The host endpoint: TLS 1.3 over TCP, the thin tokio shell around the
//! sans-IO core (docs/native-protocol.md § 2, § 7.1, § 8).
//!
//! Like quinn's `ConnectionDriver`, each connection task only reads a frame
//! (with a deadline), hands it to the core, writes what the core returns and
//! executes its effects against [`Trust`]. Every decision about *who* gets
//! in comes from the registry and the gate; this module owns no trust
//! state. Revocation and shutdown reach a connection through channels
//! (mini-redis `shutdown.rs` style): each connection subscribes to the trust
//! events before it answers `hello`, so a revocation cannot slip between the
//! check and the session.
//!
//! ```text
//! accept ─ cap ─ TLS 1.3 (client cert required, any accepted) ─ fp, exporter
//!   └ hello ─┬ connect: trusted ─────────────────────────────────▶ session
//!            │          unknown: DangerOpen → store (via open) ──▶ session
//!            │                   Knock → pending ─ decision ─────▶ session | close
//!            │                   Refuse → error{not_paired}
//!            └ pair: armed? ─ welcome{pairing} ─ pake (take PIN) ─ confirm
//!                    ─ store (via pin) ─ report ─ confirm{cB} ───▶ session
//! session: ping → pong; DeviceRemoved(fp) → error{revoked}, close
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use openssl::ssl::{self, AlpnError, Ssl, SslAcceptor, SslMethod, SslVerifyMode};
use punktfunk_certs::audit::DeviceRef;
use punktfunk_certs::gate::PinTicket;
use punktfunk_certs::{
    Claimant, Device, Door, Entry, Event, Fingerprint, GateError, Identity, Kind, Needs, Outcome,
    PendingId, PendingOutcome, PendingRequest, RequestUpdate, Trust, TrustEvent, Via,
};
use rand_core::OsRng;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{broadcast, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_openssl::SslStream;

use crate::handshake::{self, HandshakeError};
use crate::io::{self as frame_io, FrameReader, ReadError};
use crate::message::{Decision, DisplayName, ErrorCode, Hello, Intent, Message, Status};
use crate::pairing::{
    ChannelBinding, Exporter, HostEffect, HostPairing, PairingError, Pin, EXPORTER_LABEL,
};
use crate::timeouts;

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

/// Settings of an [`Endpoint`].
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// The host's display name, sent in `welcome`.
    pub host_name: DisplayName,
    /// The shared trust service (registry + gate + events).
    pub trust: Arc<Trust>,
    /// Policy for unknown devices.
    pub unknown_devices: UnknownDevices,
    /// Connections served at once. When all are taken, a new connection
    /// evicts the oldest one that has not sent `hello` yet (still in the TLS
    /// handshake or silent after it); only if every connection is past
    /// `hello` is the new one closed right after `accept`.
    pub max_connections: usize,
}

/// Default for [`EndpointConfig::max_connections`]: room for every pending
/// knock (the gate's default cap is 32) plus sessions.
pub const DEFAULT_MAX_CONNECTIONS: usize = 128;

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The port is taken or the address is not local.
    #[error("cannot listen on {addr} (native endpoint): {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// OpenSSL refused the host certificate or the TLS settings.
    #[error("cannot set up TLS for the native endpoint: {0}")]
    Tls(#[from] openssl::error::ErrorStack),
}

/// A bound native endpoint; [`Endpoint::run`] serves it.
pub struct Endpoint {
    listener: TcpListener,
    ctx: Arc<Ctx>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("local_addr", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

/// What every connection task shares.
struct Ctx {
    acceptor: SslAcceptor,
    host_fp: Fingerprint,
    host_name: DisplayName,
    trust: Arc<Trust>,
    unknown_devices: UnknownDevices,
    /// One pairing exchange at a time (§ 6.5, last bullet).
    pairing: Arc<Semaphore>,
    connections: Arc<Semaphore>,
    /// Connections that have not sent `hello` yet, oldest first: the ones
    /// a new connection may evict when every slot is taken.
    before_hello: Mutex<BeforeHello>,
}

#[derive(Default)]
struct BeforeHello {
    next: u64,
    waiting: BTreeMap<u64, oneshot::Sender<()>>,
}

impl Ctx {
    fn before_hello(&self) -> std::sync::MutexGuard<'_, BeforeHello> {
        // Plain map updates: a panic elsewhere cannot leave it half-changed.
        self.before_hello.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lists a new connection as not past `hello`; the receiver fires if it
    /// is evicted.
    fn register(self: &Arc<Self>) -> (Unhelloed, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let mut b = self.before_hello();
        let id = b.next;
        b.next += 1;
        b.waiting.insert(id, tx);
        (
            Unhelloed {
                ctx: self.clone(),
                id,
            },
            rx,
        )
    }

    /// Tells the oldest connection not past `hello` to close. Whether there
    /// was one.
    fn evict_oldest(&self) -> bool {
        match self.before_hello().waiting.pop_first() {
            Some((_, tx)) => {
                let _ = tx.send(());
                true
            }
            None => false,
        }
    }
}

/// A connection's place in [`Ctx::before_hello`]; dropped once `hello`
/// arrived (or the connection ended), which makes it unevictable.
struct Unhelloed {
    ctx: Arc<Ctx>,
    id: u64,
}

impl Drop for Unhelloed {
    fn drop(&mut self) {
        self.ctx.before_hello().waiting.remove(&self.id);
    }
}

impl Endpoint {
    /// Binds `addr` and prepares TLS with the host `identity`.
    pub async fn bind(
        addr: SocketAddr,
        identity: &Identity,
        config: EndpointConfig,
    ) -> Result<Self, EndpointError> {
        let acceptor = acceptor(identity)?;
        let bind_err = |source| EndpointError::Bind { addr, source };
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(bind_err)?;
        // A restarted host gets its port back while old connections linger
        // in TIME_WAIT.
        socket.set_reuseaddr(true).map_err(bind_err)?;
        socket.bind(addr).map_err(bind_err)?;
        let listener = socket.listen(128).map_err(bind_err)?;
        Ok(Self::with_listener(listener, acceptor, identity, config))
    }

    /// Serves on a listener the caller bound (e.g. dual-stack `[::]`),
    /// with TLS for the host `identity`.
    pub fn from_listener(
        listener: std::net::TcpListener,
        identity: &Identity,
        config: EndpointConfig,
    ) -> Result<Self, EndpointError> {
        let acceptor = acceptor(identity)?;
        let addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let bind_err = |source| EndpointError::Bind { addr, source };
        listener.set_nonblocking(true).map_err(bind_err)?;
        let listener = TcpListener::from_std(listener).map_err(bind_err)?;
        Ok(Self::with_listener(listener, acceptor, identity, config))
    }

    fn with_listener(
        listener: TcpListener,
        acceptor: SslAcceptor,
        identity: &Identity,
        config: EndpointConfig,
    ) -> Self {
        Self {
            listener,
            ctx: Arc::new(Ctx {
                acceptor,
                host_fp: identity.fingerprint(),
                host_name: config.host_name,
                trust: config.trust,
                unknown_devices: config.unknown_devices,
                pairing: Arc::new(Semaphore::new(1)),
                connections: Arc::new(Semaphore::new(config.max_connections.max(1))),
                before_hello: Mutex::default(),
            }),
        }
    }

    /// The address actually bound (the port differs when asked for 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves connections until `shutdown` becomes `true` (or its sender is
    /// dropped), then ends every connection and returns.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut tasks = JoinSet::new();
        // Each connection watches its own copy.
        let conn_shutdown = shutdown.clone();
        loop {
            tokio::select! {
                _ = stopped(&mut shutdown) => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                accepted = self.listener.accept() => {
                    let (tcp, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of file descriptors and the like: back off
                            // instead of spinning.
                            tracing::warn!("native endpoint: accept failed: {e}");
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let Some(permit) = self.slot(peer).await else {
                        continue;
                    };
                    let ctx = self.ctx.clone();
                    let (unhelloed, evicted) = ctx.register();
                    let mut stop = conn_shutdown.clone();
                    tasks.spawn(async move {
                        tokio::select! {
                            _ = serve_connection(ctx, tcp, peer, permit, unhelloed) => {}
                            _ = stopped(&mut stop) => {}
                            // Err: past hello, the sender is gone; not evicted.
                            Ok(()) = evicted => {
                                tracing::debug!(%peer, "native: evicted before hello (connection limit)");
                            }
                        }
                    });
                }
            }
        }
        drop(self.listener);
        while tasks.join_next().await.is_some() {}
    }
}

impl Endpoint {
    /// A connection slot for a new connection: a free one, or the one of
    /// the oldest connection that has not sent `hello` (so idle and slow
    /// connections cannot starve clients that complete their handshake).
    async fn slot(&self, peer: SocketAddr) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.ctx.connections.clone().try_acquire_owned() {
            return Some(permit);
        }
        if !self.ctx.evict_oldest() {
            tracing::warn!(%peer, "native endpoint: connection limit reached, every connection past hello; closing");
            return None;
        }
        // The evicted task gives its slot back as soon as it runs.
        let permit = self.ctx.connections.clone().acquire_owned();
        match tokio::time::timeout(std::time::Duration::from_secs(1), permit).await {
            Ok(Ok(permit)) => Some(permit),
            _ => {
                tracing::warn!(%peer, "native endpoint: connection limit reached; closing");
                None
            }
        }
    }
}

/// Resolves once `shutdown` is `true` or its sender is gone.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send: drop it here.
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}

/// TLS 1.3 only, client certificate required but accepted whatever it is
/// (§ 2), ALPN `punktfunk/1` selected when offered, no session tickets or
/// resumption (every connection carries both certificates and a fresh
/// exporter).
fn acceptor(identity: &Identity) -> Result<SslAcceptor, openssl::error::ErrorStack> {
    // mozilla_modern_v5 is TLS 1.3 only.
    let mut b = SslAcceptor::mozilla_modern_v5(SslMethod::tls_server())?;
    b.set_certificate(identity.cert())?;
    b.set_private_key(identity.key())?;
    b.check_private_key()?;
    // The chain is not evaluated: the host decides by fingerprint alone.
    // OpenSSL still checks the CertificateVerify signature, so the client
    // proves it holds the key of the certificate it presented.
    b.set_verify_callback(
        SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
        |_, _| true,
    );
    // Offered: select it; not offered: go on without ALPN (§ 2).
    b.set_alpn_select_callback(|_, offered| {
        ssl::select_next_proto(ALPN_WIRE, offered).ok_or(AlpnError::NOACK)
    });
    b.set_session_cache_mode(ssl::SslSessionCacheMode::OFF);
    b.set_options(ssl::SslOptions::NO_TICKET);
    b.set_num_tickets(0)?;
    Ok(b.build())
}

/// [`ALPN`] in wire format: one length byte, then the id.
pub(crate) const ALPN_WIRE: &[u8] = b"\x0bpunktfunk/1";

type Reader = FrameReader<ReadHalf<SslStream<TcpStream>>>;
type Writer = WriteHalf<SslStream<TcpStream>>;

/// One TLS connection after the handshake.
struct Conn {
    ctx: Arc<Ctx>,
    reader: Reader,
    writer: Writer,
    peer: SocketAddr,
    fp: Fingerprint,
    cert_der: Vec<u8>,
    exporter: Exporter,
    events: broadcast::Receiver<TrustEvent>,
    /// Evictable until `hello` arrives.
    unhelloed: Option<Unhelloed>,
}

async fn serve_connection(
    ctx: Arc<Ctx>,
    tcp: TcpStream,
    peer: SocketAddr,
    _permit: OwnedSemaphorePermit,
    unhelloed: Unhelloed,
) {
    let _ = tcp.set_nodelay(true);
    let stream = match tokio::time::timeout(timeouts::TLS_HANDSHAKE, tls_accept(&ctx, tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, "native: TLS handshake failed: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "native: TLS handshake timed out");
            return;
        }
    };
    let Some(cert_der) = stream
        .ssl()
        .peer_certificate()
        .and_then(|c| c.to_der().ok())
    else {
        // FAIL_IF_NO_PEER_CERT makes this unreachable in practice.
        tracing::debug!(%peer, "native: no client certificate");
        return;
    };
    let mut ekm = [0u8; crate::pairing::EXPORTER_LEN];
    if let Err(e) = stream
        .ssl()
        .export_keying_material(&mut ekm, EXPORTER_LABEL, None)
    {
        tracing::warn!(%peer, "native: TLS exporter failed: {e}");
        return;
    }
    // Subscribe before anything is decided from the registry, so that a
    // revocation racing with `hello` is still seen (§ 7.1).
    let events = ctx.trust.subscribe();
    let (rd, writer) = tokio::io::split(stream);
    let conn = Conn {
        fp: Fingerprint::of_der(&cert_der),
        ctx,
        reader: FrameReader::new(rd),
        writer,
        peer,
        cert_der,
        exporter: Exporter(ekm),
        events,
        unhelloed: Some(unhelloed),
    };
    conn.run().await;
}

async fn tls_accept(
    ctx: &Ctx,
    tcp: TcpStream,
) -> Result<SslStream<TcpStream>, Box<dyn std::error::Error + Send + Sync>> {
    let ssl = Ssl::new(ctx.acceptor.context())?;
    let mut stream = SslStream::new(ssl, tcp)?;
    std::pin::Pin::new(&mut stream).accept().await?;
    Ok(stream)
}

/// How a state ends: keep the connection as a session, or close it.
enum Next {
    Session,
    Close,
}

impl Conn {
    async fn run(mut self) {
        let first = self.reader.next(Instant::now() + timeouts::HELLO).await;
        // Past hello (or done): no longer evictable.
        self.unhelloed = None;
        let next = match first
            .map_err(Failure::Read)
            .and_then(|m| handshake::read_hello(m).map_err(Failure::Handshake))
        {
            Ok(hello) => {
                tracing::debug!(peer = %self.peer, fp = %self.fp.short(), name = %hello.device_name, intent = ?hello.intent, "native: hello");
                match hello.intent {
                    Intent::Connect => self.connect(hello).await,
                    Intent::Pair => self.pair(hello).await,
                }
            }
            Err(f) => {
                self.fail(f).await;
                Next::Close
            }
        };
        if let Next::Session = next {
            self.session().await;
        }
        frame_io::close(&mut self.writer).await;
    }

    /// `hello{intent: connect}` (§ 7.1).
    async fn connect(&mut self, hello: Hello) -> Next {
        let trust = self.ctx.trust.clone();
        if trust.is_trusted(&self.fp) {
            let fp = self.fp;
            // last_seen is coarse and may fsync: off the reply path.
            if trust.touch_due(&fp) {
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = trust.touch(&fp) {
                        tracing::warn!("native: cannot record last_seen: {e}");
                    }
                });
            }
            return self.welcome(Status::Trusted).await;
        }
        match self.ctx.unknown_devices {
            UnknownDevices::DangerAdmitOpen => {
                if let Err(e) = self.admit_peer(hello.device_name.clone(), Via::Open).await {
                    tracing::error!("native: cannot store an open-mode device: {e}");
                    return self
                        .refuse(ErrorCode::Internal, "the host could not store this device")
                        .await;
                }
                tracing::info!(fp = %self.fp.short(), name = %hello.device_name, "native: device admitted (open mode)");
                self.welcome(Status::Open).await
            }
            UnknownDevices::Refuse => {
                self.refuse(
                    ErrorCode::NotPaired,
                    "this device is not paired with this host; pair it with the PIN the host shows",
                )
                .await
            }
            UnknownDevices::Knock => {
                let request = PendingRequest {
                    kind: Kind::Native,
                    name: hello.device_name.clone(),
                    cert_der: self.cert_der.clone(),
                    address: self.peer,
                    needs: Needs::Approval,
                };
                let added = trust.gate().add_pending(request, trust.now());
                match added {
                    Ok(id) => {
                        tracing::info!(fp = %self.fp.short(), name = %hello.device_name, "native: device knocked; waiting for approval in the console");
                        self.audited().await;
                        match self.welcome(Status::ApprovalPending).await {
                            Next::Session => self.await_decision(id).await,
                            Next::Close => Next::Close,
                        }
                    }
                    Err(
                        e @ (GateError::TooManyPending
                        | GateError::TooManyFromAddress(_)
                        | GateError::WaitingElsewhere),
                    ) => self.refuse(ErrorCode::PairingBusy, &e.to_string()).await,
                    Err(e) => {
                        tracing::error!("native: cannot record a knock: {e}");
                        self.refuse(ErrorCode::Internal, "the host could not record the request")
                            .await
                    }
                }
            }
        }
    }

    /// `AwaitDecision` (§ 4.6, § 7.1): ping/pong until the console decides
    /// or the request expires.
    async fn await_decision(&mut self, id: PendingId) -> Next {
        let trust = self.ctx.trust.clone();
        let expires = {
            let now = trust.now();
            let mut gate = trust.gate();
            gate.get_pending(id, now).map(|p| p.expires)
        };
        // The gate expires requests lazily; wake up when this one is due so
        // the client hears `expired` even if nothing else looks at the gate.
        let mut expires = expires.map(Instant::from_std).unwrap_or_else(Instant::now);
        let mut idle = Instant::now() + timeouts::SESSION_IDLE;
        let outcome = loop {
            tokio::select! {
                msg = self.reader.next(idle) => match msg {
                    Ok(Message::Ping) => {
                        idle = Instant::now() + timeouts::SESSION_IDLE;
                        if self.send(&Message::Pong).await.is_err() {
                            return Next::Close;
                        }
                    }
                    // The request stays listed until it expires (§ 7.1).
                    Err(ReadError::Eof) => return Next::Close,
                    Ok(other) => {
                        self.fail(Failure::Handshake(HandshakeError::Unexpected { expected: "ping", got: other.type_name() })).await;
                        return Next::Close;
                    }
                    Err(e) => {
                        self.fail(Failure::Read(e)).await;
                        return Next::Close;
                    }
                },
                update = trust.request_update(&mut self.events, id) => match update {
                    RequestUpdate::Ended(Some(outcome)) => break outcome,
                    RequestUpdate::Ended(None) => return Next::Close,
                    // Knocks need approval, not a PIN.
                    RequestUpdate::PinEntered => {}
                },
                _ = tokio::time::sleep_until(expires) => {
                    let outcome = {
                        let now = trust.now();
                        let mut gate = trust.gate();
                        gate.expire(now);
                        gate.outcome(id)
                    };
                    if let Some(outcome) = outcome {
                        break outcome;
                    }
                    // Not due by the gate's clock yet: ask again shortly.
                    expires = Instant::now() + std::time::Duration::from_millis(200);
                }
            }
        };
        let decision = match outcome {
            PendingOutcome::Approved => Decision::Approved,
            PendingOutcome::Denied => Decision::Denied,
            // Expired, or replaced by a newer knock of the same device on
            // another connection: this request is over either way.
            _ => Decision::Expired,
        };
        tracing::info!(fp = %self.fp.short(), ?decision, "native: knock decided");
        self.audited().await;
        if self.send(&Message::Decision(decision)).await.is_err() {
            return Next::Close;
        }
        match decision {
            // Trust::approve stored the device before ending the request.
            Decision::Approved if trust.is_trusted(&self.fp) => Next::Session,
            _ => Next::Close,
        }
    }

    /// `hello{intent: pair}` through `AwaitPake` and `AwaitConfirm` (§ 6,
    /// § 7.1).
    async fn pair(&mut self, hello: Hello) -> Next {
        let trust = self.ctx.trust.clone();
        let Ok(_slot) = self.ctx.pairing.clone().try_acquire_owned() else {
            return self
                .refuse(
                    ErrorCode::PairingBusy,
                    "another device is pairing with this host right now; try again in a minute",
                )
                .await;
        };
        let armed = {
            let now = trust.now();
            trust.gate().armed(now).is_some()
        };
        if !armed {
            return self.refuse(ErrorCode::NotArmed, NOT_ARMED).await;
        }
        let claimant = Claimant {
            address: self.peer.ip().to_canonical(),
            name: hello.device_name.clone(),
            fingerprint: self.fp,
        };
        // The console names whoever holds the one pairing slot.
        let _exchange = Exchange::begin(trust.clone(), claimant.clone());
        if let Next::Close = self.welcome(Status::Pairing).await {
            return Next::Close;
        }

        // AwaitPake: anything but `pake` leaves the PIN in the gate. A
        // client that connects to pair already has the PIN, so the step is
        // short (§ 8): a peer that stalls here holds the slot only briefly.
        let pake = match self
            .reader
            .next(Instant::now() + timeouts::HOST_PAIRING_STEP)
            .await
        {
            Ok(Message::Pake(p)) => p,
            Ok(other) => {
                self.fail(Failure::Handshake(HandshakeError::Unexpected {
                    expected: "pake",
                    got: other.type_name(),
                }))
                .await;
                return Next::Close;
            }
            Err(e) => {
                self.fail(Failure::Read(e)).await;
                return Next::Close;
            }
        };
        // § 6.5: the PIN leaves the gate now, and never goes back.
        let claimant_entry = Entry::new(Event::PinRejected, Door::Native)
            .outcome(Outcome::Failed)
            .device(DeviceRef::new(self.fp, &claimant.name, None))
            .address(claimant.address);
        let taken = {
            let now = trust.now();
            trust.gate().take_pin(claimant, now)
        };
        let ticket = match taken {
            Ok(t) => Ticket::new(t, trust.clone(), claimant_entry),
            Err(_) => return self.refuse(ErrorCode::NotArmed, NOT_ARMED).await,
        };
        let pin = ticket.pin.clone();
        let binding = ChannelBinding {
            client: self.fp,
            host: self.ctx.host_fp,
            exporter: self.exporter.clone(),
        };
        let (host, reply) =
            match HostPairing::respond(pin, binding, hello.device_name, pake, &mut OsRng) {
                Ok(r) => r,
                Err(e) => return self.pairing_failed(e, ticket).await,
            };
        if self.send(&reply).await.is_err() {
            return Next::Close;
        }

        // AwaitConfirm: timeout, EOF or garbage all fail this arming.
        let confirm = match self
            .reader
            .next(Instant::now() + timeouts::HOST_PAIRING_STEP)
            .await
        {
            Ok(m) => m,
            Err(e) => {
                self.fail(Failure::Read(e)).await;
                return Next::Close;
            }
        };
        let (HostEffect::StoreDevice(verified), awaiting) = match host.on_message(confirm) {
            Ok(r) => r,
            Err(e) => return self.pairing_failed(e, ticket).await,
        };
        // § 6.4: durably stored before the host confirms.
        if let Err(e) = self
            .admit_peer(verified.device_name().clone(), Via::Pin)
            .await
        {
            tracing::error!("native: cannot store a paired device: {e}");
            return self
                .refuse(ErrorCode::Internal, "the host could not store this device")
                .await;
        }
        ticket.paired(verified.fingerprint());
        tracing::info!(fp = %self.fp.short(), name = %verified.device_name(), "native: device paired with the PIN");
        if self.send(&awaiting.stored()).await.is_err() {
            return Next::Close;
        }
        Next::Session
    }

    /// A trusted session (§ 4.7, § 7.1): ping → pong, anything else is
    /// `bad_message`; revocation ends it at once.
    async fn session(&mut self) {
        let trust = self.ctx.trust.clone();
        let mut idle = Instant::now() + timeouts::SESSION_IDLE;
        loop {
            tokio::select! {
                msg = self.reader.next(idle) => match msg {
                    Ok(Message::Ping) => {
                        idle = Instant::now() + timeouts::SESSION_IDLE;
                        if self.send(&Message::Pong).await.is_err() {
                            return;
                        }
                    }
                    Err(ReadError::Eof) => return,
                    // § 8: silence closes a session without a word.
                    Err(ReadError::Timeout) => return,
                    Ok(other) => {
                        self.fail(Failure::Handshake(HandshakeError::Unexpected { expected: "ping", got: other.type_name() })).await;
                        return;
                    }
                    Err(e) => {
                        self.fail(Failure::Read(e)).await;
                        return;
                    }
                },
                event = self.events.recv() => {
                    let revoked = match event {
                        Ok(TrustEvent::DeviceRemoved { fingerprint }) => fingerprint == self.fp,
                        Ok(_) => false,
                        Err(broadcast::error::RecvError::Lagged(_)) => !trust.is_trusted(&self.fp),
                        Err(broadcast::error::RecvError::Closed) => return,
                    };
                    if revoked {
                        tracing::info!(fp = %self.fp.short(), "native: device revoked; closing its session");
                        self.audited().await;
                        let _ = self.send(&Message::error(ErrorCode::Revoked, "this device was removed from the host; pair it again")).await;
                        return;
                    }
                }
            }
        }
    }

    /// Stores the peer's certificate as a paired device, durably and off the
    /// async threads (the write fsyncs).
    async fn admit_peer(&self, name: DisplayName, via: Via) -> Result<(), AdmitError> {
        let trust = self.ctx.trust.clone();
        let device = Device::from_der(
            &self.cert_der,
            Kind::Native,
            name,
            via,
            trust.clock().unix(),
        )?;
        let address = self.peer.ip();
        match tokio::task::spawn_blocking(move || trust.admit(device, address)).await {
            Ok(Ok(ticket)) => {
                if let Err(e) = ticket.durable().await {
                    tracing::error!("native: {e}");
                }
                Ok(())
            }
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(e.into()),
        }
    }

    async fn welcome(&mut self, status: Status) -> Next {
        let msg = handshake::welcome(status, self.ctx.host_name.clone(), self.ctx.host_fp);
        match self.send(&msg).await {
            Ok(()) => Next::Session,
            Err(PeerGone) => Next::Close,
        }
    }

    /// Waits until every audit entry queued so far (this connection's among
    /// them) is on disk, before the client hears about what they record.
    async fn audited(&self) {
        if let Err(e) = self.ctx.trust.audited().durable().await {
            tracing::error!("native: {e}");
        }
    }

    /// A pairing step failed after the PIN was taken: record it, tell the
    /// client why (unless it was the one that sent an error) and close.
    async fn pairing_failed(&mut self, e: PairingError, ticket: Ticket) -> Next {
        tracing::info!(fp = %self.fp.short(), "native: pairing failed: {e}");
        drop(ticket);
        self.audited().await;
        if let Some(m) = e.to_message() {
            let _ = self.send(&m).await;
        }
        Next::Close
    }

    /// Sends `error{code}` and closes.
    async fn refuse(&mut self, code: ErrorCode, message: &str) -> Next {
        tracing::info!(peer = %self.peer, fp = %self.fp.short(), %code, "native: refused");
        let _ = self.send(&Message::error(code, message)).await;
        Next::Close
    }

    /// Answers a failed read or step with the right code, best effort.
    async fn fail(&mut self, failure: Failure) {
        let msg = match failure {
            Failure::Read(ReadError::Eof) | Failure::Read(ReadError::Io(_)) => None,
            Failure::Read(ReadError::Timeout) => Some(Message::error(
                ErrorCode::Timeout,
                "the client took too long to send its next message",
            )),
            Failure::Read(e @ (ReadError::Frame(_) | ReadError::Message(_))) => {
                Some(Message::error(ErrorCode::BadMessage, &e.to_string()))
            }
            Failure::Handshake(e) => e.to_message(),
        };
        if let Some(m) = msg {
            tracing::debug!(peer = %self.peer, "native: closing with {:?}", m);
            let _ = self.send(&m).await;
        }
    }

    async fn send(&mut self, msg: &Message) -> Result<(), PeerGone> {
        frame_io::send(&mut self.writer, msg).await.map_err(|e| {
            tracing::debug!(peer = %self.peer, "native: send failed: {e}");
            PeerGone
        })
    }
}

/// Why a device could not be stored.
#[derive(Debug, thiserror::Error)]
enum AdmitError {
    /// The registry refused it or could not save.
    #[error(transparent)]
    Registry(#[from] punktfunk_certs::RegistryError),
    /// The blocking task that stores it did not finish.
    #[error("the storing task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The peer can no longer be written to (it went away, or the write timed
/// out); the connection ends.
#[derive(Debug, Clone, Copy)]
struct PeerGone;

const NOT_ARMED: &str =
    "pairing is not armed on this host (or its PIN was used or expired); arm it and use the new PIN";

enum Failure {
    Read(ReadError),
    Handshake(HandshakeError),
}

/// A native pairing exchange as the gate shows it to the console, from
/// `welcome{pairing}` until the connection leaves the pairing steps.
struct Exchange {
    trust: Arc<Trust>,
    fingerprint: Fingerprint,
}

impl Exchange {
    fn begin(trust: Arc<Trust>, by: Claimant) -> Self {
        let fingerprint = by.fingerprint;
        let now = trust.now();
        trust.gate().begin_exchange(by, now);
        Self { trust, fingerprint }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.trust.gate().end_exchange(&self.fingerprint);
    }
}

/// The armed PIN taken for one exchange. Reports the outcome to the gate
/// exactly once: `paired` on success, a failure on every other path
/// (errors, timeouts, a dropped connection, shutdown), via `Drop`, which
/// also records the failure as `pin_rejected` (the PIN is spent).
struct Ticket {
    /// The PIN this exchange runs with (a copy of the ticket's).
    pin: Pin,
    ticket: Option<PinTicket>,
    trust: Arc<Trust>,
    /// The `pin_rejected` entry to record on failure.
    rejected: Entry,
}

impl Ticket {
    fn new(ticket: PinTicket, trust: Arc<Trust>, rejected: Entry) -> Self {
        Self {
            pin: ticket.pin().clone(),
            ticket: Some(ticket),
            trust,
            rejected,
        }
    }

    fn paired(mut self, fp: Fingerprint) {
        if let Some(t) = self.ticket.take() {
            self.trust.gate().report(t, Some(fp));
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            self.trust.gate().report(t, None);
            let _ = self.trust.record(self.rejected.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_wire_is_the_length_prefixed_id() {
        assert_eq!(ALPN_WIRE[0] as usize, crate::ALPN.len());
        assert_eq!(&ALPN_WIRE[1..], crate::ALPN);
    }
}
