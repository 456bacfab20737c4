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
use punktfunk_certs::{GateConfig, Preset, StateDir, StateDirError, SystemClock, Trust};

use crate::control::{self, Asked, DeviceRow, InviteReply, OpError, Request};
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
    /// Change what a device may do: a preset (full, play, gamepad, watch),
    /// or permissions to add and remove, e.g. `-list,+clipboard_read`.
    /// It applies at once.
    #[command(allow_hyphen_values = true)]
    Grant {
        /// Its fingerprint, or enough of its start to name one device.
        device: String,
        /// A preset, or a comma-separated list of +PERMISSION and
        /// -PERMISSION (input_controller or controller, input_touch or
        /// touch, input_pen or pen, input_mouse or mouse, input_kbd or
        /// keyboard, clipboard_set, clipboard_read, file_upload,
        /// file_download, server_cmd, list, view, launch).
        change: String,
        #[command(flatten)]
        state: StateDirArg,
    },
    /// Refuse a device at every door without unpairing it; its open
    /// sessions end now.
    Disable {
        /// Its fingerprint, or enough of its start to name one device.
        device: String,
        #[command(flatten)]
        state: StateDirArg,
    },
    /// Let a disabled device connect again.
    Enable {
        /// Its fingerprint, or enough of its start to name one device.
        device: String,
        #[command(flatten)]
        state: StateDirArg,
    },
    /// End a device's access at a time (its open sessions end then), when
    /// its first session ends, or never: `--never` (and `--first-session`)
    /// also renew an expired device.
    Expire {
        /// Its fingerprint, or enough of its start to name one device.
        device: String,
        #[command(flatten)]
        when: ExpireWhen,
        #[command(flatten)]
        state: StateDirArg,
    },
}

/// When `devices expire` ends a device's access: exactly one of these.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct ExpireWhen {
    /// After this long from now: e.g. 90s, 45m, 4h, 2d.
    #[arg(long = "in", value_name = "DURATION", value_parser = parse_duration)]
    after: Option<Duration>,
    /// At this time, RFC 3339: e.g. 2026-12-24T18:00:00Z or 2026-12-24T18:00:00+01:00.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    at: Option<u64>,
    /// Never: the device keeps its access (and an expired one gets it back).
    #[arg(long)]
    never: bool,
    /// When its first session ends, as the streamer reports it.
    #[arg(long)]
    first_session: bool,
}

