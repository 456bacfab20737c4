//! Known browsers: a long-lived cookie the host signs at each successful
//! login, so that a browser that has logged in before keeps its own way in
//! while strangers flood the login (the OWASP "device cookie" defence
//! against lockout).
//!
//! A login attempt that carries a valid cookie is counted against that
//! cookie ([`super::auth::LoginLimiter::admit_known`]: its own small budget,
//! and it waits for the check slot instead of being turned away), not
//! against the budget every unauthenticated attempt shares, which a flood
//! from rotating addresses keeps spent. A new browser during a flood may
//! have to wait; a known one logs in at once. The cookie proves only that
//! this browser logged in before: the password is checked as always.
//!
//! The cookie is `id ‖ issued ‖ tag`: 16 random bytes, the issue time (Unix
//! seconds, big-endian u64), and HMAC-SHA256 over both and the current
//! password hash, under a key derived from the host's private key (so there
//! is no other secret to keep, and a new host identity ends every cookie).
//! The host keeps no list: a cookie is valid while its tag verifies and it
//! is younger than [`KNOWN_LIFETIME`]. The password hash is in the tag, so
//! `console set-password` (a new hash, with a new salt, even for the same
//! password) invalidates every known-browser cookie at once.

use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// Name of the known-browser cookie (sent to `/api/login` only).
pub(crate) const KNOWN_COOKIE: &str = "pf_known";
/// The path the browser sends it to.
pub(crate) const KNOWN_COOKIE_PATH: &str = "/api/login";
/// How long a known-browser cookie is honoured after its login.
pub(crate) const KNOWN_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

const ID_LEN: usize = 16;
const TAG_LEN: usize = 32;
const COOKIE_LEN: usize = ID_LEN + 8 + TAG_LEN;
/// What the tag is for (domain separation from any other use of the key).
const TAG_CONTEXT: &[u8] = b"punktfunk console known browser v1\0";
/// What the key is derived for.
const KEY_CONTEXT: &[u8] = b"punktfunk console known-browser key v1";

type HmacSha256 = Hmac<Sha256>;

/// A verified known-browser cookie's id: what its attempts are counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct BrowserId([u8; ID_LEN]);

/// Issues and checks known-browser cookies.
pub(crate) struct KnownBrowsers {
    key: [u8; 32],
}

impl std::fmt::Debug for KnownBrowsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KnownBrowsers { .. }")
    }
}

impl KnownBrowsers {
    /// The signing key, derived from the host's private key (DER).
    pub(crate) fn from_host_key(private_key_der: &[u8]) -> Self {
        let mut mac = keyed(private_key_der);
        mac.update(KEY_CONTEXT);
        Self {
            key: mac.finalize().into_bytes().into(),
        }
    }

    /// A new cookie value for a browser that just logged in with the
    /// password whose stored hash is `password_hash`.
    pub(crate) fn issue(&self, password_hash: &str, now: SystemTime) -> String {
        let mut id = [0u8; ID_LEN];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let issued = unix(now).to_be_bytes();
        let tag = self.tag(password_hash, &id, &issued);
        let mut value = Vec::with_capacity(COOKIE_LEN);
        value.extend_from_slice(&id);
        value.extend_from_slice(&issued);
        value.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(value)
    }

    /// The cookie's id if `value` is a cookie this host issued under the
    /// current password hash and it has not expired; `None` for anything
    /// else (which is then an unknown browser, nothing worse).
    pub(crate) fn verify(
        &self,
        value: &str,
        password_hash: &str,
        now: SystemTime,
    ) -> Option<BrowserId> {
        // Checked before decoding: an oversized value costs nothing.
        if value.len() > COOKIE_LEN.div_ceil(3) * 4 {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(value).ok()?;
        if raw.len() != COOKIE_LEN {
            return None;
        }
        let (id, rest) = raw.split_at(ID_LEN);
        let (issued, tag) = rest.split_at(8);
        let want = self.tag(password_hash, id, issued);
        if !punktfunk_certs::ct_eq(tag, &want) {
            return None;
        }
        let issued = u64::from_be_bytes(issued.try_into().ok()?);
        let now = unix(now);
        // Issued in the future (a clock set back far) or too long ago.
        if issued > now.saturating_add(24 * 3600)
            || now.saturating_sub(issued) >= KNOWN_LIFETIME.as_secs()
        {
            return None;
        }
        Some(BrowserId(id.try_into().ok()?))
    }

    fn tag(&self, password_hash: &str, id: &[u8], issued: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = keyed(&self.key);
        mac.update(TAG_CONTEXT);
        // Length-prefixed, so the fields cannot slide into each other.
        mac.update(&(password_hash.len() as u64).to_be_bytes());
        mac.update(password_hash.as_bytes());
        mac.update(id);
        mac.update(issued);
        mac.finalize().into_bytes().into()
    }
}

fn keyed(key: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length.
    <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";

    #[test]
    fn a_cookie_verifies_until_it_expires() {
        let known = KnownBrowsers::from_host_key(b"host key");
        let t0 = SystemTime::now();
        let cookie = known.issue(HASH, t0);
        let id = known.verify(&cookie, HASH, t0).unwrap();
        let later = t0 + KNOWN_LIFETIME - Duration::from_secs(1);
        assert_eq!(known.verify(&cookie, HASH, later), Some(id));
        assert_eq!(known.verify(&cookie, HASH, t0 + KNOWN_LIFETIME), None);
        // Each login gets its own id.
        let other = known.verify(&known.issue(HASH, t0), HASH, t0).unwrap();
        assert_ne!(other, id);
    }

    #[test]
    fn a_new_password_another_host_or_any_change_voids_a_cookie() {
        let known = KnownBrowsers::from_host_key(b"host key");
        let t0 = SystemTime::now();
        let cookie = known.issue(HASH, t0);
        assert!(known.verify(&cookie, "$argon2id$another", t0).is_none());
        let elsewhere = KnownBrowsers::from_host_key(b"another host key");
        assert!(elsewhere.verify(&cookie, HASH, t0).is_none());
        let mut raw = URL_SAFE_NO_PAD.decode(&cookie).unwrap();
        for i in 0..raw.len() {
            raw[i] ^= 1;
            assert!(
                known
                    .verify(&URL_SAFE_NO_PAD.encode(&raw), HASH, t0)
                    .is_none(),
                "byte {i}"
            );
            raw[i] ^= 1;
        }
        // The issue time is signed: it cannot be moved forward.
        let mut fresher = raw.clone();
        fresher[ID_LEN..ID_LEN + 8].copy_from_slice(&unix(t0 + KNOWN_LIFETIME).to_be_bytes());
        let later = t0 + KNOWN_LIFETIME + Duration::from_secs(10);
        assert!(known
            .verify(&URL_SAFE_NO_PAD.encode(&fresher), HASH, later)
            .is_none());
        for junk in [
            "",
            "x",
            &"A".repeat(75),
            &"A".repeat(10_000),
            &cookie[1..],
            "!!!",
        ] {
            assert!(known.verify(junk, HASH, t0).is_none(), "{junk:?}");
        }
    }
}
