//! The host endpoint and the reference client in process, over real TLS on
//! loopback port 0 (mini-redis `start_server` style): what a misbehaving
//! peer gets (docs/native-protocol.md § 3, § 4, § 7.1), TLS 1.3 only,
//! revocation and shutdown, the timeouts and limits of § 8, and what the
//! reference client makes of a host that misbehaves (§ 3, § 4.3, § 11).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use openssl::ssl::{Ssl, SslAcceptor, SslConnector, SslMethod, SslVerifyMode, SslVersion};
use punktfunk_certs::{
    Actor, Device, Fingerprint, FrontDoor, GateConfig, Identity, Label, PairWith, SystemClock,
    Trust, Via,
};
use punktfunk_native::{
    Client, ClientError, Connected, Decision, DisplayName, Endpoint, EndpointConfig, ErrorCode,
    HostAddr, Message, NewHost, Status, UnknownDevices,
};
use rand::rngs::OsRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_openssl::SslStream;

struct Setup {
    _tmp: tempfile::TempDir,
    trust: Arc<Trust>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

async fn start(unknown: UnknownDevices) -> Setup {
    start_with(unknown, GateConfig::default()).await
}

async fn start_with(unknown: UnknownDevices, gate: GateConfig) -> Setup {
    start_cfg(unknown, gate, 16).await
}

async fn start_cfg(unknown: UnknownDevices, gate: GateConfig, max_connections: usize) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let trust = Arc::new(Trust::open(tmp.path(), gate, Arc::new(SystemClock)).unwrap());
    let identity = Identity::generate("test host").unwrap();
    let endpoint = Endpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        &identity,
        EndpointConfig {
            host_name: DisplayName::sanitize("Test Host").unwrap(),
            trust: trust.clone(),
            unknown_devices: unknown,
            max_connections,
            max_connections_per_address: max_connections,
            console: None,
        },
    )
    .await
    .unwrap();
    let addr = endpoint.local_addr().unwrap();
    let (stop, stopped) = watch::channel(false);
    let server = tokio::spawn(endpoint.run(stopped));
    // The trust service's one expiry timer, as every host runs it.
    tokio::spawn(trust.clone().run_expiry());
    Setup {
        _tmp: tmp,
        trust,
        addr,
        stop,
        server,
    }
}

fn client(dir: &tempfile::TempDir) -> Client {
    Client::open(
        &dir.path().join("client"),
        DisplayName::sanitize("Test iPad").unwrap(),
    )
    .unwrap()
}

fn host_addr(addr: SocketAddr) -> HostAddr {
    HostAddr::parse(&addr.to_string()).unwrap()
}

/// A bare TLS 1.3 client with its own certificate, for sending raw frames.
async fn raw(addr: SocketAddr, max: Option<SslVersion>) -> Result<SslStream<TcpStream>, String> {
    let id = Identity::generate("raw client").unwrap();
    raw_with(addr, max, &id, None).await
}

/// [`raw`] with a given certificate, from a given loopback source address.
async fn raw_as(
    addr: SocketAddr,
    id: &Identity,
    from: Option<IpAddr>,
) -> Result<SslStream<TcpStream>, String> {
    raw_with(addr, None, id, from).await
}

async fn raw_with(
    addr: SocketAddr,
    max: Option<SslVersion>,
    id: &Identity,
    from: Option<IpAddr>,
) -> Result<SslStream<TcpStream>, String> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_certificate(id.cert()).unwrap();
    b.set_private_key(id.key()).unwrap();
    b.set_verify(SslVerifyMode::NONE);
    if let Some(v) = max {
        b.set_min_proto_version(Some(SslVersion::TLS1_2)).unwrap();
        b.set_max_proto_version(Some(v)).unwrap();
    }
    let ssl = b
        .build()
        .configure()
        .unwrap()
        .verify_hostname(false)
        .into_ssl("localhost")
        .unwrap();
    let tcp = match from {
        None => TcpStream::connect(addr).await.unwrap(),
        Some(ip) => {
            let socket = TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::new(ip, 0)).unwrap();
            socket.connect(addr).await.unwrap()
        }
    };
    let mut s = SslStream::new(ssl, tcp).unwrap();
    std::pin::Pin::new(&mut s)
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(s)
}

/// Reads one frame; `None` at end of stream.
async fn read_msg(s: &mut SslStream<TcpStream>) -> Option<Message> {
    let mut header = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(20), s.read_exact(&mut header))
        .await
        .unwrap()
        .ok()?;
    let len = punktfunk_native::check_header(header).unwrap();
    let mut body = vec![0; len];
    s.read_exact(&mut body).await.unwrap();
    Some(Message::decode(&body).unwrap())
}

