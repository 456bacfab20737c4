//! The known-hosts file: pinned and accepted host fingerprints, one line
//! per host, rewritten atomically.

use super::*;

/// Why the known-hosts file ([`KNOWN_HOSTS_FILE`]) could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KnownHostsError {
    /// It exists but could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A line is neither a host, a comment nor empty. Nothing is guessed:
    /// a pin silently dropped would turn the next connect into trust on
    /// first use.
    #[error("{} line {line}: expected `HOST:PORT FINGERPRINT` or `HOST:PORT FINGERPRINT {ACCEPTED_MARKER}`; fix or delete that line", .path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
    },
    /// It could not be replaced (the new pin is not recorded).
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// The known hosts: `HOST:PORT FINGERPRINT` lines (pinned) and `HOST:PORT
/// FINGERPRINT accepted` lines (accepted, not yet trusted), `#` comments.
/// The two-column form is the original format: such files load unchanged.
#[derive(Debug)]
pub(super) struct KnownHosts {
    pub(super) path: PathBuf,
    pub(super) entries: Vec<(String, KnownHost)>,
}

impl KnownHosts {
    pub(super) fn load(path: &Path) -> Result<Self, KnownHostsError> {
        let read_err = |source| KnownHostsError::Read {
            path: path.to_path_buf(),
            source,
        };
        let text = match std::fs::File::open(path) {
            Ok(f) => {
                use std::io::Read;
                let mut s = String::new();
                f.take(MAX_KNOWN_HOSTS_BYTES)
                    .read_to_string(&mut s)
                    .map_err(read_err)?;
                s
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(read_err(e)),
        };
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || KnownHostsError::Line {
                path: path.to_path_buf(),
                line: n + 1,
            };
            let mut words = line.split_whitespace();
            let (Some(host), Some(fp)) = (words.next(), words.next()) else {
                return Err(bad());
            };
            let fingerprint: Fingerprint = fp.parse().map_err(|_| bad())?;
            let trust = match (words.next(), words.next()) {
                (None, _) => HostTrust::Pinned,
                (Some(ACCEPTED_MARKER), None) => HostTrust::Accepted,
                _ => return Err(bad()),
            };
            let host = host.to_owned();
            // A later line for the same host wins, as it would on insert.
            entries.retain(|(h, _)| *h != host);
            entries.push((host, KnownHost { fingerprint, trust }));
        }
        Ok(Self {
            path: path.to_path_buf(),
            entries,
        })
    }

    pub(super) fn get(&self, addr: &HostAddr) -> Option<KnownHost> {
        let key = addr.to_string();
        self.entries
            .iter()
            .find(|(h, _)| *h == key)
            .map(|(_, k)| *k)
    }

    /// Pins `fp` for `addr`: a new host, a promotion of an accepted
    /// fingerprint, or (after PIN pairing) a replacement of one.
    pub(super) fn pin(&mut self, addr: &HostAddr, fp: Fingerprint) -> Result<(), KnownHostsError> {
        self.insert(
            addr,
            KnownHost {
                fingerprint: fp,
                trust: HostTrust::Pinned,
            },
        )
    }

    /// Remembers that the user accepted `fp` for `addr`. Does nothing if
    /// `addr` is known already: never demotes a pin (a pinned host whose
    /// registry forgot this device, e.g. after a revocation, is still the
    /// same host), never replaces a fingerprint on record.
    pub(super) fn accept(
        &mut self,
        addr: &HostAddr,
        fp: Fingerprint,
    ) -> Result<(), KnownHostsError> {
        if self.get(addr).is_some() {
            return Ok(());
        }
        self.insert(
            addr,
            KnownHost {
                fingerprint: fp,
                trust: HostTrust::Accepted,
            },
        )
    }

    /// Writes `host` for `addr` (durably) unless it is on record already.
    pub(super) fn insert(
        &mut self,
        addr: &HostAddr,
        host: KnownHost,
    ) -> Result<(), KnownHostsError> {
        if self.get(addr) == Some(host) {
            return Ok(());
        }
        let key = addr.to_string();
        let mut entries = self.entries.clone();
        entries.retain(|(h, _)| *h != key);
        entries.push((key, host));
        self.save(entries)
    }

    /// Forgets `addr`; whether it was on record.
    pub(super) fn remove(&mut self, addr: &HostAddr) -> Result<bool, KnownHostsError> {
        let key = addr.to_string();
        let mut entries = self.entries.clone();
        entries.retain(|(h, _)| *h != key);
        if entries.len() == self.entries.len() {
            return Ok(false);
        }
        self.save(entries).map(|()| true)
    }

    /// Replaces the file with `entries`, durably, then keeps them.
    pub(super) fn save(
        &mut self,
        entries: Vec<(String, KnownHost)>,
    ) -> Result<(), KnownHostsError> {
        let mut text = format!(
            "# punktfunk known hosts: HOST:PORT SHA-256 fingerprint [{ACCEPTED_MARKER}]\n\
             # `{ACCEPTED_MARKER}`: you accepted the fingerprint, the host has not admitted this device yet\n"
        );
        for (h, k) in &entries {
            match k.trust {
                HostTrust::Pinned => text.push_str(&format!("{h} {}\n", k.fingerprint)),
                HostTrust::Accepted => {
                    text.push_str(&format!("{h} {} {ACCEPTED_MARKER}\n", k.fingerprint))
                }
            }
        }
        punktfunk_identity::fsutil::write_atomic(&self.path, text.as_bytes()).map_err(
            |source| KnownHostsError::Write {
                path: self.path.clone(),
                source,
            },
        )?;
        // Only what is on disk counts.
        self.entries = entries;
        Ok(())
    }
}
