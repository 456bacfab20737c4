//! Issue 23 (WIP): the console over the native door, against the real
//! binary, with a bare client that writes the frames of
//! docs/native-protocol.md § 4.10: a paired device signs in with the console
//! password (limited like a web login), sees a knock the moment it is
//! recorded, and approves it; a new console password signs it out.

mod common;

use std::time::Instant;

use common::moonlight;
use common::raw_native::{self, Raw};
use common::{Console, Host};
use punktfunk_certs::Identity;
use serde_json::{json, Value};

/// A device approved in the web console, connected again offering the
/// `console` feature: its session and `welcome`.
fn signed_session(host: &Host, console: &Console, src: &str) -> (Raw, Identity, Value) {
    let (mut raw, id, answer) = raw_native::knock(src, raw_native::addr(host), "Anna's iPhone");
    assert_eq!(answer["status"], "approval_pending", "{answer}");
    let pending = moonlight::pending(console, &id.fingerprint().to_string());
    let (status, body) = console.send(
        "POST",
        &format!("/api/pending/{}/approve", pending["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(raw.recv().unwrap()["outcome"], "approved");
    drop(raw);
    let mut raw = Raw::connect(src, raw_native::addr(host), &id);
    raw.send(
        &json!({"type": "hello", "protocol": 1, "device_name": "Anna's iPhone",
        "intent": "connect", "features": ["console", "grant"]}),
    );
    let welcome = raw.recv().unwrap();
    (raw, id, welcome)
}

/// `id`'s device connecting again, offering `console`.
fn reconnect(host: &Host, src: &str, id: &Identity) -> (Raw, (), Value) {
    let mut raw = Raw::connect(src, raw_native::addr(host), id);
    raw.send(
        &json!({"type": "hello", "protocol": 1, "device_name": "Anna's iPhone",
        "intent": "connect", "features": ["console", "grant"]}),
    );
    let welcome = raw.recv().unwrap();
    (raw, (), welcome)
}

fn ask(raw: &mut Raw, reference: u32, op: Value) -> Value {
    let mut msg = op;
    msg["type"] = json!("console");
    msg["ref"] = json!(reference);
    raw.send(&msg);
    loop {
        let reply = raw.recv().expect("an answer");
        if reply["type"] == "console_reply" {
            assert_eq!(reply["ref"], reference, "{reply}");
            return reply;
        }
    }
}

#[test]
fn a_paired_device_signs_in_sees_a_knock_at_once_and_approves_it() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    let (mut phone, phone_id, welcome) = signed_session(&host, &console, "127.0.0.31");
    assert_eq!(welcome["status"], "trusted", "{welcome}");
    assert_eq!(
        welcome["features"],
        json!(["grant", "console"]),
        "{welcome}"
    );

    // Nothing without a console session; a wrong password is refused and
    // the session goes on.
    let refused = ask(&mut phone, 1, json!({"op": "watch"}));
    assert_eq!(refused["error"]["code"], "not_signed_in", "{refused}");
    let wrong = ask(&mut phone, 2, json!({"op": "login", "password": "not it"}));
    assert_eq!(wrong["error"]["code"], "wrong_password", "{wrong}");
    let ok = ask(
        &mut phone,
        3,
        json!({"op": "login", "password": host.password()}),
    );
    assert!(
        ok["ok"]["signed_in_for_s"].as_u64().unwrap() >= 86_400,
        "{ok}"
    );
    let watching = ask(&mut phone, 4, json!({"op": "watch"}));
    assert!(watching["ok"].is_object(), "{watching}");
    let now = phone.recv().unwrap();
    assert_eq!(now, json!({"type": "waiting", "requests": []}));

    // A knock reaches the phone as it is recorded.
    let knocked = Instant::now();
    let (mut tv, tv_id, answer) =
        raw_native::knock("127.0.0.32", raw_native::addr(&host), "Living Room TV");
    assert_eq!(answer["status"], "approval_pending");
    let waiting = phone.recv().unwrap();
    let took = knocked.elapsed();
    eprintln!("knock -> the phone's waiting list: {took:?} (from before the TLS handshake)");
    assert_eq!(waiting["type"], "waiting", "{waiting}");
    let request = &waiting["requests"][0];
    assert_eq!(request["fingerprint"], tv_id.fingerprint().to_string());
    assert_eq!(request["name"], "Living Room TV");
    let id = request["id"].as_str().unwrap().to_owned();

    let approved = ask(
        &mut phone,
        5,
        json!({"op": "approve", "id": id, "label": "TV", "grant": {"may": "watch"}}),
    );
    assert_eq!(approved["ok"]["label"], "TV", "{approved}");
    assert_eq!(approved["ok"]["preset"], "watch", "{approved}");
    assert_eq!(tv.recv().unwrap()["outcome"], "approved");
    let again = ask(&mut phone, 6, json!({"op": "approve", "id": id}));
    assert_eq!(again["error"]["code"], "unknown_request", "{again}");
    // The audit trail names the phone the console was used on.
    let trail = std::fs::read_to_string(host.state_dir.join("audit.jsonl")).unwrap();
    let approval: Value = trail
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| {
            e["event"] == "request_approved"
                && e["device"]["fingerprint"] == tv_id.fingerprint().to_string()
        })
        .expect("the TV's request_approved");
    assert_eq!(approval["door"], "console", "{approval}");
    assert_eq!(
        approval["by"]["fingerprint"],
        phone_id.fingerprint().to_string(),
        "{approval}"
    );
    assert_eq!(approval["by"]["name"], "Anna's iPhone", "{approval}");
    assert_eq!(
        approval["device"]["fingerprint"],
        tv_id.fingerprint().to_string()
    );

    // Disabled and enabled again: signed out all the same.
    let fp = phone_id.fingerprint().to_string();
    let access = format!("/api/devices/{fp}/access");
    let watcher = Raw::connect("127.0.0.34", raw_native::addr(&host), &phone_id);
    drop(watcher);
    assert_eq!(
        ask(&mut phone, 8, json!({"op": "devices"}))["ok"]["devices"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (status, _) = console.send("PATCH", &access, Some(json!({"enabled": false})));
    assert_eq!(status, 200);
    assert_eq!(phone.recv().unwrap()["code"], "disabled");
    let (status, _) = console.send("PATCH", &access, Some(json!({"enabled": true})));
    assert_eq!(status, 200);
    let (mut phone, _, _) = reconnect(&host, "127.0.0.31", &phone_id);
    let out = ask(&mut phone, 9, json!({"op": "devices"}));
    assert_eq!(out["error"]["code"], "not_signed_in", "{out}");
    let ok = ask(
        &mut phone,
        10,
        json!({"op": "login", "password": host.password()}),
    );
    assert!(ok["ok"].is_object(), "{ok}");

    // A new console password signs the phone out.
    let out = common::set_password(&host.state_dir, "a new console password");
    assert!(out.status.success(), "{out:?}");
    let out = ask(&mut phone, 7, json!({"op": "devices"}));
    assert_eq!(out["error"]["code"], "not_signed_in", "{out}");
}

#[test]
fn a_moonlight_request_gets_its_pin_from_the_phone_and_pairs() {
    let host = Host::start(&["--native"]);
    let console = Console::login(&host);
    let door = moonlight::Door::of(&host);
    let (mut phone, _, _) = signed_session(&host, &console, "127.0.0.33");
    let ok = ask(
        &mut phone,
        1,
        json!({"op": "login", "password": host.password()}),
    );
    assert!(ok["ok"].is_object(), "{ok}");
    assert!(ask(&mut phone, 2, json!({"op": "watch"}))["ok"].is_object());
    assert_eq!(phone.recv().unwrap()["requests"], json!([]));

    // moonlight-python asks to pair and waits for its PIN to be entered.
    let deck = moonlight::Device::from("127.0.8.40");
    let run = deck.pair(door, "4321");
    let waiting = loop {
        let w = phone.recv().unwrap();
        if w["requests"].as_array().is_some_and(|r| !r.is_empty()) {
            break w;
        }
    };
    let request = &waiting["requests"][0];
    assert_eq!(
        request["fingerprint"],
        deck.fingerprint.as_str(),
        "{waiting}"
    );
    assert_eq!(request["needs"], "pin", "{waiting}");
    let id = request["id"].as_str().unwrap().to_owned();
    let wrong = ask(
        &mut phone,
        3,
        json!({"op": "enter_pin", "id": id, "pin": "12a4"}),
    );
    assert_eq!(wrong["error"]["code"], "bad_pin", "{wrong}");
    let entered = ask(
        &mut phone,
        4,
        json!({"op": "enter_pin", "id": id, "pin": "4321", "label": "Deck"}),
    );
    assert_eq!(entered["ok"]["result"], "paired", "{entered}");
    assert_eq!(run.next()["result"], "paired");
    run.wait();
    let device = moonlight::device(&console, &deck.fingerprint).expect("paired");
    assert_eq!(device["label"], "Deck", "{device}");
}
