//! The trust registry: the one allow-list of paired devices and their pinned
//! certificates, written by every front door.
//!
//! Modelled on Syncthing's config wrapper and atomic writer: every change goes
//! through [`Registry::modify`], which applies it to a copy, writes the copy
//! durably (see `fsutil`), and only then publishes it in memory and returns.
//! A caller may therefore tell a client "paired" as soon as the call returns.
//!
//! Readers never block on writers: the current list is an immutable snapshot
//! behind an [`ArcSwap`], so a lookup by fingerprint is one atomic load and one
//! hash probe, even while a write is fsyncing.
//!
//! Loading is strict. A missing file means "no devices yet"; anything else
//! that cannot be read as a known version is an error that names the file,
//! and the file is left as it is. The host never replaces a trust list it
//! could not read with an empty one.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

mod error;
mod file;

pub use error::{CertificateError, RegistryError, ResolveError, MIN_PREFIX_DIGITS};
pub use file::{encode, parse, Parsed};
use file::{serialise, upgrade};

use crate::events::TrustEvent;
use crate::fingerprint::Fingerprint;
use crate::fsutil::write_atomic;
use crate::grant::{Access, AccessChange, Permissions, Until};
use crate::name::{DisplayName, Label};

/// File name of the registry inside a state dir.
pub const REGISTRY_FILE: &str = "trust.json";

/// The on-disk format version this build writes. It also reads version 1
/// (before grants), and rewrites such a file as this version on open,
/// keeping the version 1 file as [`V1_COPY_FILE`].
pub const FORMAT_VERSION: u32 = 2;

/// Where the version 1 file is kept when the registry is upgraded.
pub const V1_COPY_FILE: &str = "trust.v1.json";

/// Longest pinned certificate PEM, in bytes.
pub const MAX_CERT_PEM_BYTES: usize = 16 * 1024;

/// `last_seen` is only rewritten when the stored value is at least this many
/// seconds old, so that reconnect storms do not turn into fsync storms.
pub const TOUCH_GRANULARITY_S: u64 = 60;

/// Which front door paired the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FrontDoor {
    /// A Moonlight client, through the GameStream emulator.
    Gamestream,
    /// The punktfunk app (or the reference client), through the native door.
    Native,
}

impl FrontDoor {
    /// The door's name as a user knows it.
    pub fn door_name(self) -> &'static str {
        match self {
            FrontDoor::Gamestream => "Moonlight",
            FrontDoor::Native => "punktfunk app",
        }
    }
}

/// How the device was admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// A PIN ceremony.
    Pin,
    /// A click on Approve in the console.
    Approval,
    /// An open host (`serve --native --open`) let it in.
    Open,
    /// A one-time PIN made in the console (Moonlight-family clients that
    /// send `otpauth`, such as Artemis).
    Otp,
}

/// One paired device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// SHA-256 of the certificate's DER; must match `cert_pem`.
    pub fingerprint: Fingerprint,
    /// The pinned certificate.
    pub cert_pem: String,
    /// Front door.
    pub kind: FrontDoor,
    /// Device name as the client sent it, cleaned by the one name rule
    /// ([`crate::name`]).
    pub name: DisplayName,
    /// Name given in the console, if any.
    #[serde(default, deserialize_with = "crate::name::deserialize_label")]
    pub label: Option<Label>,
    /// Unix seconds.
    pub paired_at: u64,
    /// Unix seconds of the last authorised request, if any.
    pub last_seen: Option<u64>,
    /// How it was admitted.
    pub via: Via,
    /// What it may do ([`crate::grant`]); a device from a version 1 file
    /// has every permission, as it had then.
    pub permissions: Permissions,
    /// `false` once the owner disabled it: every door refuses it, and it
    /// stays paired until enabled or removed.
    pub enabled: bool,
    /// When its access ends, in Unix seconds, if it does.
    pub expires_at: Option<u64>,
    /// Its access ended at `expires_at` (or with its first session) and
    /// the host recorded that (`access_expired`); renewing clears it.
    pub expired: bool,
    /// Its access ends when its first session does (the streamer reports
    /// it); a time set later replaces this.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub until_first_session: bool,
    /// Admitted through a guest invite: the console and the CLI list it as
    /// a guest.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub guest: bool,
}

