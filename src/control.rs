//! The control socket: how `punktfunk devices …` on the host machine reaches
//! a running `serve`, so that a revocation takes effect in the host at once
//! (its native sessions end, Moonlight gets "not paired"), exactly as a
//! console Remove does.
//!
//! `serve` listens on `control.sock` in its state dir (0600, in a 0700 dir)
//! and answers only peers with its own user ID or root (`SO_PEERCRED`): who
//! may read the state dir may administer the host, no password involved, as
//! with Syncthing's CLI over its config dir. One request line of JSON, one
//! reply line:
//!
//! ```text
//! {"op":"list"}                                    → {"ok":[{device row}…]}
//! {"op":"revoke","device":"PREFIX"}                → {"ok":{device row}}
//! {"op":"rename","device":"PREFIX","label":"TV"}   → {"ok":{device row}}
//! {"op":"grant","device":"PREFIX","change":"watch"} → {"ok":{device row}}
//!     (`change`: a preset, or `+perm,-perm`)
//! {"op":"enable","device":"PREFIX"}                → {"ok":{device row}}
//! {"op":"disable","device":"PREFIX"}               → {"ok":{device row}}
//! {"op":"expire","device":"PREFIX","at":UNIX|null} → {"ok":{device row}}
//!     (or `"first_session":true`: when its first session ends)
//! {"op":"invite","preset":"watch"|null,"for_s":14400|null,"moonlight":false}
//!                                                  → {"ok":{invite}}
//!                                                     {"error":{"code","message"}}
//! ```
//!
//! When no host runs, the CLI takes the state dir's lock and runs the same
//! [`apply`] on the files directly; an invite needs the running host (its
//! arming lives in memory, and its link names the doors it listens on).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use punktfunk_certs::audit::rfc3339;
use punktfunk_certs::otp::Passphrase;
use punktfunk_certs::{
    Access, AccessChange, Actor, Device, Fingerprint, FrontDoor, Label, Permissions, Preset,
    RegistryError, ResolveError, Trust, TrustError, Until, Via,
};
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{watch, Semaphore};

use crate::console::links::{LinkHost, Links};

/// The socket's file name in the state dir.
pub(crate) const SOCKET_FILE: &str = "control.sock";
/// Longest request line.
pub(crate) const MAX_REQUEST: usize = 64 * 1024;
/// Time a client gets to send its request, and to take the reply.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more are told the host is busy.
const MAX_CONNECTIONS: usize = 4;

/// What the CLI asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Request {
    /// Every paired device.
    List {},
    /// Remove the device with this fingerprint (or unique prefix).
    Revoke {
        /// Fingerprint or unique prefix.
        device: String,
    },
    /// Set (or, with `None` or an empty label, clear) a device's label.
    Rename {
        /// Fingerprint or unique prefix.
        device: String,
        /// The new label.
        label: Option<String>,
    },
    /// Change what a device may do: a preset (`full`, `play`, `gamepad`,
    /// `watch`), or `+perm,-perm` on what it may do now.
    Grant {
        /// Fingerprint or unique prefix.
        device: String,
        /// The change.
        change: String,
    },
    /// Let a disabled device connect again.
    Enable {
        /// Fingerprint or unique prefix.
        device: String,
    },
    /// Refuse a device at every door without unpairing it; its
    /// connections end now.
    Disable {
        /// Fingerprint or unique prefix.
        device: String,
    },
    /// End a device's access at `at` (Unix seconds), or never (`None`,
    /// which also renews an expired device); with `first_session`, when
    /// its first session ends.
    Expire {
        /// Fingerprint or unique prefix.
        device: String,
        /// When its access ends.
        at: Option<u64>,
        /// Instead: when its first session ends.
        #[serde(default)]
        first_session: bool,
    },
    /// A guest invite: a pairing link for the punktfunk app, or a one-time
    /// PIN for Moonlight (`moonlight`), that admits one device with
    /// `preset` (absent: the host's `default_grant`) for `for_s` seconds
    /// after it pairs, or (`for_s` null) until its first session ends.
    /// The invite itself pairs within 15 minutes.
    Invite {
        /// `full`, `play`, `gamepad` or `watch`.
        preset: Option<Preset>,
        /// How long the guest's access lasts once it paired; `None`: until
        /// its first session ends.
        for_s: Option<u64>,
        /// A one-time PIN for Moonlight instead of an app link.
        moonlight: bool,
    },
}

