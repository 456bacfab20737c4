//! `punktfunk devices …` and `punktfunk audit`: administering a headless
//! host over SSH.
//!
//! Device commands go to the running host through its control socket
//! ([`crate::control`]), so they take effect in it at once; with no host
//! running they take the state dir's lock and change the files directly.
//! `audit` only reads the trail's files, which needs no lock.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use punktfunk_certs::audit::{self, Query, Record};
use punktfunk_certs::{GateConfig, StateDir, StateDirError, SystemClock, Trust};

use crate::control::{self, Asked, DeviceRow, OpError, Request};
use crate::startup::StateDirArg;

#[derive(Debug, Subcommand)]
pub(crate) enum DevicesCommand {
    /// List the paired devices.
    List {
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// Whole fingerprints instead of their first four groups.
        #[arg(long)]
        long: bool,
        #[command(flatten)]
        state: StateDirArg,
    },
    /// Remove a device: its open sessions end now, and it must pair again.
    Revoke {
        /// Its fingerprint, or enough of its start to name one device.
        device: String,
        #[command(flatten)]
        state: StateDirArg,
    },
    /// Give a device a label (an empty LABEL clears it).
    Rename {
        /// Its fingerprint, or enough of its start to name one device.
        device: String,
        /// The new label.
        label: String,
        #[command(flatten)]
        state: StateDirArg,
    },
}

#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// One JSON record per line, as in the file.
    #[arg(long)]
    json: bool,
    /// Keep printing new records as they are written (Ctrl-C ends).
    #[arg(long, short)]
    follow: bool,
    /// How many of the newest records to print first.
    #[arg(long, short = 'n', default_value_t = 50)]
    limit: usize,
    #[command(flatten)]
    state: StateDirArg,
}

/// Errors of the admin commands, with what to do about them.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AdminError {
    #[error("no state dir at {0}: run `punktfunk serve` once, or pass --state-dir")]
    NoStateDir(PathBuf),
    #[error("cannot open {0}: permission denied; run this as the user that runs the host, e.g. `sudo -u punktfunk punktfunk devices list --state-dir /var/lib/punktfunk`")]
    PermissionDenied(PathBuf),
    #[error("{} belongs to another user; run this as that user (e.g. `sudo -u punktfunk punktfunk …`) so the files keep their owner", .0.display())]
    OtherOwner(PathBuf),
    #[error(
        "a host runs on {0} but its control socket does not answer; try again, or restart the host"
    )]
    HostNotAnswering(PathBuf),
    #[error("cannot reach the host on {}: {source}", path.display())]
    Socket { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Refused(#[from] OpError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

fn existing_dir(state: &StateDirArg) -> Result<PathBuf, AdminError> {
    let dir = state.resolve()?;
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => Ok(dir),
        Ok(_) => Err(AdminError::NoStateDir(dir)),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            Err(AdminError::PermissionDenied(dir))
        }
        Err(_) => Err(AdminError::NoStateDir(dir)),
    }
}

/// Runs `request` in the host on `dir`, or on the files when none runs.
fn perform(dir: &Path, request: Request) -> Result<serde_json::Value, AdminError> {
    let socket_error = |source: io::Error| match source.kind() {
        io::ErrorKind::PermissionDenied => AdminError::PermissionDenied(dir.into()),
        _ => AdminError::Socket {
            path: dir.join(control::SOCKET_FILE),
            source,
        },
    };
    if let Asked::Answered(r) = control::ask(dir, &request).map_err(socket_error)? {
        return Ok(r?);
    }
    // Files written as another user (root on the service's dir) would lock
    // the host out of its own state.
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(dir)
        .map_err(|_| AdminError::PermissionDenied(dir.into()))?
        .uid();
    if owner != rustix::process::geteuid().as_raw() {
        return Err(AdminError::OtherOwner(dir.into()));
    }
    let _lock = match StateDir::open(dir) {
        Ok(lock) => lock,
        // A host started in between: ask it.
        Err(StateDirError::Locked { .. }) => {
            std::thread::sleep(Duration::from_millis(300));
            return match control::ask(dir, &request).map_err(socket_error)? {
                Asked::Answered(r) => Ok(r?),
                Asked::NoHost => Err(AdminError::HostNotAnswering(dir.into())),
            };
        }
        Err(StateDirError::Io { source, .. })
            if source.kind() == io::ErrorKind::PermissionDenied =>
        {
            return Err(AdminError::PermissionDenied(dir.into()))
        }
        Err(e) => return Err(anyhow::Error::from(e).into()),
    };
    let trust = Trust::open(dir, GateConfig::default(), Arc::new(SystemClock))
        .map_err(anyhow::Error::from)?;
    Ok(control::apply(&trust, request)?)
}

fn rows(value: serde_json::Value) -> Result<Vec<DeviceRow>, AdminError> {
    serde_json::from_value(value)
        .map_err(|e| anyhow::anyhow!("the host's device list is not understood: {e}").into())
}

