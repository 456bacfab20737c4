//! Connection floods against the real `punktfunk serve --native` (issue 19,
//! points 1 and 7): peers without credentials that pipeline requests and
//! never read the replies, and thousands of idle connections from many
//! source addresses over 127/8. The host's memory stays bounded (docs/limits.md
//! § Limits), and every door keeps answering a real client meanwhile.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Host;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The memory bound of docs/limits.md for any of these floods.
const RSS_BOUND_KIB: u64 = 64 * 1024;

fn addr(host: &Host, what: &str) -> SocketAddr {
    let url = host.url(what);
    url.rsplit("://").next().unwrap().parse().unwrap()
}

/// A field of /proc/PID/status, in KiB.
fn status_kib(host: &Host, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", host.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/PID/status"))
}

/// Samples the host's VmRSS every 20 ms until dropped; the highest seen.
/// (VmHWM would count the start, where the first console password is
/// hashed with argon2's 19 MiB.)
struct PeakRss {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl PeakRss {
    fn start(host: &Host) -> PeakRss {
        let stop = Arc::new(AtomicBool::new(false));
        let path = format!("/proc/{}/status", host.child.id());
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                if let Some(kib) = std::fs::read_to_string(&path).ok().and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                }) {
                    peak = peak.max(kib);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        });
        PeakRss {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map_or(0, |t| t.join().unwrap())
    }
}

/// The `n`th source address of a flood: spread over 127/8, never 127.0.0.1
/// (the address the real clients below use).
fn source(n: usize) -> IpAddr {
    let n = n as u32 + 1;
    IpAddr::V4(Ipv4Addr::new(
        127,
        10 + (n >> 16) as u8,
        (n >> 8) as u8,
        n as u8,
    ))
}

/// A TCP connection to `to` from `from`, with a small receive window when
/// `rcvbuf` is given.
async fn connect_from(from: IpAddr, to: SocketAddr, rcvbuf: Option<u32>) -> Option<TcpStream> {
    let socket = TcpSocket::new_v4().ok()?;
    if let Some(size) = rcvbuf {
        socket.set_recv_buffer_size(size).ok()?;
        // A small send buffer too: what the flood writes into its own
        // kernel is not the host's memory, only this test's CPU.
        socket.set_send_buffer_size(16 * 1024).ok()?;
    }
    socket.bind(SocketAddr::new(from, 0)).ok()?;
    tokio::time::timeout(Duration::from_secs(5), socket.connect(to))
        .await
        .ok()?
        .ok()
}

/// One connector for every TLS connection of a test: building one reads
/// the system's CA bundle, which would stall the flood's tasks.
fn tls_connector() -> SslConnector {
    static CONNECTOR: std::sync::OnceLock<SslConnector> = std::sync::OnceLock::new();
    CONNECTOR
        .get_or_init(|| {
            let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
            b.set_verify(SslVerifyMode::NONE);
            b.build()
        })
        .clone()
}

/// The TLS handshake on `tcp`, as a client that checks nothing.
async fn tls_connect(tcp: TcpStream) -> Option<tokio_openssl::SslStream<TcpStream>> {
    let ssl = tls_connector()
        .configure()
        .ok()?
        .verify_hostname(false)
        .into_ssl("localhost")
        .ok()?;
    let mut s = tokio_openssl::SslStream::new(ssl, tcp).ok()?;
    std::pin::Pin::new(&mut s).connect().await.ok()?;
    Some(s)
}

/// Runs `jobs`, at most `at_once` at a time; what the ones that succeeded
/// gave.
async fn gather<T: Send + 'static>(
    jobs: impl IntoIterator<Item = impl std::future::Future<Output = Option<T>> + Send + 'static>,
    at_once: usize,
) -> Vec<T> {
    let mut out = Vec::new();
    let mut running = tokio::task::JoinSet::new();
    for job in jobs {
        running.spawn(job);
        if running.len() >= at_once {
            if let Some(Ok(Some(v))) = running.join_next().await {
                out.push(v);
            }
        }
    }
    while let Some(done) = running.join_next().await {
        if let Ok(Some(v)) = done {
            out.push(v);
        }
    }
    out
}

/// Writes `request` back to back on `stream` until `stop`, never reading.
async fn pipeline<S: tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    request: &[u8],
    stop: Arc<AtomicBool>,
    written: Arc<AtomicUsize>,
) {
    let block: Vec<u8> = request.repeat(64);
    while !stop.load(Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_millis(500), stream.write_all(&block)).await {
            Ok(Ok(())) => {
                written.fetch_add(block.len(), Ordering::Relaxed);
            }
            Ok(Err(_)) => return,
            Err(_) => {}
        }
    }
}

