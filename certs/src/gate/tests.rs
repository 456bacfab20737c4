use super::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

fn req(cert: &[u8], needs: Needs) -> PendingRequest {
    PendingRequest {
        kind: FrontDoor::Native,
        name: DisplayName::sanitize("dev").unwrap(),
        cert_der: cert.to_vec(),
        address: "127.0.0.1:1".parse().unwrap(),
        needs,
    }
}

fn who() -> Claimant {
    Claimant {
        address: "192.0.2.50".parse().unwrap(),
        name: DisplayName::sanitize("attacker").unwrap(),
        fingerprint: Fingerprint::of_der(b"who"),
    }
}

fn req_from(cert: &[u8], address: &str) -> PendingRequest {
    PendingRequest {
        address: address.parse().unwrap(),
        ..req(cert, Needs::Approval)
    }
}

fn drain(g: &mut Gate) -> Vec<TrustEvent> {
    std::iter::from_fn(|| g.poll_event()).collect()
}

#[test]
fn pin_is_four_digits_and_single_use() {
    let mut g = Gate::new(GateConfig::default());
    let mut rng = StdRng::seed_from_u64(7);
    let t0 = Instant::now();
    assert_eq!(g.take_pin(who(), t0).unwrap_err(), GateError::NotArmed);
    let armed = g.arm(t0, &mut rng);
    assert_eq!(armed.pin.as_str().len(), 4);
    assert!(armed.pin.as_str().bytes().all(|b| b.is_ascii_digit()));
    let ticket = g.take_pin(who(), t0).unwrap();
    assert_eq!(ticket.secret().as_bytes(), armed.pin.as_bytes());
    assert_eq!(g.take_pin(who(), t0).unwrap_err(), GateError::NotArmed);
    assert_eq!(g.last_attempt().unwrap().result, PinUse::InProgress);
    assert_eq!(g.last_attempt().unwrap().by, who());
    g.report(ticket, None);
    assert_eq!(g.last_attempt().unwrap().result, PinUse::Failed);
    // Failure is remembered until the next arming.
    assert_eq!(g.take_pin(who(), t0).unwrap_err(), GateError::NotArmed);
    g.arm(t0, &mut rng);
    assert_eq!(g.last_attempt(), None);
    let events = drain(&mut g);
    assert!(events.contains(&TrustEvent::PinTaken));
    assert!(events.contains(&TrustEvent::PinAttemptFinished { paired: false }));
}

#[test]
fn link_survives_wrong_guesses_and_a_success_ends_the_arming() {
    let mut g = Gate::new(GateConfig::default());
    let mut rng = StdRng::seed_from_u64(9);
    let t0 = Instant::now();
    assert_eq!(g.use_link(who(), t0).unwrap_err(), GateError::NotArmed);
    let armed = g.arm(t0, &mut rng);
    assert_eq!(armed.link.as_bytes().len(), LINK_SECRET_LEN);
    assert_ne!(
        armed.link,
        g.arm(t0, &mut rng).link,
        "a new arming, a new link"
    );
    let armed = g.armed(t0).unwrap().clone();
    // A wrong typed PIN spends the PIN, not the link.
    let pin = g.take_pin(who(), t0).unwrap();
    g.report(pin, None);
    assert!(!g.pin_armed(t0));
    assert_eq!(g.last_attempt().unwrap().result, PinUse::Failed);
    // Wrong guesses at the link, from anyone, any number.
    for _ in 0..10 {
        let t = g.use_link(who(), t0).unwrap();
        assert_eq!(t.secret().as_bytes(), armed.link.as_bytes());
        g.report(t, None);
    }
    assert!(g.armed(t0).is_some());
    assert_eq!(g.last_attempt().unwrap().result, PinUse::Failed);
    // The first success ends the arming.
    let t = g.use_link(who(), t0).unwrap();
    let late = g.use_link(who(), t0).unwrap();
    g.report(t, Some(who().fingerprint));
    assert!(g.armed(t0).is_none());
    assert_eq!(
        g.last_attempt().unwrap().result,
        PinUse::Paired {
            fingerprint: who().fingerprint
        }
    );
    assert_eq!(g.use_link(who(), t0).unwrap_err(), GateError::NotArmed);
    g.report(late, None);
    assert!(drain(&mut g).contains(&TrustEvent::Disarmed));
}

