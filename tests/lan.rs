//! The LAN addresses the host gives out (the start-up block, the console's
//! links, pairing links): container and bridge interfaces are left out by
//! what the kernel says of them, and the settings file's `advertise`
//! names the addresses instead. In a network namespace of its own with a
//! real bridge (docker0's kind) and a real veth pair (a container's link).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::netns::Netns;
use common::{Host, BIN};

/// A namespace with what a machine running containers has: a bridge with
/// an address and a veth pair into it, and no physical interface.
fn container_host_ns() -> Option<Netns> {
    let ns = Netns::create("lan", &[])?;
    ns.ip(&["link", "add", "pfbr0", "type", "bridge"]);
    ns.ip(&["addr", "add", "172.17.0.1/16", "dev", "pfbr0"]);
    ns.ip(&["link", "set", "pfbr0", "up"]);
    ns.ip(&[
        "link", "add", "pfveth0", "type", "veth", "peer", "name", "pfveth1",
    ]);
    ns.ip(&["link", "set", "pfveth1", "master", "pfbr0"]);
    ns.ip(&["addr", "add", "10.200.0.1/24", "dev", "pfveth0"]);
    ns.ip(&["link", "set", "pfveth0", "up"]);
    ns.ip(&["link", "set", "pfveth1", "up"]);
    Some(ns)
}

/// `serve` on every address inside `ns`, OS-chosen ports.
fn serve_in(ns: &Netns, state: &Path, extra: &[&str]) -> Command {
    let mut cmd = ns.exec(BIN);
    cmd.args([
        "serve",
        "--no-mdns",
        "--http-port",
        "0",
        "--https-port",
        "0",
    ])
    .args(["--console-port", "0", "--state-dir"])
    .arg(state)
    .args(extra)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    cmd
}

#[test]
fn bridges_and_veths_are_not_lan_addresses_and_advertise_names_them() {
    let Some(ns) = container_host_ns() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let host = Host::start_with(serve_in(&ns, &state, &[]), &state);
    let block = host.lines.join("\n");
    assert!(
        block.contains("open the console from another device: none found"),
        "{block}"
    );
    assert!(
        block.contains("advertise = ["),
        "says how to name them: {block}"
    );
    for ip in ["172.17.0.1", "10.200.0.1"] {
        assert!(!block.contains(ip), "{ip} given out: {block}");
    }
    let console = host.console.clone();
    let about: serde_json::Value = ns.run(|| {
        common::client()
            .get(format!("{console}/api/host"))
            .send()
            .unwrap()
            .json()
            .unwrap()
    });
    let urls = about["console_urls"].to_string();
    for ip in ["172.17.0.1", "10.200.0.1"] {
        assert!(!urls.contains(ip), "{ip} in the console's links: {urls}");
    }
    assert!(host.stop().success());

    // The owner names the address to give out.
    let settings = tmp.path().join("punktfunk.toml");
    std::fs::write(&settings, "advertise = [\"10.200.0.1\"]\n").unwrap();
    let host = Host::start_with(
        serve_in(&ns, &state, &["--config", settings.to_str().unwrap()]),
        &state,
    );
    let port = host.console.rsplit(':').next().unwrap().to_owned();
    let url = format!("https://10.200.0.1:{port}/");
    let block = host.lines.join("\n");
    assert!(
        block.contains(&format!("open the console from another device:\n    {url}")),
        "{block}"
    );
    assert!(!block.contains("172.17.0.1"), "{block}");
    let console = host.console.clone();
    let about: serde_json::Value = ns.run(|| {
        common::client()
            .get(format!("{console}/api/host"))
            .send()
            .unwrap()
            .json()
            .unwrap()
    });
    assert_eq!(about["console_urls"], serde_json::json!([url]), "{about}");
}
