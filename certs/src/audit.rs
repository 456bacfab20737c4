//! The audit trail: one JSON line per trust decision in `audit.jsonl`, so a
//! host owner can answer "which device paired last Tuesday, how, and who let
//! it in?" and "did anyone try wrong PINs?" long after the logs rotated.
//!
//! Writing is a group commit on one thread ([`AuditLog`]): a caller appends
//! an [`Entry`] (cheap, in order, allowed under the gate lock) and gets a
//! [`Ticket`]; it waits on the ticket, outside any lock, before it
//! acknowledges the action the entry records. The thread writes everything
//! queued in one `write`, fsyncs once, then releases every ticket of the
//! batch, so a burst of decisions costs one fsync per batch, not one each.
//!
//! What a peer without credentials can cause (a failed login, a knock, a
//! request that goes away: *noise*) passes a per-address and a global budget
//! *before* it is queued; what is over budget is counted, and the count is
//! written as one `audit_suppressed` line at most once per
//! [`SUPPRESSION_INTERVAL`], so a flood can neither keep the disk busy nor
//! write a line of its own for every entry it costs.
//!
//! The file rotates at [`AuditConfig::rotate_bytes`] into `audit.1.jsonl` …
//! `audit.4.jsonl`. Noise can still fill those, so rotation never drops a
//! *decision* (everything that is not noise: pairings, approvals, denials,
//! revocations, renames, arming, successful logins, …): before the oldest
//! file goes, its decisions are moved into [`DECISIONS_FILE`], which keeps
//! the newest [`KEPT_DECISIONS`] of them whatever the noise. Every record
//! there is older than every record in the rotated files, so reading
//! ([`read`]) goes newest first across `audit.jsonl`, the rotated files,
//! then that file, and is in time order throughout. It skips any line that
//! does not parse (a crash in the middle of a write leaves a torn last line;
//! the next write starts on a fresh line). Never a secret in it: entries
//! carry names, fingerprints and addresses, never a PIN, password, key or
//! token.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::IpAddr;
#[cfg(unix)]
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use crate::events::TrustEvent;
use crate::fingerprint::Fingerprint;
use crate::gate::AddressKey;
use crate::name::{DisplayName, Label};
use crate::registry::{Device, Kind, Via};

/// File name of the audit trail inside a state dir.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// The rotated files, newest first; the last one is dropped on rotation.
pub const ROTATED_FILES: [&str; 4] = [
    "audit.1.jsonl",
    "audit.2.jsonl",
    "audit.3.jsonl",
    "audit.4.jsonl",
];

/// Decisions moved out of the oldest rotated file (see the module docs).
pub const DECISIONS_FILE: &str = "audit.decisions.jsonl";

/// Decisions [`DECISIONS_FILE`] keeps (the newest); on a home host that is
/// years of pairings and logins.
pub const KEPT_DECISIONS: usize = 10_000;

/// At most one `audit_suppressed` line is written per this interval; the
/// entries suppressed meanwhile are added up in it.
pub const SUPPRESSION_INTERVAL: Duration = Duration::from_secs(60);

/// Default size at which the file rotates.
pub const ROTATE_BYTES: u64 = 4 * 1024 * 1024;

/// A file bigger than this is read only up to here (a file put there by
/// hand must not exhaust memory).
const MAX_READ_BYTES: u64 = 64 * 1024 * 1024;

/// Records from unauthenticated peers: the global budget, per second and
/// burst.
const UNSOLICITED_PER_S: f64 = 20.0;
const UNSOLICITED_BURST: f64 = 200.0;
/// … and per source address ([`AddressKey`]): 12 a minute, burst 20.
const UNSOLICITED_PER_ADDRESS_PER_S: f64 = 0.2;
const UNSOLICITED_PER_ADDRESS_BURST: f64 = 20.0;
/// Addresses whose budget is tracked at once; past this the full ones are
/// forgotten, then all (the global budget still holds).
const TRACKED_ADDRESSES: usize = 4096;
/// Entries queued but not written yet; past this an entry is dropped and
/// counted (only reachable if the disk stalls for a long time).
const MAX_QUEUED: usize = 65_536;
/// Failed batches remembered for their tickets.
const FAILURES_KEPT: usize = 64;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A console login (outcome ok / failed / rate_limited).
    Login,
    /// A console logout.
    Logout,
    /// Pairing was armed with a new PIN.
    PairingArmed,
    /// Pairing was disarmed in the console.
    PairingDisarmed,
    /// The armed PIN expired unused.
    PairingExpired,
    /// A device asks to be let in (a native knock, a Moonlight PIN request).
    RequestWaiting,
    /// A waiting request was approved in the console.
    RequestApproved,
    /// A waiting request was denied in the console.
    RequestDenied,
    /// Nobody decided in time.
    RequestExpired,
    /// The device went away while waiting.
    RequestAbandoned,
    /// The same device asked again; its newer request replaces this one.
    RequestReplaced,
    /// The console entered the PIN a Moonlight client shows (the PIN itself
    /// is never recorded).
    PinEntered,
    /// A pairing exchange failed on a wrong PIN.
    PinRejected,
    /// A Moonlight pairing failed after the PIN was entered the way
    /// moonlight-qt's known key bug fails (most likely not a wrong PIN).
    MoonlightBug,
    /// A pairing exchange failed on a wrong pairing-link secret (the link
    /// stays usable; budgeted like other unsolicited entries).
    LinkRejected,
    /// A connection said `hello{intent: pair}` and sent no `pake` before
    /// its deadline (budgeted like other unsolicited entries).
    PairingStalled,
    /// A device was paired (`via` says how).
    Paired,
    /// A device's label was changed.
    Renamed,
    /// A device was removed; its connections were ended.
    Revoked,
    /// The host made its identity (first start).
    HostIdentityCreated,
    /// The host refused to start on a trust registry it could not read.
    RegistryRefused,
    /// A one-time PIN was made in the console.
    OtpCreated,
    /// A one-time PIN was cancelled in the console.
    OtpCancelled,
    /// A one-time PIN expired unused.
    OtpExpired,
    /// A client used the one-time PIN (outcome ok, or failed on a wrong one).
    OtpUsed,
    /// The console blocked an address's pairing requests for an hour.
    AddressBlocked,
    /// The console lifted an address's block.
    AddressUnblocked,
    /// An address's block ended after its hour.
    BlockExpired,
    /// Entries from unauthenticated peers over the budget were not written;
    /// `detail` says how many.
    AuditSuppressed,
}

