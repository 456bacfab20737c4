//! The streamer's socket: how the other half of the host (the streamer)
//! asks this service whether a client certificate may stream and what it
//! may do, and hears the moment that changes, instead of reading
//! `trust.json` (docs/streamer-api.md is the contract).
//!
//! `serve` listens on `streamer.sock` in its state dir (0600 in the 0700
//! dir) and answers only its own user and root (`SO_PEERCRED`), as the
//! control socket does; with `streamer_group` in the settings, also that
//! group's members (the socket 0660 and the dir 0710, both the group's).
//! JSON lines:
//!
//! ```text
//! {"op":"authorize","fingerprint":FP,"door":"gamestream"}  → {"ok":{access}} | {"error":{code,message}}
//! {"op":"watch","fingerprint":FP,"door":"native"}          → the same line now, then one per change
//! {"op":"session_ended","fingerprint":FP,"door":"native"}  → what `authorize` answers after it
//! ```
//!
//! A connection may ask `authorize` any number of times; `watch` is its
//! last request: the host then writes a line whenever the answer changes,
//! until either side closes.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use punktfunk_certs::{
    AccessUpdate, Denied, Fingerprint, FrontDoor, Grant, Label, Permissions, Trust,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{watch, Semaphore};

/// The socket's file name in the state dir.
pub(crate) const SOCKET_FILE: &str = "streamer.sock";
/// Longest request line.
const MAX_REQUEST: usize = 4096;
/// Time a peer gets to take a reply.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for the next request line; a streamer that keeps a
/// connection for `authorize` asks again well within it, or reconnects.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections served at once: a streamer holds one watch per client it
/// streams to.
const MAX_CONNECTIONS: usize = 256;

/// What the streamer asks.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum Request {
    /// May this certificate stream through this door now, and do what?
    Authorize {
        fingerprint: Fingerprint,
        door: FrontDoor,
    },
    /// The same, then every change, until either side closes.
    Watch {
        fingerprint: Fingerprint,
        door: FrontDoor,
    },
    /// A session (a stream) of this device through this door ended: a
    /// device admitted until its first session ends loses its access.
    SessionEnded {
        fingerprint: Fingerprint,
        door: FrontDoor,
    },
}

/// A line the host writes.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
enum Reply {
    Ok(Access),
    Error(Refused),
}

/// What a device may do: the answer to `authorize`, and each change.
#[derive(Debug, Serialize)]
struct Access {
    fingerprint: Fingerprint,
    door: FrontDoor,
    /// The label given in the console, else the name the device gave.
    name: String,
    /// Permission names (docs/state-and-audit.md).
    permissions: Permissions,
    /// The same set as Apollo's `perm` number.
    perm: u32,
    /// Unix seconds its access ends at, or `null`.
    expires_at: Option<u64>,
}

/// Why not, or what went wrong.
#[derive(Debug, Serialize)]
struct Refused {
    /// `not_paired`, `disabled`, `expired`; or `bad_request`, `internal`,
    /// `too_large`, `timeout`, `busy`, `forbidden`.
    code: &'static str,
    message: String,
}

