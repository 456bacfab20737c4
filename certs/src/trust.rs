//! The trust service: the registry and the gate behind one handle, with the
//! operations that touch both (approve a knock, pair with the armed PIN) and
//! one broadcast channel of [`TrustEvent`]s.
//!
//! This is the only non-pure part of the crate besides the registry's and
//! the audit trail's file writes: it owns the locks, reads the clock
//! (injected, see [`Clock`]), publishes the gate's events and records its
//! audit entries. Calls that write the registry block on fsync; async
//! callers run them on a blocking thread.
//!
//! Every decision is recorded in the audit trail ([`crate::audit`]) before
//! it is acknowledged: the operations here wait for their own entries; a
//! front door that changes the gate waits on [`Trust::audited`] before it
//! answers. A failure to record never undoes or blocks a decision: it is
//! logged, and returned to operators (console, CLI) as
//! [`TrustError::Audit`], whose message says the action took effect.

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::broadcast;

use crate::audit::{AuditConfig, AuditError, AuditLog, DeviceRef, Door, Entry, Event, Ticket};
use crate::events::TrustEvent;
use crate::fingerprint::Fingerprint;
use crate::gate::{Gate, GateConfig, GateError, Needs, Pending, PendingId, RequestEnd};
use crate::grant::{Access, AccessChange, Permissions, Preset};
use crate::name::Label;
use crate::registry::{
    Device, Devices, FrontDoor, Registry, RegistryError, Via, FORMAT_VERSION, REGISTRY_FILE,
    V1_COPY_FILE,
};

/// Where the service reads time from; tests inject a fake one.
pub trait Clock: Send + Sync + 'static {
    /// Monotonic now, for expiries.
    fn now(&self) -> Instant;
    /// Wall-clock now in unix seconds, for what is stored.
    fn unix(&self) -> u64;
    /// Wall-clock now since the Unix epoch, to the sub-second: when a
    /// stored time (whole seconds) comes. [`Clock::unix`] by default.
    fn since_epoch(&self) -> Duration {
        Duration::from_secs(self.unix())
    }
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn unix(&self) -> u64 {
        self.since_epoch().as_secs()
    }
    fn since_epoch(&self) -> Duration {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
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
    /// The audit trail could not be opened, or could not record a decision
    /// (which took effect).
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// What happened to a watched pending request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestUpdate {
    /// The console entered the PIN for it.
    PinEntered,
    /// It ended; `None` if so long ago that its outcome is forgotten, or
    /// the service is stopping.
    Ended(Option<RequestEnd>),
}

/// Who makes a decision: the console (from an address, maybe on a paired
/// device) or the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    /// Console or CLI.
    pub door: Door,
    /// The console user's address.
    pub address: Option<IpAddr>,
    /// The paired device the console was used on (over the native door).
    pub device: Option<Fingerprint>,
}

impl Actor {
    /// A console user at `address`.
    pub fn console(address: IpAddr) -> Self {
        Self {
            door: Door::Console,
            address: Some(address),
            device: None,
        }
    }

    /// The console on the paired device `device`, connected from
    /// `address` (docs/native-protocol.md § 4.10).
    pub fn console_on(device: Fingerprint, address: IpAddr) -> Self {
        Self {
            device: Some(device),
            ..Self::console(address)
        }
    }

    /// `punktfunk devices …` on the host machine.
    pub fn cli() -> Self {
        Self {
            door: Door::Cli,
            address: None,
            device: None,
        }
    }

    /// The host itself (arming at start, timers).
    pub fn host() -> Self {
        Self {
            door: Door::Host,
            address: None,
            device: None,
        }
    }

    /// An audit entry made by this actor ([`Trust::record`] names its
    /// device).
    pub fn entry(&self, event: Event) -> Entry {
        let mut entry = Entry::new(event, self.door);
        if let Some(fp) = self.device {
            entry.by = Some(DeviceRef {
                fingerprint: fp,
                name: String::new(),
                label: None,
            });
        }
        match self.address {
            Some(a) => entry.address(a),
            None => entry,
        }
    }
}

/// Capacity of the event channel; a slow subscriber that falls further
/// behind gets `Lagged` and must re-read the state.
const EVENT_CAPACITY: usize = 1024;

/// Registry + gate + events. Share it as `Arc<Trust>`.
pub struct Trust {
    pub(crate) registry: Registry,
    audit: AuditLog,
    gate: Mutex<Gate>,
    events: broadcast::Sender<TrustEvent>,
    clock: Arc<dyn Clock>,
    /// [`Trust::default_grant`]'s bits.
    default_grant: AtomicU32,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

/// A locked gate; events it produced are published, and its audit entries
/// queued, when it is dropped.
pub(crate) struct GateGuard<'a> {
    gate: MutexGuard<'a, Gate>,
    trust: &'a Trust,
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

/// A look at the gate as it is now (what was due is expired first), for
/// pages and tests: it reads, it cannot change anything.
pub struct GateView<'a>(GateGuard<'a>);

