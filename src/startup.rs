//! What both host binaries (`punktfunk serve` and `m3-host`) do the same way
//! at start and stop: logging, the locked state dir with identity and trust
//! registry, the expiry ticker, listener lines on stdout, signals.
//!
//! `m3-host` is a separate binary crate and includes this file by path.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use punktfunk_certs::registry::REGISTRY_FILE;
use punktfunk_certs::{
    audit, Door, Entry, Event, GateConfig, HostIdentity, StateDir, SystemClock, Trust,
};

/// Logs to stderr (stdout carries the lines tests and scripts read).
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// The machine's host name, for certificates, mDNS and the console.
pub(crate) fn host_name() -> String {
    let name = gethostname::gethostname().to_string_lossy().into_owned();
    if name.trim().is_empty() {
        "punktfunk".to_owned()
    } else {
        name
    }
}

/// `--state-dir`, else `$XDG_CONFIG_HOME/punktfunk`, else `$HOME/.config/punktfunk`.
pub(crate) fn state_dir_or_default(dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    match dir {
        Some(d) => Ok(d.to_path_buf()),
        None => StateDir::default_path().ok_or_else(|| {
            anyhow::anyhow!("neither XDG_CONFIG_HOME nor HOME is set; pass --state-dir")
        }),
    }
}

/// A host's state, loaded in the order that keeps promises: the dir is
/// locked before anything is read, and every file is loaded (a corrupt one
/// refused) before any port is bound.
pub(crate) struct HostState {
    /// Holds the lock until dropped.
    pub(crate) state_dir: StateDir,
    pub(crate) host: HostIdentity,
    pub(crate) trust: Arc<Trust>,
    pub(crate) host_name: String,
}

/// File holding the PHC-format argon2id hash of the console password.
pub(crate) const PASSWORD_FILE: &str = "console.passwd";

/// The files in a state dir no other user may read.
const PRIVATE_FILES: &[&str] = &[
    punktfunk_certs::identity::HOST_KEY_FILE,
    REGISTRY_FILE,
    PASSWORD_FILE,
    audit::AUDIT_FILE,
    audit::ROTATED_FILES[0],
    audit::ROTATED_FILES[1],
    audit::ROTATED_FILES[2],
    audit::ROTATED_FILES[3],
];

impl HostState {
    pub(crate) fn open(dir: &Path) -> anyhow::Result<Self> {
        let state_dir = StateDir::open(dir)?;
        // Before anything is read from them: the host key, the pinned
        // devices and the password hash are for this user only.
        for (path, old, new) in state_dir.make_private(PRIVATE_FILES)? {
            tracing::warn!(
                "{} was open to other users (mode {old:04o}); changed it to {new:04o}",
                path.display()
            );
        }
        let host_name = host_name();
        let host = HostIdentity::load_or_create(state_dir.path(), &host_name)?;
        tracing::info!(
            state_dir = %state_dir.path().display(),
            created = host.created,
            "host identity {}",
            host.identity.fingerprint()
        );
        let trust = Arc::new(Trust::open(
            state_dir.path(),
            GateConfig::default(),
            Arc::new(SystemClock),
        )?);
        if host.created {
            let entry = Entry::new(Event::HostIdentityCreated, Door::Host).detail(format!(
                "fingerprint {}",
                host.identity.fingerprint().grouped()
            ));
            trust.record(entry).durable_blocking()?;
        }
        tracing::info!(
            devices = trust.registry().len(),
            "trust registry {}",
            trust.registry().path().display()
        );
        Ok(Self {
            state_dir,
            host,
            trust,
            host_name,
        })
    }
}

/// Expires PINs and pending requests on time, so their events fire even
/// when nobody is looking at the gate. It sleeps until the gate's next
/// deadline, waking early only when the gate or registry changes (which
/// may bring an earlier one): an idle host does not wake at all. Abort the
/// task to stop it.
pub(crate) fn spawn_expiry_ticker(trust: Arc<Trust>) -> tokio::task::JoinHandle<()> {
    use tokio::sync::broadcast::error::RecvError;
    tokio::spawn(async move {
        let mut changes = trust.subscribe();
        loop {
            let next = trust.gate().next_deadline();
            let due = async {
                match next {
                    // The gate's clock and tokio's are both monotonic.
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = due => {
                    let now = trust.now();
                    trust.gate().expire(now);
                    // A deadline the gate's clock has not reached yet
                    // (coarser than tokio's): look again shortly, not at once.
                    if trust.gate().next_deadline().is_some_and(|d| d <= now) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                changed = changes.recv() => {
                    if let Err(RecvError::Closed) = changed {
                        return;
                    }
                }
            }
        }
    })
}

/// A listening address as a person would type it in a browser.
pub(crate) fn display_addr(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => format!("127.0.0.1:{}", addr.port()),
        // Dual-stack: IPv4 loopback works there too, and on every machine.
        IpAddr::V6(ip) if ip.is_unspecified() => format!("127.0.0.1:{}", addr.port()),
        _ => addr.to_string(),
    }
}

/// The stdout line tests and scripts wait for: `<what> listening on <scheme>://<addr>/`.
pub(crate) fn print_listening(what: &str, scheme: &str, addr: SocketAddr) {
    println!("{what} listening on {scheme}://{}/", display_addr(addr));
    tracing::info!("{what}: {scheme}://{}/", display_addr(addr));
}

/// Resolves on the first SIGTERM or SIGINT. Call it before announcing
/// anything, so that a stop sent right after "ready" is not lost.
pub(crate) fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