impl Refused {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<Denied> for Refused {
    fn from(d: Denied) -> Self {
        let code = match d {
            Denied::NotPaired => "not_paired",
            Denied::Disabled => "disabled",
            Denied::Expired => "expired",
        };
        Self::new(code, d.to_string())
    }
}

fn reply(trust: &Trust, answer: Result<Grant, Denied>) -> Reply {
    match answer {
        Ok(grant) => {
            let name = trust
                .registry()
                .get(grant.fingerprint())
                .map(|d| {
                    d.label
                        .as_ref()
                        .map_or(d.name.as_str(), Label::as_str)
                        .to_owned()
                })
                .unwrap_or_default();
            Reply::Ok(Access {
                fingerprint: *grant.fingerprint(),
                door: grant.door(),
                name,
                permissions: grant.permissions(),
                perm: grant.permissions().bits(),
                expires_at: grant.expires_at(),
            })
        }
        Err(denied) => Reply::Error(denied.into()),
    }
}

/// Binds `streamer.sock` in `state_dir`, private to this user.
pub(crate) fn bind(
    state_dir: &Path,
    group: Option<u32>,
) -> anyhow::Result<(UnixListener, PathBuf)> {
    let (listener, path) = crate::control::bind_private(state_dir, SOCKET_FILE)?;
    if let Some(gid) = group {
        // lchown: the socket itself, never what a link there points at.
        std::os::unix::fs::lchown(&path, None, Some(gid)).with_context(|| {
            format!(
                "cannot give {} to the group {gid} (`streamer_group`)",
                path.display()
            )
        })?;
        punktfunk_certs::fsutil::chmod(&path, 0o660)
            .with_context(|| format!("cannot make {} 0660", path.display()))?;
    }
    Ok((listener, path))
}

/// The number of the group `name` names (or is): `streamer_group` in the
/// settings.
pub(crate) fn group_id(name: &str) -> Result<u32, String> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(name) {
        Ok(Some(group)) => Ok(group.gid.as_raw()),
        Ok(None) => Err(format!(
            "`streamer_group`: no group named {name:?} on this machine; create it (`groupadd {name}`) or give its number"
        )),
        Err(e) => Err(format!("`streamer_group`: cannot look up {name:?}: {e}")),
    }
}

/// Whether the peer may ask: the host's user or root, or, with a group,
/// a member of it (its primary group, or one of its supplementary groups
/// as the kernel lists them for its process).
fn peer_allowed(stream: &UnixStream, group: Option<u32>) -> (Option<u32>, bool) {
    let (uid, allowed) = crate::control::peer_allowed(stream);
    if allowed {
        return (uid, true);
    }
    let Some(gid) = group else {
        return (uid, false);
    };
    let Ok(cred) = stream.peer_cred() else {
        return (uid, false);
    };
    let member = cred.gid() == gid
        || cred
            .pid()
            .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
            .is_some_and(|status| in_groups(&status, gid));
    (uid, member)
}

/// Whether `/proc/PID/status` text lists `gid` in its `Groups:` line.
fn in_groups(status: &str, gid: u32) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .is_some_and(|groups| groups.split_whitespace().any(|g| g.parse() == Ok(gid)))
}

/// Serves the socket until `stop` turns true, then removes it.
pub(crate) async fn run(
    listener: UnixListener,
    path: PathBuf,
    trust: Arc<Trust>,
    group: Option<u32>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Each connection's copy: a watch ends when the host stops.
    let stopping = stop.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let (uid, allowed) = peer_allowed(&stream, group);
                if !allowed {
                    tracing::warn!(?uid, "streamer socket: refused a peer that is neither this user, root nor in streamer_group");
                    tokio::spawn(async move {
                        let (_, mut write) = stream.into_split();
                        let refused = Refused::new("forbidden", "only the host's user, root or a member of the settings' streamer_group may ask this socket");
                        let _ = send(&mut write, &Reply::Error(refused)).await;
                    });
                    continue;
                }
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    tokio::spawn(async move {
                        let (_, mut write) = stream.into_split();
                        let busy = Refused::new("busy", format!("{MAX_CONNECTIONS} connections are open; close one"));
                        let _ = send(&mut write, &Reply::Error(busy)).await;
                    });
                    continue;
                };
                let (trust, stop) = (trust.clone(), stopping.clone());
                tokio::spawn(async move {
                    serve(stream, trust, stop).await;
                    drop(permit);
                });
            }
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    let _ = std::fs::remove_file(&path);
}

