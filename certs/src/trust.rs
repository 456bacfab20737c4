//! The trust service: the registry and the gate behind one handle, with the
//! operations that touch both (approve a knock, pair with the armed PIN) and
//! one broadcast channel of [`TrustEvent`]s.
//!
//! This is the only non-pure part of the crate besides the registry's file
//! writes: it owns the locks, reads the clock (injected, see [`Clock`]) and
//! publishes the gate's events. Calls that write the registry block on fsync;
//! async callers run them on a blocking thread.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::broadcast;

use crate::events::TrustEvent;
use crate::fingerprint::Fingerprint;
use crate::gate::{Gate, GateConfig, GateError, PendingId, PendingOutcome};
use crate::name::Label;
use crate::registry::{Device, Registry, RegistryError, Via};

/// Where the service reads time from; tests inject a fake one.
pub trait Clock: Send + Sync + 'static {
    /// Monotonic now, for expiries.
    fn now(&self) -> Instant;
    /// Wall-clock now in unix seconds, for what is stored.
    fn unix(&self) -> u64;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn unix(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// Errors of operations that touch both the gate and the registry.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The gate refused.
    #[error(transparent)]
    Gate(#[from] GateError),
    /// The registry refused or could not save.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// Capacity of the event channel; a slow subscriber that falls further
/// behind gets `Lagged` and must re-read the state.
const EVENT_CAPACITY: usize = 1024;

/// Registry + gate + events. Share it as `Arc<Trust>`.
pub struct Trust {
    registry: Registry,
    gate: Mutex<Gate>,
    events: broadcast::Sender<TrustEvent>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

/// A locked gate; events it produced are published when it is dropped.
pub struct GateGuard<'a> {
    gate: MutexGuard<'a, Gate>,
    events: &'a broadcast::Sender<TrustEvent>,
}

impl std::ops::Deref for GateGuard<'_> {
    type Target = Gate;
    fn deref(&self) -> &Gate {
        &self.gate
    }
}

impl std::ops::DerefMut for GateGuard<'_> {
    fn deref_mut(&mut self) -> &mut Gate {
        &mut self.gate
    }
}

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        while let Some(event) = self.gate.poll_event() {
            let _ = self.events.send(event);
        }
    }
}

impl Trust {
    /// Opens the registry at `registry_path` and starts with a disarmed gate.
    pub fn open(
        registry_path: &std::path::Path,
        config: GateConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, RegistryError> {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let registry = Registry::open(registry_path, events.clone())?;
        Ok(Self {
            registry,
            gate: Mutex::new(Gate::new(config)),
            events,
            clock,
        })
    }

    /// The registry (lookups never block).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The clock.
    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// Monotonic now.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Subscribes to every change.
    pub fn subscribe(&self) -> broadcast::Receiver<TrustEvent> {
        self.events.subscribe()
    }

    /// Locks the gate. Its events are published when the guard drops.
    pub fn gate(&self) -> GateGuard<'_> {
        // The gate is plain data mutated in small steps; a panic mid-step
        // cannot break its invariants badly enough to stop serving.
        let gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        GateGuard {
            gate,
            events: &self.events,
        }
    }

    /// Whether the certificate with this fingerprint is paired. Never blocks.
    pub fn is_trusted(&self, fp: &Fingerprint) -> bool {
        self.registry.contains(fp)
    }

    /// Records that a paired device was seen now (coarse, see
    /// [`crate::registry::TOUCH_GRANULARITY_S`]).
    pub fn touch(&self, fp: &Fingerprint) -> Result<bool, RegistryError> {
        self.registry.touch(fp, self.clock.unix())
    }

    /// Whether [`Trust::touch`] would write (lock-free; lets a hot path skip
    /// the hop to a blocking thread).
    pub fn touch_due(&self, fp: &Fingerprint) -> bool {
        self.registry.touch_due(fp, self.clock.unix())
    }

    /// Stores a device admitted by a front door (`pin` or `open`).
    pub fn admit(&self, device: Device) -> Result<(), RegistryError> {
        self.registry.upsert(device)
    }

    /// Approves a waiting knock: the device is stored durably, then the
    /// request ends as `approved`.
    pub fn approve(&self, id: PendingId, label: Option<Label>) -> Result<Device, TrustError> {
        let mut gate = self.gate();
        let now = self.clock.now();
        let pending = gate.approvable(id, now)?;
        let mut device = Device::from_der(
            &pending.request.cert_der,
            pending.request.kind,
            pending.request.name.clone(),
            Via::Approval,
            self.clock.unix(),
        )?;
        device.label = label;
        // Holding the gate lock across the write keeps a concurrent deny or
        // expiry from ending the request between "stored" and "approved".
        self.registry.upsert(device.clone())?;
        gate.finish(id, PendingOutcome::Approved);
        Ok(device)
    }

    /// Revokes a device: removed durably, and its connections are told to end.
    pub fn revoke(&self, fp: &Fingerprint) -> Result<Device, RegistryError> {
        self.registry.remove(fp)
    }
}