impl Device {
    /// Builds a device entry from a certificate in DER form, which is what a
    /// TLS session yields; the fingerprint is derived, never supplied. It
    /// may do nothing yet: admitting it gives it its grant
    /// ([`Draft::admit`]).
    pub fn from_der(
        der: &[u8],
        kind: FrontDoor,
        name: DisplayName,
        via: Via,
        paired_at: u64,
    ) -> Result<Self, RegistryError> {
        let cert = openssl::x509::X509::from_der(der).map_err(|_| CertificateError::NotDer)?;
        let pem = cert.to_pem().map_err(|_| CertificateError::CannotEncode)?;
        Ok(Self {
            fingerprint: Fingerprint::of_der(der),
            cert_pem: String::from_utf8_lossy(&pem).into_owned(),
            kind,
            name,
            label: None,
            paired_at,
            last_seen: None,
            via,
            permissions: Permissions::NONE,
            enabled: true,
            expires_at: None,
            expired: false,
            until_first_session: false,
            guest: false,
        })
    }

    /// Whether its access has ended by `now` (Unix seconds).
    pub fn is_expired(&self, now: u64) -> bool {
        self.expired || self.expires_at.is_some_and(|at| at <= now)
    }

    /// Checks sizes and that `fingerprint` is the SHA-256 of
    /// the certificate in `cert_pem`. Cheap (no X.509 parsing: OpenSSL 3
    /// takes ~200 µs per certificate, which made loading 10,000 devices take
    /// seconds); certificates are parsed once, when a front door admits them.
    fn validate(&self) -> Result<(), RegistryError> {
        if self.cert_pem.len() > MAX_CERT_PEM_BYTES {
            return Err(CertificateError::TooLarge.into());
        }
        let der = pem_certificate_der(&self.cert_pem).ok_or(CertificateError::NotPem)?;
        if Fingerprint::of_der(&der) != self.fingerprint {
            return Err(CertificateError::FingerprintMismatch(self.fingerprint).into());
        }
        Ok(())
    }
}

/// The DER bytes of a single PEM `CERTIFICATE` block, or `None`.
fn pem_certificate_der(pem: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let body = pem
        .trim()
        .strip_prefix("-----BEGIN CERTIFICATE-----")?
        .strip_suffix("-----END CERTIFICATE-----")?;
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

type Snapshot = HashMap<Fingerprint, Arc<Device>>;

/// The paired devices, read-only. [`crate::Trust`] hands out only this, so
/// every change to a host's devices goes through `Trust`, which records it
/// in the audit trail; nothing outside this crate writes the registry.
#[derive(Debug, Clone, Copy)]
pub struct Devices<'a>(&'a Registry);

impl Devices<'_> {
    /// The file the registry lives in.
    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Looks up a device by fingerprint. Never blocks.
    pub fn get(&self, fp: &Fingerprint) -> Option<Arc<Device>> {
        self.0.get(fp)
    }

    /// Whether the fingerprint is paired. Never blocks.
    pub fn contains(&self, fp: &Fingerprint) -> bool {
        self.0.contains(fp)
    }

    /// All devices, oldest pairing first.
    pub fn list(&self) -> Vec<Arc<Device>> {
        self.0.list()
    }

    /// Number of devices.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no device is paired.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// [`Registry::resolve`].
    pub fn resolve(&self, prefix: &str) -> Result<Fingerprint, ResolveError> {
        self.0.resolve(prefix)
    }
}

/// A change to the list, as seen inside [`Registry::modify`].
#[derive(Debug)]
pub struct Draft {
    devices: Snapshot,
    events: Vec<TrustEvent>,
}

impl Draft {
    /// Looks a device up.
    pub fn get(&self, fp: &Fingerprint) -> Option<&Device> {
        self.devices.get(fp).map(|d| d.as_ref())
    }

    /// Adds a device, or replaces the entry with the same fingerprint
    /// (re-pairing): the new entry's name, `via`, `paired_at` and
    /// `last_seen` win, and the console label is kept unless the new entry
    /// brings one.
    pub(crate) fn upsert(&mut self, mut device: Device) -> Result<(), RegistryError> {
        device.validate()?;
        let fp = device.fingerprint;
        // Re-pairing at the same door replaces the entry; the other door
        // must not take over (or demote) a device it did not admit.
        if let Some(old) = self.devices.get(&fp).filter(|old| old.kind != device.kind) {
            return Err(RegistryError::PairedAtOtherDoor {
                paired_at: old.kind,
            });
        }
        if device.label.is_none() {
            device.label = self.devices.get(&fp).and_then(|old| old.label.clone());
        }
        let replaced = self.devices.insert(fp, Arc::new(device)).is_some();
        self.events.push(TrustEvent::DeviceAdded {
            fingerprint: fp,
            replaced,
        });
        Ok(())
    }