#[test]
fn a_pin_success_ends_the_link_too() {
    let mut g = Gate::new(GateConfig::default());
    let mut rng = StdRng::seed_from_u64(3);
    let t0 = Instant::now();
    g.arm(t0, &mut rng);
    let pin = g.take_pin(who(), t0).unwrap();
    assert!(
        g.armed(t0).is_some(),
        "the link pairs while the PIN is in use"
    );
    g.report(pin, Some(who().fingerprint));
    assert!(g.armed(t0).is_none());
    assert_eq!(g.use_link(who(), t0).unwrap_err(), GateError::NotArmed);
}

#[test]
fn link_secret_hex_round_trips() {
    let s = LinkSecret::from_bytes([0xab; LINK_SECRET_LEN]);
    assert_eq!(s.to_hex().as_str(), "ab".repeat(16));
    assert_eq!(LinkSecret::parse_hex(&"AB".repeat(16)), Some(s));
    assert_eq!(LinkSecret::parse_hex(&"ab".repeat(15)), None);
    assert_eq!(LinkSecret::parse_hex(&"zz".repeat(16)), None);
    assert_eq!(
        format!("{:?}", LinkSecret::from_bytes([1; 16])),
        "LinkSecret(****)"
    );
}

#[test]
fn stale_report_does_not_overwrite_new_arming() {
    let mut g = Gate::new(GateConfig::default());
    let mut rng = StdRng::seed_from_u64(1);
    let t0 = Instant::now();
    g.arm(t0, &mut rng);
    let old = g.take_pin(who(), t0).unwrap();
    g.arm(t0, &mut rng);
    g.report(old, None);
    assert_eq!(g.last_attempt(), None);
    assert!(g.armed(t0).is_some());
}

#[test]
fn pin_expires_after_ttl() {
    let mut g = Gate::new(GateConfig::default());
    let mut rng = StdRng::seed_from_u64(2);
    let t0 = Instant::now();
    g.arm(t0, &mut rng);
    let ttl = g.config().pin_ttl;
    assert!(g.armed(t0 + ttl - Duration::from_millis(1)).is_some());
    assert_eq!(g.next_deadline(), Some(t0 + ttl));
    assert!(g.armed(t0 + ttl).is_none());
    assert_eq!(
        g.take_pin(who(), t0 + ttl).unwrap_err(),
        GateError::NotArmed
    );
    assert!(drain(&mut g).contains(&TrustEvent::Disarmed));
}

#[test]
fn pins_are_spread_over_all_digits() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..2000 {
        seen.insert(Pin::random(&mut rng).as_str().to_owned());
    }
    // 2000 draws from 10,000 values: ~1,800 distinct expected.
    assert!(seen.len() > 1500, "{}", seen.len());
    assert!(seen.iter().any(|p| p.starts_with('0')));
}

#[test]
fn pin_parse() {
    assert!("0123".parse::<Pin>().is_ok());
    for bad in ["123", "12345", "12a4", "", "١٢٣٤"] {
        assert_eq!(bad.parse::<Pin>().unwrap_err(), BadPin, "{bad}");
    }
    assert_eq!(format!("{:?}", "1234".parse::<Pin>().unwrap()), "Pin(****)");
}

#[test]
fn pending_dedupes_by_fingerprint_and_expires() {
    let mut g = Gate::new(GateConfig::default());
    let t0 = Instant::now();
    let a = g.add_pending(req(b"a", Needs::Approval), t0).unwrap();
    let a2 = g.add_pending(req(b"a", Needs::Approval), t0).unwrap();
    assert_ne!(a, a2);
    assert_eq!(g.outcome(a), Some(RequestEnd::Replaced));
    assert_eq!(g.pending(t0).count(), 1);
    let b = g
        .add_pending(req(b"b", Needs::Approval), t0 + Duration::from_secs(10))
        .unwrap();
    let ttl = g.config().pending_ttl;
    assert_eq!(
        g.pending(t0 + ttl).map(|(id, _)| id).collect::<Vec<_>>(),
        vec![b]
    );
    assert_eq!(g.outcome(a2), Some(RequestEnd::Expired));
    assert_eq!(g.pending(t0 + ttl + Duration::from_secs(10)).count(), 0);
    let events = drain(&mut g);
    assert!(events.contains(&TrustEvent::PendingRemoved {
        id: b,
        outcome: RequestEnd::Expired
    }));
}