/// One plain HTTP GET from 127.0.0.1: how long the whole answer took.
async fn http_get(to: SocketAddr, path: &str) -> Result<Duration, String> {
    let t = Instant::now();
    let mut s = connect_from(IpAddr::V4(Ipv4Addr::LOCALHOST), to, None)
        .await
        .ok_or("cannot connect")?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&got);
    if !text.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "answer: {}",
            text.chars().take(200).collect::<String>()
        ));
    }
    Ok(t.elapsed())
}

/// One HTTPS GET from 127.0.0.1 (no client certificate).
async fn https_get(to: SocketAddr, path: &str) -> Result<Duration, String> {
    let t = Instant::now();
    let tcp = connect_from(IpAddr::V4(Ipv4Addr::LOCALHOST), to, None)
        .await
        .ok_or("cannot connect")?;
    let mut s = tls_connect(tcp).await.ok_or("TLS handshake failed")?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got).await;
    let text = String::from_utf8_lossy(&got);
    if !text.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "answer: {}",
            text.chars().take(200).collect::<String>()
        ));
    }
    Ok(t.elapsed())
}

/// The native door's TLS handshake, as a real client makes it: the host's
/// fingerprint, or why not.
async fn native_probe(to: SocketAddr, dir: &std::path::Path) -> Result<Duration, String> {
    let t = Instant::now();
    let id = punktfunk_certs::Identity::generate_p256("flood-probe").map_err(|e| e.to_string())?;
    let client = common::native_client_as(dir, &id, "Probe");
    let host = punktfunk_native::HostAddr::parse(&to.to_string()).map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(10), client.probe(&host)).await {
        Ok(Ok(_)) => Ok(t.elapsed()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer in 10 s".into()),
    }
}

/// The floods here each load the machine: one at a time.
static ONE_FLOOD_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn pipelined_requests_that_are_never_read_pin_no_memory() {
    let _one = ONE_FLOOD_AT_A_TIME
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let host = Host::start(&["--native"]);
    let http = addr(&host, "gamestream-http");
    let console = addr(&host, "console");
    let rt = common::runtime();
    std::thread::sleep(Duration::from_secs(1));
    let idle = status_kib(&host, "VmRSS:");

    let peak_rss = PeakRss::start(&host);
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let opened = Arc::new(AtomicUsize::new(0));
    const GAMESTREAM: usize = 400;
    const CONSOLE: usize = 100;
    for n in 0..GAMESTREAM + CONSOLE {
        let (stop, written, opened) = (stop.clone(), written.clone(), opened.clone());
        rt.spawn(async move {
            let to = if n < GAMESTREAM { http } else { console };
            let Some(tcp) = connect_from(source(n), to, Some(4096)).await else {
                return;
            };
            if n < GAMESTREAM {
                opened.fetch_add(1, Ordering::Relaxed);
                pipeline(
                    tcp,
                    b"GET /serverinfo HTTP/1.1\r\nHost: x\r\n\r\n",
                    stop,
                    written,
                )
                .await;
            } else {
                let Some(s) = tls_connect(tcp).await else {
                    eprintln!("console handshake {n} failed");
                    return;
                };
                opened.fetch_add(1, Ordering::Relaxed);
                pipeline(
                    s,
                    b"GET /api/host HTTP/1.1\r\nHost: x\r\n\r\n",
                    stop,
                    written,
                )
                .await;
            }
        });
    }

    // 15 s of flood; a real request on each HTTP door every second.
    let started = Instant::now();
    let mut worst = (Duration::ZERO, Duration::ZERO);
    while started.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_secs(1));
        let gs = rt
            .block_on(http_get(http, "/serverinfo"))
            .unwrap_or_else(|e| panic!("/serverinfo during the flood: {e}"));
        let cs = rt
            .block_on(https_get(console, "/api/host"))
            .unwrap_or_else(|e| panic!("console /api/host during the flood: {e}"));
        eprintln!(
            "probe at {:?}: /serverinfo {gs:?}, console {cs:?}",
            started.elapsed()
        );
        worst = (worst.0.max(gs), worst.1.max(cs));
    }
    let peak = peak_rss.finish();
    stop.store(true, Ordering::Relaxed);
    let opened = opened.load(Ordering::Relaxed);
    let written = written.load(Ordering::Relaxed);
    rt.shutdown_timeout(Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(3));
    let after = status_kib(&host, "VmRSS:");
    println!(
        "pipelined flood: {opened} connections, {} MiB of requests sent; RSS idle {idle} KiB, \
         peak {peak} KiB, {after} KiB 3 s after they closed; slowest real answer: \
         /serverinfo {:?}, console {:?}",
        written >> 20,
        worst.0,
        worst.1
    );
    assert!(
        opened >= (GAMESTREAM + CONSOLE) * 9 / 10,
        "only {opened} flood connections opened"
    );
    assert!(peak < RSS_BOUND_KIB, "peak RSS {peak} KiB under the flood");
    assert!(
        after < idle + 16 * 1024,
        "RSS {after} KiB after the flood closed (idle: {idle} KiB)"
    );
}