/// What `invite` answers: what to hand the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InviteReply {
    /// The pairing link (`punktfunk://pair?…`), or with `moonlight` the
    /// one-time PIN's `art://` link.
    pub(crate) link: String,
    /// The PIN: the arming's (typed in the app instead of the link), or
    /// the one-time PIN.
    pub(crate) pin: String,
    /// The one-time PIN's passphrase (Moonlight only).
    pub(crate) passphrase: Option<String>,
    /// What the guest may do and for how long, in words.
    pub(crate) access: String,
    /// Seconds the invite still pairs.
    pub(crate) expires_in_s: u64,
}

/// Longest guest access an invite gives (as the console's `for_s`).
pub(crate) const MAX_INVITE_SECONDS: u64 = 366 * 86_400;

/// The answer: `{"ok": …}` or `{"error": {…}}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Reply {
    Ok(serde_json::Value),
    Error(OpError),
}

/// Why a request was refused, with words for the person at the terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub(crate) struct OpError {
    /// `invalid`, `unknown_device`, `ambiguous`, `bad_request`, `too_large`,
    /// `timeout`, `busy`, `forbidden`, `not_recorded` or `internal`.
    pub(crate) code: String,
    /// What went wrong and what to do.
    pub(crate) message: String,
}

impl OpError {
    fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

impl From<ResolveError> for OpError {
    fn from(e: ResolveError) -> Self {
        let code = match e {
            ResolveError::Invalid(_) => "invalid",
            ResolveError::Unknown(_) => "unknown_device",
            ResolveError::Ambiguous { .. } => "ambiguous",
        };
        Self::new(code, e.to_string())
    }
}

impl From<TrustError> for OpError {
    fn from(e: TrustError) -> Self {
        let code = match &e {
            TrustError::Registry(RegistryError::NotFound(_)) => "unknown_device",
            TrustError::Audit(_) => "not_recorded",
            _ => "internal",
        };
        Self::new(code, e.to_string())
    }
}

/// A device as the CLI shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DeviceRow {
    pub(crate) fingerprint: Fingerprint,
    pub(crate) kind: FrontDoor,
    pub(crate) name: String,
    pub(crate) label: Option<String>,
    /// RFC 3339, UTC.
    pub(crate) paired: String,
    /// RFC 3339, UTC.
    pub(crate) last_seen: Option<String>,
    pub(crate) via: Via,
    /// What it may do (permission names, `docs/state-and-audit.md`).
    pub(crate) permissions: Permissions,
    /// The preset `permissions` is, if it is one.
    pub(crate) preset: Option<Preset>,
    /// `false`: disabled by the owner.
    pub(crate) enabled: bool,
    /// When its access ends, RFC 3339, UTC; `null`: never.
    pub(crate) expires_at: Option<String>,
    /// Its access has ended.
    pub(crate) expired: bool,
    /// Its access ends with its first session (the streamer reports it).
    #[serde(default)]
    pub(crate) until_first_session: bool,
    /// Admitted through a guest invite.
    #[serde(default)]
    pub(crate) guest: bool,
}

impl DeviceRow {
    fn new(d: &Device, now: u64) -> Self {
        Self {
            fingerprint: d.fingerprint,
            kind: d.kind,
            name: d.name.as_str().to_owned(),
            label: d.label.as_ref().map(|l| l.as_str().to_owned()),
            paired: rfc3339(d.paired_at),
            last_seen: d.last_seen.map(rfc3339),
            via: d.via,
            permissions: d.permissions,
            preset: d.permissions.preset(),
            enabled: d.enabled,
            expires_at: d.expires_at.map(rfc3339),
            expired: d.is_expired(now),
            until_first_session: d.until_first_session,
            guest: d.guest,
        }
    }
}

