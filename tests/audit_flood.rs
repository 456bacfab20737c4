//! Noise cannot rotate the audit history away: a flood of wrong logins from
//! many 127/8 addresses against a trail that is already full (five files of
//! 4 MiB, decisions spread through them, the current one about to rotate)
//! keeps every earlier decision readable through `/api/audit`, in time
//! order with the noise, and writes at most one `audit_suppressed` line a
//! minute. Against the real binary; prints what it measured.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{raw_native, Console, Host};
use openssl::ssl::{Ssl, SslContext, SslMethod, SslVerifyMode};
use punktfunk_certs::Fingerprint;
use serde_json::{json, Value};

/// Size at which the host rotates its trail (docs/state-and-audit.md, "Audit trail").
const ROTATE_BYTES: usize = 4 * 1024 * 1024;
const FILES: [&str; 5] = [
    "audit.4.jsonl",
    "audit.3.jsonl",
    "audit.2.jsonl",
    "audit.1.jsonl",
    "audit.jsonl",
];
const FLOOD: Duration = Duration::from_secs(25);
const PASSWORD: &str = "the owner's password";

/// Fills the trail: every file 4 MiB of noise (failed logins with a long
/// detail, so the files hold few lines) with a decision every 40 lines; the
/// current file just short of rotating. Returns the decisions' seqs, the
/// first seq of the second-oldest file and the last seq.
fn fill(state: &Path, first_seq: u64) -> (Vec<u64>, u64, u64) {
    let mut seq = first_seq;
    let mut decisions = Vec::new();
    let mut second = 0;
    let padding = "x".repeat(3000);
    for (i, name) in FILES.iter().enumerate() {
        if i == 1 {
            second = seq;
        }
        let size = if i == FILES.len() - 1 {
            ROTATE_BYTES - 16 * 1024
        } else {
            ROTATE_BYTES
        };
        let mut out = Vec::with_capacity(size + 4096);
        let mut n = 0u32;
        while out.len() < size {
            let line = if n % 40 == 7 {
                decisions.push(seq);
                json!({
                    "seq": seq, "at": "2026-06-01T12:00:00Z", "event": "renamed",
                    "door": "cli", "outcome": "ok",
                    "device": {
                        "fingerprint": Fingerprint::of_der(&seq.to_be_bytes()),
                        "name": format!("device {seq}"),
                    },
                })
            } else {
                json!({
                    "seq": seq, "at": "2026-06-01T12:00:00Z", "event": "login",
                    "door": "console", "outcome": "failed", "address": "127.9.9.9",
                    "detail": padding,
                })
            };
            serde_json::to_writer(&mut out, &line).unwrap();
            out.push(b'\n');
            seq += 1;
            n += 1;
        }
        std::fs::write(state.join(name), &out).unwrap();
    }
    (decisions, second, seq - 1)
}

/// One wrong login from `src` (401, 429 or 503); whether it was answered.
fn wrong_login(src: &str, console: SocketAddr) -> bool {
    let mut b = SslContext::builder(SslMethod::tls_client()).unwrap();
    b.set_verify(SslVerifyMode::NONE);
    let tcp = raw_native::tcp_from(src, console);
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let Ok(mut tls) = Ssl::new(&b.build()).unwrap().connect(tcp) else {
        return false;
    };
    let body = json!({ "password": "wrong wrong wrong" }).to_string();
    let sent = write!(
        tls,
        "POST /api/login HTTP/1.1\r\nHost: {console}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw);
    sent.is_ok() && raw.starts_with(b"HTTP/1.1 ")
}

/// Every record `/api/audit` shows, newest first, page by page.
fn whole_trail(console: &Console) -> Vec<Value> {
    let mut records = Vec::new();
    let mut before = None::<u64>;
    loop {
        let cursor = before.map(|b| format!("&before={b}")).unwrap_or_default();
        let page = console.get(&format!("/api/audit?limit=500{cursor}"));
        records.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next"].as_u64() {
            Some(next) => before = Some(next),
            None => return records,
        }
    }
}

fn count(records: &[Value], after: u64, event: &str) -> usize {
    records
        .iter()
        .filter(|r| r["seq"].as_u64().unwrap() > after && r["event"] == event)
        .count()
}