fn code(msg: Option<Message>) -> ErrorCode {
    match msg {
        Some(Message::Error(e)) => e.code,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn oversize_frame_is_refused_from_its_header() {
    let s = start(UnknownDevices::Knock).await;
    let mut c = raw(s.addr, None).await.unwrap();
    c.write_all(&(16 * 1024 + 1u32).to_be_bytes())
        .await
        .unwrap();
    c.flush().await.unwrap();
    assert_eq!(code(read_msg(&mut c).await), ErrorCode::BadMessage);
    assert!(read_msg(&mut c).await.is_none(), "closed after the error");
}

#[tokio::test]
async fn malformed_and_out_of_order_messages_are_bad_message() {
    let s = start(UnknownDevices::Knock).await;
    for payload in [
        &br#"{"type":"pake","msg":"QXm+2vNp+im+xPCBIYGVAdqpfKiXDjjMEvodoJZhsLUk"}"#[..],
        br#"{"type":"hello"}"#,
        b"not json",
    ] {
        let mut c = raw(s.addr, None).await.unwrap();
        let frame = punktfunk_native::encode_frame(payload).unwrap();
        c.write_all(&frame).await.unwrap();
        assert_eq!(code(read_msg(&mut c).await), ErrorCode::BadMessage);
    }
    let mut c = raw(s.addr, None).await.unwrap();
    let frame = punktfunk_native::encode_frame(
        br#"{"type":"hello","protocol":2,"device_name":"x","intent":"connect"}"#,
    )
    .unwrap();
    c.write_all(&frame).await.unwrap();
    assert_eq!(code(read_msg(&mut c).await), ErrorCode::UnsupportedVersion);
}

#[tokio::test]
async fn tls_1_2_is_refused() {
    let s = start(UnknownDevices::Knock).await;
    assert!(raw(s.addr, Some(SslVersion::TLS1_2)).await.is_err());
    assert!(raw(s.addr, None).await.is_ok());
}

#[tokio::test]
async fn pairing_then_revocation_ends_the_session() {
    let s = start(UnknownDevices::Refuse).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = client(&dir);
    let addr = host_addr(s.addr);

    match c.connect(&addr, NewHost::DangerAcceptAny, false).await {
        Err(ClientError::Host(e)) => assert_eq!(e.code, ErrorCode::NotPaired),
        other => panic!("{other:?}"),
    }
    let pin = s.trust.arm(Actor::cli(), &mut OsRng).0.pin;
    let session = c.pair(&addr, &pin.as_str().parse().unwrap()).await.unwrap();
    session.close().await;
    assert!(s.trust.is_trusted(&c.fingerprint()));

    let session = match c.connect(&addr, NewHost::Refuse, false).await.unwrap() {
        Connected::Session(session) => session,
        other => panic!("{other:?}"),
    };
    assert_eq!(session.status(), Status::Trusted);
    let held = tokio::spawn(session.hold(Duration::from_secs(300)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let trust = s.trust.clone();
    let fp = c.fingerprint();
    tokio::task::spawn_blocking(move || trust.revoke(&fp, punktfunk_certs::Actor::cli()))
        .await
        .unwrap()
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .expect("the session ends at once")
        .unwrap();
    match ended {
        Err(ClientError::Host(e)) => assert_eq!(e.code, ErrorCode::Revoked),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn shutdown_ends_open_sessions() {
    let s = start(UnknownDevices::DangerAdmitOpen).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = client(&dir);
    let session = match c
        .connect(&host_addr(s.addr), NewHost::DangerAcceptAny, false)
        .await
        .unwrap()
    {
        Connected::Session(session) => session,
        other => panic!("{other:?}"),
    };
    assert_eq!(session.status(), Status::Open);
    let held = tokio::spawn(session.hold(Duration::from_secs(300)));
    s.stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), s.server)
        .await
        .expect("run returns")
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .expect("the client sees the close")
        .unwrap();
    assert!(ended.is_err());
}

#[tokio::test]
async fn a_waiting_knock_hears_expired_from_the_trust_services_timer() {
    let s = start_with(
        UnknownDevices::Knock,
        GateConfig {
            pending_ttl: Duration::from_secs(1),
            ..GateConfig::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = client(&dir);
    let waited = tokio::time::timeout(
        Duration::from_secs(15),
        c.connect(&host_addr(s.addr), NewHost::DangerAcceptAny, true),
    )
    .await
    .expect("the decision arrives");
    assert!(matches!(waited, Err(ClientError::Expired)), "{waited:?}");
    assert!(!s.trust.is_trusted(&c.fingerprint()));
}

/// Holds the host's one pairing slot: `hello{intent: pair}`, then nothing
/// (the host waits for `pake`, up to its per-step deadline).
async fn hold_pairing_slot(addr: SocketAddr) -> SslStream<TcpStream> {
    let mut c = raw(addr, None).await.unwrap();
    let hello = punktfunk_native::handshake::hello(
        DisplayName::sanitize("slot holder").unwrap(),
        punktfunk_native::Intent::Pair,
    );
    c.write_all(&hello.to_frame().unwrap()).await.unwrap();
    match read_msg(&mut c).await {
        Some(Message::Welcome(w)) => assert_eq!(w.status, Status::Pairing),
        other => panic!("expected welcome{{pairing}}, got {other:?}"),
    }
    c
}

fn arm(s: &Setup) -> punktfunk_native::Pin {
    let pin = s.trust.arm(Actor::cli(), &mut OsRng).0.pin;
    pin.as_str().parse().unwrap()
}

#[tokio::test]
async fn a_stalled_pairing_connection_does_not_stop_a_pin_pairing() {
    let s = start(UnknownDevices::Refuse).await;
    let pin = arm(&s);
    // Says hello{pair} and stalls; holds nothing exclusive.
    let holder = hold_pairing_slot(s.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = client(&dir);
    let session = tokio::time::timeout(Duration::from_secs(20), c.pair(&host_addr(s.addr), &pin))
        .await
        .expect("pairing finishes")
        .expect("pairs while the other connection stalls");
    assert_eq!(session.status(), Status::Trusted);
    session.close().await;
    assert!(s.trust.is_trusted(&c.fingerprint()));
    drop(holder);
}

#[tokio::test]
async fn pairing_gives_up_with_pairing_busy_after_the_retry_window() {
    // A real host frees a stalled slot after its 5 s step deadline, within
    // the client's window; a host whose slot stays taken answers every
    // attempt with `pairing_busy`.
    let (addr, attempts) = always_busy_host().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = client(&dir);
    let started = std::time::Instant::now();
    let pin = "1234".parse().unwrap();
    let result = tokio::time::timeout(Duration::from_secs(25), c.pair(&host_addr(addr), &pin))
        .await
        .expect("the client gives up on its own");
    let took = started.elapsed();
    match result {
        Err(ClientError::Host(e)) => assert_eq!(e.code, ErrorCode::PairingBusy),
        other => panic!("{other:?}"),
    }
    let window = punktfunk_native::PAIRING_BUSY_RETRY_WINDOW;
    let interval = punktfunk_native::PAIRING_BUSY_RETRY_INTERVAL;
    assert!(
        took + interval >= window,
        "retried for the whole window: {took:?}"
    );
    assert!(took < window + Duration::from_secs(5), "{took:?}");
    let n = attempts.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        n >= 2 && n <= 1 + (window.as_millis() / interval.as_millis()) as usize,
        "{n} attempts"
    );
}

/// A host whose one pairing slot is always taken: every `hello` gets
/// `error{pairing_busy}`. Counts the attempts.
async fn always_busy_host() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let (acceptor, _) = fake_acceptor();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let attempts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = attempts.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let ssl = Ssl::new(acceptor.context()).unwrap();
            let mut s = SslStream::new(ssl, tcp).unwrap();
            if std::pin::Pin::new(&mut s).accept().await.is_err() {
                continue;
            }
            if matches!(read_msg(&mut s).await, Some(Message::Hello(_))) {
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let busy = r#"{"type":"error","code":"pairing_busy","message":"another device is pairing"}"#;
                send_json(&mut s, busy).await;
                let _ = s.shutdown().await;
            }
        }
    });
    (addr, attempts)
}

#[tokio::test]
async fn other_refusals_of_pair_are_not_retried() {
    let s = start(UnknownDevices::Refuse).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = client(&dir);
    let started = std::time::Instant::now();
    match c.pair(&host_addr(s.addr), &"1234".parse().unwrap()).await {
        Err(ClientError::Host(e)) => assert_eq!(e.code, ErrorCode::NotArmed),
        other => panic!("{other:?}"),
    }
    // A retry loop would run for the whole 10 s window.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "not_armed is final: {:?}",
        started.elapsed()
    );
}

// ------------------------------------------------- docs/native-protocol.md

const HELLO_PAIR: &str = r#"{"type":"hello","protocol":1,"device_name":"raw","intent":"pair"}"#;
const HELLO_CONNECT: &str =
    r#"{"type":"hello","protocol":1,"device_name":"raw","intent":"connect"}"#;
const CLIENT_ERROR: &str = r#"{"type":"error","code":"internal","message":"giving up"}"#;
/// § 10's `msg_a`: side A, a valid point.
const MSG_A: &str = "QXm+2vNp+im+xPCBIYGVAdqpfKiXDjjMEvodoJZhsLUk";
/// § 10's `msg_b`: a valid point, but side B.
const MSG_B: &str = "Qmxj04xUvhNYZHlX1Z/1xuQhYaHF+Mc6emsIDvyRyHdg";

async fn send_json(s: &mut SslStream<TcpStream>, json: &str) {
    let frame = punktfunk_native::encode_frame(json.as_bytes()).unwrap();
    s.write_all(&frame).await.unwrap();
    s.flush().await.unwrap();
}

fn pake_json(msg_b64: &str) -> String {
    format!(r#"{{"type":"pake","msg":"{msg_b64}"}}"#)
}

fn status(msg: Option<Message>) -> Status {
    match msg {
        Some(Message::Welcome(w)) => w.status,
        other => panic!("expected a welcome, got {other:?}"),
    }
}

/// The error code the host sent, then checks that it closed.
async fn refused(c: &mut SslStream<TcpStream>) -> ErrorCode {
    let code = code(read_msg(c).await);
    assert!(read_msg(c).await.is_none(), "closed after the error");
    code
}

async fn closed_without_a_word(c: &mut SslStream<TcpStream>) {
    let got = read_msg(c).await;
    assert!(got.is_none(), "expected a plain close, got {got:?}");
}

/// Whether the typed PIN is armed and not taken.
fn armed(s: &Setup) -> bool {
    s.trust.is_armed(PairWith::Pin)
}

/// A raw connection after `hello{pair}` → `welcome{pairing}` (state
/// `AwaitPake`).
async fn awaiting_pake(s: &Setup) -> SslStream<TcpStream> {
    let mut c = raw(s.addr, None).await.unwrap();
    send_json(&mut c, HELLO_PAIR).await;
    assert_eq!(status(read_msg(&mut c).await), Status::Pairing);
    c
}

/// A raw connection after the host answered its `pake` (state
/// `AwaitConfirm`): the PIN is taken.
async fn awaiting_confirm(s: &Setup) -> SslStream<TcpStream> {
    let mut c = awaiting_pake(s).await;
    send_json(&mut c, &pake_json(MSG_A)).await;
    match read_msg(&mut c).await {
        Some(Message::Pake(p)) => assert_eq!(p.msg[0], b'B'),
        other => panic!("expected the host's pake, got {other:?}"),
    }
    c
}

/// Stores `id`'s certificate as a paired device.
fn admit(s: &Setup, id: &Identity) -> Fingerprint {
    let der = id.cert().to_der().unwrap();
    let name = DisplayName::sanitize("raw").unwrap();
    let device = Device::from_der(&der, FrontDoor::Native, name, Via::Pin, 0).unwrap();
    let _ = s.trust.admit(device, [127, 0, 0, 1].into()).unwrap();
    id.fingerprint()
}

/// § 8.2: when every slot is taken, the oldest connection that has not sent
/// `hello` makes room; only when all are past `hello` is a new one closed
/// before TLS.
#[tokio::test]
async fn a_full_endpoint_evicts_the_oldest_connection_that_has_not_sent_hello() {
    let s = start_cfg(UnknownDevices::Knock, GateConfig::default(), 2).await;
    // Oldest: a TCP connection that never starts TLS.
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Then one that completed TLS and stays silent.
    let mut silent = raw(s.addr, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // A third connection takes the slot of the oldest.
    let mut third = raw(s.addr, None).await.unwrap();
    let mut byte = [0u8; 1];
    let ended = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut byte))
        .await
        .expect("the oldest connection is closed");
    assert!(matches!(ended, Ok(0) | Err(_)), "{ended:?}");
    send_json(&mut third, HELLO_CONNECT).await;
    assert_eq!(status(read_msg(&mut third).await), Status::ApprovalPending);

    // A fourth takes the slot of the silent one (the third is past hello).
    let mut fourth = raw(s.addr, None).await.unwrap();
    closed_without_a_word(&mut silent).await;
    send_json(&mut fourth, HELLO_CONNECT).await;
    assert_eq!(status(read_msg(&mut fourth).await), Status::ApprovalPending);

    // Every connection is past hello: a fifth is closed before TLS, and the
    // two knocks are untouched.
    assert!(raw(s.addr, None).await.is_err());
    for c in [&mut third, &mut fourth] {
        send_json(c, r#"{"type":"ping"}"#).await;
        assert_eq!(read_msg(c).await, Some(Message::Pong));
    }
}

/// § 6.1, § 7.1 `AwaitPake`: a `pake` refused when it is decoded keeps the
/// PIN armed; a 33-byte one that fails the SPAKE2 checks spends it.
#[tokio::test]
async fn a_malformed_pake_keeps_the_pin_only_if_it_fails_to_decode() {
    let s = start(UnknownDevices::Refuse).await;
    arm(&s);
    let kept = [
        // Not standard base64 (URL-safe alphabet).
        MSG_A.replace('+', "-"),
        // Padding after 33 bytes.
        format!("{MSG_A}=="),
        // Canonical base64, but 32 bytes.
        BASE64.encode([0x41u8; 32]),
        // 34 bytes.
        BASE64.encode([0x41u8; 34]),
    ];
    for msg in &kept {
        let mut c = awaiting_pake(&s).await;
        send_json(&mut c, &pake_json(msg)).await;
        assert_eq!(refused(&mut c).await, ErrorCode::BadMessage, "{msg}");
        assert!(
            armed(&s),
            "a pake that fails to decode keeps the PIN: {msg}"
        );
    }

    let not_a_point = (2u8..=255)
        .map(|y| {
            let mut p = [0u8; 32];
            p[0] = y;
            p
        })
        .find(|p| {
            curve25519_dalek::edwards::CompressedEdwardsY(*p)
                .decompress()
                .is_none()
        })
        .expect("some y is off the curve");
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let spent = [
        // Side byte B (a reflected host message).
        MSG_B.to_owned(),
        // Side A, but not a curve point.
        BASE64.encode([&[0x41u8][..], &not_a_point].concat()),
        // Side A, a point of small order (the identity).
        BASE64.encode([&[0x41u8][..], &identity].concat()),
        // Side A, y = 3 + p: a point, but not its canonical encoding.
        BASE64.encode([&[0x41u8, 0xf0][..], &[0xff; 30], &[0x7f]].concat()),
    ];
    for msg in &spent {
        assert!(armed(&s));
        let mut c = awaiting_pake(&s).await;
        send_json(&mut c, &pake_json(msg)).await;
        assert_eq!(refused(&mut c).await, ErrorCode::BadMessage, "{msg}");
        assert!(
            !armed(&s),
            "a 33-byte pake that fails § 6.1 spends the PIN: {msg}"
        );
        let mut again = raw(s.addr, None).await.unwrap();
        send_json(&mut again, HELLO_PAIR).await;
        assert_eq!(refused(&mut again).await, ErrorCode::NotArmed);
        arm(&s);
    }
}

/// § 4.1: a `hello` of a later version is `unsupported_version` even when
/// v1 could not read its other fields.
#[tokio::test]
async fn a_newer_hello_is_unsupported_version_whatever_its_fields() {
    let s = start(UnknownDevices::Knock).await;
    for hello in [
        r#"{"type":"hello","protocol":2,"device_name":"x","intent":"pair"}"#,
        r#"{"type":"hello","protocol":2,"client":{"name":"x"},"intent":["pair"]}"#,
    ] {
        let mut c = raw(s.addr, None).await.unwrap();
        send_json(&mut c, hello).await;
        assert_eq!(
            refused(&mut c).await,
            ErrorCode::UnsupportedVersion,
            "{hello}"
        );
    }
}

/// § 4.8: a client `error` instead of `hello` or instead of `confirm` ends
/// the connection without an answer (the latter spends the PIN); anywhere
/// else it is `bad_message`.
#[tokio::test]
async fn a_client_error_is_accepted_only_instead_of_hello_or_confirm() {
    let s = start(UnknownDevices::Knock).await;

    let mut c = raw(s.addr, None).await.unwrap();
    send_json(&mut c, CLIENT_ERROR).await;
    closed_without_a_word(&mut c).await;

    arm(&s);
    let mut c = awaiting_pake(&s).await;
    send_json(&mut c, CLIENT_ERROR).await;
    assert_eq!(refused(&mut c).await, ErrorCode::BadMessage);
    assert!(armed(&s), "an error instead of pake keeps the PIN");

    let mut c = awaiting_confirm(&s).await;
    assert!(!armed(&s));
    send_json(&mut c, CLIENT_ERROR).await;
    closed_without_a_word(&mut c).await;

    let mut c = raw(s.addr, None).await.unwrap();
    send_json(&mut c, HELLO_CONNECT).await;
    assert_eq!(status(read_msg(&mut c).await), Status::ApprovalPending);
    send_json(&mut c, CLIENT_ERROR).await;
    assert_eq!(refused(&mut c).await, ErrorCode::BadMessage);

    let id = Identity::generate("paired raw client").unwrap();
    admit(&s, &id);
    let mut c = raw_as(s.addr, &id, None).await.unwrap();
    send_json(&mut c, HELLO_CONNECT).await;
    assert_eq!(status(read_msg(&mut c).await), Status::Trusted);
    send_json(&mut c, CLIENT_ERROR).await;
    assert_eq!(refused(&mut c).await, ErrorCode::BadMessage);
}

/// One frame, waiting as long as it takes (no timer of the test's own, so
/// that paused time only moves to the host's deadlines).
async fn read_msg_untimed(s: &mut SslStream<TcpStream>) -> Option<Message> {
    let mut header = [0u8; 4];
    s.read_exact(&mut header).await.ok()?;
    let len = punktfunk_native::check_header(header).unwrap();
    let mut body = vec![0; len];
    s.read_exact(&mut body).await.unwrap();
    Some(Message::decode(&body).unwrap())
}

/// How long the host lets `c` sit silent before it ends the connection, in
/// paused time, and what it sends then. Time is paused only once both sides
/// wait (a paused clock jumps whenever the runtime waits for I/O, so a TLS
/// handshake cannot run paused).
async fn silence(c: &mut SslStream<TcpStream>) -> (Duration, Option<Message>) {
    tokio::time::pause();
    let t0 = tokio::time::Instant::now();
    let got = read_msg_untimed(c).await;
    let waited = t0.elapsed();
    // An error is followed by the close.
    if got.is_some() {
        assert!(read_msg_untimed(c).await.is_none());
    }
    tokio::time::resume();
    (waited, got)
}

/// § 8.1: silence after `welcome{approval_pending}` ends with
/// `error{timeout}` at 90 s; a silent session just closes at 90 s.
#[tokio::test]
async fn silence_waiting_for_a_decision_is_timeout_and_a_silent_session_just_closes() {
    let s = start(UnknownDevices::Knock).await;
    let idle = punktfunk_native::timeouts::SESSION_IDLE;
    assert_eq!(idle, Duration::from_secs(90));
    // The host's deadline was set just before time was paused; timers
    // round up to the millisecond.
    let about_idle = |waited: Duration| {
        waited > idle - Duration::from_secs(2) && waited < idle + Duration::from_secs(1)
    };

    let mut knock = raw(s.addr, None).await.unwrap();
    send_json(&mut knock, HELLO_CONNECT).await;
    assert_eq!(status(read_msg(&mut knock).await), Status::ApprovalPending);
    let (waited, got) = silence(&mut knock).await;
    assert_eq!(code(got), ErrorCode::Timeout);
    assert!(about_idle(waited), "{waited:?}");
    assert_eq!(
        s.trust.view().waiting().count(),
        1,
        "the request stays listed"
    );

    let id = Identity::generate("paired raw client").unwrap();
    admit(&s, &id);
    let mut session = raw_as(s.addr, &id, None).await.unwrap();
    send_json(&mut session, HELLO_CONNECT).await;
    assert_eq!(status(read_msg(&mut session).await), Status::Trusted);
    let (waited, got) = silence(&mut session).await;
    assert!(
        got.is_none(),
        "a silent session closes without an error: {got:?}"
    );
    assert!(about_idle(waited), "{waited:?}");
}

/// § 1, § 7.1: after revocation the device is unknown again: its next
/// connect is a knock, not a refusal.
#[tokio::test]
async fn a_revoked_device_knocks_again() {
    let s = start(UnknownDevices::Knock).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = client(&dir);
    let addr = host_addr(s.addr);
    arm(&s);
    let pin = s.trust.view().arming().unwrap().pin.clone();
    c.pair(&addr, &pin).await.unwrap().close().await;
    let trust = s.trust.clone();
    let fp = c.fingerprint();
    tokio::task::spawn_blocking(move || trust.revoke(&fp, punktfunk_certs::Actor::cli()))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        c.connect(&addr, NewHost::Refuse, false).await.unwrap(),
        Connected::ApprovalPending
    ));
    let waiting: Vec<_> = s
        .trust
        .view()
        .waiting()
        .map(|(_, p)| Fingerprint::of_der(&p.request.cert_der))
        .collect();
    assert_eq!(waiting, [c.fingerprint()]);
}

