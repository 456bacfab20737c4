//! `loadgen`: measures a real `punktfunk serve` against same-run baselines
//! and prints a markdown table. Run it through `bench/load.sh`.
//!
//! In one run:
//! - `/serverinfo` over HTTP (keep-alive), over HTTPS with a paired client
//!   certificate (keep-alive) and over HTTPS with a new TLS handshake per
//!   request, against `serve` and against a minimal actix-web server that
//!   returns the same bytes with the same HTTP/TLS settings (`baseline`);
//! - TLS handshakes against `openssl s_server` (with `openssl s_time` and
//!   with this generator), the baseline for every "new connection" figure;
//! - native pinned reconnects (the reference client API, a paired client);
//! - full native pairings (console arm, then SPAKE2 pairing) and full
//!   GameStream pairings (a Rust re-statement of Moonlight, PIN entered
//!   through the console API), one after the other;
//! - RSS of `serve` idle and under load, and start-up time (process start
//!   to `ready`) with an existing identity and with 10,000 paired devices.

use std::io::{BufRead, BufReader as StdBufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin as StdPin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use punktfunk_certs::{Device, Identity, Kind, Registry, Via};
use punktfunk_native::{Client, Connected, DisplayName, HostAddr, NewHost, Pin};
use punktfunk_testsupport::{moonlight, xml};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

mod baseline;

// ---------------------------------------------------------------------------
// Options

struct Opts {
    punktfunk: PathBuf,
    duration: Duration,
    concurrency: usize,
    pairings: usize,
    devices: usize,
    startups: usize,
}

fn parse_opts(mut args: impl Iterator<Item = String>) -> Result<Opts> {
    let mut o = Opts {
        punktfunk: PathBuf::from("target/release/punktfunk"),
        duration: Duration::from_secs(5),
        concurrency: 16,
        pairings: 20,
        devices: 10_000,
        startups: 5,
    };
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| anyhow!("{a} needs a value"));
        match a.as_str() {
            "--punktfunk" => o.punktfunk = val()?.into(),
            "--duration" => o.duration = Duration::from_secs_f64(val()?.parse()?),
            "--concurrency" => o.concurrency = val()?.parse()?,
            "--pairings" => o.pairings = val()?.parse()?,
            "--devices" => o.devices = val()?.parse()?,
            "--startups" => o.startups = val()?.parse()?,
            other => bail!(
                "unknown option {other}; options: --punktfunk PATH --duration S \
                 --concurrency N --pairings N --devices N --startups N"
            ),
        }
    }
    Ok(o)
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("baseline") {
        args.next();
        return baseline::run(args);
    }
    let opts = parse_opts(args)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(opts))
}

// ---------------------------------------------------------------------------
// Processes

