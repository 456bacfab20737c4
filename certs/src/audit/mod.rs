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
use crate::name::{DisplayName, Label};
use crate::registry::{Device, FrontDoor, Via};
use crate::vocab::AddressKey;

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

mod budget;
mod entry;
mod file;
mod read;
mod writer;

use budget::Budget;
pub use entry::{rfc3339, DeviceRef, Door, Entry, Event, Outcome, Record};
use file::{read_bytes, LogFile};
#[cfg(test)]
pub(crate) use read::recorded_events;
use read::{last_seq, records_newest_first};
pub use read::{read, Page, Query};
use writer::io_error;
pub use writer::{AuditConfig, AuditError, AuditLog, Ticket};

#[cfg(test)]
mod tests;