#[test]
fn pending_is_capped_and_refuses_the_new_one() {
    let mut g = Gate::new(GateConfig {
        max_pending: 3,
        ..GateConfig::default()
    });
    let t0 = Instant::now();
    let ids: Vec<_> = (0..3u8)
        .map(|i| g.add_pending(req(&[i], Needs::Approval), t0).unwrap())
        .collect();
    assert_eq!(
        g.add_pending(req(b"new", Needs::Approval), t0).unwrap_err(),
        GateError::TooManyPending
    );
    // A repeat from a waiting certificate still gets through (it replaces).
    g.add_pending(req(&[0], Needs::Approval), t0).unwrap();
    g.deny(ids[1], t0).unwrap();
    g.add_pending(req(b"new", Needs::Approval), t0).unwrap();
    assert_eq!(g.pending(t0).count(), 3);
}

#[test]
fn deny_dismisses_without_blocklisting() {
    let mut g = Gate::new(GateConfig::default());
    let t0 = Instant::now();
    let id = g.add_pending(req(b"x", Needs::Approval), t0).unwrap();
    g.deny(id, t0).unwrap();
    assert_eq!(g.outcome(id), Some(RequestEnd::Denied));
    assert_eq!(g.deny(id, t0).unwrap_err(), GateError::UnknownRequest);
    assert!(g.add_pending(req(b"x", Needs::Approval), t0).is_ok());
}

#[test]
fn a_request_being_stored_is_ended_only_by_its_writer() {
    let mut g = Gate::new(GateConfig::default());
    let t0 = Instant::now();
    let ttl = g.config().pending_ttl;
    let id = g.add_pending(req(b"s", Needs::Approval), t0).unwrap();
    let other = g.add_pending(req(b"o", Needs::Approval), t0).unwrap();
    g.begin_storing(id, Needs::Approval, t0).unwrap();
    assert_eq!(
        g.begin_storing(id, Needs::Approval, t0).unwrap_err(),
        GateError::Storing,
        "one writer"
    );
    assert_eq!(g.deny(id, t0).unwrap_err(), GateError::Storing);
    assert_eq!(
        g.add_pending(req(b"s", Needs::Approval), t0).unwrap_err(),
        GateError::Storing,
        "not replaced"
    );
    let denied = g.deny_all(t0);
    assert_eq!(denied.len(), 1, "the other one only");
    assert_eq!(denied[0].fingerprint, Fingerprint::of_der(b"o"));
    assert_eq!(g.outcome(other), Some(RequestEnd::Denied));
    // Past its deadline, still there while the write runs.
    let late = t0 + ttl + Duration::from_secs(1);
    assert_eq!(g.next_deadline(), None);
    let listed: Vec<(PendingId, bool)> = g.pending(late).map(|(i, p)| (i, p.storing)).collect();
    assert_eq!(listed, [(id, true)]);

    // The write failed: it waits (and expires) as before.
    g.end_storing(id, None);
    assert!(!g.get_pending(id, t0).unwrap().storing);
    assert_eq!(g.pending(late).count(), 0);
    assert_eq!(g.outcome(id), Some(RequestEnd::Expired));

    let id = g.add_pending(req(b"s", Needs::Approval), t0).unwrap();
    g.begin_storing(id, Needs::Approval, t0).unwrap();
    g.end_storing(id, Some(RequestEnd::Approved));
    assert_eq!(g.outcome(id), Some(RequestEnd::Approved));
    assert_eq!(g.pending(t0).count(), 0);
}

