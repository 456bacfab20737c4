//! `serve`: opens the state dir, loads the identity and the registry, and
//! runs the front doors and the console until SIGINT/SIGTERM.
//!
//! Order matters: the state dir is locked before anything is read, and every
//! file is loaded (and a corrupt one refused) before any port is bound, so a
//! host that cannot keep its promises never starts answering.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_http::{HttpService, KeepAlive};
use actix_service::{map_config, IntoServiceFactory, ServiceFactoryExt};
use actix_web::dev::AppConfig;
use actix_web::{web, App};
use anyhow::Context;
use punktfunk_certs::{HostIdentity, Trust};
use punktfunk_conn::{Admission, Limits};

use crate::console::auth::{LoginLimiter, PasswordFile, Sessions};
use crate::console::known::KnownBrowsers;
use crate::console::{self, ConsoleState};
use crate::startup::{self, HostState};

/// Validated `serve` settings.
#[derive(Debug, Clone)]
pub(crate) struct ServeConfig {
    pub(crate) state_dir: PathBuf,
    /// Why that dir (said in the start-up block).
    pub(crate) state_dir_choice: startup::StateDirChoice,
    /// `advertise` in the settings file: the addresses to give out instead
    /// of the interfaces' (empty: the interfaces').
    pub(crate) advertise: Vec<IpAddr>,
    /// `None`: dual-stack `::`, or `0.0.0.0` without IPv6 (decided at start).
    pub(crate) bind: Option<IpAddr>,
    pub(crate) http_port: u16,
    pub(crate) https_port: u16,
    pub(crate) console_port: u16,
    /// `Some(port)` with `--native`.
    pub(crate) native_port: Option<u16>,
    /// `--open`: DANGER, unknown native devices are let in.
    pub(crate) open: bool,
    pub(crate) mdns: bool,
    /// `default_grant` in the settings file: what a new device may do
    /// (the host's first one may do everything whatever this says).
    pub(crate) default_grant: punktfunk_certs::Preset,
    /// `streamer_group` in the settings file, as a group number: its
    /// members may use `streamer.sock` too.
    pub(crate) streamer_group: Option<u32>,
    /// The settings file read, if any.
    pub(crate) config_file: Option<PathBuf>,
}

impl ServeConfig {
    /// The address every door listens on.
    pub(crate) fn bind(&self) -> IpAddr {
        self.bind
            .unwrap_or(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED))
    }
}

/// Runs the host until a signal asks it to stop.
pub(crate) fn serve(config: ServeConfig) -> anyhow::Result<()> {
    startup::init_logging();
    if let Some(file) = &config.config_file {
        tracing::info!("settings from {}", file.display());
    }
    let config = ServeConfig {
        bind: Some(config.bind.unwrap_or_else(crate::net::default_bind)),
        ..config
    };
    // Every connection is a descriptor; the common soft limit of 1024 would
    // let a connection flood starve the registry's own file writes.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!("open file limit {n}"),
        Err(e) => tracing::warn!("cannot raise the open file limit: {e}"),
    }
    let HostState {
        state_dir,
        host,
        trust,
        host_name,
    } = {
        startup::refuse_other_owner(&config.state_dir)?;
        HostState::open_sharing(&config.state_dir, config.streamer_group)
            .map_err(|e| startup::explain_denied(&config.state_dir, e))?
    };
    trust.set_default_grant(config.default_grant.permissions());
    let password = PasswordFile::new(state_dir.path());
    if !password.exists() {
        // Kept before the hash is written: a crash in between generates
        // anew at the next start, never leaves a hash nobody can learn.
        let generated = password.new_password();
        crate::first_start::keep_generated(state_dir.path(), &generated).with_context(|| {
            format!(
                "cannot keep the generated console password in {}",
                state_dir.path().display()
            )
        })?;
        password.set(&generated, None)?;
    }
    // Before any port is bound: a start that fails next still says it.
    if let Some(line) = crate::first_start::how_to_get_in(state_dir.path()) {
        println!("{line}");
    }

    let system = actix_web::rt::System::new();
    let result = system.block_on(run(config, host, trust, password, host_name));
    drop(state_dir);
    result
}

