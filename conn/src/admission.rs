//! Which connections a door keeps: at most so many per source address and
//! so many in all, and when full, room is made by closing the oldest
//! connection that is not doing anything useful yet.
//!
//! "Useful" is the door's to say ([`Slot::set_busy`]): an HTTP door marks a
//! connection busy while a handler works on its request (a `getservercert`
//! held for its PIN must not be evicted), the native door once `hello`
//! arrived. A connection still in its TLS handshake, idle between requests,
//! or whose peer does not read its reply is evictable. So a flood of idle
//! or slow connections, from however many addresses, can only push out
//! other such connections, never a real exchange, and never grows past
//! [`Limits::total`].
//!
//! A source address is the full address (an IPv4 address, an IPv6 /128;
//! an IPv4-mapped IPv6 address counts as the IPv4 address): on a home LAN
//! with SLAAC every machine shares one /64.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

/// How many connections a door keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// From one source address.
    pub per_address: usize,
    /// In all, on this door.
    pub total: usize,
}

impl Limits {
    /// A plain-HTTP door (GameStream 47989): 32 per address, 256 in all
    /// (docs/limits.md).
    pub const PLAIN: Limits = Limits {
        per_address: 32,
        total: 256,
    };
    /// A TLS door (GameStream HTTPS, console): 32 per address, 128 in all
    /// (a TLS session costs several times a plain connection).
    pub const TLS: Limits = Limits {
        per_address: 32,
        total: 128,
    };
}

/// Why a new connection was closed right after `accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Every connection from this address is busy.
    #[error("{0} already has {1} busy connections open on this port")]
    Address(IpAddr, usize),
    /// Every connection of this door is busy.
    #[error("all {0} connections of this port are busy")]
    Full(usize),
}

/// The connections of one door (one listening port).
#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    next: u64,
    /// Oldest first.
    open: BTreeMap<u64, Open>,
    per_address: HashMap<IpAddr, usize>,
}

#[derive(Debug)]
struct Open {
    address: IpAddr,
    state: Arc<SlotState>,
}

#[derive(Debug, Default)]
struct SlotState {
    busy: AtomicBool,
    evicted: AtomicBool,
    waker: AtomicWaker,
}

impl Table {
    /// Evicts the oldest connection that is not busy, from `address` only if
    /// given. Whether there was one.
    fn evict_oldest(&mut self, address: Option<IpAddr>) -> bool {
        let victim = self
            .open
            .iter()
            .find(|(_, o)| {
                address.is_none_or(|a| o.address == a) && !o.state.busy.load(Ordering::Acquire)
            })
            .map(|(id, _)| *id);
        match victim {
            Some(id) => {
                if let Some(open) = self.remove(id) {
                    open.state.evicted.store(true, Ordering::Release);
                    open.state.waker.wake();
                }
                true
            }
            None => false,
        }
    }

    fn remove(&mut self, id: u64) -> Option<Open> {
        let open = self.open.remove(&id)?;
        if let Some(n) = self.per_address.get_mut(&open.address) {
            *n -= 1;
            if *n == 0 {
                self.per_address.remove(&open.address);
            }
        }
        Some(open)
    }
}

impl Admission {
    /// An empty table with these limits.
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            table: Mutex::default(),
        })
    }

    /// The limits this door keeps.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // Plain map updates: a panic elsewhere cannot leave it half-changed.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a place for a new connection from `peer`, evicting the oldest
    /// evictable connection of the same address (if the address is at its
    /// cap) or of the door (if the door is full); refused if every one of
    /// them is busy.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, Refused> {
        let address = peer.to_canonical();
        let mut t = self.table();
        let from_here = t.per_address.get(&address).copied().unwrap_or(0);
        if from_here >= self.limits.per_address && !t.evict_oldest(Some(address)) {
            return Err(Refused::Address(address, from_here));
        }
        if t.open.len() >= self.limits.total && !t.evict_oldest(None) {
            return Err(Refused::Full(self.limits.total));
        }
        Ok(self.insert(&mut t, address))
    }

    /// Takes a place for `peer` only if the address and the door have room,
    /// evicting nothing: for places that are all equally useful (the native
    /// door's connections waiting for their `pake`).
    pub fn admit_if_room(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, Refused> {
        let address = peer.to_canonical();
        let mut t = self.table();
        let from_here = t.per_address.get(&address).copied().unwrap_or(0);
        if from_here >= self.limits.per_address {
            return Err(Refused::Address(address, from_here));
        }
        if t.open.len() >= self.limits.total {
            return Err(Refused::Full(self.limits.total));
        }
        Ok(self.insert(&mut t, address))
    }

    fn insert(self: &Arc<Self>, t: &mut Table, address: IpAddr) -> Slot {
        let id = t.next;
        t.next += 1;
        let state = Arc::new(SlotState::default());
        t.open.insert(
            id,
            Open {
                address,
                state: state.clone(),
            },
        );
        *t.per_address.entry(address).or_default() += 1;
        Slot {
            admission: self.clone(),
            id,
            state,
        }
    }

    /// Connections open now (evicted ones no longer count).
    pub fn open(&self) -> usize {
        self.table().open.len()
    }
}

