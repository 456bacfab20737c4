use super::*;

#[test]
fn host_addr_forms() {
    let a = HostAddr::parse("127.0.0.1").unwrap();
    assert_eq!((a.host(), a.port()), ("127.0.0.1", DEFAULT_PORT));
    let a = HostAddr::parse("tls://127.0.0.1:5000/").unwrap();
    assert_eq!((a.host(), a.port()), ("127.0.0.1", 5000));
    assert_eq!(a.to_string(), "127.0.0.1:5000");
    let a = HostAddr::parse("[::1]:7").unwrap();
    assert_eq!((a.host(), a.port()), ("::1", 7));
    assert_eq!(a.to_string(), "[::1]:7");
    assert_eq!(HostAddr::parse("::1").unwrap().port(), DEFAULT_PORT);
    for bad in [
        "",
        "host:",
        "host:0",
        "host:99999",
        "[::1",
        "[::1]x",
        "a b:1",
    ] {
        assert!(HostAddr::parse(bad).is_err(), "{bad}");
    }
}

fn pinned(fp: Fingerprint) -> KnownHost {
    KnownHost {
        fingerprint: fp,
        trust: HostTrust::Pinned,
    }
}

fn accepted(fp: Fingerprint) -> KnownHost {
    KnownHost {
        fingerprint: fp,
        trust: HostTrust::Accepted,
    }
}

#[test]
fn known_hosts_round_trip_and_strict_parse() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(KNOWN_HOSTS_FILE);
    let mut k = KnownHosts::load(&path).unwrap();
    let a = HostAddr::parse("h:1").unwrap();
    let fp = Fingerprint::of_der(b"x");
    k.pin(&a, fp).unwrap();
    k.pin(&a, fp).unwrap();
    let k = KnownHosts::load(&path).unwrap();
    assert_eq!(k.get(&a), Some(pinned(fp)));
    assert_eq!(k.entries.len(), 1);
    for bad in [
        "h:1 nothex\n".to_owned(),
        "h:1\n".to_owned(),
        format!("h:1 {fp} trusted\n"),
        format!("h:1 {fp} accepted extra\n"),
        format!("h:1 accepted {fp}\n"),
    ] {
        std::fs::write(&path, &bad).unwrap();
        let err = KnownHosts::load(&path).unwrap_err();
        assert!(
            matches!(err, KnownHostsError::Line { line: 1, .. }),
            "{bad:?}: {err}"
        );
        assert!(err.to_string().contains("line 1"), "{bad:?}: {err}");
    }
}

#[test]
fn known_hosts_files_of_the_original_format_still_load_as_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(KNOWN_HOSTS_FILE);
    let (fp1, fp2) = (Fingerprint::of_der(b"1"), Fingerprint::of_der(b"2"));
    // Exactly what the client wrote before `accepted` existed.
    std::fs::write(
        &path,
        format!(
            "# punktfunk known hosts: HOST:PORT SHA-256 fingerprint\n\
             192.168.1.20:47991 {fp1}\n[fe80::1]:5000\t{fp2}\n"
        ),
    )
    .unwrap();
    let k = KnownHosts::load(&path).unwrap();
    let a = HostAddr::parse("192.168.1.20").unwrap();
    let b = HostAddr::parse("[fe80::1]:5000").unwrap();
    assert_eq!(k.get(&a), Some(pinned(fp1)));
    assert_eq!(k.get(&b), Some(pinned(fp2)));
}

#[test]
fn an_accepted_fingerprint_is_remembered_then_promoted_to_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(KNOWN_HOSTS_FILE);
    let a = HostAddr::parse("tv.local").unwrap();
    let other = HostAddr::parse("other:1").unwrap();
    let (fp, fp_other) = (Fingerprint::of_der(b"host"), Fingerprint::of_der(b"o"));

    let mut k = KnownHosts::load(&path).unwrap();
    k.pin(&other, fp_other).unwrap();
    k.accept(&a, fp).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains(&format!("tv.local:{DEFAULT_PORT} {fp} accepted\n")),
        "{text}"
    );
    assert!(text.contains(&format!("other:1 {fp_other}\n")), "{text}");

    // Survives a reload (the next `connect` is a new process).
    let mut k = KnownHosts::load(&path).unwrap();
    assert_eq!(k.get(&a), Some(accepted(fp)));
    // Accepting again, or another fingerprint, changes nothing: what is
    // on record is what the host must present.
    k.accept(&a, fp).unwrap();
    k.accept(&a, Fingerprint::of_der(b"impostor")).unwrap();
    assert_eq!(KnownHosts::load(&path).unwrap().get(&a), Some(accepted(fp)));

    // The host admitted the device: pinned, on disk, in the old format.
    k.pin(&a, fp).unwrap();
    let k = KnownHosts::load(&path).unwrap();
    assert_eq!(k.get(&a), Some(pinned(fp)));
    assert_eq!(k.get(&other), Some(pinned(fp_other)));
    assert_eq!(k.entries.len(), 2);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains(&format!("tv.local:{DEFAULT_PORT} {fp}\n")),
        "{text}"
    );
}

#[test]
fn accepting_never_demotes_a_pin() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(KNOWN_HOSTS_FILE);
    let a = HostAddr::parse("h").unwrap();
    let fp = Fingerprint::of_der(b"h");
    let mut k = KnownHosts::load(&path).unwrap();
    k.pin(&a, fp).unwrap();
    k.accept(&a, fp).unwrap();
    k.accept(&a, Fingerprint::of_der(b"x")).unwrap();
    assert_eq!(KnownHosts::load(&path).unwrap().get(&a), Some(pinned(fp)));
}

#[test]
fn pin_replaces_an_accepted_fingerprint() {
    // PIN pairing proved a different host than the one accepted by TOFU.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(KNOWN_HOSTS_FILE);
    let a = HostAddr::parse("h").unwrap();
    let (tofu, proven) = (Fingerprint::of_der(b"t"), Fingerprint::of_der(b"p"));
    let mut k = KnownHosts::load(&path).unwrap();
    k.accept(&a, tofu).unwrap();
    k.pin(&a, proven).unwrap();
    let k = KnownHosts::load(&path).unwrap();
    assert_eq!(k.get(&a), Some(pinned(proven)));
    assert_eq!(k.entries.len(), 1);
}

#[test]
fn a_later_line_for_the_same_host_wins() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(KNOWN_HOSTS_FILE);
    let (fp1, fp2) = (Fingerprint::of_der(b"1"), Fingerprint::of_der(b"2"));
    std::fs::write(&path, format!("h:1 {fp1} accepted\nh:1 {fp2}\n")).unwrap();
    let k = KnownHosts::load(&path).unwrap();
    assert_eq!(k.get(&HostAddr::parse("h:1").unwrap()), Some(pinned(fp2)));
    assert_eq!(k.entries.len(), 1);
}
