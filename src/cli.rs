//! The command line: what each subcommand takes, turned into validated
//! configuration before anything binds or touches the state dir.

use std::io::{BufRead, Read};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use crate::console::auth::PasswordFile;
use crate::host::{self, ServeConfig};

/// punktfunk host: pair Moonlight and punktfunk clients, keep their trust.
#[derive(Debug, Parser)]
#[command(name = "punktfunk", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the host: GameStream pairing, the web console and (with --native)
    /// the native endpoint.
    Serve(ServeArgs),
    /// Print the host certificate's SHA-256 fingerprint (lowercase hex).
    Fingerprint {
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
}

#[derive(Debug, Subcommand)]
enum ConsoleCommand {
    /// Set the console password, read from the first line of stdin.
    SetPassword {
        #[command(flatten)]
        state: StateDirArg,
    },
}

#[derive(Debug, Args)]
pub(crate) struct StateDirArg {
    /// Where the host keeps its identity, paired devices and console
    /// password [default: $XDG_CONFIG_HOME/punktfunk].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

impl StateDirArg {
    pub(crate) fn resolve(&self) -> anyhow::Result<PathBuf> {
        crate::startup::state_dir_or_default(self.state_dir.as_deref())
    }
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Also run the native endpoint for the punktfunk app.
    #[arg(long)]
    native: bool,
    /// DANGER: let unknown native devices in without pairing. Only for a
    /// fully trusted single-user network.
    #[arg(long, requires = "native")]
    open: bool,
    #[command(flatten)]
    state: StateDirArg,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0")]
    bind: IpAddr,
    /// GameStream HTTP port.
    #[arg(long, default_value_t = 47989)]
    http_port: u16,
    /// GameStream HTTPS port.
    #[arg(long, default_value_t = 47984)]
    https_port: u16,
    /// Web console (HTTPS) port.
    #[arg(long, default_value_t = 47990)]
    console_port: u16,
    /// Native endpoint (TLS) port.
    #[arg(long, default_value_t = 47991)]
    native_port: u16,
    /// Do not announce the host on mDNS.
    #[arg(long)]
    no_mdns: bool,
}

/// Runs a parsed command line.
pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            let config = ServeConfig {
                state_dir: args.state.resolve()?,
                bind: args.bind,
                http_port: args.http_port,
                https_port: args.https_port,
                console_port: args.console_port,
                native_port: args.native.then_some(args.native_port),
                open: args.open,
                mdns: !args.no_mdns,
            };
            host::serve(config)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Fingerprint { state } => {
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
            println!("{}", punktfunk_certs::Fingerprint::of_der(&der));
            Ok(ExitCode::SUCCESS)
        }
        Command::Pair(args) => crate::native_cli::pair(args),
        Command::Devices { command } => Ok(crate::admin_cli::devices(command)?),
        Command::Audit(args) => Ok(crate::admin_cli::audit(args)?),
        Command::Connect(args) => crate::native_cli::connect(args),
        Command::Console {
            command: ConsoleCommand::SetPassword { state },
        } => {
            let dir = state.resolve()?;
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .take(4096)
                .read_line(&mut line)
                .context("cannot read the password from stdin")?;
            let password = line.trim_end_matches(['\r', '\n']);
            if password.chars().count() < crate::console::auth::MIN_PASSWORD_CHARS {
                bail!(
                    "the password must have at least {} characters",
                    crate::console::auth::MIN_PASSWORD_CHARS
                );
            }
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create state dir {}", dir.display()))?;
            PasswordFile::new(&dir).set(password)?;
            eprintln!("console password set in {}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