/// § 6.4: re-pairing a paired certificate replaces its entry (name, via,
/// paired_at, last_seen) and keeps the console label.
#[tokio::test]
async fn re_pairing_replaces_the_entry_and_keeps_the_label() {
    let s = start(UnknownDevices::Refuse).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = client(&dir);
    let pem = std::fs::read(dir.path().join("client").join("client.crt")).unwrap();
    let der = openssl::x509::X509::from_pem(&pem)
        .unwrap()
        .to_der()
        .unwrap();
    let mut old = Device::from_der(
        &der,
        FrontDoor::Native,
        DisplayName::sanitize("Old name").unwrap(),
        Via::Approval,
        1_000,
    )
    .unwrap();
    old.label = Label::parse("Living Room TV").unwrap();
    old.last_seen = Some(2_000);
    let _ = s.trust.admit(old, [127, 0, 0, 1].into()).unwrap();

    arm(&s);
    let pin = s.trust.view().arming().unwrap().pin.clone();
    c.pair(&host_addr(s.addr), &pin)
        .await
        .unwrap()
        .close()
        .await;
    let entry = s.trust.registry().get(&c.fingerprint()).unwrap();
    assert_eq!(entry.name.as_str(), "Test iPad");
    assert_eq!(entry.via, Via::Pin);
    assert!(entry.paired_at > 1_000);
    assert_eq!(entry.last_seen, None);
    assert_eq!(
        entry.label.as_ref().map(|l| l.as_str()),
        Some("Living Room TV")
    );
}

