//! The registry file: its versions, reading it (version 1 is upgraded),
//! and writing it (`docs/state-and-audit.md` documents the format).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::fingerprint::Fingerprint;
use crate::fsutil::write_atomic;
use crate::grant::Permissions;
use crate::name::{DisplayName, Label};

use super::{Device, FrontDoor, RegistryError, Snapshot, Via, FORMAT_VERSION, V1_COPY_FILE};

#[derive(Deserialize)]
struct FileFormat {
    devices: Vec<Device>,
}

/// A version 1 file: devices before grants.
#[derive(Deserialize)]
struct FileFormatV1 {
    devices: Vec<DeviceV1>,
}

/// A device as version 1 stored it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceV1 {
    fingerprint: Fingerprint,
    cert_pem: String,
    kind: FrontDoor,
    name: DisplayName,
    #[serde(default, deserialize_with = "crate::name::deserialize_label")]
    label: Option<Label>,
    paired_at: u64,
    last_seen: Option<u64>,
    via: Via,
}

impl From<DeviceV1> for Device {
    /// Every permission, enabled, no end: what every device had before.
    fn from(d: DeviceV1) -> Self {
        Self {
            fingerprint: d.fingerprint,
            cert_pem: d.cert_pem,
            kind: d.kind,
            name: d.name,
            label: d.label,
            paired_at: d.paired_at,
            last_seen: d.last_seen,
            via: d.via,
            permissions: Permissions::ALL,
            enabled: true,
            expires_at: None,
            expired: false,
            until_first_session: false,
            guest: false,
        }
    }
}

/// Rewrites an older registry file at `path` (its contents `old`, parsed as
/// `devices`) in this version, after keeping a copy of it next to it as
/// [`V1_COPY_FILE`]: both durable before the host goes on, so a crash
/// leaves the old file, or the copy and the new one.
pub(super) fn upgrade(path: &Path, old: &[u8], devices: &Snapshot) -> Result<(), RegistryError> {
    let copy = path.with_file_name(V1_COPY_FILE);
    write_atomic(&copy, old).map_err(|source| RegistryError::Write { path: copy, source })?;
    let bytes = serialise(devices)?;
    write_atomic(path, &bytes).map_err(|source| RegistryError::Write {
        path: path.into(),
        source,
    })?;
    tracing::info!(
        "trust registry {} upgraded to format version {FORMAT_VERSION}; the old file is kept as {V1_COPY_FILE}",
        path.display()
    );
    Ok(())
}

pub(super) fn serialise(devices: &Snapshot) -> Result<Vec<u8>, RegistryError> {
    encode(devices.values().map(|d| d.as_ref()))
}

/// The registry file's contents for `devices` (the format
/// `docs/state-and-audit.md` documents): what every write stores, and
/// what a fixture (the bench, the load generator) writes to start a host
/// with many devices.
pub fn encode<'a>(devices: impl Iterator<Item = &'a Device>) -> Result<Vec<u8>, RegistryError> {
    let mut list: Vec<&Device> = devices.collect();
    list.sort_by_key(|d| (d.paired_at, d.fingerprint));
    #[derive(Serialize)]
    struct Out<'a> {
        version: u32,
        devices: Vec<&'a Device>,
    }
    let out = Out {
        version: FORMAT_VERSION,
        devices: list,
    };
    // Plain structs of strings and integers into memory: cannot fail.
    let mut bytes = serde_json::to_vec_pretty(&out)
        .map_err(|_| RegistryError::Unreachable("the device list could not be serialised"))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Registry file contents, parsed.
#[derive(Debug)]
pub struct Parsed {
    /// The devices, by fingerprint.
    pub devices: HashMap<Fingerprint, Arc<Device>>,
    /// The file's format version: [`FORMAT_VERSION`], or 1 (its devices
    /// then have every permission).
    pub version: u32,
}

/// Parses registry file contents (version 1 or [`FORMAT_VERSION`]);
/// public for the fuzzer and tests.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Parsed, RegistryError> {
    let corrupt = |reason: String| RegistryError::Corrupt {
        path: path.into(),
        reason,
    };
    // Read the version first so that a newer format is reported as such,
    // not as a parse error.
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| corrupt(format!("not JSON: {e}")))?;
    let version = value
        .get("version")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| corrupt("no format version".into()))?;
    let list: Vec<Device> = match version {
        1 => serde_json::from_value::<FileFormatV1>(value)
            .map_err(|e| corrupt(e.to_string()))?
            .devices
            .into_iter()
            .map(Device::from)
            .collect(),
        2 => {
            serde_json::from_value::<FileFormat>(value)
                .map_err(|e| corrupt(e.to_string()))?
                .devices
        }
        found => {
            return Err(RegistryError::UnknownVersion {
                path: path.into(),
                found,
            })
        }
    };
    let mut devices = HashMap::with_capacity(list.len());
    for device in list {
        device
            .validate()
            .map_err(|e| corrupt(format!("device {}: {e}", device.fingerprint.short())))?;
        let fp = device.fingerprint;
        if devices.insert(fp, Arc::new(device)).is_some() {
            return Err(corrupt(format!("device {} is listed twice", fp.short())));
        }
    }
    Ok(Parsed {
        devices,
        // 1 or 2: matched above.
        version: version as u32,
    })
}
