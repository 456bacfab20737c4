//! The tables of docs/native-protocol.md held to the code: the § 4.2 name
//! examples against the host's sanitiser, the § 5 codes against
//! [`ErrorCode::ALL`], and the numbers of § 8 against the constants the
//! host and the reference client use. (The § 10 vectors are checked in
//! `native/src/vectors.rs`.)

use std::time::Duration;

use punktfunk_certs::GateConfig;
use punktfunk_native::endpoint::DEFAULT_MAX_CONNECTIONS;
use punktfunk_native::message::{
    DisplayName, MAX_ERROR_MESSAGE_BYTES, MAX_ERROR_MESSAGE_CHARS, MAX_NAME_BYTES, MAX_NAME_CHARS,
};
use punktfunk_native::{timeouts, ErrorCode, MAX_FRAME_LEN};

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
    let begin = "<!-- name-vectors:begin -->";
    let end = "<!-- name-vectors:end -->";
    let start = DOC.find(begin).expect("name table begin marker") + begin.len();
    let stop = DOC.find(end).expect("name table end marker");
    let table = rows(&DOC[start..stop]);
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
            "expired",
            "host_identity_changed",
            "host_confirmation_failed"
        ]
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
        ("an armed PIN", gate.pin_ttl),
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
    // The prose elsewhere quotes the same numbers.
    assert!(
        flat(section("### 4.6 `decision` (host → client)")).contains(&format!(
            "nobody decided in time ({}, § 8)",
            secs(gate.pending_ttl)
        ))
    );
    assert!(
        flat(section("### 6.5 Why this order: one guess per armed PIN")).contains(&format!(
            "The host gives each step {}",
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
    assert_eq!(cell(t, "pairing exchanges at once"), "1");
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