async fn run(
    config: ServeConfig,
    host: HostIdentity,
    trust: Arc<Trust>,
    password: PasswordFile,
    host_name: String,
) -> anyhow::Result<()> {
    // Watch signals before announcing anything, so that a stop request sent
    // right after "ready" is not lost.
    let stop = startup::stop_signal()?;
    let links = Arc::new(console::links::Links::new(
        host_name.clone(),
        host.identity.fingerprint(),
    ));
    let shared = Shared {
        trust: trust.clone(),
        host: Arc::new(host),
        links,
        host_name,
        config: config.clone(),
        bound: Default::default(),
    };
    let console_state = console_state(&shared, password)?;
    let mut doors = vec![start_console(&shared, console_state.clone())?];
    doors.push(start_control(&shared)?);
    doors.push(start_streamer_socket(&shared)?);
    doors.push(start_gamestream(&shared).await?);
    if config.native_port.is_some() {
        doors.push(start_native(&shared, console_state.clone()).await?);
    }
    crate::lan::set_advertised(config.advertise.clone());
    let (_mdns, mdns_said) = start_mdns(&shared);
    let _ = shared.links.reach.set(reach(&shared));

    let ticker = startup::spawn_expiry_ticker(trust.clone());
    print!("{}", start_block(&shared, &mdns_said));
    warn_if_open(&config);

    // Tests and scripts wait for this line: every listener is up.
    println!("ready");
    stop.await;
    tracing::info!("shutting down");
    ticker.abort();
    for door in doors {
        door.stop().await;
    }
    Ok(())
}

/// What the console's handlers share.
fn console_state(
    shared: &Shared,
    password: PasswordFile,
) -> anyhow::Result<web::Data<ConsoleState>> {
    Ok(web::Data::new(ConsoleState {
        trust: shared.trust.clone(),
        links: shared.links.clone(),
        sessions: Sessions::new(password.clone()),
        password,
        limiter: LoginLimiter::default(),
        known: KnownBrowsers::from_host_key(&shared.host.identity.key().private_key_to_der()?),
        open: shared.config.open,
    }))
}

/// The console: HTTPS on its own port, one worker.
fn start_console(shared: &Shared, state: web::Data<ConsoleState>) -> anyhow::Result<Door> {
    let config = &shared.config;
    let tls = crate::tls::acceptor(&shared.host.identity, false)?.build();
    let addr = SocketAddr::new(config.bind(), config.console_port);
    let listener =
        crate::net::listen(addr).with_context(|| format!("cannot listen on {addr} (console)"))?;
    let console_addr = listener.local_addr()?;
    let admission = Admission::new(Limits::TLS);
    let server = actix_server::Server::build()
        .workers(1)
        .disable_signals()
        // Open event streams would otherwise hold a stop for 30 s.
        .shutdown_timeout(2)
        .listen("console", listener, move || {
            let app = App::new()
                // actix times the request head only: a body sent a byte at a
                // time would hold its handler (and the connection) for ever.
                .wrap_fn(console::body_deadline)
                .wrap(
                    actix_web::middleware::DefaultHeaders::new()
                        .add(("X-Content-Type-Options", "nosniff"))
                        .add(("Referrer-Policy", "no-referrer")),
                )
                .configure(console::configure(state.clone()));
            punktfunk_conn::actix::tls(
                admission.clone(),
                tls.clone(),
                CONSOLE_TLS_HANDSHAKE,
                CONSOLE_KEEP_ALIVE,
            )
            .and_then(
                HttpService::build()
                    .client_request_timeout(Duration::from_secs(10))
                    .client_disconnect_timeout(Duration::from_secs(1))
                    .keep_alive(KeepAlive::Timeout(CONSOLE_KEEP_ALIVE))
                    .h1(map_config(
                        app.into_factory()
                            .map_err(|e: actix_web::Error| e.error_response()),
                        |_| AppConfig::default(),
                    )),
            )
        })
        .context("cannot start the console")?;
    shared.announce(Listener::Console, console_addr);
    let server = server.run();
    Ok(Door {
        actix: vec![server.handle()],
        tasks: vec![tokio::spawn(async move {
            if let Err(e) = server.await {
                tracing::error!("console server failed: {e}");
            }
        })],
        shutdown: None,
    })
}

