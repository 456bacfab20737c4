//! The registry against a model, its durability rules and concurrent writers.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use proptest::prelude::*;

use super::*;
use crate::events::TrustEvent;
use crate::grant::{Access, AccessChange, Permissions};
use crate::identity::Identity;
use crate::name::{DisplayName, Label};
use tokio::sync::broadcast;

/// A few real certificates (generating RSA keys is slow, so share them).
fn certs() -> &'static Vec<Identity> {
    static CERTS: OnceLock<Vec<Identity>> = OnceLock::new();
    CERTS.get_or_init(|| {
        (0..6)
            .map(|i| Identity::generate(&format!("c{i}")).unwrap())
            .collect()
    })
}

fn device(i: usize, name: &str) -> Device {
    Device::from_der(
        certs()[i].cert_der(),
        FrontDoor::Native,
        DisplayName::sanitize_or(name, "unnamed device"),
        Via::Pin,
        1_700_000_000 + i as u64,
    )
    .unwrap()
}

fn open(path: &Path) -> Result<Registry, RegistryError> {
    Registry::open(path, broadcast::channel(64).0)
}

/// Opens the registry and keeps the sender its changes are published on,
/// as `Trust` does: a test subscribes where it starts to listen.
fn open_observed(path: &Path) -> (Registry, broadcast::Sender<TrustEvent>) {
    let (events, _) = broadcast::channel(64);
    (Registry::open(path, events.clone()).unwrap(), events)
}

#[derive(Debug, Clone)]
enum Op {
    Upsert(usize, String),
    Remove(usize),
    Label(usize, Option<String>),
    Touch(usize, u64),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..6usize, "[a-zA-Z <>&\"é]{0,20}").prop_map(|(i, n)| Op::Upsert(i, n)),
        (0..6usize).prop_map(Op::Remove),
        (0..6usize, proptest::option::of("[a-z]{0,5}|\\PC{0,70}"))
            .prop_map(|(i, l)| Op::Label(i, l)),
        (0..6usize, 0..10_000u64).prop_map(|(i, t)| Op::Touch(i, t)),
        Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Every sequence of operations leaves the registry (in memory and after
    /// reopening from disk) equal to a plain HashMap model, and every refused
    /// operation changes nothing.
    #[test]
    fn behaves_like_a_map(ops in proptest::collection::vec(op(), 1..25)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(REGISTRY_FILE);
        let mut reg = open(&path).unwrap();
        let mut model: HashMap<Fingerprint, Device> = HashMap::new();
        for op in ops {
            match op {
                Op::Upsert(i, name) => {
                    let mut d = device(i, &name);
                    reg.upsert(d.clone()).unwrap();
                    // Re-pairing keeps the console label.
                    d.label = model.get(&d.fingerprint).and_then(|old| old.label.clone());
                    model.insert(d.fingerprint, d);
                }
                Op::Remove(i) => {
                    let fp = certs()[i].fingerprint();
                    let r = reg.remove(&fp);
                    prop_assert_eq!(r.is_ok(), model.remove(&fp).is_some());
                }
                Op::Label(i, label) => {
                    let fp = certs()[i].fingerprint();
                    // Labels reach the registry only as `Label`s: an
                    // over-long one is refused before it gets there.
                    let Ok(label) = label.as_deref().map_or(Ok(None), Label::parse) else { continue };
                    let r = reg.set_label(&fp, label.clone());
                    match model.get_mut(&fp) {
                        Some(d) => { prop_assert!(r.is_ok()); d.label = label; }
                        None => prop_assert!(r.is_err()),
                    }
                }
                Op::Touch(i, t) => {
                    let fp = certs()[i].fingerprint();
                    let due = reg.touch_due(&fp, t);
                    let r = reg.touch(&fp, t);
                    prop_assert_eq!(due, matches!(r, Ok(true)));
                    match model.get_mut(&fp) {
                        Some(d) => {
                            let wrote = r.unwrap();
                            let fresh = d.last_seen.is_some_and(|s| s <= t && t - s < TOUCH_GRANULARITY_S);
                            prop_assert_eq!(wrote, !fresh);
                            if wrote { d.last_seen = Some(t); }
                        }
                        None => prop_assert!(r.is_err()),
                    }
                }
                Op::Reopen => {
                    drop(reg);
                    reg = open(&path).unwrap();
                }
            }
            prop_assert_eq!(reg.len(), model.len());
            for (fp, d) in &model {
                prop_assert_eq!(reg.get(fp).map(|x| (*x).clone()), Some(d.clone()));
            }
        }
        let reopened = open(&path);
        if path.exists() {
            let reopened = reopened.unwrap();
            prop_assert_eq!(reopened.len(), model.len());
            for (fp, d) in &model {
                prop_assert_eq!(reopened.get(fp).map(|x| (*x).clone()), Some(d.clone()));
            }
        }
    }
}