/// How long each door takes to answer a real client: GameStream HTTP and
/// HTTPS `/serverinfo`, the console's `/api/host`, the native handshake.
fn every_door_answers(
    rt: &tokio::runtime::Runtime,
    host: &Host,
    dir: &std::path::Path,
) -> [(&'static str, Duration); 4] {
    let door = |what: &'static str, answer: Result<Duration, String>| {
        (
            what,
            answer.unwrap_or_else(|e| panic!("{what} during the flood: {e}")),
        )
    };
    [
        door(
            "GameStream HTTP",
            rt.block_on(http_get(addr(host, "gamestream-http"), "/serverinfo")),
        ),
        door(
            "GameStream HTTPS",
            rt.block_on(https_get(addr(host, "gamestream-https"), "/serverinfo")),
        ),
        door(
            "console",
            rt.block_on(https_get(addr(host, "console"), "/api/host")),
        ),
        door(
            "native",
            rt.block_on(native_probe(addr(host, "native"), dir)),
        ),
    ]
}

#[test]
fn idle_connections_from_many_addresses_take_no_door_down() {
    let _one = ONE_FLOOD_AT_A_TIME
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let host = Host::start(&["--native"]);
    let rt = common::runtime();
    let tmp = tempfile::tempdir().unwrap();
    let doors =
        ["gamestream-http", "gamestream-https", "console", "native"].map(|d| addr(&host, d));
    // Idle: after each door served one client (the first ones allocate
    // what every later one reuses).
    let warm = every_door_answers(&rt, &host, tmp.path());
    let idle = status_kib(&host, "VmRSS:");
    let peak_rss = PeakRss::start(&host);

    // 8,000 connections that never send a byte, 2,000 per door, each from
    // its own address; then 1,000 that complete their TLS handshake and
    // then sit (the console and GameStream HTTPS).
    const IDLE: usize = 8_000;
    const HANDSHAKEN: usize = 1_000;
    let held = rt.block_on(gather(
        (0..IDLE).map(|n| connect_from(source(n), doors[n % 4], None)),
        256,
    ));
    let tls_held = rt.block_on(gather(
        (0..HANDSHAKEN).map(|n| async move {
            tls_connect(connect_from(source(IDLE + n), doors[1 + n % 2], None).await?).await
        }),
        64,
    ));
    let handshaken = tls_held.len();
    let opened = held.len();

    let answers = every_door_answers(&rt, &host, tmp.path());
    let peak = peak_rss.finish();
    println!(
        "{opened} idle connections and {handshaken} idle TLS sessions from {} addresses: \
         RSS idle {idle} KiB, peak {peak} KiB; answers before {warm:?}, during {answers:?}",
        IDLE + HANDSHAKEN
    );
    for (door, took) in answers {
        assert!(
            took < Duration::from_secs(1),
            "{door} took {took:?} to answer"
        );
    }
    assert!(peak < RSS_BOUND_KIB, "peak RSS {peak} KiB under the flood");
    drop(held);
    drop(tls_held);
    rt.shutdown_timeout(Duration::from_secs(5));
}