#[test]
fn pin_entry_is_single_and_claimed_once() {
    let mut g = Gate::new(GateConfig::default());
    let t0 = Instant::now();
    let knock = g.add_pending(req(b"k", Needs::Approval), t0).unwrap();
    let id = g.add_pending(req(b"m", Needs::Pin), t0).unwrap();
    let pin: Pin = "4321".parse().unwrap();
    assert_eq!(
        g.begin_storing(id, Needs::Approval, t0).unwrap_err(),
        GateError::WrongNeed(Needs::Pin)
    );
    assert_eq!(
        GateError::WrongNeed(Needs::Pin).to_string(),
        "this request needs the PIN that Moonlight shows, not that"
    );
    assert!(g.begin_storing(knock, Needs::Approval, t0).is_ok());
    g.end_storing(knock, None);
    assert_eq!(
        g.enter_pin(knock, pin.clone(), None, None, t0).unwrap_err(),
        GateError::WrongNeed(Needs::Approval)
    );
    assert!(g.claim_pin(id, t0).is_none());
    g.enter_pin(id, pin.clone(), Label::parse("TV").unwrap(), None, t0)
        .unwrap();
    assert_eq!(
        g.enter_pin(id, pin.clone(), None, None, t0).unwrap_err(),
        GateError::PinAlreadyEntered
    );
    assert_eq!(
        g.claim_pin(id, t0),
        Some((pin.clone(), Label::parse("TV").unwrap(), None))
    );
    assert_eq!(g.claim_pin(id, t0), None);
    assert_eq!(
        g.enter_pin(id, pin, None, None, t0).unwrap_err(),
        GateError::PinAlreadyEntered
    );
    g.finish(id, RequestEnd::Paired);
    assert_eq!(g.outcome(id), Some(RequestEnd::Paired));
}

#[test]
fn pin_entered_late_gets_a_grace_period() {
    let mut g = Gate::new(GateConfig::default());
    let t0 = Instant::now();
    let ttl = g.config().pending_ttl;
    let id = g.add_pending(req(b"m", Needs::Pin), t0).unwrap();
    let late = t0 + ttl - Duration::from_secs(1);
    g.enter_pin(id, "1111".parse().unwrap(), None, None, late)
        .unwrap();
    assert!(g
        .get_pending(id, t0 + ttl + Duration::from_secs(30))
        .is_some());
    assert!(g.get_pending(id, late + PIN_ENTRY_GRACE).is_none());
}

#[test]
fn one_address_cannot_fill_the_waiting_list() {
    let mut g = Gate::new(GateConfig::default());
    let t0 = Instant::now();
    let cap = g.config().max_pending_per_address;
    for i in 0..cap as u8 {
        g.add_pending(req_from(&[i], "10.0.0.1:1000"), t0).unwrap();
    }
    let key = AddressKey::of("10.0.0.1".parse().unwrap());
    assert_eq!(
        g.add_pending(req_from(b"more", "10.0.0.1:2000"), t0)
            .unwrap_err(),
        GateError::TooManyFromAddress(key)
    );
    // Another address still gets in; a repeat from a waiting
    // certificate at the same address still replaces.
    g.add_pending(req_from(b"other", "10.0.0.2:1000"), t0)
        .unwrap();
    g.add_pending(req_from(&[0], "10.0.0.1:3000"), t0).unwrap();
    assert_eq!(g.pending(t0).count(), cap + 1);
}

#[test]
fn ipv6_is_limited_per_full_address_and_mapped_ipv4_as_ipv4() {
    let mut g = Gate::new(GateConfig::default());
    let t0 = Instant::now();
    let cap = g.config().max_pending_per_address;
    for i in 0..cap as u8 {
        g.add_pending(req_from(&[i], "[2001:db8:1:2::66]:1"), t0)
            .unwrap();
    }
    let err = g
        .add_pending(req_from(b"x", "[2001:db8:1:2::66]:2"), t0)
        .unwrap_err();
    assert_eq!(
        err.to_string().matches("2001:db8:1:2::66 ").count(),
        1,
        "{err}"
    );
    // Another address of the same /64 (a home LAN) still gets in.
    g.add_pending(req_from(b"y", "[2001:db8:1:2::2]:1"), t0)
        .unwrap();
    assert_eq!(
        AddressKey::of("::ffff:10.1.2.3".parse().unwrap()),
        AddressKey::of("10.1.2.3".parse().unwrap())
    );
    assert_ne!(
        AddressKey::of("2001:db8:a::1".parse().unwrap()),
        AddressKey::of("2001:db8:a::2".parse().unwrap())
    );
    assert_eq!(
        AddressKey::of("2001:db8:a::1".parse().unwrap()).to_string(),
        "2001:db8:a::1"
    );
}

#[test]
fn a_replayed_certificate_from_the_same_64_does_not_replace_the_victim() {
    let mut g = Gate::new(GateConfig::default());
    let t0 = Instant::now();
    let victim = g
        .add_pending(req_from(b"v", "[2001:db8:a::2]:1"), t0)
        .unwrap();
    assert_eq!(
        g.add_pending(req_from(b"v", "[2001:db8:a::66]:1"), t0)
            .unwrap_err(),
        GateError::WaitingElsewhere
    );
    let p = g.get_pending(victim, t0).unwrap();
    assert_eq!(p.request.address.ip().to_string(), "2001:db8:a::2");
}