/// Carries a request out against `trust`, as the CLI; `links`: the running
/// host's (`None` on the files, with no host). Blocks (fsync).
pub(crate) fn apply(
    trust: &Trust,
    links: Option<&Links>,
    request: Request,
) -> Result<serde_json::Value, OpError> {
    let now = trust.clock().unix();
    let row = |d: &Device| serde_json::to_value(DeviceRow::new(d, now));
    let change = |device: &str, change: AccessChange| -> Result<Device, OpError> {
        let fp = trust.registry().resolve(device)?;
        Ok(trust.change_access(&fp, change, Actor::cli())?)
    };
    let value = match request {
        Request::List {} => {
            let rows: Vec<DeviceRow> = trust
                .registry()
                .list()
                .iter()
                .map(|d| DeviceRow::new(d, now))
                .collect();
            serde_json::to_value(rows)
        }
        Request::Grant {
            device,
            change: spec,
        } => {
            let fp = trust.registry().resolve(&device)?;
            let current = trust
                .registry()
                .get(&fp)
                .map_or(Permissions::NONE, |d| d.permissions);
            let permissions = current
                .apply(&spec)
                .map_err(|e| OpError::new("invalid", e.to_string()))?;
            row(&change(&device, AccessChange::Permissions(permissions))?)
        }
        Request::Enable { device } => row(&change(&device, AccessChange::Enabled(true))?),
        Request::Disable { device } => row(&change(&device, AccessChange::Enabled(false))?),
        Request::Expire {
            device,
            first_session: true,
            ..
        } => row(&change(&device, AccessChange::UntilFirstSession)?),
        Request::Expire { device, at, .. } => row(&change(&device, AccessChange::Expires(at))?),
        Request::Revoke { device } => {
            let fp = trust.registry().resolve(&device)?;
            row(&trust.revoke(&fp, Actor::cli())?)
        }
        Request::Rename { device, label } => {
            let fp = trust.registry().resolve(&device)?;
            let label = match label.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(raw) => {
                    Label::parse(raw).map_err(|e| OpError::new("invalid", e.to_string()))?
                }
            };
            row(&trust.rename(&fp, label, Actor::cli())?)
        }
        Request::Invite {
            preset,
            for_s,
            moonlight,
        } => {
            let links = links.ok_or_else(|| {
                OpError::new(
                    "no_host",
                    "no host runs on this state dir: an invite is handed out by the running host; start it (`punktfunk serve --native`)",
                )
            })?;
            serde_json::to_value(invite(trust, links, preset, for_s, moonlight)?)
        }
    };
    value.map_err(|e| OpError::new("internal", e.to_string()))
}

/// Makes a guest invite in the running host (see [`Request::Invite`]).
fn invite(
    trust: &Trust,
    links: &Links,
    preset: Option<Preset>,
    for_s: Option<u64>,
    moonlight: bool,
) -> Result<InviteReply, OpError> {
    let until = match for_s {
        None => Until::FirstSession,
        Some(s) if (1..=MAX_INVITE_SECONDS).contains(&s) => Until::For(s),
        Some(_) => {
            return Err(OpError::new(
                "invalid",
                "a guest's access lasts between 1 second and 366 days",
            ))
        }
    };
    let access = Access {
        permissions: preset.map_or_else(|| trust.default_grant(), Preset::permissions),
        until,
        invite: false,
    };
    // Before anything is armed: the doors' ports are known once bound.
    if links.reach.get().is_none() {
        return Err(not_ready());
    }
    let addresses = links.addresses(None);
    let (link, pin, passphrase, expires) = if moonlight {
        let host = addresses.first().copied().map(LinkHost::Ip).ok_or_else(|| {
            OpError::new("no_address", "this machine has no LAN address a Moonlight client could reach; pass --bind or --advertise to `serve`")
        })?;
        let passphrase = Passphrase::generate(&mut OsRng);
        let (otp, ticket) =
            trust.create_otp_for(passphrase, None, Some(access), Actor::cli(), &mut OsRng);
        ticket
            .durable_blocking()
            .map_err(|e| OpError::new("not_recorded", e.to_string()))?;
        let (link, _) = links
            .art_link(&host, otp.pin().as_str(), otp.passphrase().as_str())
            .ok_or_else(not_ready)?;
        let pass = otp.passphrase().as_str().to_owned();
        (
            link,
            otp.pin().as_str().to_owned(),
            Some(pass),
            otp.expires(),
        )
    } else {
        if !links.native_runs() {
            return Err(OpError::new(
                "no_native",
                "the punktfunk app's endpoint is off: start the host with --native, or invite a Moonlight client with --moonlight",
            ));
        }
        let (armed, ticket) = trust.invite(access, Actor::cli(), &mut OsRng);
        ticket
            .durable_blocking()
            .map_err(|e| OpError::new("not_recorded", e.to_string()))?;
        let link = links
            .pairing_link(&addresses, &armed.link)
            .ok_or_else(not_ready)?;
        (link.to_uri(), armed.pin.to_string(), None, armed.expires)
    };
    Ok(InviteReply {
        link,
        pin,
        passphrase,
        access: punktfunk_certs::operator::describe_access(access),
        expires_in_s: expires.saturating_duration_since(trust.now()).as_secs(),
    })
}