/// Announces the host on mDNS (the ports actually bound: they differ with
/// port 0), unless turned off; what to say about it in the start-up block.
fn start_mdns(shared: &Shared) -> (Option<crate::mdns::Mdns>, String) {
    let config = &shared.config;
    if !config.mdns {
        return (None, "off (--no-mdns or `mdns = false`): Moonlight and the punktfunk app find this host only by its address".to_owned());
    }
    let announce = crate::mdns::Announce {
        host_name: shared.host_name.clone(),
        http_port: shared.port(Listener::GamestreamHttp, config.http_port),
        native: config
            .native_port
            .map(|p| (shared.port(Listener::Native, p), !config.open)),
        fingerprint: shared.host.identity.fingerprint(),
        bind: config.bind(),
    };
    match crate::mdns::Mdns::start(&announce) {
        Ok(m) => (
            Some(m),
            format!(
                "on: announced as \"{}\" (Moonlight and the punktfunk app list it)",
                shared.host_name
            ),
        ),
        Err(e) => {
            tracing::warn!("mDNS announcements are off: {e:#}");
            (None, format!("off: it could not start ({e:#})"))
        }
    }
}

/// Where each door is reachable, for the console's links.
fn reach(shared: &Shared) -> console::links::Reach {
    let config = &shared.config;
    console::links::Reach {
        bind: config.bind(),
        console: shared.port(Listener::Console, config.console_port),
        gamestream_http: shared.port(Listener::GamestreamHttp, config.http_port),
        native: config.native_port.map(|p| shared.port(Listener::Native, p)),
    }
}

/// The one block a start prints once every listener is bound: what runs,
/// where each door listens, where to open the console from another device
/// (only addresses that are), the host fingerprint, mDNS. Stdout, so the
/// journal has it too; the log lines repeat none of its URLs.
fn start_block(shared: &Shared, mdns: &str) -> String {
    let mut out = format!(
        "punktfunk host \"{}\": pairing and trust for Moonlight and the punktfunk app \
         (streaming is a separate part of the host)\n",
        shared.host_name
    );
    out.push_str(&format!(
        "  host fingerprint  {}\n",
        shared.host.identity.fingerprint().grouped()
    ));
    out.push_str(&format!(
        "  state dir         {} ({})\n",
        shared.config.state_dir.display(),
        shared.config.state_dir_choice
    ));
    out.push_str(&listening(shared));
    out.push_str(&console_urls(shared));
    out.push_str(&format!("  mDNS: {mdns}\n"));
    out
}

/// The start-up block's listeners: the bind address, then each door.
fn listening(shared: &Shared) -> String {
    let shown_bind = match shared.config.bind() {
        IpAddr::V6(ip) if ip.is_unspecified() => "every IPv4 and IPv6 address ([::])".to_owned(),
        IpAddr::V4(ip) if ip.is_unspecified() => "every IPv4 address (0.0.0.0)".to_owned(),
        IpAddr::V6(ip) => format!("[{ip}] only"),
        IpAddr::V4(ip) => format!("{ip} only"),
    };
    let mut out = format!("  listening on {shown_bind}:\n");
    for listener in Listener::ALL {
        if let Some(port) = shared.bound(listener) {
            let (label, scheme) = (listener.label(), listener.scheme());
            out.push_str(&format!("    {label:<15} {scheme:<5}  port {port}\n"));
        }
    }
    out
}

