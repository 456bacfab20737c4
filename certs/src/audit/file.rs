//! The trail's files on disk: appending, rotating, and keeping every
//! decision when the oldest rotated file goes.

use super::*;

/// The open file and its size, with rotation.
pub(super) struct LogFile {
    pub(super) dir: PathBuf,
    pub(super) config: AuditConfig,
    pub(super) file: File,
    pub(super) len: u64,
    /// The file may end in a partial line: start the next write on a new one.
    pub(super) fence: bool,
}

impl LogFile {
    pub(super) fn open(dir: &Path, config: AuditConfig) -> Result<Self, AuditError> {
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

    pub(super) fn append(&mut self, batch: &[Record]) -> io::Result<()> {
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
    pub(super) fn rotate_if_due(&mut self) -> io::Result<()> {
        if self.len >= self.config.rotate_bytes {
            self.rotate()?;
        }
        Ok(())
    }

    /// `audit.jsonl` → `audit.1.jsonl` → … → `audit.4.jsonl` → gone, its
    /// decisions into [`DECISIONS_FILE`] first.
    pub(super) fn rotate(&mut self) -> io::Result<()> {
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
    pub(super) fn keep_decisions(&self) -> io::Result<()> {
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
pub(super) fn read_bytes(path: &Path) -> io::Result<Vec<u8>> {
    let file = match crate::fsutil::open_read(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(MAX_READ_BYTES).read_to_end(&mut bytes)?;
    Ok(bytes)
}

pub(super) fn ends_with_newline(file: &mut File, len: u64) -> bool {
    use std::io::{Seek, SeekFrom};
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1)).is_ok()
        && file.read_exact(&mut last).is_ok()
        && last[0] == b'\n'
}
