//! What both host binaries (`punktfunk serve` and `m3-host`) do the same way
//! at start and stop: logging, the locked state dir with identity and trust
//! registry, the native endpoint's binding, the expiry ticker, listener
//! lines on stdout, signals.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use punktfunk_certs::registry::REGISTRY_FILE;
use punktfunk_certs::{
    audit, Door, Entry, Event, GateConfig, HostIdentity, Identity, StateDir, SystemClock, Trust,
};
use punktfunk_native::{endpoint, DisplayName, Endpoint, EndpointConfig, UnknownDevices};

/// Logs to stderr (stdout carries the lines tests and scripts read).
pub fn init_logging() {
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

/// The packaged system service's state dir (`packaging/punktfunk.service`).
pub const SYSTEM_STATE_DIR: &str = "/var/lib/punktfunk";

/// Why a state dir was chosen, said to the person on stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateDirChoice {
    /// `--state-dir`.
    Flag,
    /// `state_dir` in this settings file.
    Settings(PathBuf),
    /// [`SYSTEM_STATE_DIR`] exists and this user is root or owns it.
    System,
    /// `$XDG_CONFIG_HOME/punktfunk` (or `~/.config/punktfunk`).
    Personal,
}

impl std::fmt::Display for StateDirChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Flag => f.write_str("--state-dir"),
            Self::Settings(file) => write!(f, "`state_dir` in {}", file.display()),
            Self::System => {
                f.write_str("the system service's state dir; pass --state-dir for another")
            }
            Self::Personal => f.write_str("this user's own; pass --state-dir for another"),
        }
    }
}

/// The one rule every command (`serve`, `fingerprint`, `devices`, `audit`,
/// `console set-password`, `m3-host`) uses for its state dir:
///
/// 1. `--state-dir`;
/// 2. `state_dir` in the settings file (`settings`: the file and its key);
/// 3. [`SYSTEM_STATE_DIR`] if it exists and this user is root or owns it:
///    on a packaged install root's bare `punktfunk fingerprint` means the
///    service's host, not a second identity in `/root/.config`; a desktop
///    user (who cannot open that 0700 dir anyway) keeps their own;
/// 4. `$XDG_CONFIG_HOME/punktfunk`, else `$HOME/.config/punktfunk`.
pub fn choose_state_dir(
    flag: Option<&Path>,
    settings: Option<(&Path, Option<&Path>)>,
) -> anyhow::Result<(PathBuf, StateDirChoice)> {
    if let Some(d) = flag {
        return Ok((d.to_path_buf(), StateDirChoice::Flag));
    }
    if let Some((file, Some(dir))) = settings {
        return Ok((
            dir.to_path_buf(),
            StateDirChoice::Settings(file.to_path_buf()),
        ));
    }
    {
        use std::os::unix::fs::MetadataExt;
        let me = rustix::process::geteuid();
        if let Ok(meta) = std::fs::metadata(SYSTEM_STATE_DIR) {
            if meta.is_dir() && (me.is_root() || meta.uid() == me.as_raw()) {
                return Ok((PathBuf::from(SYSTEM_STATE_DIR), StateDirChoice::System));
            }
        }
    }
    let personal = StateDir::default_path().ok_or_else(|| {
        anyhow::anyhow!("neither XDG_CONFIG_HOME nor HOME is set; pass --state-dir")
    })?;
    Ok((personal, StateDirChoice::Personal))
}

/// [`choose_state_dir`] for a command without a settings file of its own
/// (everything but `serve`): the system settings file's `state_dir`
/// counts when that file exists. Says on stderr which dir it took when no
/// `--state-dir` named it.
pub fn state_dir_or_default(dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    let system = Path::new(crate::config::SYSTEM_CONFIG);
    let settings = match dir {
        None if system.exists() => Some(crate::config::load(system, false)?),
        _ => None,
    };
    let (dir, why) = choose_state_dir(
        dir,
        settings.as_ref().map(|s| (system, s.state_dir.as_deref())),
    )?;
    if why != StateDirChoice::Flag {
        eprintln!("state dir: {} ({why})", dir.display());
    }
    Ok(dir)
}

/// A host's state, loaded in the order that keeps promises: the dir is
/// locked before anything is read, and every file is loaded (a corrupt one
/// refused) before any port is bound.
pub struct HostState {
    /// Holds the lock until dropped.
    pub state_dir: StateDir,
    /// The host's certificate and key.
    pub host: HostIdentity,
    /// The registry and the gate, shared by every door.
    pub trust: Arc<Trust>,
    /// The machine's host name.
    pub host_name: String,
}

