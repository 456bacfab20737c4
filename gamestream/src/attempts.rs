//! The rules that span `/pair` requests, as a sans-IO map: who a pairing
//! attempt belongs to, who wins when a client asks again, how many may be
//! in flight, and when one is given up. The HTTP shell locks it, feeds it
//! what happened, and ends the requests it hands back in the trust service.
//!
//! - An attempt is keyed by (`uniqueid`, peer IP): stock clients all send
//!   the same `uniqueid`, so the address tells two devices apart
//!   (research §10.5).
//! - A new phase 1 from the same key replaces the attempt in flight
//!   ([`Attempts::begin`] hands back the request to end as `replaced`); a
//!   step that comes back after a newer phase 1 loses
//!   ([`Attempts::put_back`]).
//! - At most `cap` attempts are in flight; a new key is admitted only after
//!   the attempts whose clients stopped between phases are given up
//!   ([`Attempts::admit`]).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use punktfunk_certs::PendingId;

use crate::UniqueId;

/// (`uniqueid`, peer IP): who a pairing attempt belongs to.
pub type Key = (UniqueId, IpAddr);

/// What the map needs to know about an attempt.
pub trait Tracked {
    /// The trust service's request the attempt pairs.
    fn request(&self) -> PendingId;
    /// Its client stopped between phases for too long.
    fn is_expired(&self, now: Instant) -> bool;
}

/// The attempts in flight.
#[derive(Debug)]
pub struct Attempts<T> {
    map: HashMap<Key, T>,
    cap: usize,
}

/// No room for another attempt: every place is taken by a live one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl<T: Tracked> Attempts<T> {
    /// At most `cap` in flight.
    pub fn new(cap: usize) -> Self {
        Self {
            map: HashMap::new(),
            cap,
        }
    }

    /// Whether a phase 1 from `key` may start now ([`Full`] if not), and
    /// the attempts given up to make room, either way (end their requests
    /// as `abandoned`). A key already in flight always may: it replaces its
    /// own attempt.
    pub fn admit(&mut self, key: &Key, now: Instant) -> (Result<(), Full>, Vec<T>) {
        if self.has_room_for(key) {
            return (Ok(()), Vec::new());
        }
        let given_up = self.expired(now);
        let room = if self.has_room_for(key) {
            Ok(())
        } else {
            Err(Full)
        };
        (room, given_up)
    }

    fn has_room_for(&self, key: &Key) -> bool {
        self.map.len() < self.cap || self.map.contains_key(key)
    }

    /// Starts `attempt` for `key`; the attempt it replaces, if any (end its
    /// request as `replaced`: its held phase 1 answers `Superseded`).
    pub fn begin(&mut self, key: Key, attempt: T) -> Option<T> {
        self.map.insert(key, attempt)
    }

    /// Takes the attempt of `key` for its next step.
    pub fn take(&mut self, key: &Key) -> Option<T> {
        self.map.remove(key)
    }

    /// Takes the attempt of `key` only if it still pairs request `id`.
    pub fn take_if(&mut self, key: &Key, id: PendingId) -> Option<T> {
        match self.map.get(key) {
            Some(a) if a.request() == id => self.map.remove(key),
            _ => None,
        }
    }

    /// Puts an attempt back after its step, unless a newer phase 1 from the
    /// same key took its place meanwhile: then the newer one wins and
    /// `attempt` is handed back (end its request as `replaced`).
    pub fn put_back(&mut self, key: Key, attempt: T) -> Option<T> {
        match self.map.entry(key) {
            Entry::Occupied(_) => Some(attempt),
            Entry::Vacant(v) => {
                v.insert(attempt);
                None
            }
        }
    }

    /// Gives up the attempts whose clients stopped between phases (end
    /// their requests as `abandoned`).
    pub fn expired(&mut self, now: Instant) -> Vec<T> {
        let keys: Vec<Key> = self
            .map
            .iter()
            .filter(|(_, a)| a.is_expired(now))
            .map(|(k, _)| k.clone())
            .collect();
        keys.iter().filter_map(|k| self.map.remove(k)).collect()
    }

    /// How many are in flight.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[derive(Debug, PartialEq)]
    struct Fake {
        id: PendingId,
        stale_after: Instant,
    }

    impl Tracked for Fake {
        fn request(&self) -> PendingId {
            self.id
        }
        fn is_expired(&self, now: Instant) -> bool {
            now > self.stale_after
        }
    }

    fn fake(id: u32, stale_after: Instant) -> Fake {
        Fake {
            id: id.to_string().parse().unwrap(),
            stale_after,
        }
    }

    fn key(ip: [u8; 4]) -> Key {
        (UniqueId::parse("0123456789ABCDEF").unwrap(), ip.into())
    }

    #[test]
    fn a_new_phase_1_replaces_its_own_attempt_and_a_late_step_loses_to_it() {
        let t = Instant::now();
        let mut a = Attempts::new(4);
        assert!(a.begin(key([10, 0, 0, 1]), fake(1, t)).is_none());
        // Same uniqueid from another address: another device.
        assert!(a.begin(key([10, 0, 0, 2]), fake(2, t)).is_none());
        let replaced = a.begin(key([10, 0, 0, 1]), fake(3, t)).unwrap();
        assert_eq!(replaced.id.to_string(), "1");

        // A step of request 3 runs; meanwhile phase 1 again (request 4).
        let stepping = a.take(&key([10, 0, 0, 1])).unwrap();
        assert!(a.begin(key([10, 0, 0, 1]), fake(4, t)).is_none());
        let lost = a.put_back(key([10, 0, 0, 1]), stepping).unwrap();
        assert_eq!(lost.id.to_string(), "3", "the newer attempt wins");
        assert!(a.take_if(&key([10, 0, 0, 1]), lost.id).is_none());
        assert!(a
            .take_if(&key([10, 0, 0, 1]), "4".parse().unwrap())
            .is_some());
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn a_full_map_gives_up_stale_attempts_before_it_turns_a_client_away() {
        let t = Instant::now();
        let later = t + Duration::from_secs(60);
        let mut a = Attempts::new(2);
        a.begin(key([10, 0, 0, 1]), fake(1, t));
        a.begin(key([10, 0, 0, 2]), fake(2, later + Duration::from_secs(60)));
        // Full, but a key in flight may always ask again.
        assert_eq!(a.admit(&key([10, 0, 0, 2]), t), (Ok(()), vec![]));
        // A new key while nothing is stale: turned away, nothing given up.
        assert_eq!(a.admit(&key([10, 0, 0, 3]), t), (Err(Full), vec![]));
        // Later the first client's attempt is stale: it makes room.
        let (room, given_up) = a.admit(&key([10, 0, 0, 3]), later);
        assert_eq!(room, Ok(()));
        assert_eq!(given_up, vec![fake(1, t)]);
        assert_eq!(a.len(), 1);
    }
}