/// § 6.5, § 8.2: connections wait for their `pake` side by side, 4 per
/// address; a fifth takes the place of that address's oldest one, and the
/// first `pake` takes the PIN.
#[tokio::test]
async fn pairing_connections_wait_side_by_side_up_to_4_per_address() {
    let s = start(UnknownDevices::Refuse).await;
    arm(&s);
    let id = Identity::generate_p256("raw client").unwrap();
    let from = |last: u8| Some(IpAddr::from([127, 0, 0, last]));
    let mut waiting = Vec::new();
    for _ in 0..punktfunk_native::endpoint::MAX_PAIRING_PER_ADDRESS {
        let mut c = raw_as(s.addr, &id, from(5)).await.unwrap();
        send_json(&mut c, HELLO_PAIR).await;
        assert_eq!(status(read_msg(&mut c).await), Status::Pairing);
        waiting.push(c);
    }
    // A fifth from the same address waits too: the oldest of that address
    // is closed (no answer) to make room. Another address is not touched.
    let mut fifth = raw_as(s.addr, &id, from(5)).await.unwrap();
    send_json(&mut fifth, HELLO_PAIR).await;
    assert_eq!(status(read_msg(&mut fifth).await), Status::Pairing);
    assert!(
        read_msg(&mut waiting[0]).await.is_none(),
        "the oldest gave way"
    );
    let mut other = raw_as(s.addr, &id, from(6)).await.unwrap();
    send_json(&mut other, HELLO_PAIR).await;
    assert_eq!(status(read_msg(&mut other).await), Status::Pairing);
    // The first pake takes the PIN; a later one finds it gone.
    send_json(&mut other, &pake_json(MSG_A)).await;
    assert!(matches!(read_msg(&mut other).await, Some(Message::Pake(_))));
    send_json(&mut waiting[2], &pake_json(MSG_A)).await;
    assert_eq!(refused(&mut waiting[2]).await, ErrorCode::NotArmed);
    let mut spent = raw_as(s.addr, &id, from(7)).await.unwrap();
    send_json(&mut spent, HELLO_PAIR).await;
    assert_eq!(
        refused(&mut spent).await,
        ErrorCode::NotArmed,
        "the PIN is spent"
    );
    // Re-armed, with places of .5 free again (two went away).
    arm(&s);
    let mut again = raw_as(s.addr, &id, from(5)).await.unwrap();
    send_json(&mut again, HELLO_PAIR).await;
    assert_eq!(status(read_msg(&mut again).await), Status::Pairing);
}