/// Strangers whose exchanges wait on a person (native knocks, `getservercert`
/// held for a PIN), from many addresses at 4 each, fill the native door's
/// 128 connections and GameStream HTTP's 256: a paired device still gets its
/// session, a newcomer's knock still waits and is approved, a normal
/// `/serverinfo` is still answered, and RSS stays under the bound. Before,
/// such connections were never closed for room, so every new connection
/// was refused.
#[test]
fn strangers_waiting_from_many_addresses_cannot_fill_a_door() {
    let _one = ONE_FLOOD_AT_A_TIME
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    use common::raw_native::{knock, Raw};
    let host = Host::start(&["--native"]);
    let console = common::Console::login(&host);
    let native = addr(&host, "native");
    let approve = |fp: &str| {
        let request = common::moonlight::pending(&console, fp);
        let (status, body) = console.send(
            "POST",
            &format!("/api/pending/{}/approve", request["id"].as_str().unwrap()),
            None,
        );
        assert_eq!(status, 200, "{body}");
    };

    // A device of the owner's, paired by approval beforehand.
    let (mut first, owner, answer) = knock("127.0.9.1", native, "owner's phone");
    assert_eq!(answer["status"], "approval_pending", "{answer}");
    approve(&owner.fingerprint().to_string());
    assert_eq!(first.recv().unwrap()["outcome"], "approved");
    drop(first);
    let idle = status_kib(&host, "VmRSS:");
    let peak_rss = PeakRss::start(&host);

    // 48 addresses knock 4 times each and hold every knock: 192 waiting
    // connections for 128 places.
    const ADDRESSES: usize = 48;
    let started = Instant::now();
    let threads: Vec<_> = (0..ADDRESSES)
        .map(|a| {
            std::thread::spawn(move || {
                let src = format!("127.40.{a}.1");
                (0..4)
                    .filter_map(|_| common::raw_native::try_knock(&src, native, "waiting"))
                    .filter(|(_, _, answer)| answer["status"] == "approval_pending")
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let held: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let waiting = console.pairing()["pending"].as_array().unwrap().len();
    println!(
        "{} of {} knocks waited ({waiting} requests listed) in {:?}",
        held.len(),
        ADDRESSES * 4,
        started.elapsed()
    );
    // Every place of the door is a knock waiting for approval (a knock
    // whose connection gave way to a newer one stays listed too).
    assert!(
        held.len() >= 128 && waiting >= 128,
        "the door is full of waiting knocks: {} held, {waiting} listed",
        held.len()
    );

    // The paired device connects: its session, at once.
    let mut session = Raw::connect("127.0.9.1", native, &owner);
    let welcome = session.hello("owner's phone", "connect");
    assert_eq!(welcome["status"], "trusted", "{welcome}");

    // A newcomer's knock waits, and the owner approves it.
    let (mut newcomer, id, answer) = knock("127.0.9.2", native, "guest tablet");
    assert_eq!(answer["status"], "approval_pending", "{answer}");
    approve(&id.fingerprint().to_string());
    assert_eq!(newcomer.recv().unwrap()["outcome"], "approved");
    drop(held);

    // GameStream HTTP: 64 addresses hold 4 `getservercert` each, the whole
    // waiting list (256) and every place of the door (256).
    let (status, body) = console.send("POST", "/api/pending/deny-all", None);
    assert_eq!(status, 200, "{body}");
    let http = addr(&host, "gamestream-http");
    let rt = common::runtime();
    let certs: Vec<String> = (0..256)
        .map(|_| {
            let id = punktfunk_certs::Identity::generate_p256("held").unwrap();
            hex::encode(id.cert().to_pem().unwrap())
        })
        .collect();
    let holders: Vec<_> = certs
        .into_iter()
        .enumerate()
        .map(|(i, cert)| {
            rt.spawn(async move {
                let from = IpAddr::V4(Ipv4Addr::new(127, 41, (i / 4) as u8, 1));
                let mut s = connect_from(from, http, None).await?;
                let req = format!(
                    "GET /pair?uniqueid=HELD{i:05}&uuid={i:032x}&devicename=held{i}&updateState=1\
                     &phrase=getservercert&salt={i:032x}&clientcert={cert} HTTP/1.1\r\nHost: x\r\n\r\n"
                );
                s.write_all(req.as_bytes()).await.ok()?;
                // Held until the end (or closed to make room).
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                Some(())
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut listed = 0;
    while Instant::now() < deadline {
        listed = console.pairing()["pending"].as_array().unwrap().len();
        if listed >= 256 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(listed, 256, "every getservercert is held");
    let took = rt
        .block_on(http_get(http, "/serverinfo"))
        .unwrap_or_else(|e| panic!("/serverinfo with the door full of held requests: {e}"));
    let peak = peak_rss.finish();
    println!(
        "/serverinfo answered in {took:?} with 256 held getservercert; \
         RSS before the floods {idle} KiB (a console login's argon2 buffer included), peak {peak} KiB"
    );
    assert!(peak < RSS_BOUND_KIB, "peak RSS {peak} KiB under the flood");
    for h in holders {
        h.abort();
    }
    rt.shutdown_timeout(Duration::from_secs(5));
}
