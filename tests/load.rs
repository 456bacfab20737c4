//! Under load the host stays responsive and bounded (issue 6, "Load"):
//! Moonlight clients polling `/serverinfo` over HTTPS with their client
//! certificates (keep-alive and a new TLS handshake per request), native
//! devices reconnecting on their pinned certificates, while a Moonlight
//! pairing and a native PIN pairing still complete, and RSS stays bounded.
//! Throughput is measured by `bench/load.sh`, not here.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::moonlight::{pair, Device, Door};
use common::{Console, Host, BIN};
use punktfunk_native::{Client, Connected, DisplayName, HostAddr, NewHost};
use punktfunk_testsupport::xml;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// An HTTPS client presenting a paired Moonlight device's certificate.
fn moonlight_https(dev: &Device, fresh_handshakes: bool) -> reqwest::blocking::Client {
    let dir = std::path::Path::new(&dev.dir);
    let cert = std::fs::read(dir.join("cert.pem")).unwrap();
    // moonlight-python writes PKCS#1; native-tls wants PKCS#8.
    let key =
        openssl::pkey::PKey::private_key_from_pem(&std::fs::read(dir.join("key.pem")).unwrap())
            .unwrap()
            .private_key_to_pem_pkcs8()
            .unwrap();
    let mut b = reqwest::blocking::Client::builder()
        .identity(reqwest::Identity::from_pkcs8_pem(&cert, &key).unwrap())
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(10));
    if fresh_handshakes {
        b = b.pool_max_idle_per_host(0);
    }
    b.build().unwrap()
}

fn cli_pair(addr: &str, pin: &str, client_dir: &std::path::Path, name: &str) {
    let out = std::process::Command::new(BIN)
        .args(["pair", addr, "--pin", pin, "--name", name, "--client-dir"])
        .arg(client_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "pair failed: {stdout}");
    assert_eq!(stdout.trim().lines().last(), Some("paired"));
}

#[test]
fn the_host_stays_responsive_and_bounded_under_load() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    let door = Door::of(&host);
    let native = host.url("native");
    let native_addr = native.trim_start_matches("tls://").to_owned();
    let tmp = tempfile::tempdir().unwrap();

    // One paired Moonlight device and one paired native device.
    let moonlight = Device::new();
    pair(&console, door, &moonlight);
    let native_dir = tmp.path().join("native");
    cli_pair(&native_addr, &common::arm(&console), &native_dir, "poller");
    let idle_rss = rss_kib(host.child.id());

    let stop = Arc::new(AtomicBool::new(false));
    let polls = Arc::new(AtomicUsize::new(0));
    let reconnects = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let url = format!("https://127.0.0.1:{}/serverinfo", door.https);

    let mut workers = Vec::new();
    for i in 0..12 {
        let http = moonlight_https(&moonlight, i % 2 == 1);
        let (stop, polls, failures, url) =
            (stop.clone(), polls.clone(), failures.clone(), url.clone());
        workers.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match http.get(&url).send().and_then(|r| r.text()) {
                    Ok(body) if paired(&body) => {
                        polls.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(body) => failures.lock().unwrap().push(format!("serverinfo: {body}")),
                    Err(e) => failures.lock().unwrap().push(format!("serverinfo: {e}")),
                }
            }
        }));
    }
    let addr = HostAddr::parse(&native).unwrap();
    for _ in 0..4 {
        let (stop, reconnects, failures, addr, dir) = (
            stop.clone(),
            reconnects.clone(),
            failures.clone(),
            addr.clone(),
            native_dir.clone(),
        );
        workers.push(std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let mut client = Client::open(&dir, DisplayName::sanitize("poller").unwrap()).unwrap();
            while !stop.load(Ordering::Relaxed) {
                match rt.block_on(client.connect(&addr, NewHost::Refuse, false)) {
                    Ok(Connected::Session(s)) => {
                        rt.block_on(s.close());
                        reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => failures
                        .lock()
                        .unwrap()
                        .push("native: not a session".into()),
                    Err(e) => failures.lock().unwrap().push(format!("native: {e}")),
                }
            }
        }));
    }

    // While that runs, a Moonlight pairing and a native PIN pairing complete.
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    let second = Device::new();
    pair(&console, door, &second);
    cli_pair(
        &native_addr,
        &common::arm(&console),
        &tmp.path().join("new"),
        "newcomer",
    );
    let pairing_time = started.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let loaded_rss = rss_kib(host.child.id());
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }

    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    let (polls, reconnects) = (
        polls.load(Ordering::Relaxed),
        reconnects.load(Ordering::Relaxed),
    );
    eprintln!(
        "load: {polls} HTTPS serverinfo polls, {reconnects} native reconnects; two pairings in {pairing_time:?}; RSS {idle_rss} KiB idle, {loaded_rss} KiB loaded"
    );
    assert!(
        polls > 100 && reconnects > 20,
        "the load did not run: {polls} polls, {reconnects} reconnects"
    );
    let state = console.pairing();
    assert_eq!(state["devices"].as_array().unwrap().len(), 4, "{state}");
    assert!(
        loaded_rss < idle_rss + 100 * 1024,
        "RSS grew from {idle_rss} KiB to {loaded_rss} KiB"
    );
    // And it still answers after the load.
    let reply = moonlight_https(&moonlight, false)
        .get(&url)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(paired(&reply), "{reply}");
}

/// Whether a `/serverinfo` body is well-formed XML with `PairStatus` 1.
fn paired(body: &str) -> bool {
    xml::parse(body).is_ok_and(|r| r.field("PairStatus") == Some("1"))
}
