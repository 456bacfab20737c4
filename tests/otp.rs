//! One-time PINs for Moonlight-family clients (Apollo-compatible): the
//! console makes a PIN and a passphrase, and a client that sends `otpauth`
//! as Artemis does pairs with no step at the console. The client here is
//! the real Moonlight pairing code (moonlight-python) with Artemis's
//! `otpauth` added to its first request (tests/moonlight/client.py).

mod common;

use common::moonlight::{self, Device, Door};
use common::{Console, Host};
use serde_json::{json, Value};

fn create(console: &Console, body: Value) -> Value {
    let (status, otp) = console.send("POST", "/api/otp", Some(body));
    assert_eq!(status, 200, "{otp}");
    otp
}

#[test]
fn a_one_time_pin_pairs_a_moonlight_client_with_no_console_step_and_only_once() {
    let host = Host::start(&[]);
    let door = Door::of(&host);
    let console = Console::login(&host);
    let otp = create(&console, json!({"name": "Steam Deck\u{202E}"}));
    let (pin, pass) = (
        otp["pin"].as_str().unwrap(),
        otp["passphrase"].as_str().unwrap(),
    );
    assert_eq!(pin.len(), 4);
    // Generated: 12 letters and digits, easy to type on a TV remote.
    assert!(
        pass.len() == 12 && pass.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{pass}"
    );
    assert!(otp["expires_in_s"].as_u64().unwrap() <= 180);
    // Apollo's link: the GameStream HTTP address, the PIN, the passphrase,
    // the host's name.
    let link = otp["link"].as_str().unwrap();
    let prefix = format!(
        "art://127.0.0.1:{}?pin={pin}&passphrase={pass}&name=",
        door.http
    );
    assert!(link.starts_with(&prefix), "{link}");
    let listed = console.pairing()["otp"].clone();
    assert_eq!(listed["name"], "Steam Deck");
    assert_eq!(listed["link"], link);

    // The client pairs; nobody touches the console.
    let deck = Device::from("127.0.8.1");
    let run = deck.pair_otp(door, pin, pass);
    let result = run.next();
    assert_eq!(result["result"], "paired", "{result}");
    run.wait();
    let stored = moonlight::device(&console, &deck.fingerprint).expect("stored");
    assert_eq!(stored["via"], "otp");
    assert_eq!(stored["name"], "Steam Deck");
    assert_eq!(deck.pair_status(door).as_deref(), Some("1"));
    let state = console.pairing();
    assert_eq!(state["otp"], Value::Null, "used up: {state}");
    assert_eq!(
        state["otp_last"],
        json!({"result": "paired", "address": "127.0.8.1"})
    );

    // Used once: the same PIN and passphrase get Apollo's 503.
    let other = Device::from("127.0.8.2");
    let run = other.pair_otp(door, pin, pass);
    let result = run.next();
    assert_eq!(
        (&result["result"], &result["status"], &result["message"]),
        (
            &json!("refused"),
            &json!(503),
            &json!("OTP auth not available.")
        ),
        "{result}"
    );
    run.wait();
    assert!(moonlight::device(&console, &other.fingerprint).is_none());
}

