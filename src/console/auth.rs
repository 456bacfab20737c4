//! Console authentication: the admin password (argon2id hash on disk),
//! sessions with their CSRF tokens, and the login limits.
//!
//! A password check is the most expensive thing an unauthenticated peer can
//! make the host do (argon2id: ~19 MiB of memory and tens of milliseconds
//! each), so every check is paid for before it runs ([`LoginLimiter`]): a
//! free check slot (one check runs at a time), a token from the global budget
//! of [`CHECKS_PER_SECOND`], and an attempt counted against the source
//! address (the full address: see `AddressKey`). An attempt from a browser
//! that logged in before (a valid known-browser cookie, see `known`) is
//! counted against that cookie instead, so a flood cannot lock the owner
//! out. The checks run in memory allocated
//! once and reused ([`PasswordFile::verify`]), so a flood cannot grow the
//! heap either: letting argon2 allocate per check, a flood of 400 logins
//! peaked at 180 MiB even one check at a time (the allocator keeps freed
//! buffers per thread); reused, the peak stays under 64 MiB.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use punktfunk_certs::fsutil::Owner;
use punktfunk_certs::{AddressKey, TokenBucket};
use rand::rngs::OsRng;
use rand::RngCore;
use tokio::sync::OwnedMutexGuard;

use super::known::BrowserId;

pub(crate) use crate::startup::PASSWORD_FILE;
/// Shortest password `console set-password` accepts.
pub(crate) const MIN_PASSWORD_CHARS: usize = 8;

/// A session ends this long after login, whatever happens.
pub(crate) const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// A session ends after this long without a request.
pub(crate) const SESSION_IDLE: Duration = Duration::from_secs(3600);
/// At most this many sessions exist; the oldest is dropped beyond that.
const MAX_SESSIONS: usize = 256;

/// Password checks allowed from one address (IPv4 address, IPv6 /128) per
/// window, counted before each check; a successful login clears the count.
pub(crate) const MAX_FAILURES: u32 = 5;
/// The per-address window.
pub(crate) const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Password checks per second across all addresses (and the burst), whatever
/// the number of addresses: the budget that holds when a sender rotates
/// through thousands of addresses.
pub(crate) const CHECKS_PER_SECOND: u32 = 10;
/// Password checks allowed per window from one known browser (a valid
/// known-browser cookie, see `known`): its own budget, apart from the
/// addresses' and the global one; a successful login clears the count.
pub(crate) const MAX_KNOWN_FAILURES: u32 = 5;
/// How long a known browser's attempt waits for the check slot (held by
/// one check at a time, ~25 ms each) before it is told the host is busy.
const KNOWN_SLOT_WAIT: Duration = Duration::from_secs(5);
/// Addresses tracked at most. The global budget already bounds how many
/// addresses can be counted per window (`CHECKS_PER_SECOND` × 60 s); this
/// is a backstop, and when it is reached the oldest entry goes, never the
/// limit.
const MAX_TRACKED: usize = 4096;

/// The password hash file in a state dir.
#[derive(Debug, Clone)]
pub(crate) struct PasswordFile {
    path: PathBuf,
}