/// A spawned server that announces itself on stdout.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    fn spawn(mut cmd: Command) -> Result<(Proc, Instant)> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let started = Instant::now();
        let mut child = cmd.spawn().with_context(|| format!("spawn {cmd:?}"))?;
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in StdBufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok((
            Proc {
                child,
                lines: rx,
                seen: Vec::new(),
            },
            started,
        ))
    }

    /// Waits for a line equal to `word`; returns when it arrived.
    fn wait_for(&mut self, word: &str) -> Result<Instant> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .map_err(|_| anyhow!("no `{word}` line; stdout so far: {:?}", self.seen))?;
            let at = Instant::now();
            let done = line == word;
            self.seen.push(line);
            if done {
                return Ok(at);
            }
        }
    }

    fn addr(&self, what: &str) -> Result<SocketAddr> {
        let prefix = format!("{what} listening on ");
        let url = self
            .seen
            .iter()
            .find_map(|l| l.strip_prefix(&prefix))
            .ok_or_else(|| anyhow!("no {what} listener in {:?}", self.seen))?;
        let addr = url.split("://").nth(1).unwrap_or(url).trim_end_matches('/');
        Ok(addr.parse()?)
    }

    fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.child.id())
    }

    /// SIGTERM, then wait.
    fn stop(mut self) -> Result<()> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                self.child.kill()?;
                bail!("server did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Samples the RSS of `pid` until stopped; keeps the maximum.
struct RssSampler {
    stop: Arc<AtomicBool>,
    max: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(AtomicU64::new(0));
        let (s, m) = (stop.clone(), max.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib(pid) {
                    m.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Self {
            stop,
            max,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.max.load(Ordering::Relaxed)
    }
}

fn serve_command(bin: &Path, state: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--native", "--bind", "127.0.0.1", "--no-mdns"])
        .args(["--http-port", "0", "--https-port", "0"])
        .args(["--console-port", "0", "--native-port", "0"])
        .arg("--state-dir")
        .arg(state)
        .env("RUST_LOG", "warn");
    cmd
}

/// Start-up time (spawn → `ready`) over `n` runs: (median, min), and the
/// idle RSS of the last run.
fn startup(bin: &Path, state: &Path, n: usize) -> Result<(Duration, Duration, u64)> {
    let mut times = Vec::new();
    let mut rss = 0;
    for _ in 0..n {
        let (mut p, started) = Proc::spawn(serve_command(bin, state))?;
        let ready = p.wait_for("ready")?;
        times.push(ready - started);
        std::thread::sleep(Duration::from_millis(500));
        rss = p.rss_kib().unwrap_or(0);
        p.stop()?;
    }
    times.sort();
    Ok((times[times.len() / 2], times[0], rss))
}

// ---------------------------------------------------------------------------
// A minimal HTTP/1.1 client over any stream

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "HTTP {}: not JSON: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn request_bytes(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        r.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    r.push_str("\r\n");
    let mut r = r.into_bytes();
    r.extend_from_slice(body);
    r
}

async fn roundtrip<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    request: &[u8],
) -> Result<Resp> {
    io.get_mut().write_all(request).await?;
    io.get_mut().flush().await?;
    let mut line = String::new();
    if io.read_line(&mut line).await? == 0 {
        bail!("connection closed before a response");
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow!("bad status line {line:?}"))?
        .parse()?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        io.read_line(&mut line).await?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let mut resp = Resp {
        status,
        headers,
        body: Vec::new(),
    };
    if let Some(n) = resp.header("content-length") {
        let mut body = vec![0; n.parse()?];
        io.read_exact(&mut body).await?;
        resp.body = body;
    } else if !resp
        .header("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        // HTTP/1.0 style (`s_server -www`): the body runs to the close.
        io.read_to_end(&mut resp.body).await?;
    } else {
        loop {
            line.clear();
            io.read_line(&mut line).await?;
            let n = usize::from_str_radix(line.trim(), 16)?;
            let mut chunk = vec![0; n + 2];
            io.read_exact(&mut chunk).await?;
            if n == 0 {
                break;
            }
            resp.body.extend_from_slice(&chunk[..n]);
        }
    }
    Ok(resp)
}

fn connector(identity: Option<&Identity>) -> Result<SslConnector> {
    let mut b = SslConnector::builder(SslMethod::tls_client())?;
    // Self-signed hosts: trust is by fingerprint, not checked here.
    b.set_verify(SslVerifyMode::NONE);
    if let Some(id) = identity {
        b.set_certificate(id.cert())?;
        b.set_private_key(id.key())?;
    }
    Ok(b.build())
}

type Tls = SslStream<TcpStream>;

async fn tcp(addr: SocketAddr) -> Result<TcpStream> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// A full TLS handshake (no session resumption).
async fn tls(addr: SocketAddr, c: &SslConnector) -> Result<Tls> {
    let ssl = c
        .configure()?
        .verify_hostname(false)
        .use_server_name_indication(false)
        .into_ssl("127.0.0.1")?;
    let mut s = SslStream::new(ssl, tcp(addr).await?)?;
    StdPin::new(&mut s).connect().await?;
    Ok(s)
}

enum Conn {
    Plain(BufReader<TcpStream>),
    Tls(BufReader<Tls>),
}

impl Conn {
    async fn open(addr: SocketAddr, tls_with: Option<&SslConnector>) -> Result<Conn> {
        Ok(match tls_with {
            None => Conn::Plain(BufReader::new(tcp(addr).await?)),
            Some(c) => Conn::Tls(BufReader::new(tls(addr, c).await?)),
        })
    }

    async fn roundtrip(&mut self, request: &[u8]) -> Result<Resp> {
        match self {
            Conn::Plain(io) => roundtrip(io, request).await,
            Conn::Tls(io) => roundtrip(io, request).await,
        }
    }
}

// ---------------------------------------------------------------------------
// Load and statistics

#[derive(Clone, Default)]
struct Stats {
    ok: u64,
    errors: u64,
    elapsed: Duration,
    /// Latencies in microseconds.
    lat: Vec<u32>,
}

impl Stats {
    fn merge(&mut self, o: Stats) {
        self.ok += o.ok;
        self.errors += o.errors;
        self.lat.extend(o.lat);
    }

    /// Adds a measurement taken after this one (its time adds up too).
    fn then(&mut self, o: Stats) {
        self.elapsed += o.elapsed;
        self.merge(o);
    }

    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn pct(&self, p: f64) -> f64 {
        let mut v = self.lat.clone();
        if v.is_empty() {
            return f64::NAN;
        }
        v.sort_unstable();
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[i] as f64 / 1000.0
    }

    fn cell(&self, unit: &str) -> String {
        let errs = if self.errors > 0 {
            format!(" ({} errors)", self.errors)
        } else {
            String::new()
        };
        format!(
            "{} {unit} · p50 {:.2} ms · p99 {:.2} ms{errs}",
            fmt_rate(self.rate()),
            self.pct(0.5),
            self.pct(0.99)
        )
    }
}

fn fmt_rate(r: f64) -> String {
    if r >= 100.0 {
        let n = r.round() as u64;
        if n >= 1000 {
            format!("{},{:03}", n / 1000, n % 1000)
        } else {
            n.to_string()
        }
    } else {
        format!("{r:.1}")
    }
}

#[derive(Clone, Copy, PartialEq)]
enum ConnMode {
    KeepAlive,
    NewPerRequest,
}

/// Rounds of [`alternating`]: enough that a drift in the machine's speed
/// (frequency, a neighbour's load) falls on both servers alike.
const ROUNDS: u32 = 5;

/// `GET path` on `serve` and on `base`, `concurrency` clients each, in
/// [`ROUNDS`] alternating slices of `duration` (so each gets `duration` in
/// all), for a ratio that drift does not bias towards either.
async fn alternating(
    (serve, base): (SocketAddr, SocketAddr),
    tls_with: Option<SslConnector>,
    path: &str,
    mode: ConnMode,
    concurrency: usize,
    duration: Duration,
) -> (Stats, Stats) {
    let slice = duration / ROUNDS;
    let (mut s, mut b) = (Stats::default(), Stats::default());
    for _ in 0..ROUNDS {
        s.then(http_load(serve, tls_with.clone(), path, mode, concurrency, slice).await);
        b.then(http_load(base, tls_with.clone(), path, mode, concurrency, slice).await);
    }
    (s, b)
}

/// `concurrency` clients sending `GET path` for `duration`.
async fn http_load(
    addr: SocketAddr,
    tls_with: Option<SslConnector>,
    path: &str,
    mode: ConnMode,
    concurrency: usize,
    duration: Duration,
) -> Stats {
    let request: Arc<[u8]> = request_bytes("GET", path, &[], b"").into();
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let request = request.clone();
            let tls_with = tls_with.clone();
            tokio::spawn(async move {
                let mut s = Stats::default();
                let mut conn: Option<Conn> = None;
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    if conn.is_none() {
                        match Conn::open(addr, tls_with.as_ref()).await {
                            Ok(c) => conn = Some(c),
                            Err(_) => {
                                s.errors += 1;
                                tokio::time::sleep(Duration::from_millis(5)).await;
                                continue;
                            }
                        }
                    }
                    let c = conn.as_mut().unwrap();
                    match c.roundtrip(&request).await {
                        Ok(r) if r.status == 200 && !r.body.is_empty() => {
                            s.ok += 1;
                            s.lat.push(t0.elapsed().as_micros() as u32);
                            let closing = r
                                .header("connection")
                                .is_some_and(|v| v.eq_ignore_ascii_case("close"));
                            if mode == ConnMode::NewPerRequest || closing {
                                conn = None;
                            }
                        }
                        _ => {
                            s.errors += 1;
                            conn = None;
                        }
                    }
                }
                s
            })
        })
        .collect();
    let mut all = Stats::default();
    for t in tasks {
        all.merge(t.await.unwrap_or_default());
    }
    all.elapsed = started.elapsed();
    all
}