/// One admitted connection's place; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    admission: Arc<Admission>,
    id: u64,
    state: Arc<SlotState>,
}

impl Slot {
    /// Marks the connection as doing something useful (not evictable) or
    /// not (evictable, oldest first).
    pub fn set_busy(&self, busy: bool) {
        self.state.busy.store(busy, Ordering::Release);
    }

    /// Whether the door evicted this connection to make room; registers
    /// the task to be woken when that happens.
    pub fn poll_evicted(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.state.evicted.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        self.state.waker.register(cx.waker());
        if self.state.evicted.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Resolves when the door evicts this connection.
    pub async fn evicted(&self) {
        std::future::poll_fn(|cx| self.poll_evicted(cx)).await
    }

    /// Whether the door evicted this connection.
    pub fn is_evicted(&self) -> bool {
        self.state.evicted.load(Ordering::Acquire)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.admission.table();
        // An evicted slot was taken out when it was evicted.
        if !self.is_evicted() {
            t.remove(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_full_address_evicts_its_own_oldest_idle_connection() {
        let door = Admission::new(Limits {
            per_address: 2,
            total: 10,
        });
        let a1 = door.admit(ip("10.0.0.1")).unwrap();
        let a2 = door.admit(ip("10.0.0.1")).unwrap();
        let b = door.admit(ip("10.0.0.2")).unwrap();
        let a3 = door.admit(ip("10.0.0.1")).unwrap();
        assert!(a1.is_evicted());
        assert!(!a2.is_evicted() && !b.is_evicted() && !a3.is_evicted());
        assert_eq!(door.open(), 3);
        drop(a1);
        assert_eq!(door.open(), 3, "an evicted slot is not counted twice");
    }

    #[test]
    fn busy_connections_are_never_evicted() {
        let door = Admission::new(Limits {
            per_address: 2,
            total: 3,
        });
        let a1 = door.admit(ip("10.0.0.1")).unwrap();
        a1.set_busy(true);
        let a2 = door.admit(ip("10.0.0.1")).unwrap();
        a2.set_busy(true);
        assert_eq!(
            door.admit(ip("10.0.0.1")).unwrap_err(),
            Refused::Address(ip("10.0.0.1"), 2)
        );
        let b = door.admit(ip("10.0.0.2")).unwrap();
        // Full: the idle one goes, whoever is older.
        let c = door.admit(ip("10.0.0.3")).unwrap();
        assert!(b.is_evicted() && !a1.is_evicted() && !a2.is_evicted());
        c.set_busy(true);
        assert_eq!(door.admit(ip("10.0.0.4")).unwrap_err(), Refused::Full(3));
        a2.set_busy(false);
        let _d = door.admit(ip("10.0.0.4")).unwrap();
        assert!(a2.is_evicted());
    }

    #[test]
    fn every_ipv6_address_is_its_own_and_mapped_ipv4_is_ipv4() {
        let door = Admission::new(Limits {
            per_address: 1,
            total: 10,
        });
        let one = door.admit(ip("2001:db8:a::1")).unwrap();
        let two = door.admit(ip("2001:db8:a::2")).unwrap();
        assert!(
            !one.is_evicted() && !two.is_evicted(),
            "one /64, two addresses"
        );
        let v4 = door.admit(ip("10.0.0.1")).unwrap();
        let mapped = door.admit(ip("::ffff:10.0.0.1")).unwrap();
        assert!(v4.is_evicted() && !mapped.is_evicted());
    }

    #[test]
    fn admit_if_room_refuses_instead_of_evicting() {
        let door = Admission::new(Limits {
            per_address: 1,
            total: 2,
        });
        let a = door.admit_if_room(ip("10.0.0.1")).unwrap();
        assert!(door.admit_if_room(ip("10.0.0.1")).is_err());
        let _b = door.admit_if_room(ip("10.0.0.2")).unwrap();
        assert_eq!(
            door.admit_if_room(ip("10.0.0.3")).unwrap_err(),
            Refused::Full(2)
        );
        assert!(!a.is_evicted());
        drop(a);
        assert!(door.admit_if_room(ip("10.0.0.1")).is_ok());
    }

    #[test]
    fn eviction_wakes_the_connection() {
        let door = Admission::new(Limits {
            per_address: 1,
            total: 10,
        });
        let first = door.admit(ip("10.0.0.1")).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let wait = async { first.evicted().await };
            let evict = async {
                tokio::task::yield_now().await;
                door.admit(ip("10.0.0.1")).unwrap()
            };
            let ((), _second) = tokio::join!(wait, evict);
        });
    }
}
