//! The tables of docs/native-protocol.md held to the code: the § 4.2 name
//! examples against the host's sanitiser, the § 5 codes against
//! [`ErrorCode::ALL`], the numbers of § 8 against the constants the
//! host and the reference client use, and the § 12.4 pairing-link vectors
//! against [`PairingLink`], and the § 4.9 grant vectors against
//! [`Message::decode`]. (The § 10 vectors are checked in
//! `native/src/vectors.rs`.)

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use punktfunk_certs::GateConfig;
use punktfunk_native::endpoint::DEFAULT_MAX_CONNECTIONS;
use punktfunk_native::message::{
    DisplayName, MAX_ERROR_MESSAGE_BYTES, MAX_ERROR_MESSAGE_CHARS, MAX_FEATURES, MAX_NAME_BYTES,
    MAX_NAME_CHARS, MAX_PERMISSIONS, MAX_TOKEN_BYTES,
};
use punktfunk_native::{
    timeouts, ErrorCode, Grant, Message, PairingLink, LINK_CONNECT_TIMEOUT, MAX_FRAME_LEN,
    MAX_LINK_ADDRESSES, MAX_LINK_LEN,
};
use serde_json::Value;

const DOC: &str = include_str!("../../docs/native-protocol.md");

/// The text of the section that starts with `heading` (a whole line), up
/// to the next heading of the same or a higher level.
fn section(heading: &str) -> &'static str {
    let level = heading.chars().take_while(|&c| c == '#').count();
    let start = DOC
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no heading `{heading}` in the document"))
        + 1;
    let body = &DOC[start + heading.len()..];
    let end = body
        .match_indices("\n#")
        .find(|(i, _)| {
            let hashes = body[i + 1..].chars().take_while(|&c| c == '#').count();
            hashes > 0 && hashes <= level
        })
        .map_or(body.len(), |(i, _)| i);
    &body[..end]
}

/// The cells of every table row in `text` (header and separator rows
/// included), trimmed.
fn rows(text: &str) -> Vec<Vec<&str>> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with('|') && l.ends_with('|') && l.len() > 1)
        .map(|l| l[1..l.len() - 1].split('|').map(str::trim).collect())
        .collect()
}

/// The rows of the table between `<!-- {name}:begin -->` and its end marker.
fn marked_rows(name: &str) -> Vec<Vec<&'static str>> {
    let begin = format!("<!-- {name}:begin -->");
    let end = format!("<!-- {name}:end -->");
    let start = DOC.find(&begin).expect("begin marker") + begin.len();
    let stop = DOC.find(&end).expect("end marker");
    rows(&DOC[start..stop])
}

/// The second cell of the row whose first cell is `first`, in `text`.
fn cell(text: &str, first: &str) -> String {
    let found: Vec<_> = rows(text)
        .into_iter()
        .filter(|r| r.first() == Some(&first))
        .collect();
    assert_eq!(found.len(), 1, "one row `{first}` expected in the table");
    found[0][1].to_owned()
}