impl Event {
    /// The name written to the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Login => "login",
            Event::Logout => "logout",
            Event::PairingArmed => "pairing_armed",
            Event::PairingDisarmed => "pairing_disarmed",
            Event::PairingExpired => "pairing_expired",
            Event::RequestWaiting => "request_waiting",
            Event::RequestApproved => "request_approved",
            Event::RequestDenied => "request_denied",
            Event::RequestExpired => "request_expired",
            Event::RequestAbandoned => "request_abandoned",
            Event::RequestReplaced => "request_replaced",
            Event::PinEntered => "pin_entered",
            Event::PinRejected => "pin_rejected",
            Event::MoonlightBug => "moonlight_bug",
            Event::LinkRejected => "link_rejected",
            Event::PairingStalled => "pairing_stalled",
            Event::Paired => "paired",
            Event::Renamed => "renamed",
            Event::Revoked => "revoked",
            Event::HostIdentityCreated => "host_identity_created",
            Event::RegistryRefused => "registry_refused",
            Event::OtpCreated => "otp_created",
            Event::OtpCancelled => "otp_cancelled",
            Event::OtpExpired => "otp_expired",
            Event::OtpUsed => "otp_used",
            Event::AddressBlocked => "address_blocked",
            Event::AddressUnblocked => "address_unblocked",
            Event::BlockExpired => "block_expired",
            Event::AuditSuppressed => "audit_suppressed",
        }
    }
}

/// Who did it, or through which door it came.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Door {
    /// The GameStream emulator (Moonlight clients).
    Gamestream,
    /// The native endpoint (the punktfunk app).
    Native,
    /// The web console.
    Console,
    /// `punktfunk devices …` on the host machine.
    Cli,
    /// The host itself (start-up, timers).
    Host,
}

impl Door {
    /// The door a device of this kind comes through.
    pub fn of(kind: Kind) -> Self {
        match kind {
            Kind::Gamestream => Door::Gamestream,
            Kind::Native => Door::Native,
        }
    }

    /// The name written to the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Door::Gamestream => "gamestream",
            Door::Native => "native",
            Door::Console => "console",
            Door::Cli => "cli",
            Door::Host => "host",
        }
    }
}

/// How it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It happened as asked.
    Ok,
    /// It was refused or did not match.
    Failed,
    /// It was refused before being looked at: too many attempts.
    RateLimited,
}

/// The device an entry is about, as it was named at that moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRef {
    /// Its certificate's fingerprint.
    pub fingerprint: Fingerprint,
    /// The name the device sent.
    pub name: String,
    /// The label given in the console, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl DeviceRef {
    /// A device by fingerprint and names.
    pub fn new(fingerprint: Fingerprint, name: &DisplayName, label: Option<&Label>) -> Self {
        Self {
            fingerprint,
            name: name.as_str().to_owned(),
            label: label.map(|l| l.as_str().to_owned()),
        }
    }
}

impl From<&Device> for DeviceRef {
    fn from(d: &Device) -> Self {
        Self::new(d.fingerprint, &d.name, d.label.as_ref())
    }
}

/// One decision, before it is numbered and timed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// What happened.
    pub event: Event,
    /// Who did it or through which door it came.
    pub door: Door,
    /// How it went.
    pub outcome: Outcome,
    /// The device it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceRef>,
    /// The peer's address (the device's, or the console user's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
    /// For `paired`: how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<Via>,
    /// Words for a person: what a request needs, why something failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Entry {
    /// An entry that went as asked, about no device yet.
    pub fn new(event: Event, door: Door) -> Self {
        Self {
            event,
            door,
            outcome: Outcome::Ok,
            device: None,
            address: None,
            via: None,
            detail: None,
        }
    }

    /// Sets the outcome.
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// Sets the device.
    pub fn device(mut self, device: impl Into<DeviceRef>) -> Self {
        self.device = Some(device.into());
        self
    }

    /// Sets the peer address (IPv4-mapped IPv6 is written as IPv4).
    pub fn address(mut self, address: IpAddr) -> Self {
        self.address = Some(address.to_canonical());
        self
    }

    /// Sets how a device was paired.
    pub fn via(mut self, via: Via) -> Self {
        self.via = Some(via);
        self
    }

    /// Sets the words for a person.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Whether this is a decision (kept whatever the noise, see the module
    /// docs): anything but what a peer without credentials can cause and
    /// the suppression counts.
    pub fn is_decision(&self) -> bool {
        !self.unsolicited() && self.event != Event::AuditSuppressed
    }

    /// Whether a peer with no credentials can cause this entry, so it must
    /// pass the unsolicited budget.
    fn unsolicited(&self) -> bool {
        match self.event {
            Event::Login => self.outcome != Outcome::Ok,
            Event::RequestWaiting
            | Event::RequestExpired
            | Event::RequestAbandoned
            | Event::RequestReplaced
            | Event::LinkRejected
            | Event::PairingStalled => true,
            _ => false,
        }
    }
}