#[test]
fn a_block_refuses_an_address_at_every_door_for_an_hour_and_can_be_lifted() {
    let mut g = Gate::new(GateConfig::default());
    let mut rng = StdRng::seed_from_u64(11);
    let t0 = Instant::now();
    let bad = "10.0.0.66:1";
    let ip: IpAddr = "10.0.0.66".parse().unwrap();
    let flood: Vec<_> = (0..3u8)
        .map(|i| g.add_pending(req_from(&[i], bad), t0).unwrap())
        .collect();
    let other = g.add_pending(req_from(b"o", "10.0.0.7:1"), t0).unwrap();
    drain(&mut g);
    let (block, denied) = g.block(ip, t0).unwrap();
    assert_eq!(block.until, t0 + BLOCK_TTL);
    assert_eq!(denied.len(), 3);
    assert_eq!(g.outcome(flood[0]), Some(RequestEnd::Denied));
    assert!(g.get_pending(other, t0).is_some());
    assert!(drain(&mut g).contains(&TrustEvent::BlocksChanged));
    let key = AddressKey::of(ip);
    // Knocks and Moonlight requests, one-time PINs, the armed PIN.
    assert_eq!(
        g.add_pending(req_from(b"new", bad), t0).unwrap_err(),
        GateError::Blocked(key)
    );
    let pass = Passphrase::parse("Passphrase1").unwrap();
    g.create_otp(pass, None, None, t0, &mut rng);
    assert_eq!(
        g.add_otp_request(req_from(b"otp", bad), &[0; 32], "00", t0, &mut rng)
            .unwrap_err(),
        OtpRequestError::Gate(GateError::Blocked(key))
    );
    assert!(g.otp_tries().is_empty(), "no try counted");
    g.arm(t0, &mut rng);
    let blocked = Claimant {
        address: ip,
        ..who()
    };
    assert_eq!(
        g.take_pin(blocked.clone(), t0).unwrap_err(),
        GateError::Blocked(key)
    );
    assert!(g.armed(t0).is_some(), "the PIN is not spent");
    assert_eq!(g.blocks(t0).collect::<Vec<_>>(), [block]);
    assert_eq!(g.next_deadline(), Some(t0 + g.config().pin_ttl));
    // Lifted: heard again.
    assert!(g.unblock(ip, t0));
    assert!(!g.unblock(ip, t0));
    g.add_pending(req_from(b"new", bad), t0).unwrap();
    // Blocked again, it ends by itself after the hour (recorded).
    g.block(ip, t0).unwrap();
    let late = t0 + BLOCK_TTL;
    assert_eq!(g.blocks(late).count(), 0);
    let audit: Vec<Entry> = std::iter::from_fn(|| g.poll_audit()).collect();
    assert!(audit.iter().any(|e| e.event == Event::BlockExpired));
    g.add_pending(req_from(b"after", bad), late).unwrap();
}

#[test]
fn blocks_are_bounded() {
    let mut g = Gate::new(GateConfig::default());
    let t0 = Instant::now();
    for i in 0..MAX_BLOCKS as u32 {
        g.block(IpAddr::from((0x0a00_0000 + i).to_be_bytes()), t0)
            .unwrap();
    }
    let one_more: IpAddr = "192.0.2.1".parse().unwrap();
    assert_eq!(g.block(one_more, t0).unwrap_err(), GateError::TooManyBlocks);
    // Blocking a blocked address again restarts its hour.
    let later = t0 + Duration::from_secs(60);
    let (again, _) = g.block("10.0.0.0".parse().unwrap(), later).unwrap();
    assert_eq!(again.until, later + BLOCK_TTL);
    assert_eq!(g.blocks(later).count(), MAX_BLOCKS);
}