/// The start-up block's console URLs: on this machine, and from other
/// devices (only addresses that are reachable), or why there are none.
fn console_urls(shared: &Shared) -> String {
    let config = &shared.config;
    let bind = config.bind();
    let console_port = shared.port(Listener::Console, config.console_port);
    let url = |ip: IpAddr| format!("https://{}/", SocketAddr::new(ip, console_port));
    let mut out = String::new();
    if bind.is_unspecified() || bind.is_loopback() {
        let here = if bind.is_ipv6() && !bind.is_unspecified() {
            bind
        } else {
            IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        };
        out.push_str(&format!(
            "  open the console on this machine: {}\n",
            url(here)
        ));
    }
    let lan = if bind.is_loopback() {
        Vec::new()
    } else {
        crate::lan::lan_addresses(bind)
    };
    if lan.is_empty() {
        let file = config
            .config_file
            .as_deref()
            .unwrap_or(std::path::Path::new(crate::config::SYSTEM_CONFIG))
            .display();
        let why = if bind.is_loopback() {
            format!(
                "none: the host listens on loopback only; to allow it, set `bind = \"::\"` \
                 in {file} or pass --bind ::"
            )
        } else {
            format!(
                "none found (only loopback, container, bridge or VPN interfaces); name the \
                 addresses with `advertise = [\"192.168.1.20\"]` in {file}"
            )
        };
        out.push_str(&format!("  open the console from another device: {why}\n"));
    } else {
        out.push_str("  open the console from another device:\n");
        for ip in lan {
            out.push_str(&format!("    {}\n", url(ip)));
        }
    }
    out
}

/// A listener of the host, as the start-up block lists it (tests read
/// these lines: tests/common/mod.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listener {
    Console,
    GamestreamHttp,
    GamestreamHttps,
    Native,
}

impl Listener {
    /// In the start-up block's order.
    const ALL: [Listener; 4] = [
        Listener::Console,
        Listener::GamestreamHttp,
        Listener::GamestreamHttps,
        Listener::Native,
    ];

    /// What a person calls it.
    fn label(self) -> &'static str {
        match self {
            Listener::Console => "console",
            Listener::GamestreamHttp | Listener::GamestreamHttps => "Moonlight",
            Listener::Native => "punktfunk app",
        }
    }

    /// Its protocol.
    fn scheme(self) -> &'static str {
        match self {
            Listener::Console | Listener::GamestreamHttps => "https",
            Listener::GamestreamHttp => "http",
            Listener::Native => "tls",
        }
    }
}

/// Open mode lets strangers in: said where the person who started the host
/// looks (stdout, next to the console URLs) and in the log. The console
/// shows a banner too (`open` in `GET /api/host`).
fn warn_if_open(config: &ServeConfig) {
    if config.open {
        let warning =
            "WARNING: open mode is on (--open or `open = true`): any device that reaches \
                       the native port is let in without pairing. Turn it off unless every device \
                       on this network is yours.";
        println!("{warning}");
        tracing::warn!("{warning}");
    }
}

/// The console's TLS handshake limit and keep-alive idle time (also how
/// long a peer may take no reply bytes).
const CONSOLE_TLS_HANDSHAKE: Duration = Duration::from_secs(3);
const CONSOLE_KEEP_ALIVE: Duration = Duration::from_secs(5);

/// What every front door gets from `serve`.
pub(crate) struct Shared {
    pub(crate) trust: Arc<Trust>,
    pub(crate) host: Arc<HostIdentity>,
    pub(crate) host_name: String,
    /// What the console's and the CLI's links need.
    pub(crate) links: Arc<console::links::Links>,
    pub(crate) config: ServeConfig,
    bound: std::sync::Mutex<Vec<(Listener, SocketAddr)>>,
}

impl Shared {
    /// Records where a listener is bound, for the start-up block.
    pub(crate) fn announce(&self, listener: Listener, addr: SocketAddr) {
        tracing::debug!("{listener:?} bound to {addr} ({})", listener.scheme());
        self.bound
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((listener, addr));
    }

    /// The port a listener announced with [`Shared::announce`] got, if any.
    fn bound(&self, listener: Listener) -> Option<u16> {
        self.bound
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(l, _)| *l == listener)
            .map(|(_, a)| a.port())
    }

    /// The port `listener` got, or the one configured.
    fn port(&self, listener: Listener, configured: u16) -> u16 {
        self.bound(listener).unwrap_or(configured)
    }
}

/// A running front door and how to stop it.
#[derive(Default)]
pub(crate) struct Door {
    /// actix servers to stop gracefully.
    pub(crate) actix: Vec<actix_web::dev::ServerHandle>,
    /// Tasks to wait for after the stop was signalled.
    pub(crate) tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Set to `true` to ask the door's own tasks to stop.
    pub(crate) shutdown: Option<tokio::sync::watch::Sender<bool>>,
}