#[test]
fn missing_file_is_empty_and_created_on_first_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(REGISTRY_FILE);
    let reg = open(&path).unwrap();
    assert!(reg.is_empty());
    reg.upsert(device(0, "tv")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    assert_eq!(open(&path).unwrap().len(), 1);
}

#[test]
fn corrupt_file_is_refused_named_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(REGISTRY_FILE);
    let cases: &[&[u8]] = &[
        b"",
        b"{\"version\":1,\"devices\":[",
        b"{\"devices\":[]}",
        b"[]",
        b"{\"version\":1,\"devices\":[{\"fingerprint\":\"00\"}]}",
        b"\xff\xfe garbage",
    ];
    for bytes in cases {
        fs::write(&path, bytes).unwrap();
        let err = open(&path).unwrap_err();
        assert!(matches!(err, RegistryError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains(&path.display().to_string()));
        assert_eq!(&fs::read(&path).unwrap(), bytes);
    }
}

#[test]
fn a_device_whose_fingerprint_does_not_match_its_certificate_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(REGISTRY_FILE);
    let reg = open(&path).unwrap();
    reg.upsert(device(0, "a")).unwrap();
    let text = fs::read_to_string(&path).unwrap();
    let forged = text.replace(
        &certs()[0].fingerprint().to_hex(),
        &certs()[1].fingerprint().to_hex(),
    );
    fs::write(&path, forged).unwrap();
    assert!(matches!(open(&path), Err(RegistryError::Corrupt { .. })));
}

#[test]
fn unknown_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(REGISTRY_FILE);
    fs::write(&path, b"{\"version\": 3, \"devices\": [], \"new\": true}").unwrap();
    let err = open(&path).unwrap_err();
    assert!(
        matches!(err, RegistryError::UnknownVersion { found: 3, .. }),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn unreadable_file_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(REGISTRY_FILE);
    fs::create_dir(&path).unwrap(); // a directory cannot be read as a file
    assert!(matches!(
        open(&path),
        Err(RegistryError::Unreadable { .. }) | Err(RegistryError::Corrupt { .. })
    ));
    fs::remove_dir(&path).unwrap();
    fs::write(&path, b"{}").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o000)).unwrap();
    // root reads anything; only check where permissions bite.
    if fs::read(&path).is_err() {
        assert!(matches!(open(&path), Err(RegistryError::Unreadable { .. })));
    }
}

/// A crash after the temp file was written but before the rename: the temp
/// file is there, torn or complete, and the registry is the old one.
#[test]
fn torn_or_unrenamed_temp_file_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(REGISTRY_FILE);
    let tmp = dir.path().join(format!("{REGISTRY_FILE}.tmp"));
    let reg = open(&path).unwrap();
    reg.upsert(device(0, "old")).unwrap();
    let old = fs::read(&path).unwrap();
    // A complete new version that never got renamed...
    let other = tempfile::tempdir().unwrap();
    let other_reg = open(&other.path().join(REGISTRY_FILE)).unwrap();
    other_reg.upsert(device(1, "new")).unwrap();
    fs::copy(other.path().join(REGISTRY_FILE), &tmp).unwrap();
    drop(reg);
    let reg = open(&path).unwrap();
    assert_eq!(reg.list().len(), 1);
    assert_eq!(reg.list()[0].name, "old");
    // ...and a torn one.
    fs::write(&tmp, &old[..old.len() / 2]).unwrap();
    let reg = open(&path).unwrap();
    assert_eq!(reg.list()[0].name, "old");
    // The next write goes through and clears the temp file.
    reg.upsert(device(2, "next")).unwrap();
    assert!(!tmp.exists());
    assert_eq!(open(&path).unwrap().len(), 2);
}

