use super::*;

fn fp(n: u8) -> Fingerprint {
    Fingerprint::of_der(&[n])
}

fn device(n: u8) -> DeviceRef {
    DeviceRef {
        fingerprint: fp(n),
        name: format!("dev {n}"),
        label: None,
    }
}

fn all(dir: &Path) -> Vec<Record> {
    read(
        dir,
        &Query {
            limit: usize::MAX,
            ..Query::default()
        },
    )
    .unwrap()
    .events
}

#[test]
fn entries_are_durable_in_order_and_read_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), AuditConfig::default(), None).unwrap();
    let now = Instant::now();
    let t1 = log.append(Entry::new(Event::PairingArmed, Door::Console), 0, now);
    let t2 = log.append(
        Entry::new(Event::Paired, Door::Native)
            .device(device(1))
            .via(Via::Pin)
            .address("127.0.0.1".parse().unwrap()),
        1_796_000_000,
        now,
    );
    t2.durable_blocking().unwrap();
    t1.durable_blocking().unwrap();
    let records = all(dir.path());
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].seq, 2);
    assert_eq!(records[0].entry.event, Event::Paired);
    assert_eq!(records[0].at, "2026-11-30T00:53:20Z");
    assert_eq!(records[1].at, "1970-01-01T00:00:00Z");
    let line = fs::read_to_string(dir.path().join(AUDIT_FILE)).unwrap();
    let second = line.lines().nth(1).unwrap();
    assert!(second.starts_with(r#"{"seq":2,"at":"2026-11-30T00:53:20Z","event":"paired","door":"native","outcome":"ok","device":{"fingerprint":""#), "{second}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join(AUDIT_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Numbering continues after a restart.
    drop(log);
    let log = AuditLog::open(dir.path(), AuditConfig::default(), None).unwrap();
    log.append(Entry::new(Event::Logout, Door::Console), 0, now)
        .durable_blocking()
        .unwrap();
    assert_eq!(all(dir.path())[0].seq, 3);
}

#[test]
fn a_torn_last_line_is_skipped_and_fenced_off() {
    let dir = tempfile::tempdir().unwrap();
    let now = Instant::now();
    {
        let log = AuditLog::open(dir.path(), AuditConfig::default(), None).unwrap();
        log.append(Entry::new(Event::PairingArmed, Door::Console), 0, now)
            .durable_blocking()
            .unwrap();
    }
    let path = dir.path().join(AUDIT_FILE);
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(br#"{"seq":2,"at":"1970-01-01T00:0"#).unwrap();
    drop(f);
    assert_eq!(all(dir.path()).len(), 1);
    let log = AuditLog::open(dir.path(), AuditConfig::default(), None).unwrap();
    log.append(Entry::new(Event::Logout, Door::Console), 0, now)
        .durable_blocking()
        .unwrap();
    let records = all(dir.path());
    assert_eq!(
        records
            .iter()
            .map(|r| (r.seq, r.entry.event))
            .collect::<Vec<_>>(),
        [(2, Event::Logout), (1, Event::PairingArmed)]
    );
}

#[test]
fn rotation_keeps_four_older_files_and_reads_across_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = AuditConfig {
        rotate_bytes: 1000,
        ..AuditConfig::default()
    };
    let log = AuditLog::open(dir.path(), config, None).unwrap();
    let now = Instant::now();
    for i in 0..200u8 {
        log.append(
            Entry::new(Event::Renamed, Door::Cli).device(device(i)),
            0,
            now,
        )
        .durable_blocking()
        .unwrap();
    }
    drop(log);
    for f in ROTATED_FILES {
        let len = fs::metadata(dir.path().join(f)).unwrap().len();
        assert!((1000..1300).contains(&len), "{f}: {len}");
    }
    assert!(!dir.path().join("audit.5.jsonl").exists());
    let records = all(dir.path());
    // Newest first, contiguous, and nothing lost: the decisions of the
    // dropped files were kept.
    assert_eq!(records[0].seq, 200);
    assert!(records.windows(2).all(|w| w[0].seq == w[1].seq + 1));
    assert_eq!(records.len(), 200);
    // Pages: cursor, device filter.
    let page = read(
        dir.path(),
        &Query {
            limit: 3,
            before: Some(199),
            ..Query::default()
        },
    )
    .unwrap();
    assert_eq!(
        page.events.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [198, 197, 196]
    );
    assert_eq!(page.next, Some(196));
    let page = read(
        dir.path(),
        &Query {
            limit: 10,
            device: Some(fp(190)),
            ..Query::default()
        },
    )
    .unwrap();
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0].seq, 191);
    assert_eq!(page.next, None);
    // Reopening finds the last seq even right after a rotation.
    let log = AuditLog::open(dir.path(), config, None).unwrap();
    log.append(Entry::new(Event::Logout, Door::Console), 0, now)
        .durable_blocking()
        .unwrap();
    assert_eq!(all(dir.path())[0].seq, 201);
}

