//! mDNS: `serve --native` announces `_nvstream._tcp` on its HTTP port (so
//! Moonlight lists it) and `_punktfunk._tcp` on its native port with the
//! host fingerprint and the pairing mode in TXT; `--no-mdns` announces
//! nothing. Browsed with mdns-sd on this machine's interfaces.

mod common;

use std::time::{Duration, Instant};

use common::{announcing_serve_command, Host};
use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};

/// Resolves instances of `ty` until one on `port` shows up (or time runs out).
fn find(daemon: &ServiceDaemon, ty: &str, port: u16, limit: Duration) -> Option<ServiceInfo> {
    let rx = daemon.browse(ty).unwrap();
    let deadline = Instant::now() + limit;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(ServiceEvent::ServiceResolved(info)) if info.get_port() == port => {
                let _ = daemon.stop_browse(ty);
                return Some(info);
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = daemon.stop_browse(ty);
    None
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

/// `Host::start` passes `--no-mdns`; this host announces.
fn start_announcing(extra: &[&str]) -> (Host, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    (
        Host::start_with(announcing_serve_command(&dir, extra), &dir),
        tmp,
    )
}

#[test]
fn serve_announces_both_services_and_no_mdns_announces_none() {
    let daemon = ServiceDaemon::new().unwrap();
    let (host, _tmp) = start_announcing(&["--native"]);
    let http = port_of(&host.url("gamestream-http"));
    let native = port_of(&host.url("native"));

    let gs = find(
        &daemon,
        "_nvstream._tcp.local.",
        http,
        Duration::from_secs(10),
    )
    .expect("_nvstream._tcp is announced on the HTTP port");
    assert!(!gs.get_fullname().starts_with('.'));
    let pf = find(
        &daemon,
        "_punktfunk._tcp.local.",
        native,
        Duration::from_secs(10),
    )
    .expect("_punktfunk._tcp is announced on the native port");
    let fp = std::process::Command::new(common::BIN)
        .args(["fingerprint", "--hex", "--state-dir"])
        .arg(&host.state_dir)
        .output()
        .unwrap();
    let fp = String::from_utf8(fp.stdout).unwrap();
    assert_eq!(pf.get_property_val_str("fp"), Some(fp.trim()));
    assert_eq!(pf.get_property_val_str("pairing"), Some("required"));
    assert_eq!(pf.get_property_val_str("protocol"), Some("1"));
    drop(host);

    let quiet = Host::start(&["--native"]);
    let http = port_of(&quiet.url("gamestream-http"));
    assert!(find(
        &daemon,
        "_nvstream._tcp.local.",
        http,
        Duration::from_secs(4)
    )
    .is_none());
    let _ = daemon.shutdown();
}