#[cfg(unix)]
#[test]
fn failed_write_changes_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("ro");
    fs::create_dir(&sub).unwrap();
    let path = sub.join(REGISTRY_FILE);
    let (reg, sender) = open_observed(&path);
    reg.upsert(device(0, "kept")).unwrap();
    let before = fs::read(&path).unwrap();
    let mut events = sender.subscribe();
    fs::set_permissions(&sub, fs::Permissions::from_mode(0o500)).unwrap();
    let probe = fs::write(sub.join("probe"), b"x");
    if probe.is_ok() {
        // Running as root: directory permissions do not stop writes. Block
        // the temp file's name with a non-empty directory instead.
        fs::remove_file(sub.join("probe")).unwrap();
        fs::set_permissions(&sub, fs::Permissions::from_mode(0o700)).unwrap();
        fs::create_dir_all(sub.join(format!("{REGISTRY_FILE}.tmp")).join("x")).unwrap();
    }
    let err = reg.upsert(device(1, "lost")).unwrap_err();
    assert!(matches!(err, RegistryError::Write { .. }), "{err}");
    assert!(err.to_string().contains("nothing was changed"));
    assert_eq!(reg.len(), 1);
    assert!(reg.remove(&certs()[0].fingerprint()).is_err());
    assert_eq!(reg.len(), 1);
    assert!(
        events.try_recv().is_err(),
        "no event for a change that did not happen"
    );
    fs::set_permissions(&sub, fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(fs::read(&path).unwrap(), before);
    assert_eq!(open(&path).unwrap().len(), 1);
}

#[test]
fn invalid_changes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(&dir.path().join(REGISTRY_FILE)).unwrap();
    let mut d = device(0, "x");
    d.fingerprint = certs()[1].fingerprint();
    assert!(matches!(reg.upsert(d), Err(RegistryError::Certificate(_))));
    reg.upsert(device(0, "x")).unwrap();
    let fp = certs()[0].fingerprint();
    for blank in ["", "   ", "\u{200B}\t"] {
        assert_eq!(Label::parse(blank), Ok(None), "{blank:?}");
    }
    assert!(Label::parse(&"x".repeat(65)).is_err());
    reg.set_label(&fp, Label::parse("  Living\u{202E} Room\nTV ").unwrap())
        .unwrap();
    assert_eq!(
        reg.get(&fp).unwrap().label.as_deref(),
        Some("Living Room TV")
    );
    assert!(matches!(
        reg.set_label(&certs()[2].fingerprint(), None),
        Err(RegistryError::NotFound(_))
    ));
}

#[test]
fn names_in_a_stored_file_are_cleaned_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(REGISTRY_FILE);
    let reg = open(&path).unwrap();
    reg.upsert(device(0, "a")).unwrap();
    let mut reg_label = device(1, "b");
    reg_label.label = Label::parse("den").unwrap();
    reg.upsert(reg_label).unwrap();
    drop(reg);
    // An older build stored names with only control characters removed.
    let text = fs::read_to_string(&path)
        .unwrap()
        .replace("\"a\"", "\"Living Room\\u202e\\u200b\"")
        .replace("\"den\"", "\" den\\u2066 x \"");
    fs::write(&path, text).unwrap();
    let reg = open(&path).unwrap();
    let list = reg.list();
    assert_eq!(list[0].name, "Living Room");
    assert_eq!(list[1].label.as_deref(), Some("den x"));
    let name = DisplayName::sanitize("x").unwrap();
    assert!(Device::from_der(b"not der", FrontDoor::Native, name, Via::Pin, 0).is_err());
}

#[test]
fn re_pairing_keeps_the_label_unless_a_new_one_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(&dir.path().join(REGISTRY_FILE)).unwrap();
    let mut first = device(0, "old name");
    first.label = Label::parse("Living Room TV").unwrap();
    reg.upsert(first).unwrap();
    let mut again = device(0, "new name");
    again.via = Via::Approval;
    again.paired_at += 100;
    reg.upsert(again.clone()).unwrap();
    let d = reg.get(&again.fingerprint).unwrap();
    assert_eq!(d.name, "new name");
    assert_eq!(d.via, Via::Approval);
    assert_eq!(d.paired_at, again.paired_at);
    assert_eq!(d.label.as_deref(), Some("Living Room TV"));
    let mut relabelled = device(0, "newer");
    relabelled.label = Label::parse("Den").unwrap();
    reg.upsert(relabelled).unwrap();
    assert_eq!(
        reg.get(&again.fingerprint).unwrap().label.as_deref(),
        Some("Den")
    );
}