/// Full TLS handshakes (client certificate presented), one request each,
/// against `openssl s_server -www`.
async fn handshake_load(
    addr: SocketAddr,
    c: SslConnector,
    concurrency: usize,
    duration: Duration,
) -> Stats {
    http_load(
        addr,
        Some(c),
        "/",
        ConnMode::NewPerRequest,
        concurrency,
        duration,
    )
    .await
}

/// Pinned reconnects of the reference client: TLS 1.3 handshake, hello,
/// welcome{trusted}, close.
async fn native_reconnects(
    addr: &HostAddr,
    client_dir: &Path,
    concurrency: usize,
    duration: Duration,
) -> Result<Stats> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let mut client = Client::open(client_dir, DisplayName::sanitize("loadgen").unwrap())?;
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = Stats::default();
            while Instant::now() < deadline {
                let t0 = Instant::now();
                match client.connect(&addr, NewHost::Refuse, false).await {
                    Ok(Connected::Session(session)) => {
                        session.close().await;
                        s.ok += 1;
                        s.lat.push(t0.elapsed().as_micros() as u32);
                    }
                    _ => s.errors += 1,
                }
            }
            s
        }));
    }
    let mut all = Stats::default();
    for t in tasks {
        all.merge(t.await?);
    }
    all.elapsed = started.elapsed();
    Ok(all)
}

