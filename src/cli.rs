//! The command line: what each subcommand takes, turned into validated
//! configuration before anything binds or touches the state dir.

use std::io::{BufRead, Read, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use crate::console::auth::PasswordFile;
use crate::host::{self, ServeConfig};
use crate::startup::StateDirArg;

/// punktfunk host: pair Moonlight and punktfunk clients, keep their trust.
#[derive(Debug, Parser)]
#[command(name = "punktfunk", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the host: GameStream pairing, the web console and (with --native)
    /// the native endpoint.
    Serve(ServeArgs),
    /// Print the host certificate's SHA-256 fingerprint, in groups of four
    /// as the console and the browser's certificate view show it.
    Fingerprint {
        /// Lowercase hex without spaces (for scripts).
        #[arg(long)]
        hex: bool,
        #[command(flatten)]
        state: StateDirArg,
    },
    /// Pair this machine with a native host, using the PIN the host shows,
    /// or the pairing link of its QR code (the reference client of the
    /// punktfunk app's protocol).
    Pair(crate::native_cli::PairArgs),
    /// Connect to a native host: `trusted`, `open`, or a knock that waits
    /// for approval in the host's console.
    Connect(crate::native_cli::ConnectArgs),
    /// Manage the web console.
    Console {
        #[command(subcommand)]
        command: ConsoleCommand,
    },
    /// List, rename and revoke paired devices (in the running host, or in
    /// the state dir when no host runs).
    Devices {
        #[command(subcommand)]
        command: crate::admin_cli::DevicesCommand,
    },
    /// Print the audit trail: every trust decision, oldest first.
    Audit(crate::admin_cli::AuditArgs),
    /// Invite a guest: a pairing link (and its QR code) for the punktfunk
    /// app, or with --moonlight a one-time PIN for Moonlight, that admits
    /// one device with a preset for a time. Needs the running host.
    Invite(crate::admin_cli::InviteArgs),
}

#[derive(Debug, Subcommand)]
enum ConsoleCommand {
    /// Set the console password: asked twice without echo in a terminal,
    /// else read from the first line of stdin.
    SetPassword {
        #[command(flatten)]
        state: StateDirArg,
    },
}

/// `serve`'s flags. Each overrides the settings file's key of the same name
/// (see `crate::config`); the defaults apply when neither gives a value.
#[derive(Debug, Args)]
struct ServeArgs {
    /// Settings file [default: /etc/punktfunk/punktfunk.toml if it exists,
    /// else punktfunk.toml in the state dir if it exists].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Also run the native endpoint for the punktfunk app.
    #[arg(long)]
    native: bool,
    /// DANGER: let unknown native devices in without pairing. Only for a
    /// fully trusted single-user network.
    #[arg(long)]
    open: bool,
    #[command(flatten)]
    state: StateDirArg,
    /// Address to listen on [default: every address, IPv4 and IPv6 (`::`);
    /// `0.0.0.0` on a machine without IPv6].
    #[arg(long, value_name = "ADDR")]
    bind: Option<IpAddr>,
    /// GameStream HTTP port [default: 47989].
    #[arg(long, value_name = "PORT")]
    http_port: Option<u16>,
    /// GameStream HTTPS port [default: 47984].
    #[arg(long, value_name = "PORT")]
    https_port: Option<u16>,
    /// Web console (HTTPS) port [default: 47990].
    #[arg(long, value_name = "PORT")]
    console_port: Option<u16>,
    /// Native endpoint (TLS) port [default: 47991].
    #[arg(long, value_name = "PORT")]
    native_port: Option<u16>,
    /// Do not announce the host on mDNS.
    #[arg(long)]
    no_mdns: bool,
}

impl ServeArgs {
    /// Flags over the settings file over the defaults.
    fn into_config(self) -> anyhow::Result<ServeConfig> {
        let flag_dir = self.state.state_dir.clone();
        // The state dir's own settings file is looked for where the rule
        // puts the dir before any settings are read.
        let (probe_dir, _) = crate::startup::choose_state_dir(flag_dir.as_deref(), None)?;
        let file = crate::config::locate(self.config.as_deref(), Some(&probe_dir))?;
        let settings = match &file {
            Some(path) => crate::config::load(
                path,
                self.config.is_none() && path != std::path::Path::new(crate::config::SYSTEM_CONFIG),
            )?,
            None => crate::config::FileSettings::default(),
        };
        let native = self.native || settings.native.unwrap_or(false);
        let open = self.open || settings.open.unwrap_or(false);
        if open && !native {
            bail!("open mode (--open, or open = true) needs the native endpoint: add --native (or native = true)");
        }
        let (state_dir, state_dir_choice) = crate::startup::choose_state_dir(
            flag_dir.as_deref(),
            file.as_deref().map(|f| (f, settings.state_dir.as_deref())),
        )?;
        Ok(ServeConfig {
            state_dir,
            state_dir_choice,
            advertise: settings.advertise.clone().unwrap_or_default(),
            bind: self.bind.or(settings.bind),
            http_port: self.http_port.or(settings.http_port).unwrap_or(47989),
            https_port: self.https_port.or(settings.https_port).unwrap_or(47984),
            console_port: self.console_port.or(settings.console_port).unwrap_or(47990),
            native_port: native.then(|| {
                self.native_port
                    .or(settings.native_port)
                    .unwrap_or(punktfunk_native::DEFAULT_PORT)
            }),
            open,
            mdns: !self.no_mdns && settings.mdns.unwrap_or(true),
            default_grant: settings
                .default_grant
                .unwrap_or(punktfunk_certs::Preset::Play),
            // `load` checked that it names a group.
            streamer_group: settings
                .streamer_group
                .as_deref()
                .map(crate::streamer::group_id)
                .transpose()
                .map_err(anyhow::Error::msg)?,
            config_file: file,
        })
    }
}