impl std::ops::Deref for GateView<'_> {
    type Target = Gate;
    fn deref(&self) -> &Gate {
        &self.0
    }
}

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        while let Some(event) = self.gate.poll_event() {
            let _ = self.trust.events.send(event);
        }
        // Queued in gate order while still locked; the caller waits on
        // `Trust::audited` after the lock is gone.
        while let Some(entry) = self.gate.poll_audit() {
            let _ = self.trust.record(entry);
        }
    }
}

impl Trust {
    /// Opens the audit trail and the registry in `dir` and starts with a
    /// disarmed gate. A registry that cannot be read is refused, and the
    /// refusal recorded.
    pub fn open(dir: &Path, config: GateConfig, clock: Arc<dyn Clock>) -> Result<Self, TrustError> {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let audit = AuditLog::open(dir, AuditConfig::default(), Some(events.clone()))?;
        let registry = match Registry::open(&dir.join(REGISTRY_FILE), events.clone()) {
            Ok(r) => {
                if let Some(from) = r.upgraded_from() {
                    let entry = Entry::new(Event::RegistryUpgraded, Door::Host).detail(format!(
                        "format {from} to {FORMAT_VERSION}: every device keeps every permission; the old file is kept as {V1_COPY_FILE}"
                    ));
                    audit
                        .append(entry, clock.unix(), clock.now())
                        .durable_blocking()?;
                }
                r
            }
            Err(e) => {
                let entry = Entry::new(Event::RegistryRefused, Door::Host)
                    .outcome(crate::audit::Outcome::Failed)
                    .detail(e.to_string());
                audit
                    .append(entry, clock.unix(), clock.now())
                    .durable_blocking()?;
                return Err(e.into());
            }
        };
        Ok(Self {
            registry,
            audit,
            gate: Mutex::new(Gate::new(config)),
            events,
            clock,
            default_grant: AtomicU32::new(Preset::Play.permissions().bits()),
        })
    }

    /// Queues an audit entry, stamped now. Wait on the ticket before
    /// acknowledging what it records.
    pub fn record(&self, mut entry: Entry) -> Ticket {
        // The device a console action came from, by the names it has now.
        if let Some(by) = &mut entry.by {
            if let Some(device) = self.registry.get(&by.fingerprint) {
                *by = DeviceRef::from(&*device);
            }
        }
        self.audit
            .append(entry, self.clock.unix(), self.clock.now())
    }

    /// A ticket for every entry queued so far (by this caller's gate
    /// changes among them).
    pub fn audited(&self) -> Ticket {
        self.audit.barrier()
    }

    /// The directory of the audit trail's files (the state dir), for
    /// [`crate::audit::read`].
    pub fn audit_dir(&self) -> &Path {
        self.audit.path().parent().unwrap_or(Path::new("."))
    }

    /// The paired devices, read-only (lookups never block); every change
    /// goes through a `Trust` method that records it.
    pub fn registry(&self) -> Devices<'_> {
        self.registry.devices()
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

    /// The one way to wait for what happens to request `id`: the next
    /// [`RequestUpdate`] about it. `events` must come from
    /// [`Trust::subscribe`] before the request could change (before it was
    /// added, or before the action whose outcome is awaited); events missed
    /// by a slow receiver are made up for from the gate's state. Cancel-safe.
    pub async fn request_update(
        &self,
        events: &mut broadcast::Receiver<TrustEvent>,
        id: PendingId,
    ) -> RequestUpdate {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match events.recv().await {
                Ok(TrustEvent::PinEntered { id: e }) if e == id => {
                    return RequestUpdate::PinEntered
                }
                Ok(TrustEvent::PendingRemoved { id: e, outcome }) if e == id => {
                    return RequestUpdate::Ended(Some(outcome))
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {
                    let now = self.clock.now();
                    let mut gate = self.gate();
                    match gate.get_pending(id, now).map(|p| &p.pin) {
                        Some(crate::gate::PinState::Entered { .. }) => {
                            return RequestUpdate::PinEntered
                        }
                        Some(_) => {}
                        None => return RequestUpdate::Ended(gate.outcome(id)),
                    }
                }
                Err(RecvError::Closed) => return RequestUpdate::Ended(None),
            }
        }
    }

    /// [`Trust::request_update`] until request `id` ends.
    pub async fn request_outcome(
        &self,
        events: &mut broadcast::Receiver<TrustEvent>,
        id: PendingId,
    ) -> Option<RequestEnd> {
        loop {
            if let RequestUpdate::Ended(outcome) = self.request_update(events, id).await {
                return outcome;
            }
        }
    }

