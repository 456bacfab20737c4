//! The host endpoint: TLS 1.3 over TCP, the tokio driver of the sans-IO
//! [`HostConnection`] core (docs/native-protocol.md § 2, § 7.1, § 8).
//!
//! This module accepts, caps and evicts connections, runs the TLS handshake
//! (client certificate required, any accepted), and then, like quinn's
//! `ConnectionDriver`, only moves things between the core and the world:
//! a frame, a trust event or a deadline goes in; messages come out and are
//! written, effects come out and are run against [`Trust`] (registry, gate,
//! audit trail) with their results fed back. What a connection gets is the
//! core's decision, from the facts it asks for. Revocation and shutdown
//! reach a connection through channels (mini-redis `shutdown.rs` style):
//! each connection subscribes to the trust events before its `hello` is
//! read, so a revocation cannot slip between the check and the session.
//!
//! ```text
//! accept ─ cap ─ TLS 1.3 ─ fp, exporter ─ subscribe ─┐
//!   ┌───────────────────────────────────────────────┘
//!   └▶ act: Send → write │ Effect → Trust (→ result into the core) │ Close
//!      wait: frame │ trust event / request update │ core deadline ─▶ core ─┘
//! ```

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use openssl::ssl::{self, AlpnError, Ssl, SslAcceptor, SslMethod, SslVerifyMode};
use punktfunk_certs::audit::DeviceRef;
use punktfunk_certs::{
    Claimant, Denied, Device, Door, Entry, Event, ExchangeShown, Fingerprint, FrontDoor, Identity,
    Needs, Outcome, PairWith, PendingId, PendingRequest, PinAttempt, Refusal, RequestUpdate,
    Secret, StoreError, Trust, TrustEvent, Via,
};
use punktfunk_conn::{Admission, Limits, Slot, Use};
use rand_core::OsRng;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_openssl::SslStream;

pub use crate::connection::UnknownDevices;
use crate::connection::{Action, Effect, HelloFacts, HostConnection, HostSide};
use crate::io::{self as frame_io, FrameReader, ReadError};
use crate::message::{
    ConsoleAction, ConsoleError, ConsoleReply, DisplayName, Features, Grant as WireGrant, Message,
    Waiting,
};
use crate::pairing::{Exporter, EXPORTER_LABEL};
use crate::timeouts;

mod tls;
use crate::ALPN_WIRE;
use tls::{acceptor, tls_accept, Reader, Writer};

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
    /// handshake or silent after it), or else the oldest knock waiting for
    /// approval (or pairing connection before its `pake`) of the address
    /// that holds the most connections, if it holds more than the
    /// newcomer's; only if there is none is the new one closed right after
    /// `accept`. Sessions and pairing steps are never evicted.
    pub max_connections: usize,
    /// Connections served at once from one source address (an IPv4
    /// address, an IPv6 /128), evicted and refused the same way.
    pub max_connections_per_address: usize,
    /// The console's actions for a trusted device's session (§ 4.10);
    /// `None`: the host does not offer the `console` feature.
    pub console: Option<Arc<dyn ConsoleDoor>>,
}

/// What a console action's answer is, when it comes.
pub type ConsoleAnswer = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<serde_json::Value, ConsoleError>> + Send>,
>;

/// The host's console, as a trusted device's session reaches it (§ 4.10):
/// the same logins, limits, actions and audit entries as the web
/// console's, for the device whose certificate the session holds.
pub trait ConsoleDoor: Send + Sync + std::fmt::Debug + 'static {
    /// Carries out `action` for the device `device`, connected from
    /// `address`.
    fn act(&self, device: Fingerprint, address: IpAddr, action: ConsoleAction) -> ConsoleAnswer;
    /// The waiting requests as `waiting` lists them, if `device` has a
    /// console session (else `None`, and nothing is sent).
    fn waiting(&self, device: Fingerprint) -> Option<Waiting>;
}