/// One line of the audit file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Position in the trail: increases by one per line, across rotations.
    pub seq: u64,
    /// When, RFC 3339 in UTC.
    pub at: String,
    /// The decision.
    #[serde(flatten)]
    pub entry: Entry,
}

/// Errors of the audit trail.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    /// The file cannot be opened, written or read.
    #[error("cannot use the audit trail {}: {reason}; check free space and permissions of the state dir", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        reason: String,
    },
    /// Writing this entry failed; the action it records took effect.
    #[error("the audit trail {} could not record this ({reason}); the action took effect but is not in the audit trail", path.display())]
    NotRecorded {
        /// The file.
        path: PathBuf,
        /// The cause.
        reason: String,
    },
    /// The log was closed (the host is stopping).
    #[error("the audit trail is closed; the host is stopping")]
    Closed,
}

fn io_error(path: &Path, e: &io::Error) -> AuditError {
    AuditError::Io {
        path: path.into(),
        reason: e.to_string(),
    }
}

/// Tunables.
#[derive(Debug, Clone, Copy)]
pub struct AuditConfig {
    /// Size at which the file rotates.
    pub rotate_bytes: u64,
    /// Decisions kept in [`DECISIONS_FILE`].
    pub kept_decisions: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            rotate_bytes: ROTATE_BYTES,
            kept_decisions: KEPT_DECISIONS,
        }
    }
}

/// The writer. Dropping it writes what is queued, then stops the thread.
pub struct AuditLog {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

struct Shared {
    path: PathBuf,
    queue: Mutex<Queue>,
    queued: Condvar,
    progress: Mutex<Progress>,
    progressed: Condvar,
    durable: watch::Sender<u64>,
    events: Option<broadcast::Sender<TrustEvent>>,
}

struct Queue {
    next_seq: u64,
    items: Vec<Record>,
    closed: bool,
    budget: Budget,
    suppressed: u64,
    /// When the last `audit_suppressed` line was queued.
    last_note: Option<Instant>,
    /// The newest timestamp seen, for the count written at close.
    last_unix: u64,
}

#[derive(Default)]
struct Progress {
    /// Every seq up to here was written (or failed, see `failed`).
    done: u64,
    /// Inclusive seq ranges whose write failed, with the reason.
    failed: VecDeque<(u64, u64, String)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data mutated in small steps; a panic elsewhere must not stop
    // the trail.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AuditLog {
    /// Opens (or creates, 0600) `dir/audit.jsonl` and starts the writer
    /// thread. `events` gets [`TrustEvent::Audited`] after each batch is
    /// durable.
    pub fn open(
        dir: &Path,
        config: AuditConfig,
        events: Option<broadcast::Sender<TrustEvent>>,
    ) -> Result<Self, AuditError> {
        let file = LogFile::open(dir, config)?;
        Self::start(dir, file, events)
    }