#[test]
fn changes_are_broadcast_after_they_are_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(REGISTRY_FILE);
    let (reg, sender) = open_observed(&path);
    let mut rx = sender.subscribe();
    reg.upsert(device(0, "a")).unwrap();
    let fp = certs()[0].fingerprint();
    assert_eq!(
        rx.try_recv().unwrap(),
        TrustEvent::DeviceAdded {
            fingerprint: fp,
            replaced: false
        }
    );
    reg.remove(&fp).unwrap();
    assert_eq!(
        rx.try_recv().unwrap(),
        TrustEvent::DeviceRemoved { fingerprint: fp }
    );
    assert!(open(&path).unwrap().is_empty());
}

/// Many threads write at once; every write that returned Ok is on disk.
#[test]
fn concurrent_writers_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(REGISTRY_FILE);
    let reg = Arc::new(open(&path).unwrap());
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let reg = reg.clone();
            std::thread::spawn(move || {
                for round in 0..10 {
                    reg.upsert(device(i, &format!("t{i}r{round}"))).unwrap();
                    assert!(reg.get(&certs()[i].fingerprint()).is_some());
                    reg.set_label(
                        &certs()[i].fingerprint(),
                        Label::parse(&format!("L{round}")).unwrap(),
                    )
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let back = open(&path).unwrap();
    assert_eq!(back.len(), 6);
    for (i, c) in certs().iter().enumerate() {
        let d = back.get(&c.fingerprint()).unwrap();
        assert_eq!(d.name.as_str(), format!("t{i}r9"));
        assert_eq!(d.label.as_deref(), Some("L9"));
    }
}

#[test]
fn a_fingerprint_prefix_resolves_to_one_device_or_says_why_not() {
    use super::ResolveError;
    let dir = tempfile::tempdir().unwrap();
    let registry = open(&dir.path().join(REGISTRY_FILE)).unwrap();
    for i in 0..6 {
        registry.upsert(device(i, "d")).unwrap();
    }
    let fps: Vec<Fingerprint> = (0..6).map(|i| certs()[i].fingerprint()).collect();
    let hex = fps[0].to_hex();
    // The shortest prefix that names only device 0, in every accepted form.
    let unique = (4..=64)
        .find(|n| fps[1..].iter().all(|f| !f.to_hex().starts_with(&hex[..*n])))
        .unwrap();
    let prefix = &hex[..unique];
    assert_eq!(registry.resolve(prefix), Ok(fps[0]));
    assert_eq!(registry.resolve(&prefix.to_uppercase()), Ok(fps[0]));
    assert_eq!(registry.resolve(&fps[0].grouped()), Ok(fps[0]));
    let colons: Vec<String> = hex
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into())
        .collect();
    assert_eq!(registry.resolve(&colons.join(":")), Ok(fps[0]));
    // Too short, not hex, too long.
    for bad in ["abc", "zzzz", &format!("{hex}00")] {
        assert!(
            matches!(registry.resolve(bad), Err(ResolveError::Invalid(_))),
            "{bad}"
        );
    }
    // No device.
    let absent = (0..=0xffffu32)
        .map(|n| format!("{n:04x}"))
        .find(|p| fps.iter().all(|f| !f.to_hex().starts_with(p)))
        .unwrap();
    assert_eq!(
        registry.resolve(&absent),
        Err(ResolveError::Unknown(absent.clone()))
    );
    // Two devices sharing a 4-digit prefix: draw certificates until two
    // collide (about 320 draws, by the birthday bound on 65,536 prefixes).
    let mut seen: HashMap<String, Identity> = HashMap::new();
    let (a, b) = loop {
        let id = Identity::generate_p256("twin").unwrap();
        let key = id.fingerprint().to_hex()[..4].to_owned();
        if let Some(first) = seen.remove(&key) {
            break (first, id);
        }
        seen.insert(key, id);
    };
    for id in [&a, &b] {
        let twin = Device::from_der(
            id.cert_der(),
            FrontDoor::Native,
            DisplayName::sanitize_or("twin", "twin"),
            Via::Pin,
            1_700_000_000,
        )
        .unwrap();
        registry.upsert(twin).unwrap();
    }
    let shared = a.fingerprint().to_hex()[..4].to_owned();
    assert_eq!(
        registry.resolve(&shared),
        Err(ResolveError::Ambiguous {
            prefix: shared.clone(),
            count: 2 + fps
                .iter()
                .filter(|f| f.to_hex().starts_with(&shared))
                .count(),
        })
    );
    assert_eq!(
        registry.resolve(&a.fingerprint().to_hex()),
        Ok(a.fingerprint())
    );
}

/// `tests/data/v1/host/trust.json`: written by the last build of format 1.
const V1_FILE: &[u8] = include_bytes!("../../../tests/data/v1/host/trust.json");

#[test]
fn a_version_1_file_is_upgraded_with_every_permission_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(REGISTRY_FILE);
    fs::write(&path, V1_FILE).unwrap();
    let reg = open(&path).unwrap();
    assert_eq!(reg.upgraded_from(), Some(1));
    let list = reg.list();
    assert_eq!(list.len(), 2);
    for d in &list {
        assert_eq!(d.permissions, Permissions::ALL, "what it could do before");
        assert!(d.enabled && d.expires_at.is_none() && !d.expired);
    }
    let tv = list.iter().find(|d| d.name == "Living Room TV").unwrap();
    assert_eq!(tv.label.as_deref(), Some("TV"));
    // The old file is kept byte for byte; the new one is version 2.
    assert_eq!(fs::read(dir.path().join(V1_COPY_FILE)).unwrap(), V1_FILE);
    let now: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(now["version"], 2);
    assert_eq!(now["devices"][0]["enabled"], true);
    drop(reg);
    let again = open(&path).unwrap();
    assert_eq!(again.upgraded_from(), None, "upgraded once");
    assert_eq!(again.list(), list);
}

