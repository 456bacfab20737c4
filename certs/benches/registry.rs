//! Registry costs, through the trust service as the host pays them: a
//! lookup by fingerprint (every authorised request), a durable write
//! (every pairing, rename and revocation: the registry file written and
//! synced, its audit entry queued), and opening a registry of 10,000
//! devices (start-up).

use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use punktfunk_certs::registry::{encode, Registry, REGISTRY_FILE};
use punktfunk_certs::{
    Actor, Device, DisplayName, Fingerprint, FrontDoor, GateConfig, Identity, Label, SystemClock,
    Trust, Via,
};
use tokio::sync::broadcast;

/// `n` devices with real (P-256, fast to make) certificates.
fn devices(n: usize) -> Vec<Device> {
    (0..n)
        .map(|i| {
            let id = Identity::generate_p256(&format!("d{i}")).unwrap();
            Device::from_der(
                id.cert_der(),
                FrontDoor::Native,
                DisplayName::sanitize_or(&format!("device {i}"), "x"),
                Via::Pin,
                i as u64,
            )
            .unwrap()
        })
        .collect()
}

/// A state dir whose registry file holds `devices`, as the host writes it.
fn write_registry(dir: &Path, devices: &[Device]) {
    std::fs::write(dir.join(REGISTRY_FILE), encode(devices.iter()).unwrap()).unwrap();
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let devs = devices(64);
    write_registry(dir.path(), &devs);
    let trust = Trust::open(dir.path(), GateConfig::default(), Arc::new(SystemClock)).unwrap();
    let fps: Vec<Fingerprint> = devs.iter().map(|d| d.fingerprint).collect();
    let unknown = Fingerprint::of_der(b"not paired");

    c.bench_function("authorize, paired (64 devices)", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % fps.len();
            std::hint::black_box(trust.authorize(FrontDoor::Native, &fps[i]))
        })
    });
    c.bench_function("authorize, unknown", |b| {
        b.iter(|| std::hint::black_box(trust.authorize(FrontDoor::Native, &unknown)))
    });

    let mut group = c.benchmark_group("durable write");
    group.sample_size(20);
    group.bench_function("rename (64 devices, fsync + rename + fsync dir)", |b| {
        let mut n = 0u64;
        b.iter(|| {
            n += 1;
            let label = Label::parse(&format!("label {n}")).unwrap();
            trust.rename(&fps[0], label, Actor::cli()).unwrap()
        })
    });
    group.finish();

    let big = tempfile::tempdir().unwrap();
    write_registry(big.path(), &devices(10_000));
    let path = big.path().join(REGISTRY_FILE);
    let mut group = c.benchmark_group("start-up");
    group.sample_size(10);
    group.bench_function("open registry (10,000 devices)", |b| {
        b.iter(|| Registry::open(&path, broadcast::channel(16).0).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