    /// The gate as it is now, read-only; hold it briefly (it is locked).
    pub fn view(&self) -> GateView<'_> {
        let now = self.clock.now();
        let mut gate = self.gate();
        gate.expire(now);
        GateView(gate)
    }

    /// Expires what is due by the clock now; [`Trust::run_expiry`] does
    /// this on time.
    pub fn expire_due(&self) {
        let now = self.clock.now();
        self.gate().expire(now);
    }

    /// Locks the gate. Its events are published when the guard drops.
    pub(crate) fn gate(&self) -> GateGuard<'_> {
        // The gate is plain data mutated in small steps; a panic mid-step
        // cannot break its invariants badly enough to stop serving.
        let gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        GateGuard { gate, trust: self }
    }

    /// Whether the certificate with this fingerprint is paired at any
    /// door. Never blocks. Not an authorisation check: a front door asks
    /// [`Trust::authorize`].
    pub fn is_trusted(&self, fp: &Fingerprint) -> bool {
        self.registry.contains(fp)
    }

    /// Records that a paired device was seen now (coarse, see
    /// [`crate::registry::TOUCH_GRANULARITY_S`]); doors call
    /// [`Trust::seen`].
    pub(crate) fn touch(&self, fp: &Fingerprint) -> Result<bool, RegistryError> {
        self.registry.touch(fp, self.clock.unix())
    }

    /// Stores a device admitted by a front door (`pin`, `open`, `otp`) from
    /// `address`, and queues its `paired` entry: wait on the ticket (outside
    /// any lock) before telling the client.
    pub fn admit(&self, device: Device, address: IpAddr) -> Result<Ticket, RegistryError> {
        self.admit_as(device, address, None)
    }

    /// [`Trust::admit`], the device given `access` instead of the host's
    /// default (a guest invite, recorded as used: `invite_used`).
    pub fn admit_as(
        &self,
        device: Device,
        address: IpAddr,
        access: Option<Access>,
    ) -> Result<Ticket, RegistryError> {
        let device = self.registry.admit(device, access, self.default_grant())?;
        let ticket = self.record(paired_entry(&device, address));
        Ok(match access {
            Some(a) if a.invite => self.record_invite_used(&device),
            _ => ticket,
        })
    }

    /// Queues the `invite_used` entry of `device`, admitted through a guest
    /// invite (after its `paired` entry).
    pub(crate) fn record_invite_used(&self, device: &Device) -> Ticket {
        let until = device.expires_at.map_or("without end".to_owned(), |t| {
            format!("until {}", crate::audit::rfc3339(t))
        });
        self.record(
            Entry::new(Event::InviteUsed, Door::of(device.kind))
                .device(device)
                .detail(format!("a guest, {until}")),
        )
    }

    /// What a device admitted without a grant of its own may do: the
    /// settings' `default_grant` (Play unless set). The host's first
    /// device gets every permission whatever this says.
    pub fn default_grant(&self) -> Permissions {
        Permissions::from_bits_truncate(self.default_grant.load(Ordering::Relaxed))
    }

    /// Sets [`Trust::default_grant`] (from the settings, at start).
    pub fn set_default_grant(&self, permissions: Permissions) {
        self.default_grant
            .store(permissions.bits(), Ordering::Relaxed);
    }

    /// The one way a waiting request becomes a device: `build` makes the
    /// device from request `id` (which must need `needs`), the registry
    /// stores it durably, then the request ends as approved (a knock) or
    /// paired (a PIN). The gate is locked only to mark the request as being
    /// stored and to end it, never across the registry's fsync, so nobody
    /// else waits on the disk; meanwhile the request cannot be denied,
    /// replaced or expired. If storing fails, the request waits again.
    /// Blocks on fsync: call it off the async threads.
    pub fn admit_request(
        &self,
        id: PendingId,
        needs: Needs,
        access: Option<Access>,
        build: impl FnOnce(&Pending) -> Result<Device, RegistryError>,
    ) -> Result<Admitted, TrustError> {
        let (device, address) = {
            let now = self.clock.now();
            let mut gate = self.gate();
            let pending = gate.begin_storing(id, needs, now)?;
            let address = pending.request.address.ip();
            match build(pending) {
                Ok(device) => (device, address),
                Err(e) => {
                    gate.end_storing(id, None);
                    return Err(e.into());
                }
            }
        };
        let stored = self.registry.admit(device, access, self.default_grant());
        let outcome = match needs {
            Needs::Approval => RequestEnd::Approved,
            Needs::Pin => RequestEnd::Paired,
        };
        self.gate()
            .end_storing(id, stored.is_ok().then_some(outcome));
        Ok(Admitted {
            device: stored?,
            address,
        })
    }

    /// Queues the `paired` entry of a device [`Trust::admit_request`]
    /// stored: wait on the ticket before telling the client.
    pub fn record_paired(&self, admitted: &Admitted) -> Ticket {
        self.record(paired_entry(&admitted.device, admitted.address))
    }

    /// Approves a waiting knock: the device is stored durably, then the
    /// request ends as `approved`; both are recorded.
    pub fn approve(
        &self,
        id: PendingId,
        label: Option<Label>,
        by: Actor,
    ) -> Result<Device, TrustError> {
        self.approve_as(id, label, None, by)
    }

    /// [`Trust::approve`], the device given `access` instead of the host's
    /// default (the grant picker).
    pub fn approve_as(
        &self,
        id: PendingId,
        label: Option<Label>,
        access: Option<Access>,
        by: Actor,
    ) -> Result<Device, TrustError> {
        let admitted = self.admit_request(id, Needs::Approval, access, |pending| {
            let mut device = Device::from_der(
                &pending.request.cert_der,
                pending.request.kind,
                pending.request.name.clone(),
                Via::Approval,
                self.clock.unix(),
            )?;
            device.label = label;
            Ok(device)
        })?;
        let _ = self.record(by.entry(Event::RequestApproved).device(&admitted.device));
        self.record_paired(&admitted).durable_blocking()?;
        Ok(admitted.device)
    }

    /// Revokes a device: removed durably, its connections are told to end,
    /// and the revocation is recorded.
    pub fn revoke(&self, fp: &Fingerprint, by: Actor) -> Result<Device, TrustError> {
        let device = self.registry.remove(fp)?;
        self.record(by.entry(Event::Revoked).device(&device))
            .durable_blocking()?;
        Ok(device)
    }

    /// Sets or clears a device's label, and records it.
    pub fn rename(
        &self,
        fp: &Fingerprint,
        label: Option<Label>,
        by: Actor,
    ) -> Result<Device, TrustError> {
        let device = self.registry.modify(|d| {
            d.set_label(fp, label)?;
            d.get(fp).cloned().ok_or(RegistryError::NotFound(*fp))
        })?;
        self.record(by.entry(Event::Renamed).device(&device))
            .durable_blocking()?;
        Ok(device)
    }
}