/// A stranger without the passphrase tries phase 1 with a wrong `otpauth`
/// from other addresses: each try is counted and shown, and fails at the
/// client's check, but the one-time PIN stays usable (it was used up
/// 7–14 ms after it was made before), so the owner's client then pairs.
#[test]
fn a_strangers_wrong_tries_leave_the_one_time_pin_usable_and_the_right_client_pairs() {
    let host = Host::start(&[]);
    let door = Door::of(&host);
    let console = Console::login(&host);
    let otp = create(&console, json!({"passphrase": "CorrectHorse42"}));
    assert_eq!(otp["passphrase"], "CorrectHorse42");
    let pin = otp["pin"].as_str().unwrap();
    // Four wrong tries, each from its own address (the fifth would use
    // the PIN up; the right client's is the fifth try here).
    let strangers = ["127.0.8.31", "127.0.8.32", "127.0.8.33", "127.0.8.34"];
    for (i, source) in strangers.iter().enumerate() {
        let guesser = Device::from(source);
        let run = guesser.pair_otp(door, pin, "WrongHorse42");
        let result = run.next();
        // As on Apollo, the pairing goes on with a PIN the client cannot
        // know, and fails when the client checks the host's answer.
        assert_ne!(result["result"], "paired", "{result}");
        run.wait();
        assert!(moonlight::device(&console, &guesser.fingerprint).is_none());
        let state = console.pairing();
        let listed = &state["otp"];
        assert_eq!(
            listed["pin"],
            pin,
            "still usable after {} tries: {state}",
            i + 1
        );
        let tried: Vec<&str> = listed["tries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["address"].as_str().unwrap())
            .collect();
        assert_eq!(tried, strangers[..=i], "{state}");
        assert_eq!(listed["tries_left"], 5 - (i + 1), "{state}");
    }
    // A second try from an address that had its one: refused, not counted.
    let again = Device::from("127.0.8.31");
    let run = again.pair_otp(door, pin, "CorrectHorse42");
    let result = run.next();
    assert_eq!(
        (&result["status"], &result["message"]),
        (&json!(503), &json!("OTP auth not available.")),
        "{result}"
    );
    run.wait();
    assert_eq!(console.pairing()["otp"]["tries_left"], 1);
    // The right client pairs with it.
    let owner = Device::from("127.0.8.4");
    let run = owner.pair_otp(door, pin, "CorrectHorse42");
    let result = run.next();
    assert_eq!(result["result"], "paired", "{result}");
    run.wait();
    let stored = moonlight::device(&console, &owner.fingerprint).expect("stored");
    assert_eq!(stored["via"], "otp");
    let state = console.pairing();
    assert_eq!(state["otp"], Value::Null, "used up by the match: {state}");
    assert_eq!(
        state["otp_last"],
        json!({"result": "paired", "address": "127.0.8.4"})
    );

    // The audit trail says what happened in words that fit: a request with
    // a one-time PIN waits for nobody's PIN, and a wrong try failed on the
    // one-time PIN or the passphrase (otpauth cannot tell which), not on a
    // client that "gave up after the PIN was entered".
    let records = console.get("/api/audit?limit=100")["events"].clone();
    let records = records.as_array().unwrap();
    let of = |event: &str, address: &str| -> Vec<Value> {
        records
            .iter()
            .filter(|r| r["event"] == event && r["address"] == address)
            .cloned()
            .collect()
    };
    let waiting = &of("request_waiting", "127.0.8.4")[0];
    assert_eq!(waiting["via"], "otp", "{waiting}");
    assert_eq!(
        waiting["detail"],
        "pairs with the one-time PIN; nothing to type in the console"
    );
    for source in strangers {
        let rejected = &of("pin_rejected", source)[0];
        assert_eq!(rejected["via"], "otp", "{rejected}");
        assert_eq!(rejected["detail"], "wrong one-time PIN or passphrase");
    }
    let all = serde_json::to_string(records).unwrap();
    assert!(!all.contains("waits for the PIN Moonlight shows"), "{all}");
    assert!(!all.contains("gave up"), "{all}");
}

/// Five wrong tries in all use the one-time PIN up.
#[test]
fn five_wrong_tries_use_up_the_one_time_pin() {
    let host = Host::start(&[]);
    let door = Door::of(&host);
    let console = Console::login(&host);
    let otp = create(&console, json!({"passphrase": "CorrectHorse42"}));
    let pin = otp["pin"].as_str().unwrap();
    for i in 1..=5 {
        let source: &'static str = Box::leak(format!("127.0.8.{}", 40 + i).into_boxed_str());
        let run = Device::from(source).pair_otp(door, pin, "WrongHorse42");
        assert_ne!(run.next()["result"], "paired");
        run.wait();
    }
    let state = console.pairing();
    assert_eq!(state["otp"], Value::Null, "used up: {state}");
    assert_eq!(state["otp_last"]["result"], "wrong_passphrase");
    assert_eq!(state["otp_last"]["address"], "127.0.8.45");
    assert!(state["devices"].as_array().unwrap().is_empty());
    let owner = Device::from("127.0.8.46");
    let run = owner.pair_otp(door, pin, "CorrectHorse42");
    assert_eq!(run.next()["status"], 503);
    run.wait();
}

#[test]
fn otpauth_without_an_active_one_time_pin_is_503_and_passphrases_are_checked() {
    let host = Host::start(&[]);
    let door = Door::of(&host);
    let console = Console::login(&host);
    let dev = Device::from("127.0.8.5");
    let run = dev.pair_otp(door, "1234", "NoneWasMade1");
    assert_eq!(run.next()["message"], "OTP auth not available.");
    run.wait();
    // Made, then cancelled in the console.
    let otp = create(&console, json!({}));
    let (status, body) = console.send("DELETE", "/api/otp", None);
    assert_eq!((status, body), (200, json!({"cancelled": true})));
    let run = dev.pair_otp(
        door,
        otp["pin"].as_str().unwrap(),
        otp["passphrase"].as_str().unwrap(),
    );
    assert_eq!(run.next()["status"], 503);
    run.wait();
    // A passphrase has 8 to 64 printable characters.
    for bad in [
        "short1",
        "tab\tin it 12",
        "zero\u{200B}width1",
        &"x".repeat(65),
    ] {
        let (status, body) = console.send("POST", "/api/otp", Some(json!({"passphrase": bad})));
        assert_eq!(
            (status, &body["error"]["code"]),
            (400, &json!("bad_passphrase")),
            "{bad}"
        );
    }
    // The QR code of the link is an SVG the page can show.
    create(&console, json!({}));
    let svg = console
        .http
        .get(format!("{}/api/otp/qr.svg", console.base))
        .send()
        .unwrap();
    assert_eq!(svg.status(), 200);
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    assert!(svg.text().unwrap().contains("<svg"));
}

#[test]
fn an_expired_one_time_pin_is_503() {
    let host = Host::start(&[]);
    let door = Door::of(&host);
    let console = Console::login(&host);
    let otp = create(&console, json!({}));
    // The real 3 minutes: the host's clock decides, nothing is faked here.
    let left = otp["expires_in_s"].as_u64().unwrap();
    assert!((179..=180).contains(&left), "{otp}");
    std::thread::sleep(std::time::Duration::from_secs(left + 1));
    assert_eq!(console.pairing()["otp"], Value::Null);
    let dev = Device::from("127.0.8.6");
    let run = dev.pair_otp(
        door,
        otp["pin"].as_str().unwrap(),
        otp["passphrase"].as_str().unwrap(),
    );
    let result = run.next();
    assert_eq!(
        (&result["status"], &result["message"]),
        (&json!(503), &json!("OTP auth not available.")),
        "{result}"
    );
    run.wait();
}

#[test]
fn a_full_waiting_list_does_not_cost_the_one_time_pin() {
    let host = Host::start(&["--native"]);
    let door = Door::of(&host);
    let console = Console::login(&host);
    // Four knocks fill this address's share of the waiting list.
    let native = common::raw_native::addr(&host);
    let _knocks: Vec<_> = (0..4)
        .map(|i| common::raw_native::knock("127.0.8.7", native, &format!("k{i}")).0)
        .collect();
    let otp = create(&console, json!({}));
    let (pin, pass) = (
        otp["pin"].as_str().unwrap(),
        otp["passphrase"].as_str().unwrap(),
    );
    let crowded = Device::from("127.0.8.7");
    let run = crowded.pair_otp(door, pin, pass);
    let result = run.next();
    assert_eq!(result["status"], 503, "{result}");
    assert!(
        result["message"]
            .as_str()
            .unwrap()
            .contains("too many pairing requests"),
        "{result}"
    );
    run.wait();
    // The one-time PIN is still there for a device that gets in.
    assert_ne!(console.pairing()["otp"], Value::Null);
    let deck = Device::from("127.0.8.8");
    let run = deck.pair_otp(door, pin, pass);
    assert_eq!(run.next()["result"], "paired");
    run.wait();
}

/// The query of an `art://` link, decoded as a URL parser (Artemis's
/// `Uri.getQueryParameter`) decodes it: split at `&` and `=`, then
/// percent-decoded.
fn link_params(link: &str) -> std::collections::HashMap<String, String> {
    let (_, query) = link.split_once('?').expect("a query");
    query
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("key=value");
            let v = percent_encoding::percent_decode_str(v)
                .decode_utf8()
                .unwrap();
            (k.to_owned(), v.into_owned())
        })
        .collect()
}