// ---------------------------------------------------------------------------
// The console API

#[derive(Clone)]
struct Console {
    addr: SocketAddr,
    tls: SslConnector,
    cookie: String,
    csrf: String,
}

impl Console {
    async fn login(addr: SocketAddr, password: &str) -> Result<Console> {
        let tls_with = connector(None)?;
        let mut conn = Conn::open(addr, Some(&tls_with)).await?;
        let body = serde_json::json!({ "password": password }).to_string();
        let r = conn
            .roundtrip(&request_bytes(
                "POST",
                "/api/login",
                &[("Content-Type", "application/json")],
                body.as_bytes(),
            ))
            .await?;
        if r.status != 200 {
            bail!("login: HTTP {} {}", r.status, r.text());
        }
        let cookie = r
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .find_map(|(_, v)| v.split(';').next().filter(|c| c.starts_with("pf_session=")))
            .ok_or_else(|| anyhow!("no session cookie"))?
            .to_owned();
        let csrf = r.json()?["csrf"]
            .as_str()
            .ok_or_else(|| anyhow!("no csrf"))?
            .to_owned();
        Ok(Console {
            addr,
            tls: tls_with,
            cookie,
            csrf,
        })
    }

    /// One API call on `conn` (opened if needed, kept alive).
    async fn call(
        &self,
        conn: &mut Option<Conn>,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, serde_json::Value)> {
        if conn.is_none() {
            *conn = Some(Conn::open(self.addr, Some(&self.tls)).await?);
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut headers = vec![("Cookie", self.cookie.as_str())];
        if method != "GET" {
            headers.push(("X-CSRF-Token", self.csrf.as_str()));
            headers.push(("Content-Type", "application/json"));
        }
        let req = request_bytes(method, path, &headers, body.as_bytes());
        let r = match conn.as_mut().unwrap().roundtrip(&req).await {
            Ok(r) => r,
            Err(_) => {
                // The server may have closed an idle keep-alive connection.
                *conn = Some(Conn::open(self.addr, Some(&self.tls)).await?);
                conn.as_mut().unwrap().roundtrip(&req).await?
            }
        };
        Ok((r.status, r.json().unwrap_or(serde_json::Value::Null)))
    }
}

// ---------------------------------------------------------------------------
// Native pairing

async fn native_pairings(
    console: &Console,
    addr: &HostAddr,
    clients: Vec<Client>,
) -> Result<Stats> {
    let mut conn = None;
    let mut s = Stats::default();
    let started = Instant::now();
    for mut client in clients {
        let t0 = Instant::now();
        let (status, armed) = console
            .call(&mut conn, "POST", "/api/pairing/arm", None)
            .await?;
        if status != 200 {
            bail!("arm: HTTP {status} {armed}");
        }
        let pin: Pin = armed["pin"]
            .as_str()
            .ok_or_else(|| anyhow!("arm: no pin in {armed}"))?
            .parse()
            .map_err(|_| anyhow!("bad pin"))?;
        match client.pair(addr, &pin).await {
            Ok(session) => {
                session.close().await;
                s.ok += 1;
                s.lat.push(t0.elapsed().as_micros() as u32);
            }
            Err(e) => {
                eprintln!("native pairing failed: {e}");
                s.errors += 1;
            }
        }
    }
    s.elapsed = started.elapsed();
    Ok(s)
}

// ---------------------------------------------------------------------------
// GameStream pairing: Moonlight's client steps (nvpairingmanager.cpp), as
// restated once in punktfunk-testsupport

/// The text of `<name>` in a GameStream reply, which must be well-formed.
fn xml_field(body: &str, name: &str) -> Result<String> {
    let reply = xml::parse(body).with_context(|| format!("{body:?}"))?;
    reply
        .field(name)
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no <{name}> in {body}"))
}

fn gs_get(params: &str) -> Vec<u8> {
    request_bytes(
        "GET",
        &format!("/pair?{}", moonlight::query(params)),
        &[],
        b"",
    )
}

/// Phases 1-4 over HTTP and the phase-5 `pairchallenge` over HTTPS with the
/// new certificate; the PIN typed into the console meanwhile.
async fn gamestream_pair(
    console: &Console,
    http: SocketAddr,
    https: SocketAddr,
    id: &Identity,
    id_tls: &SslConnector,
) -> Result<()> {
    let trace = std::env::var_os("LOADGEN_TRACE").is_some();
    let t0 = Instant::now();
    let mark = |what: &str| {
        if trace {
            eprintln!("  {what}: {:.1} ms", t0.elapsed().as_secs_f64() * 1000.0)
        }
    };
    let pin = format!("{:04}", rand::random::<u16>() % 10_000);
    let mut client = moonlight::Client::random(id, &pin);

    // Phase 1, held until the PIN is entered.
    let q1 = gs_get(&client.getservercert());
    let mut conn = Conn::open(http, None).await?;
    let phase1 = tokio::spawn(async move {
        let r = conn.roundtrip(&q1).await;
        r.map(|r| (conn, r))
    });

    // The console: find the request, type the PIN (answers once paired).
    mark("phase 1 sent");
    let fp = hex::encode(id.fingerprint().as_bytes());
    let mut poll = None;
    let pending_id = loop {
        let (_, state) = console.call(&mut poll, "GET", "/api/pairing", None).await?;
        let found = state["pending"].as_array().and_then(|ps| {
            ps.iter()
                .find(|p| p["fingerprint"] == fp.as_str())
                .and_then(|p| p["id"].as_str().map(str::to_owned))
        });
        if let Some(found) = found {
            mark("pending request listed");
            break found;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let pin_console = console.clone();
    let entered = tokio::spawn(async move {
        let mut conn = None;
        pin_console
            .call(
                &mut conn,
                "POST",
                &format!("/api/pending/{pending_id}/pin"),
                Some(serde_json::json!({ "pin": pin })),
            )
            .await
    });

    mark("pin entered");
    let (mut conn, r1) = phase1.await??;
    mark("phase 1 reply");
    let r1 = r1.text();
    client.read_plaincert(&xml_field(&r1, "plaincert")?)?;

    // Phase 2.
    let r2 = conn
        .roundtrip(&gs_get(&client.clientchallenge()))
        .await?
        .text();
    mark("phase 2");
    client.read_challengeresponse(&xml_field(&r2, "challengeresponse")?)?;

    // Phase 3, and the client's own checks of the host's answer.
    let r3 = conn
        .roundtrip(&gs_get(&client.serverchallengeresp()))
        .await?
        .text();
    mark("phase 3");
    client.check_pairingsecret(&xml_field(&r3, "pairingsecret")?)?;

    // Phase 4.
    let r4 = conn
        .roundtrip(&gs_get(&client.clientpairingsecret()))
        .await?
        .text();
    mark("phase 4");
    if xml_field(&r4, "paired")? != "1" {
        bail!("phase 4: {r4}");
    }

    // Phase 5 over HTTPS with the client certificate.
    let mut tls_conn = Conn::open(https, Some(id_tls)).await?;
    let r5 = tls_conn
        .roundtrip(&gs_get(moonlight::PAIRCHALLENGE))
        .await?
        .text();
    if xml_field(&r5, "paired")? != "1" {
        bail!("phase 5: {r5}");
    }
    mark("phase 5");
    let (status, outcome) = entered.await??;
    mark("console answered");
    if status != 200 || outcome["result"] != "paired" {
        bail!("console: HTTP {status} {outcome}");
    }
    Ok(())
}

async fn gamestream_pairings(
    console: &Console,
    http: SocketAddr,
    https: SocketAddr,
    ids: &[(Identity, SslConnector)],
) -> Stats {
    let mut s = Stats::default();
    let started = Instant::now();
    for (id, id_tls) in ids {
        let t0 = Instant::now();
        match gamestream_pair(console, http, https, id, id_tls).await {
            Ok(()) => {
                s.ok += 1;
                s.lat.push(t0.elapsed().as_micros() as u32);
            }
            Err(e) => {
                eprintln!("gamestream pairing failed: {e:#}");
                s.errors += 1;
            }
        }
    }
    s.elapsed = started.elapsed();
    s
}

// ---------------------------------------------------------------------------
// openssl s_server / s_time

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn s_server(state: &Path, port: u16) -> Result<Child> {
    let child = Command::new("openssl")
        .args(["s_server", "-quiet", "-www", "-verify", "1", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(state.join("host.crt"))
        .arg("-key")
        .arg(state.join("host.key"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("openssl s_server")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("s_server did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child)
}

/// `openssl s_time -new`: full handshakes + `GET /`, one at a time.
/// Returns connections per second.
fn s_time(port: u16, cert: &Path, key: &Path, secs: u64) -> Result<f64> {
    let out = Command::new("openssl")
        .args(["s_time", "-new", "-www", "/", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(cert)
        .arg("-key")
        .arg(key)
        .args(["-time", &secs.to_string()])
        .output()
        .context("openssl s_time")?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "N connections in S real seconds, B bytes read per connection"
    for line in text.lines() {
        if let Some((n, rest)) = line.split_once(" connections in ") {
            if let Some(secs) = rest.strip_suffix_loose(" real seconds") {
                let n: f64 = n.trim().parse()?;
                let s: f64 = secs.parse()?;
                return Ok(n / s);
            }
        }
    }
    bail!("cannot read s_time output: {text}")
}

trait StripLoose {
    fn strip_suffix_loose(&self, marker: &str) -> Option<&str>;
}

impl StripLoose for str {
    fn strip_suffix_loose(&self, marker: &str) -> Option<&str> {
        self.find(marker).map(|i| self[..i].trim())
    }
}

// ---------------------------------------------------------------------------
// The run

fn write_pem(dir: &Path, id: &Identity) -> Result<(PathBuf, PathBuf)> {
    let (c, k) = (dir.join("client.crt"), dir.join("client.key"));
    std::fs::write(&c, id.cert_pem())?;
    std::fs::write(&k, id.key().private_key_to_pem_pkcs8()?)?;
    Ok((c, k))
}

fn copy_identity(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for f in ["host.crt", "host.key", "host.id", "console.passwd"] {
        if from.join(f).exists() {
            std::fs::copy(from.join(f), to.join(f))?;
        }
    }
    Ok(())
}

/// `n` paired devices with real P-256 certificates, durably, in `state`.
fn write_devices(state: &Path, n: usize) -> Result<()> {
    let devices = (0..n)
        .map(|i| {
            let id = Identity::generate_p256(&format!("d{i}"))?;
            Ok(Device::from_der(
                id.cert_der(),
                Kind::Native,
                punktfunk_certs::DisplayName::sanitize_or(&format!("device {i}"), "device"),
                Via::Pin,
                1_700_000_000 + i as u64,
            )?)
        })
        .collect::<Result<Vec<Device>>>()?;
    let reg = Registry::open(
        &state.join(punktfunk_certs::registry::REGISTRY_FILE),
        tokio::sync::broadcast::channel(16).0,
    )?;
    reg.modify(|draft| devices.iter().try_for_each(|d| draft.upsert(d.clone())))?;
    Ok(())
}

struct Row {
    what: String,
    ours: String,
    base: String,
    ratio: String,
}

fn row(what: &str, ours: String, base: String, ratio: String) -> Row {
    Row {
        what: what.to_owned(),
        ours,
        base,
        ratio,
    }
}

fn ratio(a: f64, b: f64) -> String {
    format!("{:.2}×", a / b)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

async fn run(o: Opts) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let work = tmp.path();
    let state = work.join("state");
    let bin = std::fs::canonicalize(&o.punktfunk)
        .with_context(|| format!("{} (build it first)", o.punktfunk.display()))?;
    let secs = o.duration.as_secs_f64();
    let c = o.concurrency;
    let mut rows = Vec::new();
    eprintln!("[1/9] first start of serve (creates the identity)");
    let (mut host, started) = Proc::spawn(serve_command(&bin, &state))?;
    let first_ready = host.wait_for("ready")? - started;
    let password = host
        .seen
        .iter()
        .find_map(|l| {
            l.split_once("set-password`): ")
                .map(|(_, p)| p.trim().to_owned())
        })
        .ok_or_else(|| anyhow!("no console password printed"))?;
    let gs_http = host.addr("gamestream-http")?;
    let gs_https = host.addr("gamestream-https")?;
    let console_addr = host.addr("console")?;
    let native_addr = HostAddr::parse(&host.addr("native")?.to_string()).map_err(|e| anyhow!(e))?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = host.rss_kib().unwrap_or(0);
    let pid = host.child.id();

    eprintln!("[2/9] pairing one GameStream and one native client");
    let console = Console::login(console_addr, &password).await?;
    let moonlight = Identity::generate("NVIDIA GameStream Client")?;
    let paired_tls = connector(Some(&moonlight))?;
    gamestream_pair(&console, gs_http, gs_https, &moonlight, &paired_tls)
        .await
        .context("pairing the Moonlight client")?;
    let client_dir = work.join("native-client");
    let mut native = Client::open(&client_dir, DisplayName::sanitize("loadgen").unwrap())?;
    {
        let mut conn = None;
        let (_, armed) = console
            .call(&mut conn, "POST", "/api/pairing/arm", None)
            .await?;
        let pin: Pin = armed["pin"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .map_err(|_| anyhow!("arm: {armed}"))?;
        native.pair(&native_addr, &pin).await?.close().await;
    }

    // The bytes serve answers, for the baseline to answer the same.
    let http_body = Conn::open(gs_http, None)
        .await?
        .roundtrip(&request_bytes("GET", "/serverinfo", &[], b""))
        .await?
        .body;
    let https_resp = Conn::open(gs_https, Some(&paired_tls))
        .await?
        .roundtrip(&request_bytes("GET", "/serverinfo", &[], b""))
        .await?;
    let https_body = https_resp.body;
    if !String::from_utf8_lossy(&https_body).contains("<PairStatus>1</PairStatus>") {
        bail!("the paired client is not paired over HTTPS");
    }
    std::fs::write(work.join("http.xml"), &http_body)?;
    std::fs::write(work.join("https.xml"), &https_body)?;

    // The baseline runs beside serve from here on, idle while serve is
    // measured and the other way round.
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("baseline")
        .arg(state.join("host.crt"))
        .arg(state.join("host.key"))
        .arg(work.join("http.xml"))
        .arg(work.join("https.xml"));
    let (mut base, _) = Proc::spawn(cmd)?;
    base.wait_for("ready")?;
    let (b_http_addr, b_https_addr) = (base.addr("http")?, base.addr("https")?);

    eprintln!(
        "[3/9] /serverinfo load on serve and on a minimal actix-web server (same bytes and \
         settings), {c} clients, {secs} s each, alternating in {ROUNDS} rounds"
    );
    let sampler = RssSampler::start(pid);
    let (s_http, b_http) = alternating(
        (gs_http, b_http_addr),
        None,
        "/serverinfo",
        ConnMode::KeepAlive,
        c,
        o.duration,
    )
    .await;
    let (s_https, b_https) = alternating(
        (gs_https, b_https_addr),
        Some(paired_tls.clone()),
        "/serverinfo",
        ConnMode::KeepAlive,
        c,
        o.duration,
    )
    .await;
    let (s_https_new, b_https_new) = alternating(
        (gs_https, b_https_addr),
        Some(paired_tls.clone()),
        "/serverinfo",
        ConnMode::NewPerRequest,
        c,
        o.duration,
    )
    .await;

    eprintln!("[4/9] native reconnects and pairings, GameStream pairings");
    let s_native = native_reconnects(&native_addr, &client_dir, c, o.duration).await?;
    let mut fresh = Vec::new();
    for i in 0..o.pairings {
        let d = work.join(format!("native-pair-{i}"));
        fresh.push(Client::open(
            &d,
            DisplayName::sanitize(&format!("pairing {i}")).unwrap(),
        )?);
    }
    let s_npair = native_pairings(&console, &native_addr, fresh).await?;
    let ids = (0..o.pairings)
        .map(|_| {
            let id = Identity::generate("NVIDIA GameStream Client")?;
            let tls = connector(Some(&id))?;
            Ok((id, tls))
        })
        .collect::<Result<Vec<_>>>()?;
    let s_gpair = gamestream_pairings(&console, gs_http, gs_https, &ids).await;
    let loaded_rss = sampler.finish();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after_rss = host.rss_kib().unwrap_or(0);
    host.stop()?;

    eprintln!("[5/9] baseline: its memory after its load");
    let base_rss = base.rss_kib().unwrap_or(0);
    base.stop()?;

    eprintln!("[6/9] baseline: openssl s_server (s_time, and this generator)");
    let port = free_port()?;
    let mut srv = s_server(&state, port)?;
    let (ccrt, ckey) = write_pem(work, &moonlight)?;
    let s_time_rate = s_time(port, &ccrt, &ckey, o.duration.as_secs().max(1))?;
    let s_hs = handshake_load(
        SocketAddr::from(([127, 0, 0, 1], port)),
        paired_tls.clone(),
        c,
        o.duration,
    )
    .await;
    let _ = srv.kill();
    let _ = srv.wait();

    eprintln!("[7/9] start-up with an existing identity");
    let (st_med, st_min, st_rss) = startup(&bin, &state, o.startups)?;

    eprintln!("[8/9] writing {} paired devices (P-256)", o.devices);
    let state_many = work.join("state-many");
    copy_identity(&state, &state_many)?;
    let t = Instant::now();
    write_devices(&state_many, o.devices)?;
    eprintln!("      done in {:.1} s", t.elapsed().as_secs_f64());
    let trust_size =
        std::fs::metadata(state_many.join(punktfunk_certs::registry::REGISTRY_FILE))?.len();

    eprintln!("[9/9] start-up with {} paired devices", o.devices);
    let (many_med, many_min, many_rss) = startup(&bin, &state_many, o.startups)?;

    // -------------------------------------------------------------------
    let hs = s_hs.rate();
    rows.push(row(
        "`/serverinfo`, HTTP, keep-alive",
        s_http.cell("req/s"),
        b_http.cell("req/s"),
        ratio(s_http.rate(), b_http.rate()),
    ));
    rows.push(row(
        "`/serverinfo`, HTTPS + paired client cert, keep-alive",
        s_https.cell("req/s"),
        b_https.cell("req/s"),
        ratio(s_https.rate(), b_https.rate()),
    ));
    rows.push(row(
        "`/serverinfo`, HTTPS + paired client cert, new TLS handshake per request",
        s_https_new.cell("req/s"),
        b_https_new.cell("req/s"),
        ratio(s_https_new.rate(), b_https_new.rate()),
    ));
    rows.push(row(
        "TLS handshake + `GET /`, `openssl s_server -www` (client cert)",
        "—".into(),
        format!(
            "{} · `s_time -new` (1 at a time): {} conn/s",
            s_hs.cell("conn/s"),
            fmt_rate(s_time_rate)
        ),
        "baseline".into(),
    ));
    rows.push(row(
        "`/serverinfo` HTTPS new handshake vs. `s_server`",
        s_https_new.cell("req/s"),
        s_hs.cell("conn/s"),
        ratio(s_https_new.rate(), hs),
    ));
    rows.push(row(
        "native pinned reconnect (TLS 1.3 + hello/welcome + close), vs. `s_server`",
        s_native.cell("conn/s"),
        s_hs.cell("conn/s"),
        ratio(s_native.rate(), hs),
    ));
    rows.push(row(
        &format!(
            "native full pairing (console arm + TLS + SPAKE2 + durable write), {} in a row, vs. `s_server`",
            o.pairings
        ),
        s_npair.cell("pairings/s"),
        s_hs.cell("conn/s"),
        ratio(s_npair.rate(), hs),
    ));
    rows.push(row(
        &format!(
            "GameStream full pairing (phases 1-5, PIN via console API), {} in a row, vs. `s_server`",
            o.pairings
        ),
        s_gpair.cell("pairings/s"),
        s_hs.cell("conn/s"),
        ratio(s_gpair.rate(), hs),
    ));
    rows.push(row(
        "RSS idle (after first start) / peak under the load above / after it",
        format!(
            "{} / {} / {}",
            mib(idle_rss),
            mib(loaded_rss),
            mib(after_rss)
        ),
        format!("actix baseline after its load: {}", mib(base_rss)),
        ratio(loaded_rss as f64, base_rss as f64),
    ));
    rows.push(row(
        "start-up, spawn → `ready`",
        format!(
            "first start (new identity): {}; existing identity: median {} (min {}) of {}",
            ms(first_ready),
            ms(st_med),
            ms(st_min),
            o.startups
        ),
        "—".into(),
        "—".into(),
    ));
    rows.push(row(
        &format!(
            "start-up with {} paired devices (trust.json {:.1} MiB)",
            o.devices,
            trust_size as f64 / (1024.0 * 1024.0)
        ),
        format!(
            "median {} (min {}) of {}; RSS idle {}",
            ms(many_med),
            ms(many_min),
            o.startups,
            mib(many_rss)
        ),
        format!("0 devices: {} ; RSS idle {}", ms(st_med), mib(st_rss)),
        ratio(many_med.as_secs_f64(), st_med.as_secs_f64()),
    ));

    println!("\n{c} concurrent clients, {secs} s per HTTP/native load, one generator thread\n");
    println!("| measurement | punktfunk serve | baseline | ratio |");
    println!("|---|---|---|---|");
    for r in rows {
        println!("| {} | {} | {} | {} |", r.what, r.ours, r.base, r.ratio);
    }
    Ok(())
}