impl Trust {
    /// Changes what device `fp` may do (its permissions, enabled, its
    /// expiry), durably, and records it (`grant_changed`, `disabled`,
    /// `enabled`); its doors hear of it at once
    /// ([`TrustEvent::AccessChanged`]) and end what it may no longer do.
    pub fn change_access(
        &self,
        fp: &Fingerprint,
        change: AccessChange,
        by: Actor,
    ) -> Result<Device, TrustError> {
        let device = self.registry.change_access(fp, change)?;
        let entry = match change {
            AccessChange::Permissions(p) => by
                .entry(Event::GrantChanged)
                .detail(format!("may: {}", p.titled())),
            AccessChange::Enabled(true) => by.entry(Event::Enabled),
            AccessChange::Enabled(false) => by.entry(Event::Disabled),
            AccessChange::Expires(Some(at)) => by
                .entry(Event::GrantChanged)
                .detail(format!("access until {}", crate::audit::rfc3339(at))),
            AccessChange::Expires(None) => {
                by.entry(Event::GrantChanged).detail("access without end")
            }
            AccessChange::Expired => Entry::new(Event::AccessExpired, Door::Host),
            AccessChange::UntilFirstSession => by
                .entry(Event::GrantChanged)
                .detail("access until its first session ends"),
            AccessChange::FirstSessionEnded => {
                Entry::new(Event::AccessExpired, Door::Host).detail("its first session ended")
            }
        };
        self.record(entry.device(&device)).durable_blocking()?;
        Ok(device)
    }
}

impl Trust {
    /// The streamer reports that a session (a stream) of device `fp`
    /// through `door` ended. A device admitted until its first session
    /// ends loses its access now (`access_expired`, and its doors and
    /// watches hear it at once); for any other device this changes
    /// nothing. The device as it is now, if `door` lists it.
    pub fn session_ended(
        &self,
        door: FrontDoor,
        fp: &Fingerprint,
    ) -> Result<Option<Device>, TrustError> {
        let Some(device) = self.registry.get(fp).filter(|d| d.kind == door) else {
            return Ok(None);
        };
        if !device.until_first_session || device.expired {
            return Ok(Some(device.as_ref().clone()));
        }
        let changed = self.change_access(fp, AccessChange::FirstSessionEnded, Actor::host())?;
        Ok(Some(changed))
    }
}

/// A device [`Trust::admit_request`] stored for a waiting request.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// The device as stored.
    pub device: Device,
    /// Where its request came from.
    pub address: IpAddr,
}

/// The `paired` entry of a device admitted from `address`.
fn paired_entry(device: &Device, address: IpAddr) -> Entry {
    Entry::new(Event::Paired, Door::of(device.kind))
        .device(device)
        .address(address)
        .via(device.via)
}
