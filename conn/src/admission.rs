//! Which connections a door keeps: at most so many per source address and
//! so many in all, and when full, room is made by closing the oldest
//! connection that is not doing anything useful yet.
//!
//! What a connection is doing is the door's to say ([`Slot::set_use`]):
//!
//! - [`Use::Idle`]: still in its TLS handshake, idle between requests, or
//!   its peer does not read its reply. Evicted first, oldest first.
//! - [`Use::Waiting`]: a stranger's exchange that waits on a person or a
//!   deadline: a native knock waiting for approval, a connection waiting to
//!   send its `pake`, a `getservercert` held for its PIN. Evicted only when
//!   the door is full and nothing is idle, and then only from the address
//!   that holds the most connections, and only if it holds more than the
//!   newcomer's address: so strangers that wait cannot fill a door against
//!   everyone else (a trusted device, another knock), and each address keeps
//!   its fair share.
//! - [`Use::Busy`]: a real exchange (a trusted device's session, a request
//!   a handler is answering). Never evicted.
//!
//! So a flood of idle or slow connections, from however many addresses, can
//! only push out other such connections, never a real exchange, and never
//! grows past [`Limits::total`].
//!
//! A source address is the full address (an IPv4 address, an IPv6 /128;
//! an IPv4-mapped IPv6 address counts as the IPv4 address): on a home LAN
//! with SLAAC every machine shares one /64.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
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

/// What a connection is doing, as far as making room goes (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Use {
    /// Nothing useful yet, or no longer: evicted first.
    Idle = 0,
    /// A stranger's exchange waiting on a person or a deadline: evicted
    /// only from the address holding the most connections.
    Waiting = 1,
    /// A real exchange: never evicted.
    Busy = 2,
}

#[derive(Debug, Default)]
struct SlotState {
    using: AtomicU8,
    evicted: AtomicBool,
    waker: AtomicWaker,
}

impl SlotState {
    fn using(&self) -> Use {
        match self.using.load(Ordering::Acquire) {
            0 => Use::Idle,
            1 => Use::Waiting,
            _ => Use::Busy,
        }
    }

    fn set(&self, using: Use) {
        self.using.store(using as u8, Ordering::Release);
    }
}

impl Table {
    /// Evicts the oldest idle connection, from `address` only if given.
    /// Whether there was one.
    fn evict_oldest(&mut self, address: Option<IpAddr>) -> bool {
        let victim = self
            .open
            .iter()
            .find(|(_, o)| address.is_none_or(|a| o.address == a) && o.state.using() == Use::Idle)
            .map(|(id, _)| *id);
        victim.is_some_and(|id| self.evict(id))
    }

    /// Evicts the oldest waiting connection of the address that holds the
    /// most connections among those with one waiting, if it holds more
    /// than `newcomer` does. Whether there was one.
    fn evict_fair_share(&mut self, newcomer: IpAddr) -> bool {
        let mine = self.per_address.get(&newcomer).copied().unwrap_or(0);
        // Oldest first, so among addresses holding as many, the one whose
        // waiting connection is oldest loses it.
        let mut best: Option<(usize, u64)> = None;
        for (id, o) in &self.open {
            if o.state.using() != Use::Waiting {
                continue;
            }
            let held = self.per_address.get(&o.address).copied().unwrap_or(0);
            if held > mine && best.is_none_or(|(most, _)| held > most) {
                best = Some((held, *id));
            }
        }
        best.is_some_and(|(_, id)| self.evict(id))
    }

