//! Registry costs: a lookup by fingerprint (every authorised request pays
//! it), a durable write (every pairing and revocation pays it), and opening
//! a registry of 10,000 devices (start-up).

use criterion::{criterion_group, criterion_main, Criterion};
use punktfunk_certs::registry::REGISTRY_FILE;
use punktfunk_certs::{Device, Fingerprint, FrontDoor, Identity, Registry, Via};
use tokio::sync::broadcast;

/// `n` devices with real (P-256, fast to make) certificates.
fn devices(n: usize) -> Vec<Device> {
    (0..n)
        .map(|i| {
            let id = Identity::generate_p256(&format!("d{i}")).unwrap();
            Device::from_der(
                id.cert_der(),
                FrontDoor::Native,
                punktfunk_certs::DisplayName::sanitize_or(&format!("device {i}"), "x"),
                Via::Pin,
                i as u64,
            )
            .unwrap()
        })
        .collect()
}

fn open(path: &std::path::Path) -> Registry {
    Registry::open(path, broadcast::channel(16).0).unwrap()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(&dir.path().join(REGISTRY_FILE));
    let devs = devices(64);
    reg.modify(|draft| devs.iter().try_for_each(|d| draft.upsert(d.clone())))
        .unwrap();
    let fps: Vec<Fingerprint> = devs.iter().map(|d| d.fingerprint).collect();
    let unknown = Fingerprint::of_der(b"not paired");

    c.bench_function("registry lookup, paired (64 devices)", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % fps.len();
            std::hint::black_box(reg.contains(&fps[i]))
        })
    });
    c.bench_function("registry lookup, unknown", |b| {
        b.iter(|| std::hint::black_box(reg.contains(&unknown)))
    });

    let mut group = c.benchmark_group("durable write");
    group.sample_size(20);
    group.bench_function("rename (64 devices, fsync + rename + fsync dir)", |b| {
        let mut n = 0u64;
        b.iter(|| {
            n += 1;
            reg.set_label(
                &fps[0],
                punktfunk_certs::Label::parse(&format!("label {n}")).unwrap(),
            )
            .unwrap()
        })
    });
    group.finish();

    let big = tempfile::tempdir().unwrap();
    let path = big.path().join(REGISTRY_FILE);
    let many = devices(10_000);
    open(&path)
        .modify(|draft| many.iter().try_for_each(|d| draft.upsert(d.clone())))
        .unwrap();
    let mut group = c.benchmark_group("start-up");
    group.sample_size(10);
    group.bench_function("open registry (10,000 devices)", |b| b.iter(|| open(&path)));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