/// `--state-dir`, as every command that works on a state dir takes it.
#[derive(Debug, clap::Args)]
pub(crate) struct StateDirArg {
    /// Where the host keeps its identity, paired devices and console
    /// password [default: $XDG_CONFIG_HOME/punktfunk].
    #[arg(long, value_name = "DIR")]
    pub(crate) state_dir: Option<PathBuf>,
}

impl StateDirArg {
    pub(crate) fn resolve(&self) -> anyhow::Result<PathBuf> {
        state_dir_or_default(self.state_dir.as_deref())
    }
}

/// File holding the PHC-format argon2id hash of the console password.
pub(crate) const PASSWORD_FILE: &str = "console.passwd";

/// The generated console password, in plain text, until it is used.
pub(crate) const GENERATED_FILE: &str = "console.generated-password";

/// The files in a state dir no other user may read.
const PRIVATE_FILES: &[&str] = &[
    punktfunk_certs::identity::HOST_KEY_FILE,
    REGISTRY_FILE,
    punktfunk_certs::registry::V1_COPY_FILE,
    PASSWORD_FILE,
    GENERATED_FILE,
    audit::AUDIT_FILE,
    audit::ROTATED_FILES[0],
    audit::ROTATED_FILES[1],
    audit::ROTATED_FILES[2],
    audit::ROTATED_FILES[3],
    audit::DECISIONS_FILE,
];

impl HostState {
    /// Locks `dir`, makes its private files private, then loads (or
    /// creates) the identity and opens the trust registry.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        Self::open_sharing(dir, None)
    }

    /// [`HostState::open`]; with `group` (the streamer's, `streamer_group`)
    /// the dir is 0710 and that group's: its members may pass through it
    /// to `streamer.sock`, and read or list nothing.
    pub(crate) fn open_sharing(dir: &Path, group: Option<u32>) -> anyhow::Result<Self> {
        let state_dir = StateDir::open(dir)?;
        // Before anything is read from them: the host key, the pinned
        // devices and the password hash are for this user only.
        let dir_mode = if group.is_some() { 0o710 } else { 0o700 };
        for (path, old, new) in state_dir.make_private_but(PRIVATE_FILES, dir_mode)? {
            tracing::warn!(
                "{} was open to other users (mode {old:04o}); changed it to {new:04o}",
                path.display()
            );
        }
        if let Some(gid) = group {
            share_dir(state_dir.path(), gid)?;
        }
        let host_name = host_name();
        let host = HostIdentity::load_or_create(state_dir.path(), &host_name)?;
        tracing::info!(
            state_dir = %state_dir.path().display(),
            created = host.created,
            "host identity {}",
            host.identity.fingerprint().grouped()
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

/// The native endpoint, bound and configured but not yet serving: the
/// caller announces `addr`, then spawns `endpoint.run(stopped)` once it is
/// ready to answer (`m3-host` arms pairing first).
pub struct NativeDoor {
    /// The endpoint, to run.
    pub endpoint: Endpoint,
    /// The address it is bound to (the port is real with port 0).
    pub addr: SocketAddr,
    /// The host name it tells clients, as a display name.
    pub name: DisplayName,
}

/// Binds the native endpoint on `addr` for the host `identity`: the one
/// way both binaries open the native door (`serve --native` knocks or,
/// with `--open`, admits; `m3-host` admits or refuses unknown devices).
pub fn bind_native(
    addr: SocketAddr,
    identity: &Identity,
    trust: Arc<Trust>,
    host_name: &str,
    unknown_devices: UnknownDevices,
    console: Option<Arc<dyn endpoint::ConsoleDoor>>,
) -> anyhow::Result<NativeDoor> {
    let name = DisplayName::sanitize(host_name)
        .or_else(|| DisplayName::sanitize("punktfunk"))
        .context("no usable host name")?;
    let config = EndpointConfig {
        host_name: name.clone(),
        trust,
        unknown_devices,
        max_connections: endpoint::DEFAULT_MAX_CONNECTIONS,
        max_connections_per_address: endpoint::DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
        console,
    };
    let listener =
        crate::net::listen(addr).with_context(|| format!("cannot listen on {addr} (native)"))?;
    let endpoint = Endpoint::from_listener(listener, identity, config)?;
    let addr = endpoint.local_addr()?;
    Ok(NativeDoor {
        endpoint,
        addr,
        name,
    })
}

/// Runs the trust service's one expiry timer ([`Trust::run_expiry`]):
/// PINs and pending requests end on time, so their events fire even when
/// nobody is looking. Abort the task to stop it.
pub fn spawn_expiry_ticker(trust: Arc<Trust>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(trust.run_expiry())
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
pub fn print_listening(what: &str, scheme: &str, addr: SocketAddr) {
    println!("{what} listening on {scheme}://{}/", display_addr(addr));
    tracing::info!("{what}: {scheme}://{}/", display_addr(addr));
}

/// Resolves on the first SIGTERM or SIGINT. Call it before announcing
/// anything, so that a stop sent right after "ready" is not lost.
pub fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
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

/// Why the state dir cannot be used, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum StateDirUse {
    /// Root asked to run the host on a dir another user owns.
    #[error(
        "{} belongs to the user {owner}: root does not run the host on another user's state dir \
         (the files it wrote would belong to root and the host could not read them as {owner}). \
         Start it as that user: `sudo -u {owner} punktfunk serve --state-dir {}` \
         (or `sudo systemctl start punktfunk` for the packaged service), or pass --state-dir \
         with a dir of root's own for a separate host",
        dir.display(),
        dir.display()
    )]
    OtherOwner {
        /// The state dir.
        dir: PathBuf,
        /// Its owner's user name (or `#UID`).
        owner: String,
    },
    /// The dir (or where it would be made) is not this user's to write.
    #[error("cannot use the state dir {}: permission denied; {hint}", dir.display())]
    PermissionDenied {
        /// The state dir.
        dir: PathBuf,
        /// What to do.
        hint: String,
    },
}