#[test]
fn deny_from_dismisses_one_address_only() {
    let mut g = Gate::new(GateConfig::default());
    let t0 = Instant::now();
    for i in 0..3u8 {
        g.add_pending(req_from(&[i], "10.0.0.66:1"), t0).unwrap();
    }
    let other = g.add_pending(req_from(b"o", "10.0.0.7:1"), t0).unwrap();
    let denied = g.deny_from("::ffff:10.0.0.66".parse().unwrap(), t0);
    assert_eq!(denied.len(), 3);
    assert_eq!(g.pending(t0).map(|(id, _)| id).collect::<Vec<_>>(), [other]);
    // Deny is no block: the address asks again.
    g.add_pending(req_from(b"again", "10.0.0.66:1"), t0)
        .unwrap();
}

#[test]
fn a_waiting_certificate_from_another_address_is_refused_not_replaced() {
    let mut g = Gate::new(GateConfig::default());
    let t0 = Instant::now();
    let victim = g.add_pending(req_from(b"v", "10.0.0.7:1"), t0).unwrap();
    assert_eq!(
        g.add_pending(req_from(b"v", "10.0.0.66:1"), t0)
            .unwrap_err(),
        GateError::WaitingElsewhere
    );
    let (_, still) = g.pending(t0).next().unwrap();
    assert_eq!(still.request.address.ip().to_string(), "10.0.0.7");
    assert!(g.get_pending(victim, t0).is_some());
}

#[test]
fn deny_all_dismisses_every_waiting_request() {
    let mut g = Gate::new(GateConfig::default());
    let t0 = Instant::now();
    for i in 0..3u8 {
        g.add_pending(req_from(&[i], &format!("10.0.0.{i}:1")), t0)
            .unwrap();
    }
    assert_eq!(g.deny_all(t0).len(), 3);
    assert_eq!(g.pending(t0).count(), 0);
    assert_eq!(g.deny_all(t0).len(), 0);
}

#[test]
fn a_one_time_pin_survives_wrong_tries_one_per_address_and_is_used_up_by_a_match() {
    use crate::otp::{otpauth, OTP_TTL};
    let mut g = Gate::new(GateConfig::default());
    let mut rng = StdRng::seed_from_u64(9);
    let t0 = Instant::now();
    let from = |i: u8| IpAddr::from([192, 0, 2, i]);
    let salt = "00112233445566778899AABBCCDDEEFF";
    let pass = Passphrase::parse("Passphrase1").unwrap();
    let wrong_pass = Passphrase::parse("WrongPass1").unwrap();
    assert_eq!(
        g.redeem_otp(&[0; 32], salt, from(1), t0).unwrap_err(),
        OtpError::NotAvailable
    );
    let otp = g.create_otp(
        pass.clone(),
        DisplayName::sanitize("Deck"),
        None,
        t0,
        &mut rng,
    );
    assert_eq!(g.next_deadline(), Some(t0 + OTP_TTL));
    let right = otpauth(otp.pin(), salt, &pass);
    let wrong = otpauth(otp.pin(), salt, &wrong_pass);
    // Wrong tries from other addresses leave it usable; each is listed.
    for i in 1..MAX_OTP_TRIES as u8 {
        assert_eq!(
            g.redeem_otp(&wrong, salt, from(i), t0).unwrap_err(),
            OtpError::Mismatch
        );
        assert!(g.otp(t0).is_some(), "try {i}");
        assert!(!g.last_otp().unwrap().matched);
    }
    let tried: Vec<IpAddr> = g.otp_tries().iter().map(|t| t.address).collect();
    assert_eq!(
        tried,
        (1..MAX_OTP_TRIES as u8).map(from).collect::<Vec<_>>()
    );
    // One try per address, whatever it sends (not counted).
    assert_eq!(
        g.redeem_otp(&right, salt, from(1), t0).unwrap_err(),
        OtpError::AlreadyTried
    );
    assert_eq!(
        g.redeem_otp(&wrong, salt, "::ffff:192.0.2.2".parse().unwrap(), t0)
            .unwrap_err(),
        OtpError::AlreadyTried
    );
    assert_eq!(g.otp_tries().len(), MAX_OTP_TRIES - 1);
    // The right client, as the last allowed try: granted, then gone.
    let grant = g.redeem_otp(&right, salt, from(99), t0).unwrap();
    assert_eq!(&grant.pin, otp.pin());
    assert!(g.otp(t0).is_none());
    assert!(g.otp_tries().is_empty());
    assert!(g.last_otp().unwrap().matched);
    assert_eq!(
        g.redeem_otp(&right, salt, from(100), t0).unwrap_err(),
        OtpError::NotAvailable
    );
    // MAX_OTP_TRIES wrong tries use it up.
    let otp = g.create_otp(pass.clone(), None, None, t0, &mut rng);
    assert!(g.otp_tries().is_empty(), "a new PIN starts over");
    let wrong = otpauth(otp.pin(), salt, &wrong_pass);
    for i in 1..=MAX_OTP_TRIES as u8 {
        assert_eq!(
            g.redeem_otp(&wrong, salt, from(i), t0).unwrap_err(),
            OtpError::Mismatch
        );
    }
    assert!(g.otp(t0).is_none());
    let right = otpauth(otp.pin(), salt, &pass);
    assert_eq!(
        g.redeem_otp(&right, salt, from(99), t0).unwrap_err(),
        OtpError::NotAvailable
    );
    let used: Vec<Entry> = std::iter::from_fn(|| g.poll_audit())
        .filter(|e| e.event == Event::OtpUsed)
        .collect();
    assert_eq!(used.len(), 2 * MAX_OTP_TRIES, "each counted try");
    // Expired: not available.
    let otp = g.create_otp(pass.clone(), None, None, t0, &mut rng);
    let right = otpauth(otp.pin(), salt, &pass);
    assert!(g.otp(t0 + OTP_TTL - Duration::from_millis(1)).is_some());
    assert_eq!(
        g.redeem_otp(&right, salt, from(1), t0 + OTP_TTL)
            .unwrap_err(),
        OtpError::NotAvailable
    );
    // Cancelled: not available.
    let otp = g.create_otp(pass.clone(), None, None, t0, &mut rng);
    assert!(g.cancel_otp());
    let right = otpauth(otp.pin(), salt, &pass);
    assert_eq!(
        g.redeem_otp(&right, salt, from(1), t0).unwrap_err(),
        OtpError::NotAvailable
    );
    assert!(drain(&mut g).contains(&TrustEvent::OtpChanged));
}