/// § 8.1: the host gives each pairing step 5 s; a slow `pake` keeps the
/// PIN, a slow `confirm` spends it.
#[tokio::test]
async fn each_pairing_step_times_out_after_5_s() {
    let s = start(UnknownDevices::Refuse).await;
    let step = punktfunk_native::timeouts::HOST_PAIRING_STEP;
    assert_eq!(step, Duration::from_secs(5));
    arm(&s);

    let mut c = awaiting_pake(&s).await;
    let t0 = std::time::Instant::now();
    assert_eq!(refused(&mut c).await, ErrorCode::Timeout);
    let waited = t0.elapsed();
    assert!(
        waited >= step - Duration::from_millis(100) && waited < step * 2,
        "{waited:?}"
    );
    assert!(armed(&s), "the PIN was not taken");

    let mut c = awaiting_confirm(&s).await;
    let t0 = std::time::Instant::now();
    assert_eq!(refused(&mut c).await, ErrorCode::Timeout);
    let waited = t0.elapsed();
    assert!(
        waited >= step - Duration::from_millis(100) && waited < step * 2,
        "{waited:?}"
    );
    assert!(!armed(&s), "the PIN was spent");
}

/// A knock from `from` with certificate `id`: the welcome status, or the
/// error code.
async fn knock(
    s: &Setup,
    id: &Identity,
    from: [u8; 4],
) -> (SslStream<TcpStream>, Result<Status, ErrorCode>) {
    let mut c = raw_as(s.addr, id, Some(IpAddr::from(from))).await.unwrap();
    send_json(&mut c, HELLO_CONNECT).await;
    let got = match read_msg(&mut c).await {
        Some(Message::Welcome(w)) => Ok(w.status),
        Some(Message::Error(e)) => Err(e.code),
        other => panic!("{other:?}"),
    };
    (c, got)
}