/// One connection: requests until `watch` (or the peer goes away), then
/// the watch's lines.
async fn serve(stream: UnixStream, trust: Arc<Trust>, mut stop: watch::Receiver<bool>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let request = match next_request(&mut reader).await {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(refused) => {
                let _ = send(&mut write, &Reply::Error(refused)).await;
                return;
            }
        };
        match request {
            Request::Authorize { fingerprint, door } => {
                let answer = trust.authorize(door, &fingerprint);
                if send(&mut write, &reply(&trust, answer)).await.is_err() {
                    return;
                }
            }
            Request::SessionEnded { fingerprint, door } => {
                let ended = {
                    let trust = trust.clone();
                    // Durable (fsync) when it ends a device's access.
                    tokio::task::spawn_blocking(move || trust.session_ended(door, &fingerprint))
                        .await
                };
                let answer = match ended {
                    Ok(Ok(_)) => reply(&trust, trust.authorize(door, &fingerprint)),
                    Ok(Err(e)) => Reply::Error(Refused::new("internal", e.to_string())),
                    Err(e) => Reply::Error(Refused::new("internal", e.to_string())),
                };
                if send(&mut write, &answer).await.is_err() {
                    return;
                }
            }
            Request::Watch { fingerprint, door } => {
                let (now, mut access) = trust.watch(door, fingerprint);
                if send(&mut write, &reply(&trust, now)).await.is_err() {
                    return;
                }
                // The peer sends nothing more: what it sends is dropped, and
                // the end of its stream is it closing.
                loop {
                    tokio::select! {
                        changed = access.changed() => {
                            let answer = match changed {
                                Some(AccessUpdate::Granted(grant)) => Ok(grant),
                                Some(AccessUpdate::Ended(denied)) => Err(denied),
                                None => return,
                            };
                            if send(&mut write, &reply(&trust, answer)).await.is_err() {
                                return;
                            }
                        }
                        read = reader.fill_buf() => {
                            let n = read.map_or(0, |bytes| bytes.len());
                            if n == 0 {
                                return;
                            }
                            reader.consume(n);
                        }
                        // The guard `wait_for` gives is not `Send`: dropped here.
                        () = async { let _ = stop.wait_for(|s| *s).await; } => return,
                    }
                }
            }
        }
    }
}

/// The next request line: `None` when the peer closed between requests.
async fn next_request(
    reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
) -> Result<Option<Request>, Refused> {
    let mut line = Vec::new();
    let mut limited = (&mut *reader).take(MAX_REQUEST as u64 + 1);
    let read = tokio::time::timeout(IDLE_TIMEOUT, limited.read_until(b'\n', &mut line)).await;
    match read {
        Err(_) => Err(Refused::new(
            "timeout",
            "no complete request line within 60 s",
        )),
        Ok(Err(_)) | Ok(Ok(0)) => Ok(None),
        Ok(Ok(_)) if line.len() > MAX_REQUEST => Err(Refused::new(
            "too_large",
            format!("a request is at most {MAX_REQUEST} bytes"),
        )),
        Ok(Ok(_)) => serde_json::from_slice(&line)
            .map(Some)
            .map_err(|e| Refused::new("bad_request", e.to_string())),
    }
}

/// Writes one reply line, within [`IO_TIMEOUT`].
async fn send(write: &mut (impl AsyncWrite + Unpin), reply: &Reply) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(reply).map_err(io::Error::other)?;
    bytes.push(b'\n');
    tokio::time::timeout(IO_TIMEOUT, write.write_all(&bytes))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supplementary_groups_are_read_from_the_status_line() {
        let status =
            "Name:\tstreamer\nUid:\t65534\t65534\t65534\t65534\nGroups:\t44 54321 \nNgid:\t0\n";
        assert!(in_groups(status, 54321));
        assert!(in_groups(status, 44));
        assert!(!in_groups(status, 4432));
        assert!(!in_groups("Groups:\n", 0), "no groups");
        assert!(
            !in_groups("Uid:\t54321\n", 54321),
            "only the Groups line counts"
        );
    }

    #[test]
    fn a_group_is_a_name_or_a_number() {
        assert_eq!(group_id("0"), Ok(0));
        assert_eq!(group_id("root"), Ok(0));
        assert!(group_id("no-such-group-here")
            .unwrap_err()
            .contains("groupadd"));
    }
}