    /// Stores a device a door admitted, with its grant: `chosen` if the
    /// owner picked one; else, re-pairing, the grant of the entry it
    /// replaces (a new certificate entry does not undo what the owner
    /// decided); else every permission for the host's first device (as
    /// Apollo does) and `default` for any other.
    pub(crate) fn admit(
        &mut self,
        mut device: Device,
        chosen: Option<Access>,
        default: Permissions,
    ) -> Result<(), RegistryError> {
        match (chosen, self.devices.get(&device.fingerprint)) {
            (Some(access), _) => {
                device.permissions = access.permissions;
                device.expires_at = access.until.at(device.paired_at);
                device.until_first_session = access.until == Until::FirstSession;
                device.guest = access.invite;
            }
            (None, Some(old)) => {
                device.permissions = old.permissions;
                device.enabled = old.enabled;
                device.expires_at = old.expires_at;
                device.expired = old.expired;
                device.until_first_session = old.until_first_session;
                device.guest = old.guest;
            }
            (None, None) if self.devices.is_empty() => device.permissions = Permissions::ALL,
            (None, None) => device.permissions = default,
        }
        self.upsert(device)
    }

    /// Changes what device `fp` may do, as `change` says.
    pub(crate) fn change_access(
        &mut self,
        fp: &Fingerprint,
        change: AccessChange,
    ) -> Result<(), RegistryError> {
        let device = self
            .devices
            .get_mut(fp)
            .ok_or(RegistryError::NotFound(*fp))?;
        let device = Arc::make_mut(device);
        match change {
            AccessChange::Permissions(p) => device.permissions = p,
            AccessChange::Enabled(on) => device.enabled = on,
            AccessChange::Expires(at) => {
                device.expires_at = at;
                device.expired = false;
                device.until_first_session = false;
            }
            AccessChange::Expired | AccessChange::FirstSessionEnded => device.expired = true,
            AccessChange::UntilFirstSession => {
                device.expires_at = None;
                device.expired = false;
                device.until_first_session = true;
            }
        }
        let ended = !device.enabled || device.expired;
        self.events.push(TrustEvent::AccessChanged {
            fingerprint: *fp,
            ended,
        });
        Ok(())
    }

    /// Removes a device.
    pub(crate) fn remove(&mut self, fp: &Fingerprint) -> Result<Device, RegistryError> {
        let device = self
            .devices
            .remove(fp)
            .ok_or(RegistryError::NotFound(*fp))?;
        self.events
            .push(TrustEvent::DeviceRemoved { fingerprint: *fp });
        Ok(Arc::unwrap_or_clone(device))
    }

    /// Sets or clears a device's label.
    pub(crate) fn set_label(
        &mut self,
        fp: &Fingerprint,
        label: Option<Label>,
    ) -> Result<(), RegistryError> {
        let device = self
            .devices
            .get_mut(fp)
            .ok_or(RegistryError::NotFound(*fp))?;
        Arc::make_mut(device).label = label;
        self.events
            .push(TrustEvent::DeviceChanged { fingerprint: *fp });
        Ok(())
    }

    /// Records that a device was seen at `now` (unix seconds).
    pub(crate) fn touch(&mut self, fp: &Fingerprint, now: u64) -> Result<(), RegistryError> {
        let device = self
            .devices
            .get_mut(fp)
            .ok_or(RegistryError::NotFound(*fp))?;
        Arc::make_mut(device).last_seen = Some(now);
        self.events
            .push(TrustEvent::DeviceChanged { fingerprint: *fp });
        Ok(())
    }

    /// Number of devices.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// Whether there are no devices.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }
}

/// The durable allow-list. Cheap to share behind an `Arc`.
pub struct Registry {
    path: PathBuf,
    current: ArcSwap<Snapshot>,
    /// Serialises writers; readers never take it.
    writer: Mutex<()>,
    events: tokio::sync::broadcast::Sender<TrustEvent>,
    upgraded_from: Option<u32>,
    /// The soonest `expires_at` of a device whose end is not recorded yet
    /// (`u64::MAX`: none), kept at each write so the expiry timer need not
    /// scan the list.
    next_expiry: AtomicU64,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("path", &self.path)
            .field("devices", &self.current.load().len())
            .finish()
    }
}

