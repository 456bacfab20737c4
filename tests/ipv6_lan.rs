//! A home LAN with SLAAC is one IPv6 /64: an attacker on it has an address
//! in the owner's /64. Every per-address limit counts the full address, so
//! the attacker is limited and the owner, at another address of the same
//! /64, still logs in, knocks and pairs, and a replayed certificate never
//! replaces the owner's request. Each test runs the real host and its
//! clients inside a network namespace it makes (tests/common/netns.rs;
//! root only, else skipped with a message).

mod common;

use std::net::IpAddr;

use common::netns::{client_from, Netns};
use common::raw_native::{self, Raw};
use common::{moonlight, Console, Host};
use serde_json::{json, Value};

const HOST: &str = "2001:db8:a::1";
const OWNER: &str = "2001:db8:a::2";
const OWNER_MOONLIGHT: &str = "2001:db8:a::3";
const ATTACKER: &str = "2001:db8:a::66";

fn lan(tag: &str) -> Option<Netns> {
    Netns::create(
        tag,
        &[HOST, OWNER, OWNER_MOONLIGHT, ATTACKER]
            .map(|a| format!("{a}/64"))
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    )
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pending(console: &Console) -> Vec<Value> {
    console.pairing()["pending"].as_array().unwrap().clone()
}

fn status_of(answer: &Value) -> String {
    answer["status"]
        .as_str()
        .or(answer["code"].as_str())
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn an_attackers_wrong_passwords_in_the_owners_64_do_not_lock_the_owner_out() {
    let Some(ns) = lan("login") else { return };
    ns.run(|| {
        let host = Host::start_bound(HOST, &[]);
        let attacker = client_from(ip(ATTACKER));
        let login = format!("{}/api/login", host.console);
        let mut got = Vec::new();
        for _ in 0..6 {
            let resp = attacker
                .post(&login)
                .json(&json!({"password": "not the password"}))
                .send()
                .unwrap();
            let status = resp.status().as_u16();
            got.push((status, resp.text().unwrap()));
        }
        let statuses: Vec<u16> = got.iter().map(|(s, _)| *s).collect();
        assert_eq!(statuses, [401, 401, 401, 401, 401, 429], "{got:?}");
        assert!(
            got[5].1.contains(ATTACKER),
            "names the attacker's address: {}",
            got[5].1
        );
        // The owner, at another address of the same /64, logs in at once.
        let owner = Console::login_from(&host, ip(OWNER));
        assert!(owner.pairing()["pending"].is_array());
    });
}

#[test]
fn an_attackers_knocks_in_the_owners_64_leave_the_owners_knock_and_moonlight_pairing_alone() {
    let Some(ns) = lan("knock") else { return };
    ns.run(|| {
        let host = Host::start_bound(HOST, &["--native"]);
        let console = Console::login_from(&host, ip(OWNER));
        let native = raw_native::addr(&host);
        assert_eq!(native.ip(), ip(HOST));
        // The attacker fills its own share of the waiting list, no more.
        let mut held = Vec::new();
        let mut answers = Vec::new();
        for i in 0..6 {
            let (raw, _, answer) = raw_native::knock(ATTACKER, native, &format!("knock {i}"));
            answers.push(status_of(&answer));
            held.push(raw);
        }
        assert_eq!(
            answers,
            [
                "approval_pending",
                "approval_pending",
                "approval_pending",
                "approval_pending",
                "pairing_busy",
                "pairing_busy"
            ]
        );
        // The owner's native knock from the same /64 waits...
        let (_owner, owner_id, answer) = raw_native::knock(OWNER, native, "owner's phone");
        assert_eq!(answer["status"], "approval_pending", "{answer}");
        let list = pending(&console);
        let owners: Vec<&Value> = list
            .iter()
            .filter(|p| p["fingerprint"] == owner_id.fingerprint().to_string())
            .collect();
        assert_eq!(owners.len(), 1, "{list:?}");
        assert_eq!(owners[0]["address"], OWNER);
        // ...and the owner's Moonlight (a third address) gets no XML 503:
        // it waits for its PIN, and pairs when it is typed in.
        let door = moonlight::Door::of(&host);
        let moon = moonlight::Device::at(OWNER_MOONLIGHT, ip(HOST));
        moonlight::pair(&console, door, &moon);
        assert!(moonlight::device(&console, &moon.fingerprint).is_some());

        // Blocking the attacker blocks that address, not the /64.
        let (status, body) =
            console.send("POST", "/api/blocks", Some(json!({"address": ATTACKER})));
        assert_eq!(
            (status, &body["block"]["address"]),
            (200, &json!(ATTACKER)),
            "{body}"
        );
        assert_eq!(body["denied"], 4, "{body}");
        let (_, _, refused) = raw_native::knock(ATTACKER, native, "blocked");
        assert_eq!(refused["code"], "pairing_busy", "{refused}");
        let (_, _, answer) = raw_native::knock(OWNER, native, "owner's laptop");
        assert_eq!(answer["status"], "approval_pending", "{answer}");
        // Lifted by its address as the page sends it (percent-encoded).
        let (status, body) = console.send("DELETE", "/api/blocks/2001%3Adb8%3Aa%3A%3A66", None);
        assert_eq!((status, body), (200, json!({"lifted": true})));
        let (_, _, answer) = raw_native::knock(ATTACKER, native, "knock again");
        assert_eq!(answer["status"], "approval_pending", "{answer}");
    });
}

#[test]
fn a_certificate_replayed_from_another_address_of_the_64_does_not_replace_the_victims_request() {
    let Some(ns) = lan("replay") else { return };
    ns.run(|| {
        let host = Host::start_bound(HOST, &["--native"]);
        let console = Console::login_from(&host, ip(OWNER));
        let native = raw_native::addr(&host);
        let (_victim, id, answer) = raw_native::knock(OWNER, native, "victim");
        assert_eq!(answer["status"], "approval_pending", "{answer}");
        // The certificate is public; the test holds its key only because
        // the attacker could not finish TLS without it.
        for _ in 0..3 {
            let mut replay = Raw::connect(ATTACKER, native, &id);
            let answer = replay.hello("victim", "connect");
            assert_eq!(answer["code"], "pairing_busy", "{answer}");
        }
        let list = pending(&console);
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0]["address"], OWNER, "the victim's own address");
        assert_eq!(list[0]["fingerprint"], id.fingerprint().to_string());
    });
}