#[test]
fn unsolicited_entries_are_budgeted_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), AuditConfig::default(), None).unwrap();
    let t0 = Instant::now();
    let knock = |ip: &str| {
        Entry::new(Event::Login, Door::Console)
            .outcome(Outcome::Failed)
            .address(ip.parse().unwrap())
    };
    // One address: its burst, then nothing.
    for _ in 0..50 {
        let _ = log.append(knock("10.0.0.1"), 0, t0);
    }
    // Many addresses: the global burst.
    for i in 0..1000u32 {
        let ip = format!("10.1.{}.{}", i / 256, i % 256);
        let _ = log.append(knock(&ip), 0, t0);
    }
    // Decisions are never budgeted; the count is written before them.
    log.append(Entry::new(Event::PairingArmed, Door::Console), 0, t0)
        .durable_blocking()
        .unwrap();
    let records = all(dir.path());
    let logins = records
        .iter()
        .filter(|r| r.entry.event == Event::Login)
        .count();
    assert_eq!(logins, UNSOLICITED_BURST as usize);
    // The count is written when the next entry passes: 30 over the one
    // address's budget, then 820 over the global one.
    let notes: Vec<_> = records
        .iter()
        .filter(|r| r.entry.event == Event::AuditSuppressed)
        .map(|r| r.entry.detail.as_deref().unwrap())
        .collect();
    let note = |n| {
        format!("{n} entries from unauthenticated peers over the audit budget were not written")
    };
    // At most one count per interval: the 820 wait for the next one.
    assert_eq!(notes, [note(30)]);
    // The budget refills.
    let later = t0 + Duration::from_secs(10);
    log.append(knock("10.0.0.1"), 0, later)
        .durable_blocking()
        .unwrap();
    let records = all(dir.path());
    assert_eq!(records[0].entry.event, Event::Login);
    assert_eq!(records[1].entry.event, Event::PairingArmed);
    // Still noise over budget (the address earned 2 entries in 10 s,
    // both used), then the interval is over: one count.
    for _ in 0..50 {
        let _ = log.append(knock("10.0.0.1"), 0, later);
    }
    let next = t0 + SUPPRESSION_INTERVAL;
    log.append(knock("10.0.0.2"), 0, next)
        .durable_blocking()
        .unwrap();
    let records = all(dir.path());
    assert_eq!(records[0].entry.event, Event::Login);
    assert_eq!(records[1].entry.detail, Some(note(820 + 49)));
    // What is left at a clean stop is written then.
    for _ in 0..30 {
        let _ = log.append(knock("10.0.0.1"), 0, next);
    }
    drop(log);
    let last = all(dir.path()).remove(0);
    assert_eq!(last.entry.event, Event::AuditSuppressed);
}