#[test]
fn an_admitted_device_gets_full_first_then_the_default_and_keeps_its_grant_on_re_pairing() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(&dir.path().join(REGISTRY_FILE)).unwrap();
    let watch = crate::grant::Preset::Watch.permissions();
    let first = reg.admit(device(0, "first"), None, watch).unwrap();
    assert_eq!(
        first.permissions,
        Permissions::ALL,
        "the host's first device"
    );
    let second = reg.admit(device(1, "second"), None, watch).unwrap();
    assert_eq!(second.permissions, watch);
    // The owner narrows and disables it; pairing it again keeps that.
    let fp = second.fingerprint;
    reg.change_access(&fp, AccessChange::Permissions(Permissions::LIST))
        .unwrap();
    reg.change_access(&fp, AccessChange::Enabled(false))
        .unwrap();
    let again = reg.admit(device(1, "second"), None, watch).unwrap();
    assert_eq!(
        (again.permissions, again.enabled),
        (Permissions::LIST, false)
    );
    // A grant the owner picked wins.
    let chosen = Access {
        permissions: Permissions::ALL,
        until: crate::grant::Until::At(2_000_000_000),
        invite: false,
    };
    let guest = reg.admit(device(2, "guest"), Some(chosen), watch).unwrap();
    assert_eq!(
        (guest.permissions, guest.expires_at),
        (Permissions::ALL, Some(2_000_000_000))
    );
    assert_eq!(reg.next_expiry(), Some(2_000_000_000));
    assert!(reg.expired_by(1_999_999_999).is_empty());
    assert_eq!(reg.expired_by(2_000_000_000), [guest.fingerprint]);
    reg.change_access(&guest.fingerprint, AccessChange::Expired)
        .unwrap();
    assert_eq!(reg.next_expiry(), None, "recorded: not due again");
    reg.change_access(
        &guest.fingerprint,
        AccessChange::Expires(Some(2_100_000_000)),
    )
    .unwrap();
    let renewed = reg.get(&guest.fingerprint).unwrap();
    assert!(!renewed.expired && !renewed.is_expired(2_000_000_001));
    assert_eq!(reg.next_expiry(), Some(2_100_000_000));
}