fn not_ready() -> OpError {
    OpError::new("busy", "the host is still starting; try again in a moment")
}

/// Binds `control.sock` in `state_dir` (whose lock the caller holds, so any
/// socket file there is a stale one), private to this user.
pub(crate) fn bind(state_dir: &Path) -> anyhow::Result<(UnixListener, PathBuf)> {
    bind_private(state_dir, SOCKET_FILE)
}

/// Binds the socket `name` in `state_dir` (whose lock the caller holds, so
/// any socket file there is a stale one), private to this user: the
/// control socket and the streamer's.
pub(crate) fn bind_private(
    state_dir: &Path,
    name: &str,
) -> anyhow::Result<(UnixListener, PathBuf)> {
    let path = state_dir.join(name);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot remove the stale {}", path.display()))
        }
        _ => {}
    }
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("cannot listen on {}", path.display()))?;
    // Not by path: a link swapped in meanwhile would pass the chmod on.
    punktfunk_certs::fsutil::chmod(&path, 0o600)
        .with_context(|| format!("cannot make {} private", path.display()))?;
    Ok((listener, path))
}

/// Serves the socket until `stop` turns true, then removes it.
pub(crate) async fn run(
    listener: UnixListener,
    path: PathBuf,
    trust: Arc<Trust>,
    links: Arc<Links>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let (uid, allowed) = peer_allowed(&stream);
                if !allowed {
                    tracing::warn!(?uid, "control: refused a peer that is neither this user nor root");
                    let who = uid.map_or("a peer of unknown uid".to_owned(), |u| format!("uid {u}"));
                    tokio::spawn(answer(stream, Reply::Error(OpError::new(
                        "forbidden",
                        format!("{who} may not control this host; run the command as the host's user or root"),
                    ))));
                    continue;
                }
                let trust = trust.clone();
                let links = links.clone();
                match slots.clone().try_acquire_owned() {
                    Ok(permit) => {
                        tokio::spawn(async move {
                            serve_one(stream, trust, links).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        tokio::spawn(answer(stream, Reply::Error(OpError::new(
                            "busy",
                            "the host is answering other commands; try again",
                        ))));
                    }
                }
            }
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    let _ = std::fs::remove_file(&path);
}

/// The peer's user ID, and whether it may use a socket of this host: its
/// own user, or root (`SO_PEERCRED`).
pub(crate) fn peer_allowed(stream: &UnixStream) -> (Option<u32>, bool) {
    let uid = stream.peer_cred().map(|c| c.uid()).ok();
    let me = rustix::process::geteuid().as_raw();
    (uid, uid == Some(me) || uid == Some(0))
}

async fn serve_one(stream: UnixStream, trust: Arc<Trust>, links: Arc<Links>) {
    let (read, write) = stream.into_split();
    let mut line = Vec::new();
    let mut reader = BufReader::new(read).take(MAX_REQUEST as u64 + 1);
    let read = tokio::time::timeout(IO_TIMEOUT, reader.read_until(b'\n', &mut line)).await;
    let reply = match read {
        Err(_) => Reply::Error(OpError::new(
            "timeout",
            "no complete request line within 5 s",
        )),
        Ok(Err(_)) => return,
        Ok(Ok(_)) if line.len() > MAX_REQUEST => Reply::Error(OpError::new(
            "too_large",
            format!("a request is at most {MAX_REQUEST} bytes"),
        )),
        Ok(Ok(_)) => match serde_json::from_slice::<Request>(&line) {
            Err(e) => Reply::Error(OpError::new("bad_request", e.to_string())),
            Ok(request) => {
                tracing::info!(?request, "control: request from the CLI");
                let applied = move || apply(&trust, Some(&links), request);
                match tokio::task::spawn_blocking(applied).await {
                    Ok(Ok(value)) => Reply::Ok(value),
                    Ok(Err(e)) => Reply::Error(e),
                    Err(e) => Reply::Error(OpError::new("internal", e.to_string())),
                }
            }
        },
    };
    answer(write, reply).await;
}

/// Writes the reply line, within [`IO_TIMEOUT`].
async fn answer(mut stream: impl tokio::io::AsyncWrite + Unpin, reply: Reply) {
    let mut bytes = serde_json::to_vec(&reply).unwrap_or_default();
    bytes.push(b'\n');
    let _ = tokio::time::timeout(IO_TIMEOUT, stream.write_all(&bytes)).await;
}

/// What asking a running host gave.
pub(crate) enum Asked {
    /// The host answered.
    Answered(Result<serde_json::Value, OpError>),
    /// No host listens on the state dir.
    NoHost,
}

/// Asks the host running on `state_dir`, blocking.
pub(crate) fn ask(state_dir: &Path, request: &Request) -> io::Result<Asked> {
    use std::io::{BufRead, Read, Write};
    let path = state_dir.join(SOCKET_FILE);
    let mut stream = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(Asked::NoHost)
        }
        Err(e) => return Err(e),
    };
    // A revocation fsyncs twice (registry, audit trail): generous.
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut line = serde_json::to_vec(request).map_err(io::Error::other)?;
    line.push(b'\n');
    // A host that refuses at once (another user, busy) answers and closes
    // before reading: the write may then fail while its answer waits to
    // be read.
    let wrote = stream.write_all(&line);
    let mut reply = Vec::new();
    // A list of many thousands of devices is a few MiB.
    let read = std::io::BufReader::new(&stream)
        .take(256 * 1024 * 1024)
        .read_until(b'\n', &mut reply);
    if reply.is_empty() {
        wrote?;
        read?;
    }
    match serde_json::from_slice::<Reply>(&reply) {
        Ok(Reply::Ok(v)) => Ok(Asked::Answered(Ok(v))),
        Ok(Reply::Error(e)) => Ok(Asked::Answered(Err(e))),
        Err(e) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the host's answer is not understood: {e}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_strictly() {
        let parse = |s: &str| serde_json::from_str::<Request>(s);
        assert_eq!(parse(r#"{"op":"list"}"#).unwrap(), Request::List {});
        assert_eq!(
            parse(r#"{"op":"revoke","device":"ab12"}"#).unwrap(),
            Request::Revoke {
                device: "ab12".into()
            }
        );
        assert_eq!(
            parse(r#"{"op":"rename","device":"ab12","label":null}"#).unwrap(),
            Request::Rename {
                device: "ab12".into(),
                label: None
            }
        );
        for bad in [
            r#"{"op":"drop_tables"}"#,
            r#"{"op":"revoke"}"#,
            r#"{"op":"list","extra":1}"#,
            r#"[]"#,
            "",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn replies_are_ok_or_error_objects() {
        let ok = serde_json::to_string(&Reply::Ok(serde_json::json!([]))).unwrap();
        assert_eq!(ok, r#"{"ok":[]}"#);
        let err = serde_json::to_string(&Reply::Error(OpError::new("busy", "later"))).unwrap();
        assert_eq!(err, r#"{"error":{"code":"busy","message":"later"}}"#);
    }
}