/// § 8.2: at most 4 waiting requests per source address; a certificate that
/// waits from another address is refused, from the same address it
/// replaces the older request (which hears `expired`).
#[tokio::test]
async fn the_waiting_list_takes_4_per_address_and_one_request_per_certificate() {
    let s = start_cfg(UnknownDevices::Knock, GateConfig::default(), 32).await;
    let ids: Vec<Identity> = (0..6)
        .map(|i| Identity::generate(&format!("knock {i}")).unwrap())
        .collect();
    let mut waiting = Vec::new();
    for id in &ids[..4] {
        let (c, got) = knock(&s, id, [127, 0, 0, 1]).await;
        assert_eq!(got, Ok(Status::ApprovalPending));
        waiting.push(c);
    }
    let (_, got) = knock(&s, &ids[4], [127, 0, 0, 1]).await;
    assert_eq!(got, Err(ErrorCode::PairingBusy), "a fifth from one address");
    let (_, got) = knock(&s, &ids[5], [127, 0, 0, 2]).await;
    assert_eq!(got, Ok(Status::ApprovalPending), "another address");

    // The first certificate again, from another address: refused, and the
    // waiting request stays.
    let (_, got) = knock(&s, &ids[0], [127, 0, 0, 3]).await;
    assert_eq!(got, Err(ErrorCode::PairingBusy));
    send_json(&mut waiting[0], r#"{"type":"ping"}"#).await;
    assert_eq!(read_msg(&mut waiting[0]).await, Some(Message::Pong));

    // From the same address: it replaces the older request, even with the
    // address's 4 taken.
    let (_newer, got) = knock(&s, &ids[0], [127, 0, 0, 1]).await;
    assert_eq!(got, Ok(Status::ApprovalPending));
    assert_eq!(
        read_msg(&mut waiting[0]).await,
        Some(Message::Decision(Decision::Expired))
    );
    assert!(read_msg(&mut waiting[0]).await.is_none());
}

/// § 8.2: at most `max_pending` requests wait in all (256 by default, 32
/// here to keep the test small; the document test checks the default).
#[tokio::test]
async fn the_waiting_list_takes_max_pending_in_all() {
    let config = GateConfig {
        max_pending: 32,
        ..GateConfig::default()
    };
    let max = config.max_pending;
    let s = start_cfg(UnknownDevices::Knock, config, 64).await;
    let mut waiting = Vec::new();
    for i in 0..max {
        let id = Identity::generate("knock").unwrap();
        let from = [127, 0, 1, (i / 4) as u8 + 1];
        let (c, got) = knock(&s, &id, from).await;
        assert_eq!(got, Ok(Status::ApprovalPending), "knock {i}");
        waiting.push(c);
    }
    let id = Identity::generate("one too many").unwrap();
    let (_, got) = knock(&s, &id, [127, 0, 2, 1]).await;
    assert_eq!(got, Err(ErrorCode::PairingBusy));
}

// ------------------------------------------------- the reference client

/// A host that runs TLS with its own certificate, reads `hello` and then
/// does what `script` says with the stream.
async fn fake_host<F, Fut>(script: F) -> (SocketAddr, tokio::task::JoinHandle<()>)
where
    F: FnOnce(SslStream<TcpStream>, Fingerprint) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let (acceptor, fp) = fake_acceptor();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let ssl = Ssl::new(acceptor.context()).unwrap();
        let mut s = SslStream::new(ssl, tcp).unwrap();
        std::pin::Pin::new(&mut s).accept().await.unwrap();
        assert!(matches!(read_msg(&mut s).await, Some(Message::Hello(_))));
        script(s, fp).await;
    });
    (addr, task)
}