    fn start(
        dir: &Path,
        file: LogFile,
        events: Option<broadcast::Sender<TrustEvent>>,
    ) -> Result<Self, AuditError> {
        let path = dir.join(AUDIT_FILE);
        let last_seq = last_seq(dir)?;
        let shared = Arc::new(Shared {
            path,
            queue: Mutex::new(Queue {
                next_seq: last_seq + 1,
                items: Vec::new(),
                closed: false,
                budget: Budget::default(),
                suppressed: 0,
                last_note: None,
                last_unix: 0,
            }),
            queued: Condvar::new(),
            progress: Mutex::new(Progress {
                done: last_seq,
                failed: VecDeque::new(),
            }),
            progressed: Condvar::new(),
            durable: watch::Sender::new(last_seq),
            events,
        });
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn({
                let shared = shared.clone();
                move || write_loop(&shared, file)
            })
            .map_err(|e| io_error(dir, &e))?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Queues `entry` stamped with `unix` seconds; `now` is for the
    /// unsolicited budget. Never blocks on the disk: wait on the ticket
    /// before acknowledging what the entry records.
    pub fn append(&self, entry: Entry, unix: u64, now: Instant) -> Ticket {
        let mut q = lock(&self.shared.queue);
        if q.closed {
            return self.ticket(None);
        }
        q.last_unix = q.last_unix.max(unix);
        if entry.unsolicited() {
            let key = entry.address.map(AddressKey::of);
            if !q.budget.admit(key, now) {
                q.suppressed += 1;
                let seq = q.next_seq - 1;
                return self.ticket(Some(seq));
            }
        }
        if q.items.len() >= MAX_QUEUED {
            q.suppressed += 1;
            let seq = q.next_seq - 1;
            return self.ticket(Some(seq));
        }
        let note_due = q
            .last_note
            .is_none_or(|at| now.saturating_duration_since(at) >= SUPPRESSION_INTERVAL);
        if q.suppressed > 0 && note_due {
            q.last_note = Some(now);
            push_suppressed(&mut q, unix);
        }
        let seq = push(&mut q, entry, unix);
        drop(q);
        self.shared.queued.notify_one();
        self.ticket(Some(seq))
    }

    /// A ticket for everything queued so far.
    pub fn barrier(&self) -> Ticket {
        let q = lock(&self.shared.queue);
        let seq = q.next_seq - 1;
        drop(q);
        self.ticket(Some(seq))
    }

    fn ticket(&self, seq: Option<u64>) -> Ticket {
        Ticket {
            seq,
            shared: self.shared.clone(),
        }
    }
}

/// Queues the count of suppressed entries as one `audit_suppressed` line.
fn push_suppressed(q: &mut Queue, unix: u64) {
    let n = std::mem::take(&mut q.suppressed);
    let note = Entry::new(Event::AuditSuppressed, Door::Host).detail(format!(
        "{n} entries from unauthenticated peers over the audit budget were not written"
    ));
    push(q, note, unix);
}

fn push(q: &mut Queue, entry: Entry, unix: u64) -> u64 {
    let seq = q.next_seq;
    q.next_seq += 1;
    q.items.push(Record {
        seq,
        at: rfc3339(unix),
        entry,
    });
    seq
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        {
            let mut q = lock(&self.shared.queue);
            // The count since the last note is not lost at a clean stop.
            if q.suppressed > 0 {
                let unix = q.last_unix;
                push_suppressed(&mut q, unix);
            }
            q.closed = true;
        }
        self.shared.queued.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A queued entry (or a point in the queue). Wait on it before telling
/// anyone the recorded action happened.
#[must_use = "wait on the ticket before acknowledging the action it records"]
#[derive(Clone)]
pub struct Ticket {
    /// `None`: the log was closed when the entry came.
    seq: Option<u64>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket").field("seq", &self.seq).finish()
    }
}

impl Ticket {
    /// Waits until the entry is on disk.
    pub async fn durable(self) -> Result<(), AuditError> {
        let Some(seq) = self.seq else {
            return Err(AuditError::Closed);
        };
        let mut rx = self.shared.durable.subscribe();
        // The sender lives in `shared`, which this ticket holds.
        let _ = rx.wait_for(|done| *done >= seq).await;
        self.result(seq)
    }

    /// Waits until the entry is on disk, blocking the thread.
    pub fn durable_blocking(self) -> Result<(), AuditError> {
        let Some(seq) = self.seq else {
            return Err(AuditError::Closed);
        };
        let mut progress = lock(&self.shared.progress);
        while progress.done < seq {
            progress = self
                .shared
                .progressed
                .wait(progress)
                .unwrap_or_else(|p| p.into_inner());
        }
        drop(progress);
        self.result(seq)
    }

