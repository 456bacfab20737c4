//! Console authentication: the admin password (argon2id hash on disk),
//! sessions with their CSRF tokens, and the login rate limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::rngs::OsRng;
use rand::RngCore;

/// File holding the PHC-format argon2id hash of the console password.
pub(crate) const PASSWORD_FILE: &str = "console.passwd";
/// Shortest password `console set-password` accepts.
pub(crate) const MIN_PASSWORD_CHARS: usize = 8;

/// A session ends this long after login, whatever happens.
pub(crate) const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// A session ends after this long without a request.
pub(crate) const SESSION_IDLE: Duration = Duration::from_secs(3600);
/// At most this many sessions exist; the oldest is dropped beyond that.
const MAX_SESSIONS: usize = 256;

/// Failed logins allowed from one address per window before 429.
pub(crate) const MAX_FAILURES: u32 = 5;
/// The rate-limit window.
pub(crate) const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at most (a flood from many addresses cannot grow memory).
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
        self.path.exists()
    }

    /// Stores the argon2id hash of `password` (never the password).
    pub(crate) fn set(&self, password: &str) -> anyhow::Result<()> {
        let salt = SaltString::generate(&mut OsRng);
        let hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?
            .to_string();
        punktfunk_certs::fsutil::write_atomic(&self.path, format!("{hash}\n").as_bytes())
            .with_context(|| format!("cannot write {}", self.path.display()))
    }

    /// Creates a strong random password, stores its hash, returns it.
    pub(crate) fn generate(&self) -> anyhow::Result<String> {
        let mut bytes = [0u8; 15];
        OsRng.fill_bytes(&mut bytes);
        let password = URL_SAFE_NO_PAD.encode(bytes);
        self.set(&password)?;
        Ok(password)
    }

    /// Checks `password` against the stored hash. Reads the file each time, so
    /// `console set-password` takes effect on a running host. Slow on
    /// purpose (argon2id): call from a blocking thread.
    pub(crate) fn verify(&self, password: &str) -> anyhow::Result<bool> {
        let text = std::fs::read_to_string(&self.path)
            .with_context(|| format!("cannot read {}", self.path.display()))?;
        let hash = PasswordHash::new(text.trim())
            .map_err(|e| anyhow::anyhow!("{} is not a password hash: {e}", self.path.display()))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok())
    }
}

/// A logged-in browser.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) csrf: String,
    created: Instant,
    last_used: Instant,
}

/// The live sessions, keyed by the cookie's token.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Sessions {
    /// Starts a session; returns (cookie token, csrf token).
    pub(crate) fn create(&self, now: Instant) -> (String, String) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
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
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
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

/// Failed logins per address.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    map: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl RateLimiter {
    /// `Some(retry_after)` if `ip` must wait before trying again.
    pub(crate) fn blocked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let (count, since) = map.get(&ip)?;
        let elapsed = now.saturating_duration_since(*since);
        (*count >= MAX_FAILURES && elapsed < FAILURE_WINDOW).then(|| FAILURE_WINDOW - elapsed)
    }

    pub(crate) fn failed(&self, ip: IpAddr, now: Instant) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
            map.retain(|_, (_, since)| now.saturating_duration_since(*since) < FAILURE_WINDOW);
            if map.len() >= MAX_TRACKED {
                // Still full of fresh entries: a flood. Treat every address
                // in it alike rather than grow.
                return;
            }
        }
        let entry = map.entry(ip).or_insert((0, now));
        if now.saturating_duration_since(entry.1) >= FAILURE_WINDOW {
            *entry = (0, now);
        }
        entry.0 += 1;
    }

    pub(crate) fn succeeded(&self, ip: IpAddr) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&ip);
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
        assert!(file.verify(&pw).unwrap());
        assert!(!file.verify("wrong").unwrap());
    }

    #[test]
    fn sessions_expire_when_idle_or_old() {
        let s = Sessions::default();
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

    #[test]
    fn rate_limit_blocks_after_failures_then_recovers() {
        let r = RateLimiter::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES {
            assert!(r.blocked(ip, t0).is_none());
            r.failed(ip, t0);
        }
        assert!(r.blocked(ip, t0).is_some());
        assert!(r.blocked(other, t0).is_none());
        assert!(r.blocked(ip, t0 + FAILURE_WINDOW).is_none());
    }
}