/// Root setting the password of a service's state dir (owned by the
/// service user) must not leave a file the service cannot read: the file
/// takes the dir's owner, set on its descriptor before it gets its name
/// (never a `chown` by path, which a link swapped in by the dir's owner
/// would redirect to any file).
fn dir_owner_if_root(
    dir: &std::path::Path,
) -> anyhow::Result<Option<punktfunk_certs::fsutil::Owner>> {
    use std::os::unix::fs::MetadataExt;
    if !rustix::process::geteuid().is_root() {
        return Ok(None);
    }
    let meta = std::fs::metadata(dir)
        .with_context(|| format!("cannot read the owner of {}", dir.display()))?;
    Ok((meta.uid() != 0).then(|| punktfunk_certs::fsutil::Owner {
        uid: meta.uid(),
        gid: meta.gid(),
    }))
}

/// Asks on the terminal for a line that is not shown. Echo goes off
/// before the prompt appears (rpassword alone prints the prompt first), so
/// keys typed as soon as it shows, or before, are not echoed either.
fn ask_hidden(prompt: &str) -> std::io::Result<String> {
    use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")?;
    let before = tcgetattr(&tty)?;
    let mut quiet = before.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(&tty, OptionalActions::Now, &quiet)?;
    // Whatever happens next, the terminal gets its echo back.
    struct Restore<'a>(&'a std::fs::File, rustix::termios::Termios);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            let _ = tcsetattr(self.0, OptionalActions::Now, &self.1);
        }
    }
    let _restore = Restore(&tty, before);
    (&tty).write_all(prompt.as_bytes())?;
    (&tty).flush()?;
    rpassword::read_password()
}

/// The new console password: in a terminal asked twice without echo (the
/// two must match); from a pipe, the first line (scripts, the tests).
fn read_new_password() -> anyhow::Result<String> {
    use std::io::IsTerminal;
    let min = crate::console::auth::MIN_PASSWORD_CHARS;
    let password = if std::io::stdin().is_terminal() {
        let first = ask_hidden(&format!(
            "New console password (at least {min} characters, not shown): "
        ))
        .context("cannot read the password from the terminal")?;
        if first.chars().count() >= min {
            let again = ask_hidden("The same password again: ")
                .context("cannot read the password from the terminal")?;
            if again != first {
                bail!("the two passwords differ; nothing was changed, run the command again");
            }
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .take(4096)
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    if password.chars().count() < min {
        bail!("the password must have at least {min} characters; nothing was changed");
    }
    Ok(password)
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            host::serve(args.into_config()?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Fingerprint { hex, state } => {
            let dir = state.resolve()?;
            let cert = dir.join(punktfunk_certs::identity::HOST_CERT_FILE);
            let pem = std::fs::read(&cert).with_context(|| {
                format!(
                    "cannot read the host certificate {}; run `punktfunk serve` once to create it",
                    cert.display()
                )
            })?;
            let der = openssl::x509::X509::from_pem(&pem)
                .and_then(|c| c.to_der())
                .with_context(|| format!("{} is not a PEM certificate", cert.display()))?;
            let fp = punktfunk_certs::Fingerprint::of_der(&der);
            if hex {
                println!("{fp}");
            } else {
                println!("{}", fp.grouped());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Pair(args) => crate::native_cli::pair(args),
        Command::Devices { command } => Ok(crate::admin_cli::devices(command)?),
        Command::Audit(args) => Ok(crate::admin_cli::audit(args)?),
        Command::Invite(args) => Ok(crate::admin_cli::invite(args)?),
        Command::Connect(args) => crate::native_cli::connect(args),
        Command::Console {
            command: ConsoleCommand::SetPassword { state },
        } => {
            let dir = state.resolve()?;
            let password = read_new_password()?;
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create state dir {}", dir.display()))?;
            PasswordFile::new(&dir).set(&password, dir_owner_if_root(&dir)?)?;
            crate::first_start::forget_generated(&dir).with_context(|| {
                format!(
                    "cannot remove the old generated password from {}",
                    dir.display()
                )
            })?;
            eprintln!("console password set in {}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
