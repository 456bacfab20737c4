//! `punktfunk pair` and `punktfunk connect`: the reference native client on
//! the command line.
//!
//! Contract for scripts: exit 0 only on success; stdout carries only the
//! status word (`paired`, `trusted`, `open`, `approval_pending`); every
//! error goes to stderr, its last line `error: <code>: <message>`
//! (docs/native-protocol.md § 5).

use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use punktfunk_certs::secret::BadPin;
use punktfunk_native::{
    Client, ClientError, Connected, DisplayName, Grant, HostAddr, HostAddrError, HostTrust,
    LinkError, NewHost, PairingLink, Pin, Status,
};

/// Exit code of `connect` when the host answered `approval_pending`.
const EXIT_PENDING: u8 = 2;

#[derive(Debug, Args)]
pub(crate) struct ClientArgs {
    /// The name this device gives itself (shown in the host's console)
    /// [default: this machine's host name].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Where this client keeps its identity and pinned hosts
    /// [default: $XDG_CONFIG_HOME/punktfunk-client].
    #[arg(long, value_name = "DIR")]
    client_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct PairArgs {
    /// The host: HOST[:PORT] (port 47991 by default).
    #[arg(
        value_name = "HOST[:PORT]",
        value_parser = parse_addr,
        required_unless_present = "link",
        conflicts_with = "link"
    )]
    host: Option<HostAddr>,
    /// The 4-digit PIN the host shows once pairing is armed.
    #[arg(
        long,
        value_parser = parse_pin,
        required_unless_present = "link",
        conflicts_with = "link"
    )]
    pin: Option<Pin>,
    /// Instead of HOST and --pin: the pairing link the host shows with its
    /// QR code (`punktfunk://pair?…`). It names the host's certificate, so
    /// an impostor is refused even on first contact.
    #[arg(long, value_name = "LINK", value_parser = LinkParser)]
    link: Option<PairingLink>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// The host: HOST[:PORT] (port 47991 by default).
    #[arg(value_name = "HOST[:PORT]", value_parser = parse_addr)]
    host: HostAddr,
    #[command(flatten)]
    client: ClientArgs,
    /// If the host asks for approval, wait on the connection for the
    /// decision instead of exiting.
    #[arg(long)]
    wait: bool,
    /// DANGER: trust a host that is not known yet without asking (trust on
    /// first use for scripts). An attacker present at first contact would
    /// be pinned as the host. The answer is remembered: after a knock is
    /// approved, a plain `connect` goes straight through.
    #[arg(long)]
    accept_new_host: bool,
    /// Keep the session open this many seconds (pinging the host), and
    /// report how it ended (e.g. `revoked`).
    #[arg(long, value_name = "SECONDS")]
    hold: Option<u64>,
}

fn parse_addr(s: &str) -> Result<HostAddr, HostAddrError> {
    HostAddr::parse(s)
}

/// Parses `--link` without echoing it: clap's usual "invalid value '…'"
/// would print the whole link, pairing secret included, to the terminal
/// and to whatever logs the command's output.
#[derive(Debug, Clone, Copy)]
struct LinkParser;

impl clap::builder::TypedValueParser for LinkParser {
    type Value = PairingLink;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<PairingLink, clap::Error> {
        let refused = |why: &dyn std::fmt::Display| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid --link (not shown: it holds the pairing secret): {why}\n"),
            )
            .with_cmd(cmd)
        };
        let text = value
            .to_str()
            .ok_or_else(|| refused(&"the pairing link is not UTF-8; scan the host's code again"))?;
        PairingLink::parse(text.trim()).map_err(|e: LinkError| refused(&e))
    }
}

fn parse_pin(s: &str) -> Result<Pin, BadPin> {
    s.trim().parse()
}

impl ClientArgs {
    fn open(&self) -> anyhow::Result<Client> {
        let dir = match &self.client_dir {
            Some(d) => d.clone(),
            None => default_client_dir()?,
        };
        let raw = match &self.name {
            Some(n) => n.clone(),
            None => crate::startup::host_name(),
        };
        let Some(name) = DisplayName::sanitize(&raw) else {
            bail!("the device name {raw:?} has nothing printable left; pass --name");
        };
        Ok(Client::open(&dir, name)?)
    }
}

/// `punktfunk pair`: with HOST and --pin, or with --link.
pub(crate) fn pair(args: PairArgs) -> anyhow::Result<ExitCode> {
    enum With<'a> {
        Pin(&'a HostAddr, &'a Pin),
        Link(&'a PairingLink),
    }
    // clap requires HOST and --pin unless --link is given.
    let with = match (&args.link, &args.host, &args.pin) {
        (Some(link), _, _) => With::Link(link),
        (None, Some(host), Some(pin)) => With::Pin(host, pin),
        _ => bail!("pass HOST and --pin, or --link"),
    };
    let mut client = args.client.open()?;
    let rt = runtime()?;
    let result = rt.block_on(async {
        let (addr, session) = match with {
            With::Pin(host, pin) => (host.clone(), client.pair(host, pin).await?),
            With::Link(link) => {
                eprintln!(
                    "pairing with {} (host fingerprint {} from the link)",
                    link.host_name,
                    link.host_fingerprint.grouped()
                );
                client.pair_link(link).await?
            }
        };
        eprintln!(
            "paired with {} ({addr}); host fingerprint {} pinned",
            session.host_name(),
            session.host_fingerprint().grouped()
        );
        if let Some(grant) = session.grant() {
            eprintln!("this device may: {}", grant_words(grant));
        }
        session.close().await;
        Ok::<_, ClientError>(())
    });
    Ok(match result {
        Ok(()) => status("paired"),
        Err(e) => failure(&e),
    })
}