impl Door {
    async fn stop(self) {
        if let Some(tx) = &self.shutdown {
            let _ = tx.send(true);
        }
        for handle in self.actix {
            handle.stop(true).await;
        }
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

/// The control socket for `punktfunk devices …` (see `crate::control`).
fn start_control(shared: &Shared) -> anyhow::Result<Door> {
    let (listener, path) = crate::control::bind(&shared.config.state_dir)?;
    tracing::info!("admin commands: {}", path.display());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    Ok(Door {
        actix: Vec::new(),
        tasks: vec![tokio::spawn(crate::control::run(
            listener,
            path,
            shared.trust.clone(),
            shared.links.clone(),
            stopped,
        ))],
        shutdown: Some(stop),
    })
}

/// The streamer's socket (see `crate::streamer`).
fn start_streamer_socket(shared: &Shared) -> anyhow::Result<Door> {
    let group = shared.config.streamer_group;
    let (listener, path) = crate::streamer::bind(&shared.config.state_dir, group)?;
    tracing::info!("streamer socket: {}", path.display());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    Ok(Door {
        actix: Vec::new(),
        tasks: vec![tokio::spawn(crate::streamer::run(
            listener,
            path,
            shared.trust.clone(),
            group,
            stopped,
        ))],
        shutdown: Some(stop),
    })
}

/// The GameStream emulator: HTTP and HTTPS listeners.
async fn start_gamestream(shared: &Shared) -> anyhow::Result<Door> {
    use punktfunk_gamestream::http as gamestream;

    let bind = |port: u16, what: &str| {
        let addr = SocketAddr::new(shared.config.bind(), port);
        crate::net::listen(addr).with_context(|| format!("cannot listen on {addr} ({what})"))
    };
    let http = bind(shared.config.http_port, "GameStream HTTP")?;
    let https = bind(shared.config.https_port, "GameStream HTTPS")?;
    let (http_addr, https_addr) = (http.local_addr()?, https.local_addr()?);
    let tls = gamestream::http1_only(crate::tls::acceptor(&shared.host.identity, true)?)?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let state = web::Data::new(gamestream::State::new(
        shared.trust.clone(),
        shared.host.clone(),
        shared.host_name.clone(),
        gamestream::Ports {
            http: http_addr.port(),
            https: https_addr.port(),
        },
        stopped,
    ));
    let servers = gamestream::server(state, http, https, tls)
        .context("cannot start the GameStream listeners")?;
    shared.announce(Listener::GamestreamHttp, http_addr);
    shared.announce(Listener::GamestreamHttps, https_addr);
    let mut door = Door {
        actix: Vec::new(),
        tasks: Vec::new(),
        shutdown: Some(stop),
    };
    for (what, server) in [("HTTP", servers.http), ("HTTPS", servers.https)] {
        door.actix.push(server.handle());
        door.tasks.push(tokio::spawn(async move {
            if let Err(e) = server.await {
                tracing::error!("GameStream {what} server failed: {e}");
            }
        }));
    }
    Ok(door)
}

/// The native endpoint (`--native`).
async fn start_native(shared: &Shared, console: web::Data<ConsoleState>) -> anyhow::Result<Door> {
    use punktfunk_native::UnknownDevices;

    let port = shared
        .config
        .native_port
        .unwrap_or(punktfunk_native::DEFAULT_PORT);
    let door = startup::bind_native(
        SocketAddr::new(shared.config.bind(), port),
        &shared.host.identity,
        shared.trust.clone(),
        &shared.host_name,
        // --open is the DANGER mode; otherwise unknown devices knock and
        // wait for the console.
        if shared.config.open {
            UnknownDevices::DangerAdmitOpen
        } else {
            UnknownDevices::Knock
        },
        // The console's actions for a signed-in device's session.
        Some(Arc::new(console::api::NativeConsole::new(console))),
    )?;
    shared.announce(Listener::Native, door.addr);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    Ok(Door {
        actix: Vec::new(),
        tasks: vec![tokio::spawn(door.endpoint.run(stopped))],
        shutdown: Some(stop),
    })
}