impl Registry {
    /// Opens the registry at `path`. A missing file is an empty registry
    /// (created on the first change); anything unreadable is an error.
    /// Each change is sent on `events` once it is durable; whoever opens
    /// the registry keeps that sender to hand out receivers (`Trust`'s
    /// `subscribe`).
    pub fn open(
        path: &Path,
        events: tokio::sync::broadcast::Sender<TrustEvent>,
    ) -> Result<Self, RegistryError> {
        // Never through a link (fsutil); no size cap beyond the host's own:
        // the file is what this host wrote, one entry per paired device.
        let (devices, upgraded_from) = match crate::fsutil::read_limited(path, u64::MAX) {
            Ok(bytes) => {
                let parsed = parse(path, &bytes)?;
                if parsed.version != FORMAT_VERSION {
                    upgrade(path, &bytes, &parsed.devices)?;
                }
                let from = (parsed.version != FORMAT_VERSION).then_some(parsed.version);
                (parsed.devices, from)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (HashMap::new(), None),
            Err(source) => {
                return Err(RegistryError::Unreadable {
                    path: path.into(),
                    source,
                })
            }
        };
        Ok(Self {
            path: path.into(),
            next_expiry: AtomicU64::new(next_expiry(&devices)),
            current: ArcSwap::from_pointee(devices),
            writer: Mutex::new(()),
            events,
            upgraded_from,
        })
    }

    /// When the soonest access that has not been recorded as ended ends
    /// (Unix seconds), if any does.
    pub(crate) fn next_expiry(&self) -> Option<u64> {
        Some(self.next_expiry.load(Ordering::Relaxed)).filter(|&at| at != u64::MAX)
    }

    /// The devices whose access ended by `now` (Unix seconds) and is not
    /// recorded as ended yet.
    pub(crate) fn expired_by(&self, now: u64) -> Vec<Fingerprint> {
        if self.next_expiry().is_none_or(|at| at > now) {
            return Vec::new();
        }
        self.current
            .load()
            .values()
            .filter(|d| !d.expired && d.expires_at.is_some_and(|at| at <= now))
            .map(|d| d.fingerprint)
            .collect()
    }

    /// The format version the file had if opening upgraded it (it is
    /// [`FORMAT_VERSION`] now, the old file kept as [`V1_COPY_FILE`]).
    pub fn upgraded_from(&self) -> Option<u32> {
        self.upgraded_from
    }

    /// The devices, read-only: what [`crate::Trust::registry`] hands out.
    pub fn devices(&self) -> Devices<'_> {
        Devices(self)
    }

    /// The file this registry lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Looks up a device by fingerprint. Never blocks.
    pub fn get(&self, fp: &Fingerprint) -> Option<Arc<Device>> {
        self.current.load().get(fp).cloned()
    }

    /// Whether the fingerprint is paired. Never blocks.
    pub fn contains(&self, fp: &Fingerprint) -> bool {
        self.current.load().contains_key(fp)
    }

    /// All devices, oldest pairing first.
    pub fn list(&self) -> Vec<Arc<Device>> {
        let mut list: Vec<_> = self.current.load().values().cloned().collect();
        list.sort_by_key(|d| (d.paired_at, d.fingerprint));
        list
    }

    /// Number of devices.
    pub fn len(&self) -> usize {
        self.current.load().len()
    }

    /// Whether no device is paired.
    pub fn is_empty(&self) -> bool {
        self.current.load().is_empty()
    }