impl ExpireWhen {
    /// Unix seconds, or `None` for never.
    fn unix(&self) -> Option<u64> {
        match (self.after, self.at) {
            (Some(after), _) => Some(unix_now().saturating_add(after.as_secs().max(1))),
            (None, Some(at)) => Some(at),
            (None, None) => None,
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A duration such as `90s`, `45m`, `4h`, `2d` or `1h30m` (a day is 24
/// hours).
fn parse_duration(raw: &str) -> Result<Duration, String> {
    let bad =
        |e: &dyn std::fmt::Display| format!("{raw:?} is not a duration such as 90s, 4h or 2d: {e}");
    let span: jiff::Span = raw.parse().map_err(|e| bad(&e))?;
    let signed = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|e| bad(&e))?;
    Duration::try_from(signed).map_err(|e| bad(&e))
}

/// How long a guest invite's access lasts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum GuestTime {
    For(Duration),
    FirstSession,
}

fn parse_guest_time(raw: &str) -> Result<GuestTime, String> {
    if raw == "session" {
        return Ok(GuestTime::FirstSession);
    }
    parse_duration(raw)
        .map(GuestTime::For)
        .map_err(|e| format!("{e}; or `session` (until its first session ends)"))
}

/// A preset's name.
fn parse_preset(raw: &str) -> Result<Preset, String> {
    raw.parse()
        .map_err(|_| format!("{raw:?} is not a preset (full, play, gamepad, watch)"))
}

/// An RFC 3339 time as Unix seconds.
fn parse_time(raw: &str) -> Result<u64, String> {
    let t: jiff::Timestamp = raw.parse().map_err(|e| {
        format!("{raw:?} is not an RFC 3339 time such as 2026-12-24T18:00:00Z: {e}")
    })?;
    u64::try_from(t.as_second()).map_err(|_| format!("{raw:?} is before 1970"))
}

#[derive(Debug, Args)]
pub(crate) struct InviteArgs {
    /// What the guest may do: full, play, gamepad or watch [default: the
    /// host's `default_grant`].
    #[arg(long, value_name = "PRESET", value_parser = parse_preset)]
    preset: Option<Preset>,
    /// How long the guest's access lasts once it paired: e.g. 90m, 4h, 2d;
    /// or `session`: until its first session ends.
    #[arg(long = "for", value_name = "DURATION|session", value_parser = parse_guest_time)]
    duration: GuestTime,
    /// A one-time PIN, passphrase and `art://` link for Moonlight (Artemis)
    /// instead of a pairing link for the punktfunk app.
    #[arg(long)]
    moonlight: bool,
    #[command(flatten)]
    state: StateDirArg,
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
    Ok(control::apply(&trust, None, request)?)
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
    // Every command but `list` changes one device and says what it is now.
    type Said = fn(&DeviceRow) -> String;
    let (state, request, said): (StateDirArg, Request, Said) = match command {
        DevicesCommand::List { json, long, state } => return list(&state, json, long),
        DevicesCommand::Revoke { device, state } => (state, Request::Revoke { device }, |r| {
            format!(
                "revoked {} {}: it must pair again to connect",
                r.fingerprint.grouped(),
                shown(r)
            )
        }),
        DevicesCommand::Rename {
            device,
            label,
            state,
        } => {
            let label = (!label.trim().is_empty()).then_some(label);
            (state, Request::Rename { device, label }, |r| {
                format!("renamed {} to {}", r.fingerprint.grouped(), shown(r))
            })
        }
        DevicesCommand::Grant {
            device,
            change,
            state,
        } => (state, Request::Grant { device, change }, |r| {
            format!("{} may now: {}", shown(r), may(r))
        }),
        DevicesCommand::Disable { device, state } => (state, Request::Disable { device }, |r| {
            format!(
                "disabled {}: every door refuses it until you enable it",
                shown(r)
            )
        }),
        DevicesCommand::Enable { device, state } => (state, Request::Enable { device }, |r| {
            format!("enabled {}", shown(r))
        }),
        DevicesCommand::Expire {
            device,
            when,
            state,
        } => {
            let at = when.unix();
            let first_session = when.first_session;
            let request = Request::Expire {
                device,
                at,
                first_session,
            };
            (state, request, |r| match &r.expires_at {
                Some(at) => format!("{}: access until {at}", shown(r)),
                None if r.until_first_session => {
                    format!("{}: access until its first session ends", shown(r))
                }
                None => format!("{}: access without end", shown(r)),
            })
        }
    };
    let dir = existing_dir(&state)?;
    let changed = row(perform(&dir, request)?)?;
    println!("{}", said(&changed));
    Ok(ExitCode::SUCCESS)
}

/// `devices list`: a table, or `--json`.
fn list(state: &StateDirArg, json: bool, long: bool) -> Result<ExitCode, AdminError> {
    let dir = existing_dir(state)?;
    let list = perform(&dir, Request::List {})?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        );
    } else {
        print_table(&rows(list)?, long);
    }
    Ok(ExitCode::SUCCESS)
}

/// What a device may do, in words: its preset's name, or the list.
fn may(row: &DeviceRow) -> String {
    row.permissions.titled()
}

/// The ACCESS column: disabled, expired, or the grant and its end.
fn access(row: &DeviceRow) -> String {
    let grant = row.preset.map_or("custom", |p| p.title());
    let grant = if row.guest {
        format!("guest: {grant}")
    } else {
        grant.to_owned()
    };
    match (row.enabled, row.expired, &row.expires_at) {
        (false, _, _) => "disabled".into(),
        (true, true, _) => "expired".into(),
        (true, false, Some(at)) => format!("{grant} until {}", crate::show::date(at)),
        (true, false, None) if row.until_first_session => {
            format!("{grant} until its session ends")
        }
        (true, false, None) => grant,
    }
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
        "ACCESS",
    ];
    let cells: Vec<[String; 8]> = rows
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
                access(r),
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

