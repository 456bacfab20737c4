//! `m3-host`: the standalone headless test host. Only the native endpoint,
//! no console, no GameStream; same state dir format and lock as `punktfunk
//! serve`.
//!
//! - default: DANGER open mode, unknown devices are let in (and stored as
//!   admitted via `open`);
//! - `--require-pairing`: unknown devices are refused with `not_paired`
//!   (there is no console to approve a knock);
//! - `--allow-pairing`: pairing is armed at start and the PIN printed as
//!   `pairing PIN: NNNN`; after a successful pairing (or when the PIN
//!   expires unused) it is re-armed with a new PIN, printed again; never
//!   after a failed attempt: a wrong guess leaves pairing off until restart.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use punktfunk_certs::registry::REGISTRY_FILE;
use punktfunk_certs::{GateConfig, HostIdentity, StateDir, SystemClock, Trust, TrustEvent};
use punktfunk_native::{endpoint, DisplayName, Endpoint, EndpointConfig, UnknownDevices};
use rand::rngs::OsRng;

/// Headless punktfunk test host: the native endpoint only.
#[derive(Debug, Parser)]
#[command(name = "m3-host", version, about)]
struct Args {
    /// State dir (identity, paired devices) [default: $XDG_CONFIG_HOME/punktfunk].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Native endpoint (TLS) port.
    #[arg(long, default_value_t = punktfunk_native::DEFAULT_PORT)]
    port: u16,
    /// Refuse devices that have not paired (default: DANGER, let them in).
    #[arg(long)]
    require_pairing: bool,
    /// Arm pairing at start and print the PIN; re-arm after each success.
    #[arg(long)]
    allow_pairing: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let dir = match args.state_dir.clone() {
        Some(d) => d,
        None => default_state_dir()?,
    };
    let state_dir = StateDir::open(&dir)?;
    let host_name = gethostname::gethostname().to_string_lossy().into_owned();
    let host = HostIdentity::load_or_create(state_dir.path(), &host_name)?;
    let trust = Arc::new(Trust::open(
        &state_dir.file(REGISTRY_FILE),
        GateConfig::default(),
        Arc::new(SystemClock),
    )?);
    tracing::info!("host identity {}", host.identity.fingerprint());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = rt.block_on(serve(args, host, trust, host_name));
    drop(state_dir);
    result
}

async fn serve(
    args: Args,
    host: HostIdentity,
    trust: Arc<Trust>,
    host_name: String,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;

    let unknown_devices = if args.require_pairing {
        UnknownDevices::Refuse
    } else {
        tracing::warn!("DANGER: open mode: any device that connects is let in and stored; pass --require-pairing on a shared network");
        UnknownDevices::DangerAdmitOpen
    };
    let Some(name) =
        DisplayName::sanitize(&host_name).or_else(|| DisplayName::sanitize("punktfunk"))
    else {
        bail!("no usable host name");
    };
    let endpoint = Endpoint::bind(
        SocketAddr::new(args.bind, args.port),
        &host.identity,
        EndpointConfig {
            host_name: name,
            trust: trust.clone(),
            unknown_devices,
            max_connections: endpoint::DEFAULT_MAX_CONNECTIONS,
        },
    )
    .await?;
    let addr = endpoint.local_addr()?;
    println!("native listening on tls://{}/", display_addr(addr));

    // Subscribe before arming, so no outcome is missed.
    let mut events = trust.subscribe();
    if args.allow_pairing {
        arm(&trust);
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(endpoint.run(stopped));

    // Expire PINs and pending requests on time, as `serve` does.
    let ticker_trust = trust.clone();
    let ticker = tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(1));
        loop {
            interval.tick().await;
            let now = ticker_trust.now();
            ticker_trust.gate().expire(now);
        }
    });
    let rearm_trust = trust.clone();
    let allow_pairing = args.allow_pairing;
    let rearm = tokio::spawn(async move {
        loop {
            match events.recv().await {
                // A success re-arms; a failure never does (one guess per
                // PIN, and a wrong guess leaves pairing off).
                Ok(TrustEvent::PinAttemptFinished { paired: true }) if allow_pairing => {
                    arm(&rearm_trust)
                }
                // Only expiry disarms here (no console): keep a PIN on offer.
                Ok(TrustEvent::Disarmed) if allow_pairing => arm(&rearm_trust),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });

    println!("ready");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down");
    ticker.abort();
    rearm.abort();
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    Ok(())
}

/// Arms pairing and prints the PIN (tests and people read stdout).
fn arm(trust: &Trust) {
    let now = trust.now();
    let armed = trust.gate().arm(now, &mut OsRng);
    println!("pairing PIN: {}", armed.pin);
}

/// A listening address as a person would type it.
fn display_addr(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => format!("127.0.0.1:{}", addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => format!("[::1]:{}", addr.port()),
        _ => addr.to_string(),
    }
}

/// `$XDG_CONFIG_HOME/punktfunk`, else `$HOME/.config/punktfunk` (as `serve`).
fn default_state_dir() -> anyhow::Result<PathBuf> {
    punktfunk_certs::StateDir::default_path()
        .ok_or_else(|| anyhow::anyhow!("neither XDG_CONFIG_HOME nor HOME is set; pass --state-dir"))
}