impl PasswordFile {
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            path: dir.join(PASSWORD_FILE),
        }
    }

    pub(crate) fn exists(&self) -> bool {
        // A link counts (and is refused when read), so none is replaced
        // by a generated password behind the owner's back.
        self.path.symlink_metadata().is_ok()
    }

    /// Stores the argon2id hash of `password` (never the password), the
    /// file given to `owner` through its descriptor (root setting a
    /// service's password; see `fsutil::write_atomic_as`).
    pub(crate) fn set(&self, password: &str, owner: Option<Owner>) -> anyhow::Result<()> {
        let salt = SaltString::generate(&mut OsRng);
        let hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?
            .to_string();
        punktfunk_certs::fsutil::write_atomic_as(&self.path, format!("{hash}\n").as_bytes(), owner)
            .with_context(|| format!("cannot write {}", self.path.display()))
    }

    /// Creates a strong random password, stores its hash, returns it.
    #[cfg(test)]
    pub(crate) fn generate(&self) -> anyhow::Result<String> {
        let password = self.new_password();
        self.set(&password, None)?;
        Ok(password)
    }

    /// A strong random password (not stored).
    pub(crate) fn new_password(&self) -> String {
        let mut bytes = [0u8; 15];
        OsRng.fill_bytes(&mut bytes);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The state dir the file is in.
    pub(crate) fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// Checks `password` against the stored hash, computing argon2 in
    /// `memory` (grown to the hash's memory cost once, then reused: argon2's
    /// own verify allocates its ~19 MiB anew each time, and under a flood
    /// the allocator kept those per thread). Reads the file each time, so
    /// `console set-password` takes effect on a running host. Slow on
    /// purpose: call from a blocking thread.
    pub(crate) fn verify(&self, password: &str, memory: &mut Vec<Block>) -> anyhow::Result<bool> {
        let text = self.hash()?;
        let bad = |e: argon2::password_hash::Error| {
            anyhow::anyhow!(
                "{} is not an argon2 password hash: {e}",
                self.path.display()
            )
        };
        let hash = PasswordHash::new(&text).map_err(bad)?;
        let algorithm = Algorithm::try_from(hash.algorithm).map_err(bad)?;
        let version = hash
            .version
            .map(Version::try_from)
            .transpose()
            .map_err(|e| bad(e.into()))?
            .unwrap_or_default();
        let params = Params::try_from(&hash).map_err(bad)?;
        let expected = hash
            .hash
            .ok_or_else(|| anyhow::anyhow!("{} holds no hash", self.path.display()))?;
        let mut salt = [0u8; 64];
        let salt = hash
            .salt
            .ok_or_else(|| anyhow::anyhow!("{} holds no salt", self.path.display()))?
            .decode_b64(&mut salt)
            .map_err(bad)?;
        let blocks = params.block_count();
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        let mut out = vec![0u8; expected.len()];
        Argon2::new(algorithm, version, params)
            .hash_password_into_with_memory(
                password.as_bytes(),
                salt,
                &mut out,
                &mut memory[..blocks],
            )
            .map_err(|e| anyhow::anyhow!("cannot check the password: {e}"))?;
        Ok(punktfunk_certs::ct_eq(&out, expected.as_bytes()))
    }

    /// The stored hash (PHC string), as the file holds it now.
    pub(crate) fn hash(&self) -> anyhow::Result<String> {
        let text = punktfunk_certs::fsutil::read_to_string(&self.path)
            .with_context(|| format!("cannot read {}", self.path.display()))?;
        Ok(text.trim().to_owned())
    }

    /// What identifies the file's current version: a change (such as
    /// `console set-password`, which replaces the file) changes it.
    pub(crate) fn stamp(&self) -> Option<Stamp> {
        std::fs::symlink_metadata(&self.path).ok().map(|m| Stamp {
            dev: m.dev(),
            ino: m.ino(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            len: m.len(),
        })
    }
}

/// A version of the password file, see [`PasswordFile::stamp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    dev: u64,
    ino: u64,
    mtime_ns: i128,
    len: u64,
}

/// A logged-in browser.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) csrf: String,
    created: Instant,
    last_used: Instant,
}

/// The live sessions, keyed by the cookie's token. They are all dropped
/// when the password file changes: a new password ends every session.
#[derive(Debug)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    password: PasswordFile,
    /// The password file's version the sessions belong to.
    stamp: Mutex<Option<Stamp>>,
}

pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Sessions {
    /// No sessions yet; they will belong to the current version of `password`.
    pub(crate) fn new(password: PasswordFile) -> Self {
        let stamp = password.stamp();
        Self {
            map: Mutex::default(),
            password,
            stamp: Mutex::new(stamp),
        }
    }

    /// The session map, emptied first if the password changed since the
    /// sessions were made (one `stat` per request).
    fn current(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        let now = self.password.stamp();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let mut stamp = self.stamp.lock().unwrap_or_else(|p| p.into_inner());
        if *stamp != now {
            if !map.is_empty() {
                tracing::info!(
                    sessions = map.len(),
                    "console: the password changed; every session ended"
                );
            }
            map.clear();
            *stamp = now;
        }
        map
    }

    /// Starts a session; returns (cookie token, csrf token).
    pub(crate) fn create(&self, now: Instant) -> (String, String) {
        let mut map = self.current();
        map.retain(|_, s| alive(s, now));
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        let token = random_token();
        let csrf = random_token();
        map.insert(
            token.clone(),
            Session {
                csrf: csrf.clone(),
                created: now,
                last_used: now,
            },
        );
        (token, csrf)
    }

    /// The session for `token` if it is alive; refreshes its idle timer.
    pub(crate) fn get(&self, token: &str, now: Instant) -> Option<Session> {
        let mut map = self.current();
        let session = map.get_mut(token)?;
        if !alive(session, now) {
            map.remove(token);
            return None;
        }
        session.last_used = now;
        Some(session.clone())
    }

    pub(crate) fn remove(&self, token: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token);
    }
}