/// `punktfunk invite`: a guest invite from the running host, printed with
/// its QR code.
pub(crate) fn invite(args: InviteArgs) -> Result<ExitCode, AdminError> {
    let dir = existing_dir(&args.state)?;
    let request = Request::Invite {
        preset: args.preset,
        for_s: match args.duration {
            GuestTime::For(d) => Some(d.as_secs()),
            GuestTime::FirstSession => None,
        },
        moonlight: args.moonlight,
    };
    let reply: InviteReply = serde_json::from_value(perform(&dir, request)?)
        .map_err(|e| anyhow::anyhow!("the host's answer is not understood: {e}"))?;
    let minutes = reply.expires_in_s.div_ceil(60);
    let mut out = String::new();
    match &reply.passphrase {
        None => {
            out.push_str(&format!(
                "guest invite for the punktfunk app: {}
",
                reply.access
            ));
            out.push_str(&format!(
                "it pairs one device within {minutes} min: scan the QR code or open the link on it
"
            ));
            out.push_str(&format!(
                "pairing link: {}
",
                reply.link
            ));
            out.push_str(&crate::show::qr(&reply.link).unwrap_or_default());
            out.push_str(&format!(
                "(or type the PIN {} in the app)
",
                reply.pin
            ));
        }
        Some(passphrase) => {
            out.push_str(&format!(
                "guest invite for Moonlight: {}
",
                reply.access
            ));
            out.push_str(&format!(
                "it pairs one device within {minutes} min: in Artemis, scan the QR code or open the link; in another Moonlight, add the host and enter the PIN and passphrase
"
            ));
            out.push_str(&format!(
                "one-time PIN: {}
",
                reply.pin
            ));
            out.push_str(&format!(
                "passphrase: {passphrase}
"
            ));
            out.push_str(&format!(
                "link: {}
",
                reply.link
            ));
            out.push_str(&crate::show::qr(&reply.link).unwrap_or_default());
        }
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times_read_as_people_write_them() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("4h"), Ok(Duration::from_secs(4 * 3600)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(2 * 86_400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("soon")
            .unwrap_err()
            .contains("90s, 4h or 2d"));
        assert!(parse_duration("-4h").is_err(), "not in the past");
        assert_eq!(parse_time("2026-12-24T18:00:00Z"), Ok(1_798_135_200));
        assert_eq!(parse_time("2026-12-24T19:00:00+01:00"), Ok(1_798_135_200));
        assert!(parse_time("tomorrow").unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn the_access_column_says_disabled_expired_or_the_grant() {
        let mut row = DeviceRow {
            fingerprint: "3f2a9c01".repeat(8).parse().unwrap(),
            kind: punktfunk_certs::FrontDoor::Native,
            name: "TV".into(),
            label: None,
            paired: "2026-11-28T12:00:00Z".into(),
            last_seen: None,
            via: punktfunk_certs::Via::Pin,
            permissions: punktfunk_certs::Preset::Watch.permissions(),
            preset: Some(punktfunk_certs::Preset::Watch),
            enabled: true,
            expires_at: None,
            expired: false,
            until_first_session: false,
            guest: false,
        };
        assert_eq!(access(&row), "Watch");
        assert_eq!(may(&row), "Watch (list apps, view streams)");
        row.expires_at = Some("2026-12-24T18:00:00Z".into());
        assert!(
            access(&row).starts_with("Watch until 2026-12-2"),
            "{}",
            access(&row)
        );
        row.expired = true;
        assert_eq!(access(&row), "expired");
        row.enabled = false;
        assert_eq!(access(&row), "disabled");
        row.preset = None;
        row.enabled = true;
        row.expired = false;
        row.expires_at = None;
        assert_eq!(access(&row), "custom");
        row.until_first_session = true;
        assert_eq!(access(&row), "custom until its session ends");
        row.guest = true;
        assert_eq!(access(&row), "guest: custom until its session ends");
    }
}
