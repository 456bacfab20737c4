//! The host endpoint and the reference client in process, over real TLS on
//! loopback port 0 (mini-redis `start_server` style): what a misbehaving
//! peer gets (docs/native-protocol.md § 3, § 4, § 7.1), TLS 1.3 only,
//! revocation and shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode, SslVersion};
use punktfunk_certs::{GateConfig, Identity, SystemClock, Trust};
use punktfunk_native::{
    Client, ClientError, Connected, DisplayName, Endpoint, EndpointConfig, ErrorCode, HostAddr,
    Message, NewHost, Status, UnknownDevices,
};
use rand::rngs::OsRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
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
    let tmp = tempfile::tempdir().unwrap();
    let trust =
        Arc::new(Trust::open(&tmp.path().join("trust.json"), gate, Arc::new(SystemClock)).unwrap());
    let identity = Identity::generate("test host").unwrap();
    let endpoint = Endpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        &identity,
        EndpointConfig {
            host_name: DisplayName::sanitize("Test Host").unwrap(),
            trust: trust.clone(),
            unknown_devices: unknown,
            max_connections: 16,
        },
    )
    .await
    .unwrap();
    let addr = endpoint.local_addr().unwrap();
    let (stop, stopped) = watch::channel(false);
    let server = tokio::spawn(endpoint.run(stopped));
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
    let tcp = TcpStream::connect(addr).await.unwrap();
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
    let pin = {
        let now = s.trust.now();
        s.trust.gate().arm(now, &mut OsRng).pin
    };
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
    tokio::task::spawn_blocking(move || trust.revoke(&fp))
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
async fn a_waiting_knock_hears_expired_without_anyone_ticking_the_gate() {
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
    let now = s.trust.now();
    let pin = s.trust.gate().arm(now, &mut OsRng).pin;
    pin.as_str().parse().unwrap()
}

#[tokio::test]
async fn pairing_retries_while_another_exchange_holds_the_slot() {
    let s = start(UnknownDevices::Refuse).await;
    let pin = arm(&s);
    let holder = hold_pairing_slot(s.addr).await;
    // The holder gives up after ~2 s (well before the host's step deadline).
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(holder);
    });

    let dir = tempfile::tempdir().unwrap();
    let mut c = client(&dir);
    let started = std::time::Instant::now();
    let session = tokio::time::timeout(Duration::from_secs(20), c.pair(&host_addr(s.addr), &pin))
        .await
        .expect("pairing finishes")
        .expect("pairs once the slot is free");
    let took = started.elapsed();
    release.await.unwrap();
    assert!(
        took >= Duration::from_millis(1500),
        "the slot was held, so the first attempt(s) were busy: {took:?}"
    );
    assert!(
        took < punktfunk_native::PAIRING_BUSY_RETRY_WINDOW,
        "{took:?}"
    );
    assert_eq!(session.status(), Status::Trusted);
    session.close().await;
    assert!(s.trust.is_trusted(&c.fingerprint()));
    assert!(c.pinned(&host_addr(s.addr)).is_some());
}

#[tokio::test]
async fn pairing_gives_up_with_pairing_busy_after_the_retry_window() {
    let s = start(UnknownDevices::Refuse).await;
    let pin = arm(&s);
    // Held for longer than the client's window (the host's step deadline,
    // 30 s on this host, is longer still).
    let _holder = hold_pairing_slot(s.addr).await;

    let dir = tempfile::tempdir().unwrap();
    let mut c = client(&dir);
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(25), c.pair(&host_addr(s.addr), &pin))
        .await
        .expect("the client gives up on its own");
    let took = started.elapsed();
    match result {
        Err(ClientError::Host(e)) => assert_eq!(e.code, ErrorCode::PairingBusy),
        other => panic!("{other:?}"),
    }
    let window = punktfunk_native::PAIRING_BUSY_RETRY_WINDOW;
    assert!(
        took + punktfunk_native::PAIRING_BUSY_RETRY_INTERVAL >= window,
        "retried for the whole window: {took:?}"
    );
    assert!(took < window + Duration::from_secs(5), "{took:?}");
    assert!(!s.trust.is_trusted(&c.fingerprint()));
    assert!(
        s.trust.gate().armed(s.trust.now()).is_some(),
        "busy attempts never touch the PIN"
    );
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
