//! Reading the trail: newest first across the live file, the rotated
//! ones and the kept decisions, a page at a time.

use super::*;

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
pub(super) fn files(dir: &Path) -> impl Iterator<Item = PathBuf> + '_ {
    std::iter::once(AUDIT_FILE)
        .chain(ROTATED_FILES)
        .chain([DECISIONS_FILE])
        .map(move |f| dir.join(f))
}

/// Reads a file's lines; a missing file is empty.
pub(super) fn read_file(path: &Path) -> Result<Vec<u8>, AuditError> {
    read_bytes(path).map_err(|e| io_error(path, &e))
}

/// The records of one file's bytes, newest first; lines that do not parse
/// (torn by a crash, or from a newer version) are skipped. With `needle`,
/// only lines containing it are parsed (a device's fingerprint: a filtered
/// read of the whole trail stays cheap).
pub(super) fn records_newest_first<'a>(
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
pub(super) fn last_seq(dir: &Path) -> Result<u64, AuditError> {
    for path in files(dir) {
        let bytes = read_file(&path)?;
        let last = records_newest_first(&bytes, None).next().map(|r| r.seq);
        if let Some(seq) = last {
            return Ok(seq);
        }
    }
    Ok(0)
}

/// The events of the newest 100 records, oldest first: what a test
/// checks was recorded, in order.
#[cfg(test)]
pub(crate) fn recorded_events(dir: &Path) -> Vec<Event> {
    let query = Query {
        limit: 100,
        ..Query::default()
    };
    let page = read(dir, &query).unwrap();
    page.events.iter().rev().map(|r| r.entry.event).collect()
}