    /// The one device whose fingerprint starts with `prefix`: hex digits in
    /// either case, optionally grouped with spaces or `:` as the console and
    /// the clients print them, at least [`MIN_PREFIX_DIGITS`] of them.
    pub fn resolve(&self, prefix: &str) -> Result<Fingerprint, ResolveError> {
        let digits: String = prefix
            .chars()
            .filter(|c| !matches!(c, ' ' | ':'))
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if digits.len() < MIN_PREFIX_DIGITS
            || digits.len() > 64
            || !digits.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(ResolveError::Invalid(prefix.to_owned()));
        }
        let snapshot = self.current.load();
        let mut matches = snapshot
            .keys()
            .filter(|fp| fp.to_hex().starts_with(&digits));
        match (matches.next(), matches.count()) {
            (None, _) => Err(ResolveError::Unknown(prefix.to_owned())),
            (Some(fp), 0) => Ok(*fp),
            (Some(_), more) => Err(ResolveError::Ambiguous {
                prefix: prefix.to_owned(),
                count: more + 1,
            }),
        }
    }

    /// The one write path: applies `change` to a copy, saves the copy
    /// durably, then publishes it. If `change` or the save fails, nothing
    /// changed, on disk or in memory. Blocks on fsync: call it from a
    /// blocking context.
    pub(crate) fn modify<R>(
        &self,
        change: impl FnOnce(&mut Draft) -> Result<R, RegistryError>,
    ) -> Result<R, RegistryError> {
        // A panic while holding the lock cannot leave a half-written state
        // (the published snapshot is only swapped after a successful save),
        // so a poisoned lock is safe to reuse.
        let _guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut draft = Draft {
            devices: HashMap::clone(&self.current.load()),
            events: Vec::new(),
        };
        let out = change(&mut draft)?;
        if draft.events.is_empty() {
            return Ok(out);
        }
        let bytes = serialise(&draft.devices)?;
        write_atomic(&self.path, &bytes).map_err(|source| RegistryError::Write {
            path: self.path.clone(),
            source,
        })?;
        self.next_expiry
            .store(next_expiry(&draft.devices), Ordering::Relaxed);
        self.current.store(Arc::new(draft.devices));
        for event in draft.events {
            // No receivers is fine: nobody is listening yet.
            let _ = self.events.send(event);
        }
        Ok(out)
    }

    /// Adds a device or replaces the entry with the same fingerprint.
    #[cfg(test)]
    pub(crate) fn upsert(&self, device: Device) -> Result<(), RegistryError> {
        self.modify(|d| d.upsert(device))
    }

    /// Removes (revokes) a device.
    /// [`Draft::admit`], durably; the device as stored (with its grant).
    pub(crate) fn admit(
        &self,
        device: Device,
        chosen: Option<Access>,
        default: Permissions,
    ) -> Result<Device, RegistryError> {
        let fp = device.fingerprint;
        self.modify(|d| {
            d.admit(device, chosen, default)?;
            d.get(&fp).cloned().ok_or(RegistryError::Unreachable(
                "an admitted device is not in the list",
            ))
        })
    }

    /// [`Draft::change_access`], durably; the device as changed.
    pub(crate) fn change_access(
        &self,
        fp: &Fingerprint,
        change: AccessChange,
    ) -> Result<Device, RegistryError> {
        self.modify(|d| {
            d.change_access(fp, change)?;
            d.get(fp).cloned().ok_or(RegistryError::NotFound(*fp))
        })
    }

    pub(crate) fn remove(&self, fp: &Fingerprint) -> Result<Device, RegistryError> {
        self.modify(|d| d.remove(fp))
    }

    /// Sets or clears a device's label.
    #[cfg(test)]
    pub(crate) fn set_label(
        &self,
        fp: &Fingerprint,
        label: Option<Label>,
    ) -> Result<(), RegistryError> {
        self.modify(|d| d.set_label(fp, label))
    }

    /// Whether [`Registry::touch`] would write: the device is paired and its
    /// `last_seen` is missing or at least [`TOUCH_GRANULARITY_S`] old. A
    /// lock-free read, so hot paths can skip the blocking call.
    pub fn touch_due(&self, fp: &Fingerprint, now: u64) -> bool {
        self.get(fp).is_some_and(|d| !seen_recently(&d, now))
    }

    /// Records that a paired device was seen at `now` (unix seconds). Only
    /// writes when the stored value is older than [`TOUCH_GRANULARITY_S`];
    /// returns whether it wrote.
    pub(crate) fn touch(&self, fp: &Fingerprint, now: u64) -> Result<bool, RegistryError> {
        match self.get(fp) {
            None => return Err(RegistryError::NotFound(*fp)),
            Some(d) if seen_recently(&d, now) => return Ok(false),
            Some(_) => {}
        }
        self.modify(|d| match d.get(fp) {
            Some(dev) if seen_recently(dev, now) => Ok(false),
            _ => d.touch(fp, now).map(|()| true),
        })
    }
}

/// `last_seen` is recent enough that [`Registry::touch`] skips the write.
pub(crate) fn seen_recently(d: &Device, now: u64) -> bool {
    d.last_seen
        .is_some_and(|seen| seen <= now && now - seen < TOUCH_GRANULARITY_S)
}

/// The soonest unrecorded end of access among `devices` (`u64::MAX`: none).
fn next_expiry(devices: &Snapshot) -> u64 {
    devices
        .values()
        .filter(|d| !d.expired)
        .filter_map(|d| d.expires_at)
        .min()
        .unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
