//! Load and statistics

use crate::*;

#[derive(Clone, Default)]
pub(crate) struct Stats {
    pub(crate) ok: u64,
    pub(crate) errors: u64,
    pub(crate) elapsed: Duration,
    /// Latencies in microseconds.
    pub(crate) lat: Vec<u32>,
}

impl Stats {
    pub(crate) fn merge(&mut self, o: Stats) {
        self.ok += o.ok;
        self.errors += o.errors;
        self.lat.extend(o.lat);
    }

    /// Adds a measurement taken after this one (its time adds up too).
    pub(crate) fn then(&mut self, o: Stats) {
        self.elapsed += o.elapsed;
        self.merge(o);
    }

    pub(crate) fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    pub(crate) fn pct(&self, p: f64) -> f64 {
        let mut v = self.lat.clone();
        if v.is_empty() {
            return f64::NAN;
        }
        v.sort_unstable();
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[i] as f64 / 1000.0
    }

    pub(crate) fn cell(&self, unit: &str) -> String {
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

pub(crate) fn fmt_rate(r: f64) -> String {
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
pub(crate) enum ConnMode {
    KeepAlive,
    NewPerRequest,
}

/// Rounds of [`alternating`]: enough that a drift in the machine's speed
/// (frequency, a neighbour's load) falls on both servers alike.
pub(crate) const ROUNDS: u32 = 5;

/// `GET path` on `serve` and on `base`, `concurrency` clients each, in
/// [`ROUNDS`] alternating slices of `duration` (so each gets `duration` in
/// all), for a ratio that drift does not bias towards either.
pub(crate) async fn alternating(
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
pub(crate) async fn http_load(
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
pub(crate) async fn handshake_load(
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
pub(crate) async fn native_reconnects(
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