/// A user's name for `sudo -u` (`#UID`, which sudo takes too, without one).
/// Gives `dir` to `gid` as its group, mode 0710: the group may pass
/// through to a socket it is given, nothing more.
fn share_dir(dir: &Path, gid: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::os::unix::fs::chown(dir, None, Some(gid)).with_context(|| {
        format!(
            "cannot give {} to the group {gid} (`streamer_group`): the host's user must be a member of it",
            dir.display()
        )
    })?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o710))
        .with_context(|| format!("cannot make {} 0710", dir.display()))
}

pub(crate) fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("#{uid}"))
}

/// Root on another user's state dir is refused before anything is
/// written: a rename or a new file as root there leaves the service's own
/// files unreadable to it (issue: `trust.json` owned by root).
pub fn refuse_other_owner(dir: &Path) -> Result<(), StateDirUse> {
    use std::os::unix::fs::MetadataExt;
    if !rustix::process::geteuid().is_root() {
        return Ok(());
    }
    match std::fs::metadata(dir) {
        Ok(meta) if meta.uid() != 0 => Err(StateDirUse::OtherOwner {
            dir: dir.to_path_buf(),
            owner: user_name(meta.uid()),
        }),
        _ => Ok(()),
    }
}

/// Turns a permission error met while opening `dir` into one that says
/// whose the dir is and what to run instead; other errors pass unchanged.
pub fn explain_denied(dir: &Path, err: anyhow::Error) -> anyhow::Error {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let denied = err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|e| {
            matches!(
                e.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
            )
        })
    });
    if !denied {
        return err;
    }
    let me = rustix::process::geteuid().as_raw();
    let own = "or pass --state-dir with a dir of your own";
    // The dir itself, or the nearest parent that exists (where it would
    // be created).
    let (at, meta) = match dir
        .ancestors()
        .find_map(|a| std::fs::metadata(a).ok().map(|m| (a, m)))
    {
        Some(found) => found,
        None => return err,
    };
    let mode = meta.permissions().mode() & 0o7777;
    let what = if at == dir {
        format!("{}", dir.display())
    } else {
        format!("{} (where it would be created)", at.display())
    };
    let hint = if meta.uid() != me {
        let owner = user_name(meta.uid());
        format!(
            "{what} belongs to the user {owner}: run the command as that user \
             (`sudo -u {owner} punktfunk …`), {own}"
        )
    } else if err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::ReadOnlyFilesystem)
    }) {
        format!("{what} is on a read-only file system: {own}")
    } else {
        format!(
            "{what} is yours but not writable (mode {mode:04o}): `chmod u+rwx {}`, {own}",
            at.display()
        )
    };
    StateDirUse::PermissionDenied {
        dir: dir.to_path_buf(),
        hint,
    }
    .into()
}
