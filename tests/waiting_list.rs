//! The waiting list under a refilling flood (issue 19, point 8): eight
//! addresses keep knocking, so **Deny all** is undone within moments. The
//! list has room for far more than a LAN needs (256, 4 per address), so a
//! ninth address's knock still waits and can be approved; the console
//! dismisses one address's requests, or blocks the address for an hour at
//! every door, and can lift the block. Real binary, loopback, sources
//! spread over 127/8.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::moonlight::{self, Device, Door};
use common::raw_native::{self, Raw};
use common::{Console, Host};
use serde_json::{json, Value};

const FLOODERS: usize = 8;
const VICTIM: &str = "127.0.7.9";

fn flooder(i: usize) -> String {
    format!("127.0.7.{}", i + 1)
}

fn pending(console: &Console) -> Vec<Value> {
    console.pairing()["pending"].as_array().unwrap().clone()
}

fn from(list: &[Value], address: &str) -> usize {
    list.iter().filter(|p| p["address"] == address).count()
}

/// Polls `what` every 50 ms until it holds (at most 20 s).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Eight threads, one per address, knocking with a fresh certificate every
/// 30 ms and holding every knock that waits: a denied request is replaced
/// at once. Returns the stop flag and the threads.
fn flood(
    native: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<usize>> {
    (0..FLOODERS)
        .map(|i| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let src = flooder(i);
                let mut held: Vec<Raw> = Vec::new();
                let mut knocks = 0;
                while !stop.load(Ordering::Relaxed) {
                    let (raw, _, answer) = raw_native::knock(&src, native, "flood");
                    knocks += 1;
                    if answer["status"] == "approval_pending" {
                        held.push(raw);
                    }
                    // Denied ones are closed by the host; forget them now
                    // and then so the thread holds a bounded number.
                    if held.len() > 64 {
                        held.drain(..32);
                    }
                    std::thread::sleep(Duration::from_millis(30));
                }
                knocks
            })
        })
        .collect()
}

#[test]
fn a_refilling_flood_from_eight_addresses_cannot_keep_out_a_ninth_and_blocks_stop_it() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    let native = raw_native::addr(&host);
    let stop = Arc::new(AtomicBool::new(false));
    let threads = flood(native, stop.clone());
    eventually("every flooding address at its cap", || {
        let list = pending(&console);
        (0..FLOODERS).all(|i| from(&list, &flooder(i)) == 4)
    });

    // Deny all is refilled within moments.
    let denied_at = Instant::now();
    let (status, body) = console.send("POST", "/api/pending/deny-all", None);
    assert_eq!(status, 200, "{body}");
    eventually("the flood refilled the list", || {
        pending(&console).len() >= 4 * FLOODERS
    });
    println!(
        "deny all: {} requests dismissed, {} waiting again after {:?}",
        body["denied"],
        4 * FLOODERS,
        denied_at.elapsed()
    );

    // A ninth address still gets in, and waits.
    let (mut victim, victim_id, answer) = raw_native::knock(VICTIM, native, "victim's tablet");
    assert_eq!(answer["status"], "approval_pending", "{answer}");
    let victim_fp = victim_id.fingerprint().to_string();
    let request = moonlight::pending(&console, &victim_fp);
    assert_eq!(request["address"], VICTIM);

    // Deny all from one address: only that address's requests go.
    let (status, body) = console.send(
        "POST",
        "/api/pending/deny-address",
        Some(json!({"address": flooder(0)})),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body["denied"].as_u64().unwrap() >= 1, "{body}");
    assert_eq!(from(&pending(&console), VICTIM), 1);

    // Block every flooding address for an hour: their waiting requests
    // are denied, and their new knocks refused.
    for i in 0..FLOODERS {
        let (status, body) =
            console.send("POST", "/api/blocks", Some(json!({"address": flooder(i)})));
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["block"]["address"], flooder(i));
        let left = body["block"]["expires_in_s"].as_u64().unwrap();
        assert!((3590..=3600).contains(&left), "{body}");
    }
    let blocks = console.pairing()["blocks"].clone();
    assert_eq!(blocks.as_array().unwrap().len(), FLOODERS, "{blocks}");
    let list = pending(&console);
    assert_eq!(list.len(), 1, "only the victim waits: {list:?}");
    let (_, _, refused) = raw_native::knock(&flooder(3), native, "blocked");
    assert_eq!(refused["code"], "pairing_busy", "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("blocked"),
        "{refused}"
    );
    // Blocked at the other door too: a Moonlight request gets XML 503.
    let door = Door::of(&host);
    let moon = Device::from("127.0.7.4");
    let run = moon.pair(door, "1234");
    let result = run.next();
    assert_eq!(
        (&result["result"], &result["status"]),
        (&json!("refused"), &json!(503)),
        "{result}"
    );
    run.wait();

    // The victim is approved.
    let (status, body) = console.send(
        "POST",
        &format!("/api/pending/{}/approve", request["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(victim.recv().unwrap()["outcome"], "approved");

    // Lifting a block lets that address knock again.
    let (status, body) = console.send("DELETE", &format!("/api/blocks/{}", flooder(0)), None);
    assert_eq!((status, body), (200, json!({"lifted": true})));
    eventually("the unblocked address waits again", || {
        from(&pending(&console), &flooder(0)) > 0
    });
    stop.store(true, Ordering::Relaxed);
    let knocks: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    println!("flood: {knocks} knocks from {FLOODERS} addresses");

    // Blocks and the lift are in the audit trail.
    let audit = console.get("/api/audit?limit=500");
    let events: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["event"].as_str())
        .collect();
    assert_eq!(
        events.iter().filter(|e| **e == "address_blocked").count(),
        FLOODERS
    );
    assert_eq!(
        events.iter().filter(|e| **e == "address_unblocked").count(),
        1
    );
    // Bad addresses are refused with a word.
    let (status, body) = console.send("POST", "/api/blocks", Some(json!({"address": "nope"})));
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("bad_address"))
    );
}