fn alive(s: &Session, now: Instant) -> bool {
    now.saturating_duration_since(s.created) < SESSION_LIFETIME
        && now.saturating_duration_since(s.last_used) < SESSION_IDLE
}

/// Why a login attempt was not checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// This address used its attempts; it may try again after the wait.
    Address(Duration),
    /// The global budget is spent (a flood); try again shortly.
    Budget(Duration),
    /// This known browser used its attempts; it may try again after the wait.
    Browser(Duration),
    /// Every check slot is busy; try again shortly.
    Busy,
}

/// The right to run one password check: the check slot, which is the
/// argon2 memory buffer it runs in; given back on drop.
pub(crate) struct CheckPermit(OwnedMutexGuard<Vec<Block>>);

impl CheckPermit {
    /// The argon2 memory this check runs in.
    pub(crate) fn memory(&mut self) -> &mut Vec<Block> {
        &mut self.0
    }
}

/// Pays for login attempts before the password is checked (module docs).
#[derive(Debug)]
pub(crate) struct LoginLimiter {
    per_address: Mutex<HashMap<AddressKey, (u32, Instant)>>,
    /// Attempts per known browser (valid cookie id), see [`Self::admit_known`].
    per_browser: Mutex<HashMap<BrowserId, (u32, Instant)>>,
    budget: Mutex<TokenBucket>,
    /// The one argon2 memory buffer (kept once made: 19 MiB with the
    /// default parameters); its lock is the check slot, so one check runs
    /// at a time (~25 ms each, well above the budget).
    memory: Arc<tokio::sync::Mutex<Vec<Block>>>,
    checks: AtomicU64,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        Self {
            per_address: Mutex::default(),
            per_browser: Mutex::default(),
            // [`CHECKS_PER_SECOND`] a second, as many at most.
            budget: Mutex::new(TokenBucket::new(
                f64::from(CHECKS_PER_SECOND),
                f64::from(CHECKS_PER_SECOND),
            )),
            memory: Arc::default(),
            checks: AtomicU64::new(0),
        }
    }
}

impl LoginLimiter {
    /// Pays for one password check from `key`, or says why not. The attempt
    /// is counted against the address here, before the check runs, so
    /// concurrent attempts from one address get at most [`MAX_FAILURES`]
    /// checks per window.
    pub(crate) fn admit(&self, key: AddressKey, now: Instant) -> Result<CheckPermit, Refusal> {
        // Held throughout, so concurrent attempts from one address are
        // counted one after the other.
        let mut map = self.per_address.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.get(&key).copied();
        let count = match entry {
            Some((n, since)) if now.saturating_duration_since(since) < FAILURE_WINDOW => {
                if n >= MAX_FAILURES {
                    return Err(Refusal::Address(
                        FAILURE_WINDOW - now.saturating_duration_since(since),
                    ));
                }
                (n + 1, since)
            }
            _ => (1, now),
        };
        // Cheapest refusal first; a slot not used is given back on drop.
        let slot = self
            .memory
            .clone()
            .try_lock_owned()
            .map_err(|_| Refusal::Busy)?;
        self.take_token(now).map_err(Refusal::Budget)?;
        if entry.is_none() && map.len() >= MAX_TRACKED {
            map.retain(|_, (_, since)| now.saturating_duration_since(*since) < FAILURE_WINDOW);
            if map.len() >= MAX_TRACKED {
                if let Some(oldest) = map.iter().min_by_key(|(_, (_, s))| *s).map(|(k, _)| *k) {
                    map.remove(&oldest);
                }
            }
        }
        map.insert(key, count);
        self.checks.fetch_add(1, Ordering::Relaxed);
        Ok(CheckPermit(slot))
    }

