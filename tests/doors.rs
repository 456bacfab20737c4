//! A device is trusted only at the door it was admitted through (docs/pairing.md
//! "Security notes", docs/native-protocol.md § 9): the real host with the
//! real clients, one certificate presented at both doors. A certificate
//! paired through Moonlight is unknown at the native door (it knocks), a
//! native device's certificate is unknown to GameStream (XML 401), and
//! pairing the same certificate at the second door is refused.

mod common;

use common::moonlight::{self, Door};
use common::{native_client_as, runtime, Console, Host};
use punktfunk_certs::Identity;
use punktfunk_native::client::HostAddr;
use punktfunk_native::{Connected, NewHost, Pin, Status};
use serde_json::json;

/// The Moonlight device's own key and certificate, as a native client.
fn moonlight_identity(dev: &moonlight::Device) -> Identity {
    let dir = std::path::Path::new(&dev.dir);
    let cert = std::fs::read(dir.join("cert.pem")).unwrap();
    let key = std::fs::read(dir.join("key.pem")).unwrap();
    let id = Identity::from_pem(&cert, &key).unwrap();
    assert_eq!(id.fingerprint().to_string(), dev.fingerprint);
    id
}

fn native_addr(host: &Host) -> HostAddr {
    HostAddr::parse(&host.url("native")).unwrap()
}

#[test]
fn moonlight_paired_certificate_is_unknown_at_the_native_door() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    let door = Door::of(&host);
    let dev = moonlight::Device::new();
    moonlight::pair(&console, door, &dev);
    assert_eq!(dev.pair_status(door).as_deref(), Some("1"));

    let tmp = tempfile::tempdir().unwrap();
    let mut client = native_client_as(tmp.path(), &moonlight_identity(&dev), "Moonlight PC");
    let addr = native_addr(&host);
    let rt = runtime();
    // Not `welcome{trusted}`: the certificate knocks like any unknown one.
    let connected = rt
        .block_on(client.connect(&addr, NewHost::DangerAcceptAny, false))
        .unwrap();
    assert!(
        matches!(connected, Connected::ApprovalPending),
        "{connected:?}"
    );
    // Approving it would move a Moonlight device to the other door: refused,
    // and the device stays a Moonlight device.
    let pending = moonlight::pending(&console, &dev.fingerprint);
    let id = pending["id"].as_str().unwrap();
    let (status, body) = console.send(
        "POST",
        &format!("/api/pending/{id}/approve"),
        Some(json!({})),
    );
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "paired_at_other_door", "{body}");
    let device = moonlight::device(&console, &dev.fingerprint).unwrap();
    assert_eq!(device["kind"], "gamestream", "{device}");

    // PIN pairing at the native door runs, and its store is refused the
    // same way, with a message the user can act on.
    let pin: Pin = common::arm(&console).parse().unwrap();
    let err = rt.block_on(client.pair(&addr, &pin)).unwrap_err();
    assert!(
        err.to_string()
            .contains("already paired with this host as a Moonlight device"),
        "{err}"
    );
    let connected = rt
        .block_on(client.connect(&addr, NewHost::DangerAcceptAny, false))
        .unwrap();
    assert!(
        matches!(connected, Connected::ApprovalPending),
        "{connected:?}"
    );
    // Moonlight still has its pairing.
    assert_eq!(dev.pair_status(door).as_deref(), Some("1"));
}

#[test]
fn native_paired_certificate_is_unknown_to_gamestream() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    let door = Door::of(&host);
    // A Moonlight identity, paired first at the native door.
    let dev = moonlight::Device::from("127.0.0.2");
    let tmp = tempfile::tempdir().unwrap();
    let mut client = native_client_as(tmp.path(), &moonlight_identity(&dev), "Anna's iPad");
    let addr = native_addr(&host);
    let rt = runtime();
    let pin: Pin = common::arm(&console).parse().unwrap();
    let session = rt.block_on(client.pair(&addr, &pin)).unwrap();
    assert_eq!(session.status(), Status::Trusted);
    rt.block_on(session.close());
    let device = moonlight::device(&console, &dev.fingerprint).unwrap();
    assert_eq!(device["kind"], "native", "{device}");

    // GameStream HTTPS: the 401 of an unknown certificate, for every
    // authorised request.
    assert_eq!(dev.https(door, "serverinfo")["status_code"], "401");
    assert_eq!(dev.https(door, "applist")["status_code"], "401");
    assert_eq!(
        dev.https_with(door, "appasset", "appid=1&AssetType=2&AssetIdx=0")["status_code"],
        "401"
    );

    // Moonlight pairing of the same certificate is refused, and the native
    // device keeps its door.
    let run = dev.pair(door, "5170");
    let (status, body) = moonlight::enter_pin(&console, &dev.fingerprint, "5170", None);
    let result = run.next();
    assert_ne!(result["result"], "paired", "{status} {body} {result}");
    run.wait();
    let device = moonlight::device(&console, &dev.fingerprint).unwrap();
    assert_eq!(device["kind"], "native", "{device}");
    assert_eq!(dev.https(door, "serverinfo")["status_code"], "401");
    let connected = rt
        .block_on(client.connect(&addr, NewHost::Refuse, false))
        .unwrap();
    assert!(matches!(connected, Connected::Session(_)), "{connected:?}");
}
