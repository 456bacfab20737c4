//! `m3-host`: the standalone headless test host. Only the native endpoint,
//! no console, no GameStream; same state dir format and lock as `punktfunk
//! serve`.
//!
//! - default: DANGER open mode, unknown devices are let in (and stored as
//!   admitted via `open`);
//! - `--require-pairing`: unknown devices are refused with `not_paired`
//!   (there is no console to approve a knock);
//! - `--allow-pairing`: pairing is armed at start and the PIN printed as
//!   `pairing PIN: NNNN`, followed by `pairing link: punktfunk://pair?…`
//!   (docs/native-protocol.md § 12) and that link as a QR code for the
//!   app to scan; after a successful pairing (or when the PIN expires
//!   unused) it is re-armed with a new PIN, printed again; never after a
//!   failed attempt: a wrong guess leaves pairing off until restart.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use punktfunk::lan;
use punktfunk::startup::{self, HostState, NativeDoor};
use punktfunk_certs::{Fingerprint, HostIdentity, Trust, TrustEvent};
use punktfunk_native::{DisplayName, PairingLink, UnknownDevices};
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
    startup::init_logging();
    let HostState {
        state_dir,
        host,
        trust,
        host_name,
    } = HostState::open(&startup::state_dir_or_default(args.state_dir.as_deref())?)?;
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
    let stop_requested = startup::stop_signal()?;

    let unknown_devices = if args.require_pairing {
        UnknownDevices::Refuse
    } else {
        tracing::warn!("DANGER: open mode: any device that connects is let in and stored; pass --require-pairing on a shared network");
        UnknownDevices::DangerAdmitOpen
    };
    let NativeDoor {
        endpoint,
        addr,
        name,
    } = startup::bind_native(
        SocketAddr::new(args.bind, args.port),
        &host.identity,
        trust.clone(),
        &host_name,
        unknown_devices,
        // The headless test host has no console.
        None,
    )?;
    startup::print_listening("native", "tls", addr);
    let shown = Shown {
        bound: addr,
        fingerprint: host.identity.fingerprint(),
        name,
    };

    // Subscribe before arming, so no outcome is missed.
    let events = trust.subscribe();
    if args.allow_pairing {
        arm(&trust, &shown);
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(endpoint.run(stopped));

    let ticker = startup::spawn_expiry_ticker(trust.clone());
    let rearm = tokio::spawn(keep_armed(events, trust.clone(), shown, args.allow_pairing));

    println!("ready");
    stop_requested.await;
    tracing::info!("shutting down");
    ticker.abort();
    rearm.abort();
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    Ok(())
}

/// A success ends the arming, and so does expiry (there is no console
/// here): either way, keep a PIN on offer while pairing is allowed. A
/// failure never re-arms (one guess per PIN; a wrong guess leaves the PIN
/// spent, the link still pairs).
async fn keep_armed(
    mut events: tokio::sync::broadcast::Receiver<TrustEvent>,
    trust: Arc<Trust>,
    shown: Shown,
    allow_pairing: bool,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match events.recv().await {
            Ok(TrustEvent::Disarmed) if allow_pairing => arm(&trust, &shown),
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => break,
        }
    }
}

/// What goes into the pairing link besides the PIN.
struct Shown {
    bound: SocketAddr,
    fingerprint: Fingerprint,
    name: DisplayName,
}

/// Arms pairing and prints the PIN, the pairing link and its QR code
/// (tests and people read stdout), in one write so that nothing else
/// lands between them.
fn arm(trust: &Trust, shown: &Shown) {
    // Armed by the host itself (at start, and again after each use). Its
    // entry is not waited for: this runs on the runtime's threads, and the
    // trail's writer reports its own failures.
    let (armed, _entry) = trust.arm(punktfunk_certs::Actor::host(), &mut OsRng);
    let mut out = format!("pairing PIN: {}\n", armed.pin);
    // Addresses are read at each arming: they change (DHCP, Wi-Fi).
    let addresses = lan::link_addresses(shown.bound.ip());
    if addresses.is_empty() {
        tracing::warn!(
            "no pairing link: {} cannot be reached from another machine; pair with the PIN",
            shown.bound.ip()
        );
    } else {
        let link = PairingLink {
            addresses,
            port: shown.bound.port(),
            host_fingerprint: shown.fingerprint,
            secret: armed.link,
            host_name: shown.name.clone(),
        }
        .to_uri();
        out.push_str(&format!("pairing link: {link}\n"));
        match punktfunk::show::qr(&link) {
            Some(qr) => out.push_str(&qr),
            None => tracing::warn!("the pairing link does not fit a QR code"),
        }
    }
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
}