/// TLS 1.3 with a fresh host certificate, any client certificate accepted.
fn fake_acceptor() -> (SslAcceptor, Fingerprint) {
    let id = Identity::generate_p256("fake host").unwrap();
    let mut b = SslAcceptor::mozilla_modern_v5(SslMethod::tls_server()).unwrap();
    b.set_certificate(id.cert()).unwrap();
    b.set_private_key(id.key()).unwrap();
    b.set_verify_callback(
        SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
        |_, _| true,
    );
    (b.build(), id.fingerprint())
}

fn welcome_json(host_name: &str, fp: Fingerprint) -> String {
    format!(
        r#"{{"type":"welcome","status":"trusted","host_name":{},"host_fingerprint":"{}"}}"#,
        serde_json::to_string(host_name).unwrap(),
        fp.to_hex()
    )
}

async fn connect_code(addr: SocketAddr) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut c = client(&dir);
    match c
        .connect(&host_addr(addr), NewHost::DangerAcceptAny, false)
        .await
    {
        Err(e) => e.code().to_owned(),
        Ok(other) => panic!("expected an error, got {other:?}"),
    }
}

/// § 3: a connection that ends inside a frame is `bad_message` to the
/// reference client, with or without a close_notify; one that ends between
/// frames is `connection_failed`.
#[tokio::test]
async fn the_client_reports_a_cut_off_frame_as_bad_message() {
    for close_notify in [true, false] {
        let (addr, host) = fake_host(move |mut s, fp| async move {
            let frame =
                punktfunk_native::encode_frame(welcome_json("Host", fp).as_bytes()).unwrap();
            s.write_all(&frame[..10]).await.unwrap();
            s.flush().await.unwrap();
            if close_notify {
                s.shutdown().await.unwrap();
            }
            // Otherwise the TCP connection just closes (drop).
        })
        .await;
        assert_eq!(connect_code(addr).await, "bad_message", "{close_notify}");
        host.await.unwrap();

        let (addr, host) = fake_host(move |mut s, _| async move {
            if close_notify {
                s.shutdown().await.unwrap();
            }
        })
        .await;
        assert_eq!(
            connect_code(addr).await,
            "connection_failed",
            "{close_notify}"
        );
        host.await.unwrap();
    }
}