/// `punktfunk connect`.
pub(crate) fn connect(args: ConnectArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.client.open()?;
    let rt = runtime()?;
    let result = rt.block_on(async {
        let new_host = new_host(&client, &args).await?;
        eprintln!(
            "this device's fingerprint: {}",
            client.fingerprint().grouped()
        );
        match client.connect(&args.host, new_host, args.wait).await? {
            Connected::ApprovalPending => Ok(None),
            Connected::Session(session) => Ok(Some(*session)),
        }
    });
    let session = match result {
        Ok(Some(s)) => s,
        Ok(None) => {
            eprintln!(
                "the host recorded a request for this device; approve it in the host's console (compare the fingerprint above), then connect again"
            );
            println!("approval_pending");
            return Ok(ExitCode::from(EXIT_PENDING));
        }
        Err(e) => return Ok(failure(&e)),
    };
    // `open`: an open host admitted this device just now; from the next
    // connect on it is `trusted`.
    println!(
        "{}",
        match session.status() {
            Status::Open => "open",
            _ => "trusted",
        }
    );
    let Some(secs) = args.hold else {
        if let Some(grant) = session.grant() {
            eprintln!("this device may: {}", grant_words(grant));
        }
        rt.block_on(session.close());
        return Ok(ExitCode::SUCCESS);
    };
    // Held: what it may do, then a line per change, as the host says it.
    let held = rt.block_on(async move {
        let mut session = session;
        let until = tokio::time::Instant::now() + Duration::from_secs(secs);
        let mut grant = session.grant().cloned();
        while let Some(g) = grant {
            println!("{}", grant_line(&g));
            let _ = std::io::stdout().flush();
            grant = session.next_change(until).await?;
        }
        // A host before grants: just hold.
        session.hold(until - tokio::time::Instant::now()).await
    });
    Ok(match held {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failure(&e),
    })
}

/// A grant as `connect --hold` prints it: `grant NAME,NAME[ until UNIX]`
/// (`-` for no permission).
fn grant_line(grant: &Grant) -> String {
    let (names, end) = grant_parts(grant, ",", "-");
    match end {
        Some(t) => format!("grant {names} until {t}"),
        None => format!("grant {names}"),
    }
}

/// A grant for people: `list, view; until 2026-12-08 23:00` (local time).
fn grant_words(grant: &Grant) -> String {
    match grant_parts(grant, ", ", "nothing") {
        (names, Some(t)) => format!("{names}; until {}", crate::show::date_unix(t)),
        (names, None) => format!("{names}; no end"),
    }
}

/// The permission names joined with `sep` (`none` for none), and the end.
fn grant_parts(grant: &Grant, sep: &str, none: &str) -> (String, Option<u64>) {
    let names = if grant.permissions.is_empty() {
        none.to_owned()
    } else {
        grant.permissions.join(sep)
    };
    (names, grant.expires_at)
}

/// How to treat the host's certificate: held to the one on record, any
/// (`--accept-new-host`), or the one the user accepted when asked.
async fn new_host(client: &Client, args: &ConnectArgs) -> Result<NewHost, ClientError> {
    if let Some(known) = client.known_host(&args.host) {
        // Held to the fingerprint on record; a fingerprint accepted at a
        // knock is not asked about again.
        if known.trust == HostTrust::Accepted {
            eprintln!(
                "host fingerprint {} (accepted earlier; pinned once the host admits this device)",
                known.fingerprint.grouped()
            );
        }
        return Ok(NewHost::Refuse);
    }
    if args.accept_new_host {
        return Ok(NewHost::DangerAcceptAny);
    }
    // Trust on first use (§ 2): show the fingerprint, ask, and only then
    // say hello, to exactly that certificate.
    let seen = client.probe(&args.host).await?;
    if ask_tofu(&args.host, &seen.grouped()) {
        Ok(NewHost::Accepted(seen))
    } else {
        Err(ClientError::HostNotAccepted {
            addr: args.host.clone(),
            seen,
        })
    }
}

/// Asks on stderr/stdin whether to trust an unpinned host. Anything but
/// `y`/`yes`, including end of input, is no.
fn ask_tofu(addr: &HostAddr, fingerprint: &str) -> bool {
    eprintln!(
        "The host {addr} is not known to this client. It presents the certificate fingerprint\n  {fingerprint}\nCompare it with the one the host shows (`punktfunk fingerprint`, or its console).\nThis is trust on first use: pairing with a PIN is safer."
    );
    eprint!("Trust this host and pin its fingerprint? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let read = std::io::stdin().lock().take(256).read_line(&mut line);
    // A terminal echoed the answer and its newline; a pipe did not, and
    // what follows must start on a line of its own.
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprintln!();
    }
    if read.is_err() {
        return false;
    }
    matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn status(word: &str) -> ExitCode {
    println!("{word}");
    ExitCode::SUCCESS
}

fn failure(e: &ClientError) -> ExitCode {
    eprintln!("error: {}: {e}", e.code());
    ExitCode::FAILURE
}

/// `$XDG_CONFIG_HOME/punktfunk-client`, else `$HOME/.config/punktfunk-client`.
fn default_client_dir() -> anyhow::Result<PathBuf> {
    if let Some(xdg) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(xdg).join("punktfunk-client"));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".config").join("punktfunk-client")),
        None => bail!("neither XDG_CONFIG_HOME nor HOME is set; pass --client-dir"),
    }
}