    fn result(&self, seq: u64) -> Result<(), AuditError> {
        let progress = lock(&self.shared.progress);
        match progress
            .failed
            .iter()
            .find(|(from, to, _)| (*from..=*to).contains(&seq))
        {
            Some((_, _, reason)) => Err(AuditError::NotRecorded {
                path: self.shared.path.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }
}

fn write_loop(shared: &Shared, mut file: LogFile) {
    loop {
        let batch = {
            let mut q = lock(&shared.queue);
            while q.items.is_empty() && !q.closed {
                q = shared.queued.wait(q).unwrap_or_else(|p| p.into_inner());
            }
            if q.items.is_empty() {
                return;
            }
            std::mem::take(&mut q.items)
        };
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            continue;
        };
        let (first, last) = (first.seq, last.seq);
        let result = file.append(&batch);
        {
            let mut progress = lock(&shared.progress);
            progress.done = last;
            if let Err(e) = &result {
                if progress.failed.len() >= FAILURES_KEPT {
                    progress.failed.pop_front();
                }
                progress.failed.push_back((first, last, e.to_string()));
            }
        }
        if let Err(e) = result {
            tracing::error!(
                "the audit trail {} could not record entries {first}..={last}: {e}",
                shared.path.display()
            );
        } else if let Err(e) = file.rotate_if_due() {
            tracing::error!(
                "cannot rotate the audit trail {}: {e}; it keeps growing until it can",
                shared.path.display()
            );
        }
        shared.progressed.notify_all();
        shared.durable.send_replace(last);
        if let Some(events) = &shared.events {
            let _ = events.send(TrustEvent::Audited { seq: last });
        }
    }
}

/// The open file and its size, with rotation.
struct LogFile {
    dir: PathBuf,
    config: AuditConfig,
    file: File,
    len: u64,
    /// The file may end in a partial line: start the next write on a new one.
    fence: bool,
}

impl LogFile {
    fn open(dir: &Path, config: AuditConfig) -> Result<Self, AuditError> {
        let path = dir.join(AUDIT_FILE);
        let existed = path.exists();
        let mut opts = OpenOptions::new();
        opts.append(true).create(true).read(true);
        #[cfg(unix)]
        opts.mode(0o600);
        // Never through a link: the host would append to (and at start make
        // private) whatever file it points at.
        let mut file = crate::fsutil::open(&path, &opts).map_err(|e| io_error(&path, &e))?;
        let len = file.metadata().map_err(|e| io_error(&path, &e))?.len();
        let fence = len > 0 && !ends_with_newline(&mut file, len);
        if !existed {
            crate::fsutil::sync_dir(&path).map_err(|e| io_error(&path, &e))?;
        }
        Ok(Self {
            dir: dir.into(),
            config,
            file,
            len,
            fence,
        })
    }

    fn append(&mut self, batch: &[Record]) -> io::Result<()> {
        let mut buf = Vec::with_capacity(batch.len() * 256);
        if self.fence {
            buf.push(b'\n');
        }
        for record in batch {
            // Records are strings, numbers and enums: serialising cannot
            // fail; if it ever did, the line is skipped, not the batch.
            if serde_json::to_writer(&mut buf, record).is_ok() {
                buf.push(b'\n');
            }
        }
        self.fence = true;
        self.file.write_all(&buf)?;
        self.file.sync_data()?;
        self.fence = false;
        self.len += buf.len() as u64;
        Ok(())
    }

    /// Rotates if the file reached its size. A failure leaves the entries
    /// where they are (written) and is retried after the next batch.
    fn rotate_if_due(&mut self) -> io::Result<()> {
        if self.len >= self.config.rotate_bytes {
            self.rotate()?;
        }
        Ok(())
    }

    /// `audit.jsonl` → `audit.1.jsonl` → … → `audit.4.jsonl` → gone, its
    /// decisions into [`DECISIONS_FILE`] first.
    fn rotate(&mut self) -> io::Result<()> {
        self.keep_decisions()?;
        for pair in ROTATED_FILES.windows(2).rev() {
            match fs::rename(self.dir.join(pair[0]), self.dir.join(pair[1])) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        let current = self.dir.join(AUDIT_FILE);
        fs::rename(&current, self.dir.join(ROTATED_FILES[0]))?;
        let mut opts = OpenOptions::new();
        opts.append(true).create(true);
        #[cfg(unix)]
        opts.mode(0o600);
        self.file = crate::fsutil::open(&current, &opts)?;
        self.len = 0;
        crate::fsutil::sync_dir(&current)
    }

    /// Moves the decisions of the oldest rotated file, which the next
    /// rotation drops, into [`DECISIONS_FILE`] (replaced durably, the newest
    /// [`AuditConfig::kept_decisions`] kept). A crash after this and before the rotation
    /// does no harm: records already there (by `seq`) are not added again.
    fn keep_decisions(&self) -> io::Result<()> {
        let Some(oldest) = ROTATED_FILES.last() else {
            return Ok(());
        };
        let leaving = read_bytes(&self.dir.join(oldest))?;
        let decision = |line: &&[u8]| {
            serde_json::from_slice::<Record>(line).is_ok_and(|r| r.entry.is_decision())
        };
        let mut moving: Vec<&[u8]> = leaving
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .filter(decision)
            .collect();
        if moving.is_empty() {
            return Ok(());
        }
        let path = self.dir.join(DECISIONS_FILE);
        let kept = read_bytes(&path)?;
        let last_kept = records_newest_first(&kept, None)
            .next()
            .map_or(0, |r| r.seq);
        moving.retain(|l| serde_json::from_slice::<Record>(l).is_ok_and(|r| r.seq > last_kept));
        let mut lines: Vec<&[u8]> = kept
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        lines.extend(moving);
        let skip = lines.len().saturating_sub(self.config.kept_decisions);
        let mut out = Vec::with_capacity(kept.len() + leaving.len() / 4);
        for line in &lines[skip..] {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        crate::fsutil::write_atomic(&path, &out)
    }
}

/// A trail file's bytes (at most [`MAX_READ_BYTES`], never through a link);
/// a missing file is empty.
fn read_bytes(path: &Path) -> io::Result<Vec<u8>> {
    let file = match crate::fsutil::open_read(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(MAX_READ_BYTES).read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn ends_with_newline(file: &mut File, len: u64) -> bool {
    use std::io::{Seek, SeekFrom};
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1)).is_ok()
        && file.read_exact(&mut last).is_ok()
        && last[0] == b'\n'
}

/// Token buckets for unsolicited entries: global and per address.
struct Budget {
    global: Bucket,
    per_address: HashMap<AddressKey, Bucket>,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            global: Bucket::full(UNSOLICITED_BURST),
            per_address: HashMap::new(),
        }
    }
}

impl Budget {
    fn admit(&mut self, key: Option<AddressKey>, now: Instant) -> bool {
        if let Some(key) = key {
            if self.per_address.len() >= TRACKED_ADDRESSES && !self.per_address.contains_key(&key) {
                self.per_address.retain(|_, b| {
                    b.level(
                        now,
                        UNSOLICITED_PER_ADDRESS_PER_S,
                        UNSOLICITED_PER_ADDRESS_BURST,
                    ) < UNSOLICITED_PER_ADDRESS_BURST
                });
                if self.per_address.len() >= TRACKED_ADDRESSES {
                    self.per_address.clear();
                }
            }
            let bucket = self
                .per_address
                .entry(key)
                .or_insert_with(|| Bucket::full(UNSOLICITED_PER_ADDRESS_BURST));
            if !bucket.take(
                now,
                UNSOLICITED_PER_ADDRESS_PER_S,
                UNSOLICITED_PER_ADDRESS_BURST,
            ) {
                return false;
            }
        }
        self.global.take(now, UNSOLICITED_PER_S, UNSOLICITED_BURST)
    }
}

struct Bucket {
    tokens: f64,
    at: Option<Instant>,
}

impl Bucket {
    fn full(burst: f64) -> Self {
        Self {
            tokens: burst,
            at: None,
        }
    }

    fn level(&self, now: Instant, rate: f64, burst: f64) -> f64 {
        let elapsed = self
            .at
            .map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
        (self.tokens + elapsed.as_secs_f64() * rate).min(burst)
    }

    fn take(&mut self, now: Instant, rate: f64, burst: f64) -> bool {
        let level = self.level(now, rate, burst);
        self.at = Some(now);
        if level >= 1.0 {
            self.tokens = level - 1.0;
            true
        } else {
            self.tokens = level;
            false
        }
    }
}

/// `unix` seconds as RFC 3339 UTC (`2026-11-28T12:00:00Z`).
pub fn rfc3339(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

// ---- reading ---------------------------------------------------------------

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// At most this many records.
    pub limit: usize,
    /// Only records older than this cursor (a `seq`).
    pub before: Option<u64>,
    /// Only records newer than this `seq`.
    pub after: Option<u64>,
    /// Only records about this device.
    pub device: Option<Fingerprint>,
}

/// Records, newest first, and the cursor for the next (older) page.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Page {
    /// The records.
    pub events: Vec<Record>,
    /// Pass as `before` for the next page; `None` when there is no more.
    pub next: Option<u64>,
}

/// The trail's files in `dir`, newest first (every record of one is newer
/// than every record of the next).
fn files(dir: &Path) -> impl Iterator<Item = PathBuf> + '_ {
    std::iter::once(AUDIT_FILE)
        .chain(ROTATED_FILES)
        .chain([DECISIONS_FILE])
        .map(move |f| dir.join(f))
}

/// Reads a file's lines; a missing file is empty.
fn read_file(path: &Path) -> Result<Vec<u8>, AuditError> {
    read_bytes(path).map_err(|e| io_error(path, &e))
}

/// The records of one file's bytes, newest first; lines that do not parse
/// (torn by a crash, or from a newer version) are skipped. With `needle`,
/// only lines containing it are parsed (a device's fingerprint: a filtered
/// read of the whole trail stays cheap).
fn records_newest_first<'a>(
    bytes: &'a [u8],
    needle: Option<&'a [u8]>,
) -> impl Iterator<Item = Record> + 'a {
    bytes
        .split(|b| *b == b'\n')
        .rev()
        .filter(move |l| !l.is_empty() && needle.is_none_or(|n| l.windows(n.len()).any(|w| w == n)))
        .filter_map(|l| serde_json::from_slice::<Record>(l).ok())
}