/// § 4.3: an empty (after § 4.2) or over-long `host_name` is `bad_message`.
#[tokio::test]
async fn the_client_refuses_an_empty_host_name() {
    for name in [String::new(), " \u{200b}\t".into(), "x".repeat(257)] {
        let (addr, host) = fake_host(move |mut s, fp| async move {
            let frame = punktfunk_native::encode_frame(welcome_json(&name, fp).as_bytes()).unwrap();
            s.write_all(&frame).await.unwrap();
            let _ = s.shutdown().await;
        })
        .await;
        assert_eq!(connect_code(addr).await, "bad_message");
        host.await.unwrap();
    }
}

/// § 11: the reference client pins hosts by address as typed and port.
#[tokio::test]
async fn the_client_pins_hosts_by_address_as_typed() {
    let s = start(UnknownDevices::DangerAdmitOpen).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = client(&dir);
    let typed = HostAddr::parse(&format!("127.0.0.1:{}", s.addr.port())).unwrap();
    match c.connect(&typed, NewHost::DangerAcceptAny, false).await {
        Ok(Connected::Session(session)) => session.close().await,
        other => panic!("{other:?}"),
    }
    let pinned = c.pinned(&typed).expect("pinned");
    let same = HostAddr::parse(&format!("tls://127.0.0.1:{}/", s.addr.port())).unwrap();
    assert_eq!(c.pinned(&same), Some(pinned));
    let by_name = HostAddr::parse(&format!("localhost:{}", s.addr.port())).unwrap();
    assert_eq!(c.pinned(&by_name), None, "another spelling is another host");
    let file = std::fs::read_to_string(dir.path().join("client").join("known_hosts")).unwrap();
    assert!(file.contains(&format!("127.0.0.1:{} {}", s.addr.port(), pinned.to_hex())));
    match c.connect(&by_name, NewHost::Refuse, false).await {
        Err(e) => assert_eq!(e.code(), "host_not_accepted"),
        other => panic!("{other:?}"),
    }
}
