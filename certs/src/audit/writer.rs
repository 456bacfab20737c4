//! The group-commit writer: entries are queued in order (cheap, allowed
//! under the gate lock), one thread writes and fsyncs each batch once, and
//! [`Ticket`]s say when an entry is durable.

use super::*;

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

pub(super) fn io_error(path: &Path, e: &io::Error) -> AuditError {
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

pub(super) struct Shared {
    path: PathBuf,
    queue: Mutex<Queue>,
    queued: Condvar,
    progress: Mutex<Progress>,
    progressed: Condvar,
    durable: watch::Sender<u64>,
    events: Option<broadcast::Sender<TrustEvent>>,
}

pub(super) struct Queue {
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
pub(super) struct Progress {
    /// Every seq up to here was written (or failed, see `failed`).
    done: u64,
    /// Inclusive seq ranges whose write failed, with the reason.
    failed: VecDeque<(u64, u64, String)>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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

    pub(super) fn start(
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

    pub(super) fn ticket(&self, seq: Option<u64>) -> Ticket {
        Ticket {
            seq,
            shared: self.shared.clone(),
        }
    }
}

/// Queues the count of suppressed entries as one `audit_suppressed` line.
pub(super) fn push_suppressed(q: &mut Queue, unix: u64) {
    let n = std::mem::take(&mut q.suppressed);
    let note = Entry::new(Event::AuditSuppressed, Door::Host).detail(format!(
        "{n} entries from unauthenticated peers over the audit budget were not written"
    ));
    push(q, note, unix);
}

pub(super) fn push(q: &mut Queue, entry: Entry, unix: u64) -> u64 {
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
    pub(super) seq: Option<u64>,
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

    pub(super) fn result(&self, seq: u64) -> Result<(), AuditError> {
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

pub(super) fn write_loop(shared: &Shared, mut file: LogFile) {
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