    /// Pays for one password check from a known browser: counted against
    /// its cookie ([`MAX_KNOWN_FAILURES`] per window, before the check), not
    /// against its address or the global budget, and it queues for the
    /// check slot (fairly, for at most [`KNOWN_SLOT_WAIT`]) where an unknown
    /// attempt is turned away. Only the host can make a valid cookie, so
    /// what waits here is bounded by the browsers the owner logged in with.
    pub(crate) async fn admit_known(
        &self,
        id: BrowserId,
        now: Instant,
    ) -> Result<CheckPermit, Refusal> {
        {
            let mut map = self.per_browser.lock().unwrap_or_else(|p| p.into_inner());
            let count = match map.get(&id).copied() {
                Some((n, since)) if now.saturating_duration_since(since) < FAILURE_WINDOW => {
                    if n >= MAX_KNOWN_FAILURES {
                        return Err(Refusal::Browser(
                            FAILURE_WINDOW - now.saturating_duration_since(since),
                        ));
                    }
                    (n + 1, since)
                }
                _ => (1, now),
            };
            if map.len() >= MAX_TRACKED && !map.contains_key(&id) {
                map.retain(|_, (_, since)| now.saturating_duration_since(*since) < FAILURE_WINDOW);
                if map.len() >= MAX_TRACKED {
                    if let Some(oldest) = map.iter().min_by_key(|(_, (_, s))| *s).map(|(k, _)| *k) {
                        map.remove(&oldest);
                    }
                }
            }
            map.insert(id, count);
        }
        let slot = tokio::time::timeout(KNOWN_SLOT_WAIT, self.memory.clone().lock_owned())
            .await
            .map_err(|_| Refusal::Busy)?;
        self.checks.fetch_add(1, Ordering::Relaxed);
        Ok(CheckPermit(slot))
    }

    /// The right password from a known browser: its count starts afresh.
    pub(crate) fn succeeded_known(&self, id: BrowserId) {
        self.per_browser
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    fn take_token(&self, now: Instant) -> Result<(), Duration> {
        self.budget
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(now)
    }

    /// The right password: the address starts afresh.
    pub(crate) fn succeeded(&self, key: AddressKey) {
        self.per_address
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
    }

    /// Password checks run since start.
    pub(crate) fn checks(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hash_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let file = PasswordFile::new(dir.path());
        let pw = file.generate().unwrap();
        assert!(pw.len() >= 20);
        let stored = std::fs::read_to_string(dir.path().join(PASSWORD_FILE)).unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(!stored.contains(&pw));
        let mut memory = Vec::new();
        assert!(file.verify(&pw, &mut memory).unwrap());
        assert!(!file.verify("wrong", &mut memory).unwrap());
        assert_eq!(memory.len(), Params::default().block_count());
    }

    #[test]
    fn sessions_expire_when_idle_or_old() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sessions::new(PasswordFile::new(dir.path()));
        let t0 = Instant::now();
        let (tok, csrf) = s.create(t0);
        assert_eq!(s.get(&tok, t0).unwrap().csrf, csrf);
        assert!(s.get("nope", t0).is_none());
        assert!(s.get(&tok, t0 + SESSION_IDLE).is_none());
        let (tok, _) = s.create(t0);
        let mut t = t0;
        while t < t0 + SESSION_LIFETIME - SESSION_IDLE {
            t += SESSION_IDLE / 2;
            assert!(s.get(&tok, t).is_some());
        }
        assert!(s.get(&tok, t0 + SESSION_LIFETIME).is_none());
    }

    fn key(ip: &str) -> AddressKey {
        AddressKey::of(ip.parse().unwrap())
    }

    #[test]
    fn attempts_are_counted_before_the_check() {
        let r = LoginLimiter::default();
        let t0 = Instant::now();
        let ip = key("192.0.2.1");
        for _ in 0..MAX_FAILURES {
            // Each permit is dropped at once, as a finished check would be.
            assert!(r.admit(ip, t0).is_ok());
        }
        assert!(matches!(r.admit(ip, t0), Err(Refusal::Address(_))));
        assert!(r.admit(key("192.0.2.2"), t0).is_ok());
        // The window passes (and the budget refills).
        let later = t0 + FAILURE_WINDOW;
        assert!(r.admit(ip, later).is_ok());
        r.succeeded(ip);
        assert_eq!(r.checks(), u64::from(MAX_FAILURES) + 2);
    }