/// Reads the trail in `dir`, newest first, across rotated files.
pub fn read(dir: &Path, query: &Query) -> Result<Page, AuditError> {
    let mut page = Page::default();
    if query.limit == 0 {
        return Ok(page);
    }
    let needle = query.device.map(|fp| fp.to_string());
    for path in files(dir) {
        let bytes = read_file(&path)?;
        for record in records_newest_first(&bytes, needle.as_deref().map(str::as_bytes)) {
            if query.after.is_some_and(|after| record.seq <= after) {
                return Ok(page);
            }
            if query.before.is_some_and(|before| record.seq >= before) {
                continue;
            }
            if let Some(fp) = &query.device {
                if record.entry.device.as_ref().map(|d| &d.fingerprint) != Some(fp) {
                    continue;
                }
            }
            if page.events.len() == query.limit {
                page.next = page.events.last().map(|r| r.seq);
                return Ok(page);
            }
            page.events.push(record);
        }
    }
    Ok(page)
}

/// The last `seq` written in `dir`, 0 for an empty trail.
fn last_seq(dir: &Path) -> Result<u64, AuditError> {
    for path in files(dir) {
        let bytes = read_file(&path)?;
        let last = records_newest_first(&bytes, None).next().map(|r| r.seq);
        if let Some(seq) = last {
            return Ok(seq);
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(n: u8) -> Fingerprint {
        Fingerprint::of_der(&[n])
    }

    fn device(n: u8) -> DeviceRef {
        DeviceRef {
            fingerprint: fp(n),
            name: format!("dev {n}"),
            label: None,
        }
    }

    fn all(dir: &Path) -> Vec<Record> {
        read(
            dir,
            &Query {
                limit: usize::MAX,
                ..Query::default()
            },
        )
        .unwrap()
        .events
    }

    #[test]
    fn entries_are_durable_in_order_and_read_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), AuditConfig::default(), None).unwrap();
        let now = Instant::now();
        let t1 = log.append(Entry::new(Event::PairingArmed, Door::Console), 0, now);
        let t2 = log.append(
            Entry::new(Event::Paired, Door::Native)
                .device(device(1))
                .via(Via::Pin)
                .address("127.0.0.1".parse().unwrap()),
            1_796_000_000,
            now,
        );
        t2.durable_blocking().unwrap();
        t1.durable_blocking().unwrap();
        let records = all(dir.path());
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].seq, 2);
        assert_eq!(records[0].entry.event, Event::Paired);
        assert_eq!(records[0].at, "2026-11-30T00:53:20Z");
        assert_eq!(records[1].at, "1970-01-01T00:00:00Z");
        let line = fs::read_to_string(dir.path().join(AUDIT_FILE)).unwrap();
        let second = line.lines().nth(1).unwrap();
        assert!(second.starts_with(r#"{"seq":2,"at":"2026-11-30T00:53:20Z","event":"paired","door":"native","outcome":"ok","device":{"fingerprint":""#), "{second}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(AUDIT_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Numbering continues after a restart.
        drop(log);
        let log = AuditLog::open(dir.path(), AuditConfig::default(), None).unwrap();
        log.append(Entry::new(Event::Logout, Door::Console), 0, now)
            .durable_blocking()
            .unwrap();
        assert_eq!(all(dir.path())[0].seq, 3);
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_fenced_off() {
        let dir = tempfile::tempdir().unwrap();
        let now = Instant::now();
        {
            let log = AuditLog::open(dir.path(), AuditConfig::default(), None).unwrap();
            log.append(Entry::new(Event::PairingArmed, Door::Console), 0, now)
                .durable_blocking()
                .unwrap();
        }
        let path = dir.path().join(AUDIT_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"seq":2,"at":"1970-01-01T00:0"#).unwrap();
        drop(f);
        assert_eq!(all(dir.path()).len(), 1);
        let log = AuditLog::open(dir.path(), AuditConfig::default(), None).unwrap();
        log.append(Entry::new(Event::Logout, Door::Console), 0, now)
            .durable_blocking()
            .unwrap();
        let records = all(dir.path());
        assert_eq!(
            records
                .iter()
                .map(|r| (r.seq, r.entry.event))
                .collect::<Vec<_>>(),
            [(2, Event::Logout), (1, Event::PairingArmed)]
        );
    }

    #[test]
    fn rotation_keeps_four_older_files_and_reads_across_them() {
        let dir = tempfile::tempdir().unwrap();
        let config = AuditConfig {
            rotate_bytes: 1000,
            ..AuditConfig::default()
        };
        let log = AuditLog::open(dir.path(), config, None).unwrap();
        let now = Instant::now();
        for i in 0..200u8 {
            log.append(
                Entry::new(Event::Renamed, Door::Cli).device(device(i)),
                0,
                now,
            )
            .durable_blocking()
            .unwrap();
        }
        drop(log);
        for f in ROTATED_FILES {
            let len = fs::metadata(dir.path().join(f)).unwrap().len();
            assert!((1000..1300).contains(&len), "{f}: {len}");
        }
        assert!(!dir.path().join("audit.5.jsonl").exists());
        let records = all(dir.path());
        // Newest first, contiguous, and nothing lost: the decisions of the
        // dropped files were kept.
        assert_eq!(records[0].seq, 200);
        assert!(records.windows(2).all(|w| w[0].seq == w[1].seq + 1));
        assert_eq!(records.len(), 200);
        // Pages: cursor, device filter.
        let page = read(
            dir.path(),
            &Query {
                limit: 3,
                before: Some(199),
                ..Query::default()
            },
        )
        .unwrap();
        assert_eq!(
            page.events.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [198, 197, 196]
        );
        assert_eq!(page.next, Some(196));
        let page = read(
            dir.path(),
            &Query {
                limit: 10,
                device: Some(fp(190)),
                ..Query::default()
            },
        )
        .unwrap();
        assert_eq!(page.events.len(), 1);
        assert_eq!(page.events[0].seq, 191);
        assert_eq!(page.next, None);
        // Reopening finds the last seq even right after a rotation.
        let log = AuditLog::open(dir.path(), config, None).unwrap();
        log.append(Entry::new(Event::Logout, Door::Console), 0, now)
            .durable_blocking()
            .unwrap();
        assert_eq!(all(dir.path())[0].seq, 201);
    }

    #[test]
    fn unsolicited_entries_are_budgeted_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), AuditConfig::default(), None).unwrap();
        let t0 = Instant::now();
        let knock = |ip: &str| {
            Entry::new(Event::Login, Door::Console)
                .outcome(Outcome::Failed)
                .address(ip.parse().unwrap())
        };
        // One address: its burst, then nothing.
        for _ in 0..50 {
            let _ = log.append(knock("10.0.0.1"), 0, t0);
        }
        // Many addresses: the global burst.
        for i in 0..1000u32 {
            let ip = format!("10.1.{}.{}", i / 256, i % 256);
            let _ = log.append(knock(&ip), 0, t0);
        }
        // Decisions are never budgeted; the count is written before them.
        log.append(Entry::new(Event::PairingArmed, Door::Console), 0, t0)
            .durable_blocking()
            .unwrap();
        let records = all(dir.path());
        let logins = records
            .iter()
            .filter(|r| r.entry.event == Event::Login)
            .count();
        assert_eq!(logins, UNSOLICITED_BURST as usize);
        // The count is written when the next entry passes: 30 over the one
        // address's budget, then 820 over the global one.
        let notes: Vec<_> = records
            .iter()
            .filter(|r| r.entry.event == Event::AuditSuppressed)
            .map(|r| r.entry.detail.as_deref().unwrap())
            .collect();
        let note = |n| {
            format!("{n} entries from unauthenticated peers over the audit budget were not written")
        };
        // At most one count per interval: the 820 wait for the next one.
        assert_eq!(notes, [note(30)]);
        // The budget refills.
        let later = t0 + Duration::from_secs(10);
        log.append(knock("10.0.0.1"), 0, later)
            .durable_blocking()
            .unwrap();
        let records = all(dir.path());
        assert_eq!(records[0].entry.event, Event::Login);
        assert_eq!(records[1].entry.event, Event::PairingArmed);
        // Still noise over budget (the address earned 2 entries in 10 s,
        // both used), then the interval is over: one count.
        for _ in 0..50 {
            let _ = log.append(knock("10.0.0.1"), 0, later);
        }
        let next = t0 + SUPPRESSION_INTERVAL;
        log.append(knock("10.0.0.2"), 0, next)
            .durable_blocking()
            .unwrap();
        let records = all(dir.path());
        assert_eq!(records[0].entry.event, Event::Login);
        assert_eq!(records[1].entry.detail, Some(note(820 + 49)));
        // What is left at a clean stop is written then.
        for _ in 0..30 {
            let _ = log.append(knock("10.0.0.1"), 0, next);
        }
        drop(log);
        let last = all(dir.path()).remove(0);
        assert_eq!(last.entry.event, Event::AuditSuppressed);
    }

    #[test]
    fn decisions_are_kept_once_even_if_a_crash_repeats_the_move() {
        let dir = tempfile::tempdir().unwrap();
        let oldest = dir.path().join(ROTATED_FILES[3]);
        let line = |seq: u64, event: Event| {
            let mut l = serde_json::to_vec(&Record {
                seq,
                at: rfc3339(0),
                entry: Entry::new(event, Door::Console),
            })
            .unwrap();
            l.push(b'\n');
            l
        };
        let mut bytes = line(1, Event::PairingArmed);
        bytes.extend(line(2, Event::AuditSuppressed));
        bytes.extend(line(3, Event::Logout));
        fs::write(&oldest, &bytes).unwrap();
        let file = LogFile::open(dir.path(), AuditConfig::default()).unwrap();
        // Moved, then the host dies before the rotation: moved again.
        file.keep_decisions().unwrap();
        file.keep_decisions().unwrap();
        let kept = fs::read(dir.path().join(DECISIONS_FILE)).unwrap();
        let seqs: Vec<u64> = records_newest_first(&kept, None).map(|r| r.seq).collect();
        assert_eq!(seqs, [3, 1]);
    }

    #[test]
    fn rotation_never_drops_a_decision_and_reads_stay_in_time_order() {
        let dir = tempfile::tempdir().unwrap();
        let config = AuditConfig {
            rotate_bytes: 2000,
            kept_decisions: 30,
        };
        let log = AuditLog::open(dir.path(), config, None).unwrap();
        let mut t = Instant::now();
        let mut decisions = Vec::new();
        for i in 0..3000u32 {
            // Noise from a new address each time, spaced to pass the budget.
            t += Duration::from_millis(100);
            let ip = format!("10.2.{}.{}", i / 256, i % 256);
            let noise = Entry::new(Event::Login, Door::Console)
                .outcome(Outcome::Failed)
                .address(ip.parse().unwrap());
            let ticket = log.append(noise, 0, t);
            if i % 100 == 0 {
                let seq = log
                    .append(
                        Entry::new(Event::Renamed, Door::Cli).device(device(i as u8)),
                        0,
                        t,
                    )
                    .seq
                    .unwrap();
                decisions.push(seq);
            }
            ticket.durable_blocking().unwrap();
        }
        drop(log);
        assert!(dir.path().join(DECISIONS_FILE).exists());
        let records = all(dir.path());
        // Noise rotated away, every decision still there, newest first.
        assert!(records.len() < 1000, "{}", records.len());
        assert!(records.windows(2).all(|w| w[0].seq > w[1].seq));
        let kept: Vec<u64> = records
            .iter()
            .filter(|r| r.entry.is_decision())
            .map(|r| r.seq)
            .rev()
            .collect();
        assert_eq!(kept, decisions);
        // The kept file holds decisions only, at most `kept_decisions`.
        let bytes = fs::read(dir.path().join(DECISIONS_FILE)).unwrap();
        let archived: Vec<Record> = records_newest_first(&bytes, None).collect();
        assert!(!archived.is_empty() && archived.len() <= 30);
        assert!(archived.iter().all(|r| r.entry.is_decision()));
        // Past the cap, the oldest decisions go.
        let log = AuditLog::open(dir.path(), config, None).unwrap();
        for i in 0..200u8 {
            log.append(
                Entry::new(Event::Renamed, Door::Cli).device(device(i)),
                0,
                t,
            )
            .durable_blocking()
            .unwrap();
        }
        drop(log);
        let bytes = fs::read(dir.path().join(DECISIONS_FILE)).unwrap();
        assert_eq!(records_newest_first(&bytes, None).count(), 30);
        let records = all(dir.path());
        assert!(records.windows(2).all(|w| w[0].seq > w[1].seq));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn tickets_of_a_failed_write_say_so() {
        let dir = tempfile::tempdir().unwrap();
        // A full disk: every write fails with ENOSPC.
        let full = OpenOptions::new().append(true).open("/dev/full").unwrap();
        let file = LogFile {
            dir: dir.path().into(),
            config: AuditConfig::default(),
            file: full,
            len: 0,
            fence: false,
        };
        let log = AuditLog::start(dir.path(), file, None).unwrap();
        let err = log
            .append(Entry::new(Event::Logout, Door::Console), 0, Instant::now())
            .durable_blocking()
            .unwrap_err();
        assert!(matches!(err, AuditError::NotRecorded { .. }), "{err}");
    }
}