#[test]
fn a_passphrase_of_any_printable_text_pairs_through_the_link() {
    let host = Host::start(&[]);
    let door = Door::of(&host);
    let console = Console::login(&host);
    let cases = [
        ("bars-otp-pass", "127.0.8.20"),
        ("a b&c=d+e %41 #ü?", "127.0.8.21"),
    ];
    for (pass, source) in cases {
        let otp = create(&console, json!({"passphrase": pass, "name": "Steam Deck"}));
        assert_eq!(otp["passphrase"], pass);
        let link = otp["link"].as_str().unwrap();
        // Every value percent-encoded: nothing in the passphrase splits the query.
        let params = link_params(link);
        assert_eq!(params.len(), 3, "{link}");
        assert_eq!(params["passphrase"], pass, "{link}");
        assert_eq!(params["pin"], otp["pin"].as_str().unwrap());
        // The client takes both from the link, as Artemis does, and pairs.
        let dev = Device::from(source);
        let run = dev.pair_otp(door, &params["pin"], &params["passphrase"]);
        let result = run.next();
        assert_eq!(result["result"], "paired", "{pass}: {result}");
        run.wait();
        let stored = moonlight::device(&console, &dev.fingerprint).expect("stored");
        assert_eq!(stored["via"], "otp");
    }
}