/// Default for [`EndpointConfig::max_connections`]. Waiting knocks (the
/// gate lists up to 256) give way to newcomers from addresses holding
/// fewer, so they cannot fill it against sessions.
pub const DEFAULT_MAX_CONNECTIONS: usize = 128;

/// Default for [`EndpointConfig::max_connections_per_address`].
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 32;

/// Connections from one source address that may wait for their `pake`
/// (or run a pairing step) at once (§ 8.2). Waiting holds nothing
/// exclusive; this only keeps one address from taking every place.
pub const MAX_PAIRING_PER_ADDRESS: usize = 4;

/// Connections that may wait for their `pake` (or run a pairing step) at
/// once, from all addresses.
pub const MAX_PAIRING: usize = 64;

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
    /// The host's side of every connection.
    host: HostSide,
    trust: Arc<Trust>,
    /// Connections in the pairing steps, counted per source address and
    /// in all (§ 6.5); never exclusive, never evicted.
    pairing: Arc<Admission>,
    /// Every connection's place: evictable until `hello` arrives.
    admission: Arc<Admission>,
    /// The console's actions, with `--native` on a host with a console.
    console: Option<Arc<dyn ConsoleDoor>>,
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
                host: HostSide {
                    name: config.host_name,
                    fingerprint: identity.fingerprint(),
                    unknown_devices: config.unknown_devices,
                    features: Features {
                        console: config.console.is_some(),
                        ..Features::ALL
                    },
                },
                console: config.console,
                trust: config.trust,
                pairing: Admission::new(Limits {
                    per_address: MAX_PAIRING_PER_ADDRESS,
                    total: MAX_PAIRING,
                }),
                admission: Admission::new(Limits {
                    per_address: config.max_connections_per_address.max(1),
                    total: config.max_connections.max(1),
                }),
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
                    // A free place, or the one of the oldest connection
                    // (from this address, if it is at its cap) that has
                    // not sent `hello`, or else of a stranger's waiting
                    // connection from the address holding the most: idle,
                    // slow and waiting connections cannot starve clients
                    // that complete their handshake.
                    let slot = match self.ctx.admission.admit(peer.ip()) {
                        Ok(slot) => Arc::new(slot),
                        Err(refused) => {
                            tracing::warn!(%peer, "native endpoint: {refused}; closing");
                            continue;
                        }
                    };
                    let ctx = self.ctx.clone();
                    let mut stop = conn_shutdown.clone();
                    tasks.spawn(async move {
                        tokio::select! {
                            _ = serve_connection(ctx, tcp, peer, slot.clone()) => {}
                            _ = stopped(&mut stop) => {}
                            () = slot.evicted() => {
                                tracing::debug!(%peer, "native: closed to make room (connection limit)");
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

/// Resolves once `shutdown` is `true` or its sender is gone.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send: drop it here.
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}

/// One TLS connection after the handshake: the I/O and the trust-service
/// handles the [`HostConnection`] core asks for.
struct Conn {
    ctx: Arc<Ctx>,
    reader: Reader,
    writer: Writer,
    peer: SocketAddr,
    fp: Fingerprint,
    cert_der: Vec<u8>,
    events: broadcast::Receiver<TrustEvent>,
    /// Its place in the door: evictable until `hello` arrives.
    slot: Arc<Slot>,
    /// Held from a `pair` hello until [`Effect::LeavePairing`].
    pairing_slot: Option<Slot>,
    exchange: Option<ExchangeShown>,
    /// The taken PIN, until the device is stored or [`Effect::ReportPin`]
    /// spends it (or, if the connection is cut short, its `Drop` does).
    attempt: Option<PinAttempt>,
    /// The session asked to `watch` the waiting requests (§ 4.10).
    watching: bool,
}

async fn serve_connection(ctx: Arc<Ctx>, tcp: TcpStream, peer: SocketAddr, slot: Arc<Slot>) {
    let _ = tcp.set_nodelay(true);
    let (stream, cert_der, exporter) =
        match tokio::time::timeout(timeouts::TLS_HANDSHAKE, tls_accept(&ctx, tcp)).await {
            Ok(Ok(accepted)) => accepted,
            Ok(Err(e)) => {
                tracing::debug!(%peer, "native: TLS handshake failed: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "native: TLS handshake timed out");
                return;
            }
        };
    // Subscribe before anything is decided from the registry, so that a
    // revocation racing with `hello` is still seen (§ 7.1).
    let events = ctx.trust.subscribe();
    let fp = Fingerprint::of_der(&cert_der);
    let peer_side = crate::connection::Peer {
        address: peer,
        fingerprint: fp,
        exporter,
    };
    // One clock: the core runs on the trust service's, as the gate does.
    let core = HostConnection::new(ctx.host.clone(), peer_side, ctx.trust.now());
    let (rd, writer) = tokio::io::split(stream);
    let conn = Conn {
        fp,
        ctx,
        reader: FrameReader::new(rd),
        writer,
        peer,
        cert_der,
        events,
        slot,
        pairing_slot: None,
        exchange: None,
        attempt: None,
        watching: false,
    };
    conn.run(core).await;
}

/// What woke the driver up.
enum Input {
    Read(Result<Message, ReadError>),
    Request(RequestUpdate),
    Trust(Result<TrustEvent, broadcast::error::RecvError>),
    Timeout,
    /// Its place among the connections waiting for their `pake` went to a
    /// newer one: the connection ends.
    GaveWay,
}

impl Conn {
    /// Drives the core: run what it asks for, then wait for the next
    /// message, trust event or deadline, and feed it back.
    async fn run(mut self, mut core: HostConnection) {
        while self.act(&mut core).await {
            if !core.wants_hello() {
                self.slot.set_use(self.using(&core));
            }
            let input = self.next_input(&core).await;
            let now = self.ctx.trust.now();
            match input {
                Input::Read(read) => {
                    // Past hello (or done): no longer evictable. Its
                    // `pake` (or what ends the pairing steps) puts the PIN
                    // at stake: the places are held before it is read, and
                    // if one went to a newer connection meanwhile, the
                    // message is not acted on.
                    let pairing_held = self.pairing_slot.as_ref().is_none_or(Slot::hold);
                    if !self.slot.hold() || !pairing_held {
                        tracing::debug!(peer = %self.peer, "native: closed to make room (connection limit)");
                        break;
                    }
                    match read {
                        Ok(msg) if core.wants_hello() => {
                            let mut facts = Facts { conn: &mut self };
                            core.on_hello(msg, &mut facts, now);
                        }
                        Ok(msg) => core.on_message(msg, now),
                        Err(e) => core.on_read_failed(e.into()),
                    }
                }
                Input::Request(RequestUpdate::Ended(outcome)) => {
                    core.on_request_ended(outcome, self.authorize(), now);
                }
                // Knocks need approval, not a PIN.
                Input::Request(RequestUpdate::PinEntered) => {}
                Input::Trust(Ok(TrustEvent::DeviceRemoved { fingerprint })) => {
                    core.on_device_removed(&fingerprint);
                }
                Input::Trust(Ok(TrustEvent::AccessChanged { fingerprint, .. }))
                    if fingerprint == self.fp =>
                {
                    self.access_changed(&mut core);
                }
                Input::Trust(Ok(
                    TrustEvent::PendingAdded { .. }
                    | TrustEvent::PendingChanged { .. }
                    | TrustEvent::PendingRemoved { .. },
                )) if self.watching => self.waiting_changed(&mut core),
                Input::Trust(Ok(_)) => {}
                Input::Trust(Err(broadcast::error::RecvError::Lagged(_))) => {
                    self.access_changed(&mut core);
                    if self.watching {
                        self.waiting_changed(&mut core);
                    }
                }
                Input::Trust(Err(broadcast::error::RecvError::Closed)) => core.on_trust_stopped(),
                Input::Timeout => core.on_timeout(now),
                Input::GaveWay => {
                    tracing::info!(peer = %self.peer, fp = %self.fp.short(), "native: sent no pake while every pairing place was taken; closed to make room");
                    break;
                }
            }
        }
        frame_io::close(&mut self.writer).await;
    }

    /// What this connection is doing, past `hello`, for the door's
    /// admission: a knock waiting for a person, or a pairing connection that
    /// has not sent its `pake`, waits (it may give way to a newcomer from an
    /// address holding fewer connections); anything else is busy.
    fn using(&self, core: &HostConnection) -> Use {
        let before_pake = self.pairing_slot.is_some() && self.attempt.is_none();
        if core.waiting_on().is_some() || before_pake {
            Use::Waiting
        } else {
            Use::Busy
        }
    }

    async fn next_input(&mut self, core: &HostConnection) -> Input {
        // Only the core's deadline bounds the wait for a frame to start;
        // the reader still bounds a started frame (§ 8).
        let far = Instant::now() + FAR;
        let deadline = core.poll_timeout().map_or(far, Instant::from_std);
        let trust = self.ctx.trust.clone();
        let waiting_on = core.waiting_on();
        let events = &mut self.events;
        let pairing_place = self.pairing_slot.as_ref();
        tokio::select! {
            read = self.reader.next(far) => Input::Read(read),
            () = async {
                match pairing_place {
                    Some(place) => place.evicted().await,
                    None => std::future::pending().await,
                }
            } => Input::GaveWay,
            input = async {
                match waiting_on {
                    // The one wait for a request's fate (it makes up for
                    // missed events from the gate).
                    Some(id) => Input::Request(trust.request_update(events, id).await),
                    None => Input::Trust(events.recv().await),
                }
            } => input,
            _ = tokio::time::sleep_until(deadline) => Input::Timeout,
        }
    }

    /// Runs the core's actions in order. `false` once it closed (or the
    /// peer can no longer be written to).
    async fn act(&mut self, core: &mut HostConnection) -> bool {
        while let Some(action) = core.poll_action() {
            match action {
                Action::Send(msg) => {
                    self.log_send(&msg);
                    if self.send(&msg).await.is_err() {
                        return false;
                    }
                }
                Action::Effect(effect) => self.run_effect(effect, core).await,
                Action::Close => return false,
            }
        }
        true
    }

    async fn run_effect(&mut self, effect: Effect, core: &mut HostConnection) {
        let trust = self.ctx.trust.clone();
        match effect {
            Effect::Touch => self.touch(),
            Effect::Store { name, via } => {
                let stored = self.store(name, via).await;
                // Removed or disabled since it was stored: the event is on
                // its way, and ends the session.
                let stored = stored.map(|()| self.authorize().unwrap_or_default());
                let stored = stored.map_err(|e| {
                    tracing::error!("native: cannot store a device: {e}");
                    // The one refusal the client can act on.
                    match e {
                        StoreError::Registry(
                            e @ punktfunk_certs::RegistryError::PairedAtOtherDoor { .. },
                        ) => Some(e.to_string()),
                        _ => None,
                    }
                });
                core.on_stored(stored, trust.now());
            }
            Effect::AddKnock { name } => core.on_knock_added(self.knock(name), trust.now()),
            Effect::BeginExchange(claimant) => {
                self.exchange = Some(trust.show_exchange(claimant));
            }
            Effect::TakePin(claimant) => {
                let secret = self.take_pin(claimant, PairWith::Pin);
                core.on_pin(secret, &mut OsRng, trust.now())
            }
            Effect::UseLink(claimant) => {
                let secret = self.take_pin(claimant, PairWith::Link);
                core.on_pin(secret, &mut OsRng, trust.now())
            }
            Effect::RecordStall(claimant) => self.record_stall(claimant),
            Effect::ReportPin(paired) => self.report_pin(paired),
            Effect::LeavePairing => {
                self.exchange = None;
                self.pairing_slot = None;
            }
            Effect::Console(request) => {
                let outcome = match &self.ctx.console {
                    Some(door) => {
                        let action = request.action.clone();
                        door.act(self.fp, self.peer.ip(), action).await
                    }
                    // Not offered, so not sent by a client that follows
                    // § 4.1; the core refuses it before this.
                    None => Err(ConsoleError {
                        code: "not_signed_in".into(),
                        message: "this host offers no console over this connection".into(),
                    }),
                };
                // `watch` answered: from now on every change of the waiting
                // requests is sent (`Conn::run`).
                let watch = matches!(request.action, ConsoleAction::Watch) && outcome.is_ok();
                core.on_console_reply(ConsoleReply {
                    reference: request.reference,
                    outcome,
                });
                if watch {
                    // The list as it is now, then each change.
                    self.watching = true;
                    self.waiting_changed(core);
                }
            }
            Effect::AwaitAudit => {
                // Everything queued so far, this connection's entries
                // among them, is on disk before the client hears of it.
                if let Err(e) = trust.audited().durable().await {
                    tracing::error!("native: {e}");
                }
            }
        }
    }

    /// Notes the trusted device as seen, if due: coarse, may fsync, so off
    /// the reply path.
    fn touch(&self) {
        let trust = self.ctx.trust.clone();
        if let Ok(grant) = trust.authorize(FrontDoor::Native, &self.fp) {
            if grant.seen_due() {
                tokio::spawn(async move { trust.seen(&grant).await });
            }
        }
    }

    /// What this connection's certificate may do at this door now, if it
    /// may connect, or why not.
    fn authorize(&self) -> Result<WireGrant, Denied> {
        self.ctx
            .trust
            .authorize(FrontDoor::Native, &self.fp)
            .map(|grant| WireGrant {
                permissions: grant.permissions().names().map(str::to_owned).collect(),
                expires_at: grant.expires_at(),
            })
    }

    /// Sends the waiting requests to a session that watches them, while it
    /// has a console session (§ 4.10).
    fn waiting_changed(&self, core: &mut HostConnection) {
        let waiting = self
            .ctx
            .console
            .as_ref()
            .and_then(|door| door.waiting(self.fp));
        if let Some(waiting) = waiting {
            core.on_waiting(waiting);
        }
    }

    /// Tells the core what the device may do now, after a change (or
    /// events it missed).
    fn access_changed(&self, core: &mut HostConnection) {
        match self.authorize() {
            Ok(grant) => core.on_grant_changed(&self.fp, grant),
            Err(denied) => core.on_access_ended(&self.fp, denied),
        }
    }

    /// Lists the client as waiting for approval.
    fn knock(&self, name: DisplayName) -> Result<PendingId, Refusal> {
        let request = PendingRequest {
            kind: FrontDoor::Native,
            name,
            cert_der: self.cert_der.clone(),
            address: self.peer,
            needs: Needs::Approval,
        };
        let knocked = self.ctx.trust.knock(request, None);
        match &knocked {
            Ok(_) => {
                tracing::info!(fp = %self.fp.short(), "native: device knocked; waiting for approval in the console")
            }
            Err(e) => tracing::info!(fp = %self.fp.short(), "native: knock not listed: {e}"),
        }
        knocked
    }

    /// Takes the armed PIN (or, `Link`, gets the link's secret) for
    /// `claimant`; the attempt stays with the connection until the device
    /// is stored or the PIN is spent.
    fn take_pin(&mut self, claimant: Claimant, with: PairWith) -> Option<Secret> {
        let attempt = self.ctx.trust.take_pin(claimant, with, FrontDoor::Native)?;
        let secret = attempt.secret().clone();
        self.attempt = Some(attempt);
        Some(secret)
    }

    /// Records a connection that said `hello{intent: pair}` and sent no
    /// `pake` in time: who kept a place among the pairing connections.
    fn record_stall(&self, claimant: Claimant) {
        tracing::info!(peer = %self.peer, fp = %self.fp.short(), "native: hello{{pair}} without pake");
        let entry = Entry::new(Event::PairingStalled, Door::Native)
            .outcome(Outcome::Failed)
            .device(DeviceRef::new(self.fp, &claimant.name, None))
            .address(claimant.address)
            .detail("asked to pair with the PIN and then sent nothing before its time ran out");
        let _ = self.ctx.trust.record(entry);
    }

    fn report_pin(&mut self, paired: Option<Fingerprint>) {
        match paired {
            // Storing the device reported the PIN as used.
            Some(fp) => tracing::info!(fp = %fp.short(), "native: device paired with the PIN"),
            None => {
                if self.attempt.take().is_some() {
                    // Dropping it spends the PIN and records `pin_rejected`.
                    tracing::info!(fp = %self.fp.short(), "native: pairing failed; the PIN is spent")
                }
            }
        }
    }

    fn log_send(&self, msg: &Message) {
        let fp = self.fp.short();
        match msg {
            Message::Welcome(w) => {
                tracing::debug!(peer = %self.peer, %fp, status = ?w.status, "native: welcome")
            }
            Message::Decision(d) => tracing::info!(%fp, decision = ?d, "native: knock decided"),
            Message::Error(e) => {
                tracing::info!(peer = %self.peer, %fp, code = %e.code, "native: closing with an error: {}", e.message)
            }
            _ => {}
        }
    }

    /// Stores the peer's certificate as a paired device, durably: with
    /// the PIN attempt that proved it (which reports the PIN as used in
    /// the same step), or admitted by policy (open mode).
    async fn store(&mut self, name: DisplayName, via: Via) -> Result<(), StoreError> {
        if let Some(attempt) = self.attempt.take() {
            return attempt.store(&self.cert_der, name, via).await;
        }
        let trust = &self.ctx.trust;
        let device = Device::from_der(
            &self.cert_der,
            FrontDoor::Native,
            name,
            via,
            trust.clock().unix(),
        )?;
        trust.store_device(device, self.peer.ip()).await
    }

    async fn send(&mut self, msg: &Message) -> Result<(), PeerGone> {
        frame_io::send(&mut self.writer, msg).await.map_err(|e| {
            tracing::debug!(peer = %self.peer, "native: send failed: {e}");
            PeerGone
        })
    }
}

/// Far enough to mean "no deadline" for a wait the core does not bound.
const FAR: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// What the core may ask about the host when `hello` arrives.
struct Facts<'a> {
    conn: &'a mut Conn,
}

impl HelloFacts for Facts<'_> {
    fn authorize(&mut self) -> Result<WireGrant, Denied> {
        // Trust won through Moonlight does not open this door.
        self.conn.authorize()
    }

    fn wait_for_pake(&mut self) -> bool {
        // Full: the oldest connection still waiting for its `pake` (of this
        // address, if it is at its cap) gives way. A real client sends its
        // `pake` one round trip after `welcome`, so stallers cannot keep
        // it out by filling the places from many addresses.
        match self.conn.ctx.pairing.admit(self.conn.peer.ip()) {
            Ok(place) => {
                self.conn.pairing_slot = Some(place);
                true
            }
            Err(_) => false,
        }
    }

    fn is_armed(&mut self, link: bool) -> bool {
        let with = if link { PairWith::Link } else { PairWith::Pin };
        self.conn.ctx.trust.is_armed(with)
    }
}

/// The peer can no longer be written to (it went away, or the write timed
/// out); the connection ends.
#[derive(Debug, Clone, Copy)]
struct PeerGone;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_wire_is_the_length_prefixed_id() {
        assert_eq!(ALPN_WIRE[0] as usize, crate::ALPN.len());
        assert_eq!(&ALPN_WIRE[1..], crate::ALPN);
    }
}