#[test]
fn a_wrong_otp_request_waits_with_a_pin_the_client_cannot_know() {
    use crate::otp::otpauth;
    let mut g = Gate::new(GateConfig::default());
    let mut rng = StdRng::seed_from_u64(10);
    let t0 = Instant::now();
    let salt = "00112233445566778899AABBCCDDEEFF";
    let pass = Passphrase::parse("Passphrase1").unwrap();
    let otp = g.create_otp(pass, None, None, t0, &mut rng);
    let wrong = otpauth(otp.pin(), salt, &Passphrase::parse("WrongPass1").unwrap());
    let mut r = req_from(b"stranger", "10.0.0.66:1");
    r.needs = Needs::Pin;
    let id = g.add_otp_request(r, &wrong, salt, t0, &mut rng).unwrap();
    assert!(matches!(
        g.get_pending(id, t0).unwrap().pin,
        PinState::Entered { .. }
    ));
    assert!(g.otp(t0).is_some(), "still usable");
    let mut again = req_from(b"stranger", "10.0.0.66:2");
    again.needs = Needs::Pin;
    assert_eq!(
        g.add_otp_request(again, &wrong, salt, t0, &mut rng)
            .unwrap_err(),
        OtpRequestError::Otp(OtpError::AlreadyTried)
    );
    assert!(g.get_pending(id, t0).is_some(), "nothing replaced");
}

#[test]
fn the_exchange_in_progress_is_named_until_it_ends() {
    let mut g = Gate::new(GateConfig::default());
    let t0 = Instant::now();
    g.begin_exchange(who(), t0);
    assert_eq!(g.exchange().unwrap().by, who());
    g.end_exchange(&Fingerprint::of_der(b"someone else"));
    assert!(g.exchange().is_some());
    g.end_exchange(&who().fingerprint);
    assert!(g.exchange().is_none());
    assert!(drain(&mut g).contains(&TrustEvent::ExchangeChanged));
}

#[test]
fn pending_id_deserializes_from_its_display_form_only() {
    let id: PendingId = serde_json::from_str("\"42\"").unwrap();
    assert_eq!(id.to_string(), "42");
    for bad in [
        "\"\"",
        "\"-1\"",
        "\"4 2\"",
        "\"x\"",
        "\"18446744073709551616\"",
    ] {
        let e = serde_json::from_str::<PendingId>(bad).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&GateError::UnknownRequest.to_string()),
            "{bad}: {e}"
        );
    }
}