    #[test]
    fn checks_in_flight_are_bounded() {
        let r = LoginLimiter::default();
        let t0 = Instant::now();
        // One check at a time.
        let held: Vec<_> = (0..1u8)
            .map(|i| r.admit(key(&format!("10.0.0.{i}")), t0).unwrap())
            .collect();
        assert!(matches!(r.admit(key("10.0.1.1"), t0), Err(Refusal::Busy)));
        drop(held);
        assert!(r.admit(key("10.0.1.1"), t0).is_ok());
    }

    #[test]
    fn the_global_budget_holds_whatever_the_number_of_addresses() {
        let r = LoginLimiter::default();
        let t0 = Instant::now();
        let mut checked = 0;
        // 5,000 addresses, one attempt each, within one second.
        for i in 0..5000u32 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            let at = t0 + Duration::from_micros(u64::from(i) * 200);
            if r.admit(AddressKey::of(ip.into()), at).is_ok() {
                checked += 1;
            }
        }
        // The burst plus one second of refill.
        assert!(checked <= 2 * CHECKS_PER_SECOND, "{checked}");
        assert!(checked >= CHECKS_PER_SECOND, "{checked}");
        // IPv6 is counted per address, not per /64 (a home LAN is one
        // /64): an attacker's failures leave the owner next to it alone.
        let later = t0 + Duration::from_secs(100);
        let attacker = key("2001:db8:a::66");
        for i in 0..MAX_FAILURES {
            assert!(r
                .admit(attacker, later + Duration::from_secs(u64::from(i)))
                .is_ok());
        }
        let then = later + Duration::from_secs(u64::from(MAX_FAILURES));
        assert!(matches!(r.admit(attacker, then), Err(Refusal::Address(_))));
        assert!(r.admit(key("2001:db8:a::2"), then).is_ok());
    }

    #[test]
    fn a_known_browser_has_its_own_budget_and_queues_for_the_check_slot() {
        use futures_util::FutureExt as _;
        use std::time::SystemTime;

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _runtime = rt.enter();
        let r = LoginLimiter::default();
        let t0 = Instant::now();
        let known = super::super::known::KnownBrowsers::from_host_key(b"host key");
        let browser = || {
            let now = SystemTime::now();
            known
                .verify(&known.issue("hash", now), "hash", now)
                .unwrap()
        };
        // A flood spent the global budget.
        for i in 0..100u32 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            let _ = r.admit(AddressKey::of(ip.into()), t0);
        }
        assert!(matches!(
            r.admit(key("10.9.9.9"), t0),
            Err(Refusal::Budget(_))
        ));
        // A known browser is counted on its own: five checks a window.
        let (a, b) = (browser(), browser());
        for _ in 0..MAX_KNOWN_FAILURES {
            assert!(rt.block_on(r.admit_known(a, t0)).is_ok());
        }
        assert!(matches!(
            rt.block_on(r.admit_known(a, t0)),
            Err(Refusal::Browser(_))
        ));
        r.succeeded_known(a);
        assert!(rt.block_on(r.admit_known(a, t0)).is_ok());
        // While a check runs, an unknown attempt is turned away; a known
        // one waits its turn.
        let later = t0 + Duration::from_secs(10);
        let running = r.admit(key("10.9.9.9"), later).unwrap();
        assert!(matches!(
            r.admit(key("10.9.9.8"), later),
            Err(Refusal::Busy)
        ));
        assert!(r.admit_known(b, later).now_or_never().is_none());
        drop(running);
        assert!(r.admit_known(b, later).now_or_never().unwrap().is_ok());
    }

    #[test]
    fn a_new_password_ends_every_session() {
        let dir = tempfile::tempdir().unwrap();
        let file = PasswordFile::new(dir.path());
        file.set("first password", None).unwrap();
        let s = Sessions::new(file.clone());
        let t0 = Instant::now();
        let (tok, _) = s.create(t0);
        assert!(s.get(&tok, t0).is_some());
        file.set("second password", None).unwrap();
        assert!(s.get(&tok, t0).is_none());
        let (tok, _) = s.create(t0);
        assert!(s.get(&tok, t0).is_some());
    }
}