#[test]
fn a_flood_against_a_full_trail_keeps_every_decision_and_writes_one_count_a_minute() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    // A first start makes the identity; then the owner's password, and a
    // trail that is full.
    Host::start_in(&state, &[]).stop();
    assert!(common::set_password(&state, PASSWORD).status.success());
    let started = std::fs::read_to_string(state.join("audit.jsonl")).unwrap();
    let first_seq = started.lines().count() as u64 + 1;
    let _ = std::fs::remove_file(state.join("audit.jsonl"));
    let (decisions, second, last_filled) = fill(&state, first_seq);
    let oldest: Vec<u64> = decisions
        .iter()
        .copied()
        .take_while(|&d| d < second)
        .collect();
    assert!(!oldest.is_empty());

    let mut host = Host::start_in(&state, &[]);
    host.password = Some(PASSWORD.to_owned());
    let console_addr: SocketAddr = host.console.trim_start_matches("https://").parse().unwrap();
    // The owner's browser logged in before: during and after the flood it is
    // a known browser, which the flood's spent global budget does not stop.
    let owner = common::client();
    common::logged_in(&owner, &host);

    // The flood: 8 senders, each from a new 127/8 address every request.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let senders: Vec<_> = (0..8u32)
        .map(|t| {
            let (stop, sent) = (stop.clone(), sent.clone());
            std::thread::spawn(move || {
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let src = format!("127.{}.{}.{}", 10 + t, (i / 250) % 250, 1 + i % 250);
                    if wrong_login(&src, console_addr) {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(FLOOD);
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.join().unwrap();
    }
    let elapsed = t0.elapsed();

    let console = Console::login_with(&host, owner);
    let records = whole_trail(&console);
    // What it cost, printed before the checks (also when they fail).
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    let lost = decisions.iter().filter(|d| !seqs.contains(d)).count();
    let wrong = count(&records, last_filled, "login");
    let notes = count(&records, last_filled, "audit_suppressed");
    let suppressed: u64 = records
        .iter()
        .filter(|r| r["seq"].as_u64().unwrap() > last_filled && r["event"] == "audit_suppressed")
        .filter_map(|r| r["detail"].as_str()?.split(' ').next()?.parse::<u64>().ok())
        .sum();
    let sent = sent.load(Ordering::Relaxed);
    let minutes = elapsed.as_secs_f64() / 60.0;
    let trail_bytes: u64 = FILES
        .iter()
        .chain(["audit.decisions.jsonl"].iter())
        .filter_map(|f| std::fs::metadata(state.join(f)).ok())
        .map(|m| m.len())
        .sum();
    let written = records
        .iter()
        .filter(|r| r["seq"].as_u64().unwrap() > last_filled);
    let bytes: usize = written.map(|r| r.to_string().len() + 1).sum();
    let per_s = bytes as f64 / elapsed.as_secs_f64();
    eprintln!(
        "flood: {sent} wrong logins in {:.1} s; written: {wrong} login lines, {notes} \
         audit_suppressed lines ({:.1}/min) counting {suppressed}, {:.0} B/s of noise: 20 MiB of rotated files \
         turn over in {:.0} min; {} earlier decisions, {lost} of them lost ({} were in the oldest file); \
         trail files now {trail_bytes} B",
        elapsed.as_secs_f64(),
        notes as f64 / minutes,
        per_s,
        (5 * ROTATE_BYTES) as f64 / per_s / 60.0,
        decisions.len(),
        oldest.len(),
    );
    // The flood made the trail rotate: the oldest file's noise is gone.
    assert!(
        !seqs.contains(&first_seq),
        "the flood never rotated the trail"
    );
    // Newest first, decisions and noise together, in time order.
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "out of order");
    for d in &decisions {
        assert!(seqs.contains(d), "decision {d} was rotated away");
    }
    assert!(sent > 100, "the flood was too weak: {sent}");
    assert!(notes >= 1, "nothing was suppressed: no flood");
    assert!(
        notes as u64 <= 1 + elapsed.as_secs() / 60,
        "{notes} audit_suppressed lines in {elapsed:?}"
    );
}