    fn evict(&mut self, id: u64) -> bool {
        match self.remove(id) {
            Some(open) => {
                open.state.evicted.store(true, Ordering::Release);
                open.state.waker.wake();
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

    /// Takes a place for a new connection from `peer`. If the address is
    /// at its cap, its own oldest idle connection is evicted; if the door
    /// is full, the oldest idle connection, or else a waiting one of the
    /// address holding the most (module docs). Refused if there is none.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, Refused> {
        let address = peer.to_canonical();
        let mut t = self.table();
        let from_here = t.per_address.get(&address).copied().unwrap_or(0);
        if from_here >= self.limits.per_address && !t.evict_oldest(Some(address)) {
            return Err(Refused::Address(address, from_here));
        }
        if t.open.len() >= self.limits.total
            && !t.evict_oldest(None)
            && !t.evict_fair_share(address)
        {
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
        self.set_use(if busy { Use::Busy } else { Use::Idle });
    }

    /// Says what the connection is doing (module docs).
    pub fn set_use(&self, using: Use) {
        self.state.set(using);
    }

    /// Marks the connection busy unless it was evicted already; whether it
    /// was not. Atomic with eviction: a connection about to do something
    /// that must not be cut short (take the PIN) holds its place first.
    pub fn hold(&self) -> bool {
        let _table = self.admission.table();
        if self.is_evicted() {
            return false;
        }
        self.state.set(Use::Busy);
        true
    }

    /// A handle that can say what this connection is doing from elsewhere
    /// (a request handler that holds its request for a person).
    pub fn user(&self) -> SlotUse {
        SlotUse(self.state.clone())
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

/// Says what an admitted connection is doing; see [`Slot::user`].
#[derive(Debug, Clone)]
pub struct SlotUse(Arc<SlotState>);

impl SlotUse {
    /// What it is doing now.
    pub fn get(&self) -> Use {
        self.0.using()
    }

    /// Marks it as doing `using` (a no-op once the connection is gone).
    pub fn set(&self, using: Use) {
        self.0.set(using);
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
    fn waiting_connections_give_way_to_a_fair_share_only() {
        let door = Admission::new(Limits {
            per_address: 4,
            total: 6,
        });
        // Two flooding addresses fill the door with waiting connections.
        let mut flood = Vec::new();
        for i in 0..6 {
            let s = door.admit(ip(&format!("10.0.0.{}", 1 + i % 2))).unwrap();
            s.set_use(Use::Waiting);
            flood.push(s);
        }
        // A newcomer takes the oldest waiting place of an address that
        // holds the most (3 each: the older one, 10.0.0.1).
        let owner = door.admit(ip("10.0.0.9")).unwrap();
        owner.set_use(Use::Busy);
        assert!(flood[0].is_evicted());
        assert_eq!(flood.iter().filter(|s| s.is_evicted()).count(), 1);
        // Then from the other, which now holds more.
        let knock = door.admit(ip("10.0.0.8")).unwrap();
        knock.set_use(Use::Waiting);
        assert!(flood[1].is_evicted());
        // Everyone holds 2, 2, 1, 1: a third newcomer takes from a 2.
        let third = door.admit(ip("10.0.0.7")).unwrap();
        third.set_use(Use::Waiting);
        assert_eq!(flood.iter().filter(|s| s.is_evicted()).count(), 3);
        // 1, 2, 1, 1, 1 now (10.0.0.1 lost its second-oldest): another
        // address with none evicts from the 2; then everyone holds 1, and
        // one that already holds as many as anyone is refused. Busy ones
        // are never touched.
        let fourth = door.admit(ip("10.0.0.6")).unwrap();
        fourth.set_use(Use::Waiting);
        assert_eq!(flood.iter().filter(|s| s.is_evicted()).count(), 4);
        assert_eq!(door.admit(ip("10.0.0.9")).unwrap_err(), Refused::Full(6));
        assert!(!owner.is_evicted() && !knock.is_evicted() && !third.is_evicted());
        // An idle connection still goes before any waiting one.
        let idle = door.admit(ip("10.0.0.5"));
        assert!(idle.is_ok());
        let idle = idle.unwrap();
        let _after = door.admit(ip("10.0.0.4")).unwrap();
        assert!(idle.is_evicted());
    }

    #[test]
    fn a_held_place_is_never_evicted_and_an_evicted_one_cannot_be_held() {
        let door = Admission::new(Limits {
            per_address: 1,
            total: 4,
        });
        let first = door.admit(ip("10.0.0.1")).unwrap();
        assert!(first.hold());
        assert!(door.admit(ip("10.0.0.1")).is_err(), "held: not evicted");
        first.set_busy(false);
        let second = door.admit(ip("10.0.0.1")).unwrap();
        assert!(first.is_evicted() && !first.hold());
        assert!(second.hold());
    }

    #[test]
    fn a_handle_marks_its_connection_from_elsewhere() {
        let door = Admission::new(Limits {
            per_address: 4,
            total: 1,
        });
        let held = door.admit(ip("10.0.0.1")).unwrap();
        let user = held.user();
        user.set(Use::Busy);
        assert_eq!(door.admit(ip("10.0.0.2")).unwrap_err(), Refused::Full(1));
        user.set(Use::Waiting);
        assert_eq!(user.get(), Use::Waiting);
        let _next = door.admit(ip("10.0.0.2")).unwrap();
        assert!(held.is_evicted());
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