/// `GET /api/pairing` with the `Host` header a browser sends.
fn pairing_with_host(console: &Console, host_header: &str) -> Value {
    let resp = console
        .http
        .get(format!("{}/api/pairing", console.base))
        .header("Host", host_header)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().unwrap()
}

#[test]
fn the_link_names_the_address_the_console_was_opened_on() {
    let host = Host::start(&[]);
    let door = Door::of(&host);
    let console = Console::login(&host);
    create(&console, json!({"name": "Steam Deck"}));
    let http = door.http;
    let link_of = |h: &str| {
        let otp = pairing_with_host(&console, h)["otp"].clone();
        (
            otp["link"].as_str().unwrap().to_owned(),
            otp["address"].as_str().unwrap().to_owned(),
        )
    };
    // An IP address the browser used comes first, and is the link's host.
    let (link, address) = link_of("192.0.2.7:47990");
    assert!(
        link.starts_with(&format!("art://192.0.2.7:{http}?pin=")),
        "{link}"
    );
    assert_eq!(address, "192.0.2.7");
    let (link, address) = link_of("[fd00::7]:47990");
    assert!(
        link.starts_with(&format!("art://[fd00::7]:{http}?")),
        "{link}"
    );
    assert_eq!(address, "[fd00::7]");
    // `name` stays the host's name (Apollo's link, Artemis shows it as the PC).
    let name = console.get("/api/host")["name"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(link_params(&link)["name"], name);
    // The host's own name is kept as typed (lowercase), another name or
    // something that is no address at all is not: the first LAN address.
    if name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        let own = format!("{}.local:47990", name.to_uppercase());
        let (link, _) = link_of(&own);
        let want = format!("art://{}.local:{http}?", name.to_lowercase());
        assert!(link.starts_with(&want), "{link}");
    }
    for other in [
        "evil.example:47990",
        "\"><b>x</b>",
        "localhost",
        "127.0.0.1:1",
    ] {
        let (link, address) = link_of(other);
        assert!(
            link.starts_with(&format!("art://127.0.0.1:{http}?")),
            "{other}: {link}"
        );
        assert_eq!(address, "127.0.0.1");
    }
    // The page lets the user edit the address: the QR code takes it, if it
    // is an IP address or a host name.
    let qr = |address: &str| {
        console
            .http
            .get(format!("{}/api/otp/qr.svg", console.base))
            .query(&[("address", address)])
            .send()
            .unwrap()
    };
    assert_eq!(qr("10.1.2.3").status(), 200);
    assert_eq!(qr("gaming-pc.lan").status(), 200);
    for bad in ["a b", "<b>", "x/y", "0.0.0.0"] {
        let resp = qr(bad);
        assert_eq!(resp.status(), 400, "{bad}");
        let body: Value = resp.json().unwrap();
        assert_eq!(body["error"]["code"], "bad_address", "{bad}");
    }
}