/// `text` with every run of whitespace made one space, so prose can be
/// matched across line breaks.
fn flat(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn secs(d: Duration) -> String {
    assert_eq!(d.subsec_nanos(), 0, "the document gives whole seconds");
    format!("{} s", d.as_secs())
}

/// `"…"` in backticks, read as a JSON string; `null` is `None`.
fn json_cell(cell: &str) -> Option<String> {
    let inner = cell
        .strip_prefix('`')
        .and_then(|c| c.strip_suffix('`'))
        .unwrap_or_else(|| panic!("`{cell}` is not in backticks"));
    serde_json::from_str(inner).unwrap_or_else(|e| panic!("`{inner}`: {e}"))
}

#[test]
fn name_examples_are_what_the_host_makes_of_them() {
    let table = marked_rows("name-vectors");
    assert_eq!(table[0], ["received", "sanitised"]);
    let examples = &table[2..];
    assert!(examples.len() >= 15, "the table lost rows");
    for row in examples {
        let raw = json_cell(row[0]).expect("an input is a string");
        let want = json_cell(row[1]);
        assert!(raw.len() <= MAX_NAME_BYTES, "{raw:?} would not even parse");
        let got = DisplayName::sanitize(&raw).map(|n| n.as_str().to_owned());
        assert_eq!(got, want, "§ 4.2 example {:?}", row[0]);
    }
    // The rule's own statements, for whatever the table does not list.
    let rule = section("### 4.2 Names");
    assert!(flat(rule).contains(&format!("At most {MAX_NAME_CHARS} characters")));
    for c in ['\t', '\n', '\u{b}', '\u{c}', '\r', '\u{85}'] {
        assert!(c.is_control() && c.is_whitespace());
        let folded = DisplayName::sanitize(&format!("a{c}b")).unwrap();
        assert_eq!(folded.as_str(), "a b", "{c:?} becomes a space");
    }
    for c in (0..=0x9f_u32)
        .filter_map(char::from_u32)
        .filter(|c| c.is_control() && !c.is_whitespace())
    {
        let removed = DisplayName::sanitize(&format!("a{c}b")).unwrap();
        assert_eq!(removed.as_str(), "ab", "{c:?} is removed");
    }
}

#[test]
fn error_code_table_is_the_closed_set() {
    let table = rows(section("## 5. Error codes"));
    assert_eq!(table[0][..2], ["code", "kind"]);
    let codes: Vec<String> = table[2..]
        .iter()
        .map(|r| r[0].trim_matches('`').to_owned())
        .collect();
    let ours: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(codes, ours, "§ 5 lists every code, in ErrorCode::ALL order");
    let local: Vec<&str> = table[2..]
        .iter()
        .filter(|r| r[1] == "client-local")
        .map(|r| r[0].trim_matches('`'))
        .collect();
    assert_eq!(
        local,
        [
            "denied",
            "host_identity_changed",
            "host_confirmation_failed"
        ],
        "`expired` is on the wire too: a device whose access ended"
    );
    for extra in ["`host_not_accepted`", "`connection_failed`"] {
        assert!(section("## 5. Error codes").contains(extra), "{extra}");
    }
}

#[test]
fn timeout_tables_match_the_constants() {
    let t = section("### 8.1 Timeouts");
    let gate = GateConfig::default();
    for (step, limit) in [
        (
            "TCP accept → TLS handshake complete",
            timeouts::TLS_HANDSHAKE,
        ),
        ("handshake complete → `hello` received", timeouts::HELLO),
        ("a frame's first byte → its last byte", timeouts::FRAME_BODY),
        (
            "`welcome{pairing}` → client `pake`",
            timeouts::HOST_PAIRING_STEP,
        ),
        (
            "host `pake` → client `confirm`",
            timeouts::HOST_PAIRING_STEP,
        ),
        (
            "silence while waiting for a `decision`",
            timeouts::SESSION_IDLE,
        ),
        ("silence in a session", timeouts::SESSION_IDLE),
        ("a pending request (knock)", gate.pending_ttl),
        ("an armed PIN, and its link's secret", gate.pin_ttl),
        ("host → client: writing one frame", timeouts::FRAME_BODY),
        (
            "client: each wait for a host answer",
            timeouts::PAIRING_STEP,
        ),
        ("client: keep-alive `ping`", timeouts::PING_INTERVAL),
        (
            "client: silence from the host while waiting for a `decision` or in a session",
            timeouts::SESSION_IDLE,
        ),
    ] {
        assert_eq!(cell(t, step), secs(limit), "§ 8.1 `{step}`");
    }
    assert_eq!(
        cell(
            t,
            "client: retrying `pairing_busy` on `hello{intent: pair}`"
        ),
        format!(
            "{}, every {} ms",
            secs(punktfunk_native::PAIRING_BUSY_RETRY_WINDOW),
            punktfunk_native::PAIRING_BUSY_RETRY_INTERVAL.as_millis()
        )
    );
    assert_eq!(
        cell(t, "client: TCP connect, then the TLS handshake"),
        format!("{} each", secs(timeouts::TLS_HANDSHAKE))
    );
    assert_eq!(
        cell(
            t,
            "client: TCP connect to each address of a pairing link (§ 12.3)"
        ),
        secs(LINK_CONNECT_TIMEOUT)
    );
    // The prose elsewhere quotes the same numbers.
    assert!(
        flat(section("### 4.6 `decision` (host → client)")).contains(&format!(
            "nobody decided in time ({}, § 8)",
            secs(gate.pending_ttl)
        ))
    );
    assert!(
        flat(section("### 6.5 Why this order: one guess per armed PIN")).contains(&format!(
            "each with its own {} deadline",
            secs(timeouts::HOST_PAIRING_STEP)
        ))
    );
}

#[test]
fn limit_table_matches_the_constants() {
    let t = section("### 8.2 Limits");
    let gate = GateConfig::default();
    assert_eq!(cell(t, "frame payload"), format!("{MAX_FRAME_LEN} bytes"));
    assert_eq!(
        cell(t, "connections served at once"),
        DEFAULT_MAX_CONNECTIONS.to_string()
    );
    assert_eq!(
        cell(
            t,
            "connections in the pairing steps (waiting for `pake`, or past it)"
        ),
        format!(
            "{}, and {} per source address",
            punktfunk_native::endpoint::MAX_PAIRING,
            punktfunk_native::endpoint::MAX_PAIRING_PER_ADDRESS
        )
    );
    assert_eq!(cell(t, "waiting requests"), gate.max_pending.to_string());
    assert_eq!(
        cell(t, "waiting requests per source address"),
        gate.max_pending_per_address.to_string()
    );
    assert!(flat(t).contains(&format!(
        "at most {MAX_NAME_BYTES} bytes on the wire and {MAX_NAME_CHARS} characters"
    )));
    assert!(flat(t).contains(&format!(
        "`error.message` at most {MAX_ERROR_MESSAGE_BYTES} bytes, {MAX_ERROR_MESSAGE_CHARS} characters kept"
    )));
}

/// The JSON between `<!-- {name}:begin -->` and its end marker, without the
/// code fence.
fn json_block(name: &str) -> Value {
    let begin = format!("<!-- {name}:begin -->");
    let end = format!("<!-- {name}:end -->");
    let start = DOC.find(&begin).expect("begin marker") + begin.len();
    let stop = DOC.find(&end).expect("end marker");
    let body = DOC[start..stop]
        .trim()
        .strip_prefix("```json")
        .and_then(|b| b.strip_suffix("```"))
        .expect("a ```json block");
    serde_json::from_str(body).expect("the block is JSON")
}

#[test]
fn pairing_link_vectors_are_what_the_parser_makes_of_them() {
    let v = json_block("link-vectors");
    let valid = v["valid"].as_array().expect("valid vectors");
    assert!(valid.len() >= 4, "the vectors lost cases");
    for case in valid {
        let text = case["link"].as_str().unwrap();
        let link = PairingLink::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(link.host_fingerprint.to_hex(), case["fp"], "{text}");
        assert_eq!(link.secret.to_hex().as_str(), case["secret"], "{text}");
        assert_eq!(u64::from(link.port), case["port"], "{text}");
        let addresses: Vec<String> = link.addresses.iter().map(ToString::to_string).collect();
        assert_eq!(
            Value::from(addresses),
            case["addresses"],
            "{text}: addresses, in order"
        );
        assert_eq!(link.host_name.as_str(), case["host_name"], "{text}");
        let written = case["written"].as_str().unwrap_or(text);
        assert_eq!(link.to_uri(), written, "what a host writes for {text}");
    }
    // What the vectors promise to show.
    let names: Vec<&str> = valid
        .iter()
        .filter_map(|c| c["host_name"].as_str())
        .collect();
    assert!(names.iter().any(|n| !n.is_ascii()), "a non-ASCII host name");
    assert!(
        valid
            .iter()
            .any(|c| c["link"].as_str().unwrap().contains("a=fd00%3A%3A1")),
        "an encoded IPv6 address"
    );
    assert!(
        valid
            .iter()
            .any(|c| !c["link"].as_str().unwrap().contains("&n=")),
        "a link without a name"
    );

    let invalid = v["invalid"].as_array().expect("invalid vectors");
    let mut kinds = Vec::new();
    for case in invalid {
        let text = case["link"].as_str().unwrap();
        let err = PairingLink::parse(text).expect_err(text);
        assert_eq!(err.kind(), case["error"], "{text}: {err}");
        kinds.push(err.kind());
    }
    for kind in [
        "not_a_pairing_link",
        "malformed",
        "unsupported_version",
        "missing",
        "duplicate",
        "bad_value",
        "too_many_addresses",
    ] {
        assert!(kinds.contains(&kind), "no `{kind}` vector");
    }
    // `too_long` by construction: a vector that long would not be read.
    let valid0 = valid[0]["link"].as_str().unwrap();
    let long = format!("{valid0}&x={}", "y".repeat(MAX_LINK_LEN));
    assert_eq!(PairingLink::parse(&long).unwrap_err().kind(), "too_long");
}

#[test]
fn pairing_link_numbers_match_the_constants() {
    let format = section("### 12.1 Format");
    assert_eq!(
        cell(format, "`a`"),
        format!("1 to {MAX_LINK_ADDRESSES} times")
    );
    // The longest link a host writes, as the prose says.
    let longest = PairingLink {
        addresses: vec![
            IpAddr::V6(Ipv6Addr::from([
                0xfd00, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff
            ]));
            MAX_LINK_ADDRESSES
        ],
        port: 65535,
        host_fingerprint: punktfunk_certs::Fingerprint::from_bytes([0xab; 32]),
        secret: punktfunk_native::LinkSecret::from_bytes([0xff; 16]),
        host_name: DisplayName::sanitize(&"\u{1f3ae}".repeat(MAX_NAME_CHARS + 1)).unwrap(),
    }
    .to_uri();
    assert!(longest.len() <= MAX_LINK_LEN);
    assert!(
        flat(format).contains(&format!(
            "has {} bytes; readers refuse more than {MAX_LINK_LEN} bytes",
            longest.len()
        )),
        "§ 12.1 gives the longest link ({} bytes) and the cap",
        longest.len()
    );
    let reading = flat(section("### 12.2 Reading a link"));
    assert!(reading.contains(&format!("At most {MAX_LINK_LEN} bytes")));
    assert!(reading.contains(&format!(
        "at most {MAX_LINK_ADDRESSES} (`too_many_addresses`)"
    )));
    assert!(reading.contains(&format!("has at most {MAX_NAME_BYTES} bytes once decoded")));
    assert!(
        flat(section("### 12.3 What a client does with a link")).contains(&format!(
            "gives the TCP connect {} per address",
            secs(LINK_CONNECT_TIMEOUT)
        ))
    );
}

/// What a decoded message of the § 4.9 vectors means, in the table's words.
fn grant_means(msg: &Message) -> String {
    let grant = |g: &Grant| {
        let may = if g.permissions.is_empty() {
            "nothing".to_owned()
        } else {
            let names: Vec<String> = g.permissions.iter().map(|p| format!("`{p}`")).collect();
            names.join(", ")
        };
        match g.expires_at {
            Some(t) => format!("{may}; until {t}"),
            None => format!("{may}; no end"),
        }
    };
    match msg {
        Message::Grant(g) => grant(g),
        Message::Welcome(w) => w
            .grant
            .as_ref()
            .map_or_else(|| "no grant (a host before grants)".to_owned(), grant),
        Message::Hello(h) if h.features.grant => "offers `grant`".to_owned(),
        Message::Hello(_) => "offers nothing".to_owned(),
        other => panic!("a {} in the grant vectors", other.type_name()),
    }
}

#[test]
fn grant_vectors_are_what_the_parser_makes_of_them() {
    let table = marked_rows("grant-vectors");
    assert_eq!(table[0], ["payload", "means"]);
    let examples = &table[2..];
    assert!(examples.len() >= 12, "the table lost rows");
    for row in examples {
        let payload = row[0]
            .strip_prefix('`')
            .and_then(|c| c.strip_suffix('`'))
            .expect("a payload in backticks");
        let got = match Message::decode(payload.as_bytes()) {
            Ok(msg) => {
                // What this implementation writes reads back the same.
                let again = Message::decode(&msg.to_json().unwrap()).unwrap();
                assert_eq!(again, msg, "{payload}");
                grant_means(&msg)
            }
            Err(_) => "`bad_message`".to_owned(),
        };
        assert_eq!(got, row[1], "§ 4.9 vector {payload}");
    }
    let rules = flat(section("### 4.9 `grant` (host → client)"));
    assert!(rules.contains(&format!(
        "at most {MAX_PERMISSIONS} names of 1–{MAX_TOKEN_BYTES} bytes"
    )));
    let hello = flat(section("### 4.1 `hello` (client → host)"));
    assert!(hello.contains(&format!(
        "at most {MAX_FEATURES} names of 1–{MAX_TOKEN_BYTES} bytes"
    )));
    // The bounds themselves.
    let many = |n: usize| {
        let names: Vec<String> = (0..n).map(|i| format!("\"p{i}\"")).collect();
        format!(
            r#"{{"type":"grant","permissions":[{}],"expires_at":null}}"#,
            names.join(",")
        )
    };
    assert!(Message::decode(many(MAX_PERMISSIONS).as_bytes()).is_ok());
    assert!(Message::decode(many(MAX_PERMISSIONS + 1).as_bytes()).is_err());
    let long = |n: usize| {
        format!(
            r#"{{"type":"grant","permissions":["{}"],"expires_at":null}}"#,
            "a".repeat(n)
        )
    };
    assert!(Message::decode(long(MAX_TOKEN_BYTES).as_bytes()).is_ok());
    assert!(Message::decode(long(MAX_TOKEN_BYTES + 1).as_bytes()).is_err());
}