fn row(value: serde_json::Value) -> Result<DeviceRow, AdminError> {
    serde_json::from_value(value)
        .map_err(|e| anyhow::anyhow!("the host's answer is not understood: {e}").into())
}

fn shown(row: &DeviceRow) -> String {
    match &row.label {
        Some(label) => format!("{label:?} ({})", row.name),
        None => format!("{:?}", row.name),
    }
}

pub(crate) fn devices(command: DevicesCommand) -> Result<ExitCode, AdminError> {
    match command {
        DevicesCommand::List { json, long, state } => {
            let dir = existing_dir(&state)?;
            let list = perform(&dir, Request::List {})?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&list).unwrap_or_default()
                );
            } else {
                print_table(&rows(list)?, long);
            }
        }
        DevicesCommand::Revoke { device, state } => {
            let dir = existing_dir(&state)?;
            let removed = row(perform(&dir, Request::Revoke { device })?)?;
            println!(
                "revoked {} {}: it must pair again to connect",
                removed.fingerprint.grouped(),
                shown(&removed)
            );
        }
        DevicesCommand::Rename {
            device,
            label,
            state,
        } => {
            let dir = existing_dir(&state)?;
            let label = (!label.trim().is_empty()).then_some(label);
            let renamed = row(perform(&dir, Request::Rename { device, label })?)?;
            println!(
                "renamed {} to {}",
                renamed.fingerprint.grouped(),
                shown(&renamed)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(rows: &[DeviceRow], long: bool) {
    if rows.is_empty() {
        println!("no paired devices");
        return;
    }
    let header = [
        "FINGERPRINT",
        "CLIENT",
        "NAME",
        "LABEL",
        "PAIRED",
        "LAST SEEN",
        "VIA",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                if long {
                    r.fingerprint.grouped()
                } else {
                    crate::show::fp_short(&r.fingerprint)
                },
                // The console's word (Moonlight, punktfunk app); `--json` keeps `kind`.
                r.kind.door_name().to_owned(),
                r.name.clone(),
                r.label.clone().unwrap_or_else(|| "-".into()),
                crate::show::date(&r.paired),
                r.last_seen
                    .as_deref()
                    .map_or_else(|| "never".into(), crate::show::date),
                serde_plain(&r.via),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(&header.map(String::from));
    for row in &cells {
        line(row);
    }
}

/// A unit enum's serde name (`native`, `approval`, …).
fn serde_plain(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

pub(crate) fn audit(args: AuditArgs) -> Result<ExitCode, AdminError> {
    let dir = existing_dir(&args.state)?;
    let read = |query: &Query| {
        audit::read(&dir, query).map_err(|e| match e {
            audit::AuditError::Io { ref reason, .. } if reason.contains("ermission denied") => {
                AdminError::PermissionDenied(dir.clone())
            }
            e => anyhow::Error::from(e).into(),
        })
    };
    // One more than asked: `--limit 0 --follow` still learns where the
    // trail ends, so it prints only what comes after.
    let mut newest = read(&Query {
        limit: args.limit.saturating_add(1),
        ..Query::default()
    })?
    .events;
    let mut last = newest.first().map(|r| r.seq);
    newest.truncate(args.limit);
    newest.reverse();
    let mut out = io::stdout().lock();
    for record in &newest {
        print_record(&mut out, record, args.json);
    }
    let _ = out.flush();
    drop(out);
    if !args.follow {
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let mut new = read(&Query {
            limit: 100_000,
            after: Some(last.unwrap_or(0)),
            ..Query::default()
        })?
        .events;
        new.reverse();
        let mut out = io::stdout().lock();
        for record in &new {
            print_record(&mut out, record, args.json);
            last = Some(record.seq);
        }
        // A closed pipe (`| head`) ends the follow.
        if out.flush().is_err() {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

fn print_record(out: &mut impl Write, record: &Record, json: bool) {
    let line = if json {
        serde_json::to_string(record).unwrap_or_default()
    } else {
        human(record)
    };
    let _ = writeln!(out, "{line}");
}

/// `2026-11-28 13:00:00  paired  native  ok  "iPad" 3F2A 9C01 77B0 12EE… from 192.168.1.5 via pin`
/// (local time; `--json` keeps the file's RFC 3339 UTC).
fn human(record: &Record) -> String {
    let e = &record.entry;
    let mut line = format!(
        "{}  {}  {}  {}",
        crate::show::date_secs(&record.at),
        e.event.as_str(),
        e.door.as_str(),
        serde_plain(&e.outcome)
    );
    if let Some(d) = &e.device {
        let name = d.label.as_deref().unwrap_or(&d.name);
        line.push_str(&format!(
            "  {name:?} {}",
            crate::show::fp_short(&d.fingerprint)
        ));
    }
    if let Some(a) = e.address {
        line.push_str(&format!(" from {a}"));
    }
    if let Some(v) = e.via {
        line.push_str(&format!(" via {}", serde_plain(&v)));
    }
    if let Some(detail) = &e.detail {
        line.push_str(&format!(" ({detail})"));
    }
    line
}