#[test]
fn decisions_are_kept_once_even_if_a_crash_repeats_the_move() {
    let dir = tempfile::tempdir().unwrap();
    let oldest = dir.path().join(ROTATED_FILES[3]);
    let line = |seq: u64, event: Event| {
        let mut l = serde_json::to_vec(&Record {
            seq,
            at: rfc3339(0),
            entry: Entry::new(event, Door::Console),
        })
        .unwrap();
        l.push(b'\n');
        l
    };
    let mut bytes = line(1, Event::PairingArmed);
    bytes.extend(line(2, Event::AuditSuppressed));
    bytes.extend(line(3, Event::Logout));
    fs::write(&oldest, &bytes).unwrap();
    let file = LogFile::open(dir.path(), AuditConfig::default()).unwrap();
    // Moved, then the host dies before the rotation: moved again.
    file.keep_decisions().unwrap();
    file.keep_decisions().unwrap();
    let kept = fs::read(dir.path().join(DECISIONS_FILE)).unwrap();
    let seqs: Vec<u64> = records_newest_first(&kept, None).map(|r| r.seq).collect();
    assert_eq!(seqs, [3, 1]);
}

#[test]
fn rotation_never_drops_a_decision_and_reads_stay_in_time_order() {
    let dir = tempfile::tempdir().unwrap();
    let config = AuditConfig {
        rotate_bytes: 2000,
        kept_decisions: 30,
    };
    let log = AuditLog::open(dir.path(), config, None).unwrap();
    let mut t = Instant::now();
    let mut decisions = Vec::new();
    for i in 0..3000u32 {
        // Noise from a new address each time, spaced to pass the budget.
        t += Duration::from_millis(100);
        let ip = format!("10.2.{}.{}", i / 256, i % 256);
        let noise = Entry::new(Event::Login, Door::Console)
            .outcome(Outcome::Failed)
            .address(ip.parse().unwrap());
        let ticket = log.append(noise, 0, t);
        if i % 100 == 0 {
            let seq = log
                .append(
                    Entry::new(Event::Renamed, Door::Cli).device(device(i as u8)),
                    0,
                    t,
                )
                .seq
                .unwrap();
            decisions.push(seq);
        }
        ticket.durable_blocking().unwrap();
    }
    drop(log);
    assert!(dir.path().join(DECISIONS_FILE).exists());
    let records = all(dir.path());
    // Noise rotated away, every decision still there, newest first.
    assert!(records.len() < 1000, "{}", records.len());
    assert!(records.windows(2).all(|w| w[0].seq > w[1].seq));
    let kept: Vec<u64> = records
        .iter()
        .filter(|r| r.entry.is_decision())
        .map(|r| r.seq)
        .rev()
        .collect();
    assert_eq!(kept, decisions);
    // The kept file holds decisions only, at most `kept_decisions`.
    let bytes = fs::read(dir.path().join(DECISIONS_FILE)).unwrap();
    let archived: Vec<Record> = records_newest_first(&bytes, None).collect();
    assert!(!archived.is_empty() && archived.len() <= 30);
    assert!(archived.iter().all(|r| r.entry.is_decision()));
    // Past the cap, the oldest decisions go.
    let log = AuditLog::open(dir.path(), config, None).unwrap();
    for i in 0..200u8 {
        log.append(
            Entry::new(Event::Renamed, Door::Cli).device(device(i)),
            0,
            t,
        )
        .durable_blocking()
        .unwrap();
    }
    drop(log);
    let bytes = fs::read(dir.path().join(DECISIONS_FILE)).unwrap();
    assert_eq!(records_newest_first(&bytes, None).count(), 30);
    let records = all(dir.path());
    assert!(records.windows(2).all(|w| w[0].seq > w[1].seq));
}

#[cfg(target_os = "linux")]
#[test]
fn tickets_of_a_failed_write_say_so() {
    let dir = tempfile::tempdir().unwrap();
    // A full disk: every write fails with ENOSPC.
    let full = OpenOptions::new().append(true).open("/dev/full").unwrap();
    let file = LogFile {
        dir: dir.path().into(),
        config: AuditConfig::default(),
        file: full,
        len: 0,
        fence: false,
    };
    let log = AuditLog::start(dir.path(), file, None).unwrap();
    let err = log
        .append(Entry::new(Event::Logout, Door::Console), 0, Instant::now())
        .durable_blocking()
        .unwrap_err();
    assert!(matches!(err, AuditError::NotRecorded { .. }), "{err}");
}
