//! The run: each measurement in turn, then the table.

use crate::*;

/// `serve` after its first start, and what it printed.
struct Host {
    proc: Proc,
    first_ready: Duration,
    password: String,
    gs_http: SocketAddr,
    gs_https: SocketAddr,
    console: SocketAddr,
    native: HostAddr,
    idle_rss: u64,
}

/// The first start of serve (it creates the identity).
async fn first_start(bin: &Path, state: &Path) -> Result<Host> {
    let (mut proc, started) = Proc::spawn(serve_command(bin, state))?;
    let first_ready = proc.wait_for("ready")? - started;
    // `console password: XXXX  (generated; …)`, printed at a first start.
    let password = proc
        .seen
        .iter()
        .find_map(|l| l.strip_prefix("console password: "))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no console password printed"))?;
    let gs_http = proc.listener("Moonlight", "http")?;
    let gs_https = proc.listener("Moonlight", "https")?;
    let console = proc.listener("console", "https")?;
    let native = HostAddr::parse(&proc.listener("punktfunk app", "tls")?.to_string())
        .map_err(|e| anyhow!(e))?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = proc.rss_kib().unwrap_or(0);
    Ok(Host {
        proc,
        first_ready,
        password,
        gs_http,
        gs_https,
        console,
        native,
        idle_rss,
    })
}

/// The clients paired once, whose requests the loads repeat.
struct Paired {
    console: Console,
    moonlight: Identity,
    tls: SslConnector,
    native_dir: PathBuf,
}

/// Pairs one GameStream and one native client.
async fn pair_two(host: &Host, work: &Path) -> Result<Paired> {
    let console = Console::login(host.console, &host.password).await?;
    let moonlight = Identity::generate("NVIDIA GameStream Client")?;
    let tls = connector(Some(&moonlight))?;
    gamestream_pair(&console, host.gs_http, host.gs_https, &moonlight, &tls)
        .await
        .context("pairing the Moonlight client")?;
    let native_dir = work.join("native-client");
    let mut native = Client::open(&native_dir, DisplayName::sanitize("loadgen").unwrap())?;
    let mut conn = None;
    let (_, armed) = console
        .call(&mut conn, "POST", "/api/pairing/arm", None)
        .await?;
    let pin: Pin = armed["pin"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .map_err(|_| anyhow!("arm: {armed}"))?;
    native.pair(&host.native, &pin).await?.close().await;
    Ok(Paired {
        console,
        moonlight,
        tls,
        native_dir,
    })
}

/// The baseline server, answering the bytes serve answers; it runs beside
/// serve from here on, idle while serve is measured and the other way round.
async fn start_baseline(host: &Host, paired: &Paired, state: &Path, work: &Path) -> Result<Proc> {
    let http_body = Conn::open(host.gs_http, None)
        .await?
        .roundtrip(&request_bytes("GET", "/serverinfo", &[], b""))
        .await?
        .body;
    let https_body = Conn::open(host.gs_https, Some(&paired.tls))
        .await?
        .roundtrip(&request_bytes("GET", "/serverinfo", &[], b""))
        .await?
        .body;
    if !String::from_utf8_lossy(&https_body).contains("<PairStatus>1</PairStatus>") {
        bail!("the paired client is not paired over HTTPS");
    }
    std::fs::write(work.join("http.xml"), &http_body)?;
    std::fs::write(work.join("https.xml"), &https_body)?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("baseline")
        .arg(state.join("host.crt"))
        .arg(state.join("host.key"))
        .arg(work.join("http.xml"))
        .arg(work.join("https.xml"));
    let (mut base, _) = Proc::spawn(cmd)?;
    base.wait_for("ready")?;
    Ok(base)
}

/// `/serverinfo` on serve and on the baseline: (serve, baseline) per way.
struct ServerInfo {
    http: (Stats, Stats),
    https: (Stats, Stats),
    https_new: (Stats, Stats),
}

async fn serverinfo_loads(
    o: &Opts,
    host: &Host,
    paired: &Paired,
    base: &Proc,
) -> Result<ServerInfo> {
    let (b_http, b_https) = (base.addr("http")?, base.addr("https")?);
    let c = o.concurrency;
    let tls = Some(paired.tls.clone());
    let http = alternating(
        (host.gs_http, b_http),
        None,
        "/serverinfo",
        ConnMode::KeepAlive,
        c,
        o.duration,
    )
    .await;
    let https = alternating(
        (host.gs_https, b_https),
        tls.clone(),
        "/serverinfo",
        ConnMode::KeepAlive,
        c,
        o.duration,
    )
    .await;
    let https_new = alternating(
        (host.gs_https, b_https),
        tls,
        "/serverinfo",
        ConnMode::NewPerRequest,
        c,
        o.duration,
    )
    .await;
    Ok(ServerInfo {
        http,
        https,
        https_new,
    })
}

/// Native reconnects, native pairings and GameStream pairings.
struct Pairings {
    native_reconnects: Stats,
    native: Stats,
    gamestream: Stats,
}

async fn pairing_loads(o: &Opts, host: &Host, paired: &Paired, work: &Path) -> Result<Pairings> {
    let native_reconnects =
        native_reconnects(&host.native, &paired.native_dir, o.concurrency, o.duration).await?;
    let mut fresh = Vec::new();
    for i in 0..o.pairings {
        let d = work.join(format!("native-pair-{i}"));
        fresh.push(Client::open(
            &d,
            DisplayName::sanitize(&format!("pairing {i}")).unwrap(),
        )?);
    }
    let native = native_pairings(&paired.console, &host.native, fresh).await?;
    let ids = (0..o.pairings)
        .map(|_| {
            let id = Identity::generate("NVIDIA GameStream Client")?;
            let tls = connector(Some(&id))?;
            Ok((id, tls))
        })
        .collect::<Result<Vec<_>>>()?;
    let gamestream = gamestream_pairings(&paired.console, host.gs_http, host.gs_https, &ids).await;
    Ok(Pairings {
        native_reconnects,
        native,
        gamestream,
    })
}

/// TLS handshakes against `openssl s_server`: `s_time`'s rate, and this
/// generator's.
async fn s_server_baseline(
    o: &Opts,
    state: &Path,
    work: &Path,
    paired: &Paired,
) -> Result<(f64, Stats)> {
    let port = free_port()?;
    let mut srv = s_server(state, port)?;
    let (ccrt, ckey) = write_pem(work, &paired.moonlight)?;
    let s_time_rate = s_time(port, &ccrt, &ckey, o.duration.as_secs().max(1))?;
    let handshakes = handshake_load(
        SocketAddr::from(([127, 0, 0, 1], port)),
        paired.tls.clone(),
        o.concurrency,
        o.duration,
    )
    .await;
    let _ = srv.kill();
    let _ = srv.wait();
    Ok((s_time_rate, handshakes))
}

/// Start-up times: with an existing identity, and with `o.devices`
/// paired devices.
struct Startups {
    existing: (Duration, Duration, u64),
    many: (Duration, Duration, u64),
    trust_size: u64,
}

fn startups(o: &Opts, bin: &Path, state: &Path, work: &Path) -> Result<Startups> {
    eprintln!("[7/9] start-up with an existing identity");
    let existing = startup(bin, state, o.startups)?;
    eprintln!("[8/9] writing {} paired devices (P-256)", o.devices);
    let state_many = work.join("state-many");
    copy_identity(state, &state_many)?;
    let t = Instant::now();
    write_devices(&state_many, o.devices)?;
    eprintln!("      done in {:.1} s", t.elapsed().as_secs_f64());
    let trust_size =
        std::fs::metadata(state_many.join(punktfunk_certs::registry::REGISTRY_FILE))?.len();
    eprintln!("[9/9] start-up with {} paired devices", o.devices);
    let many = startup(bin, &state_many, o.startups)?;
    Ok(Startups {
        existing,
        many,
        trust_size,
    })
}

/// Memory: serve idle, peak under load and after it; the baseline's.
struct Memory {
    idle: u64,
    loaded: u64,
    after: u64,
    base: u64,
}

pub(crate) async fn run(o: Opts) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let work = tmp.path();
    let state = work.join("state");
    let bin = std::fs::canonicalize(&o.punktfunk)
        .with_context(|| format!("{} (build it first)", o.punktfunk.display()))?;
    eprintln!("[1/9] first start of serve (creates the identity)");
    let host = first_start(&bin, &state).await?;
    eprintln!("[2/9] pairing one GameStream and one native client");
    let paired = pair_two(&host, work).await?;
    let base = start_baseline(&host, &paired, &state, work).await?;
    eprintln!(
        "[3/9] /serverinfo load on serve and on a minimal actix-web server (same bytes and \
         settings), {} clients, {} s each, alternating in {ROUNDS} rounds",
        o.concurrency,
        o.duration.as_secs_f64()
    );
    let sampler = RssSampler::start(host.proc.child.id());
    let serverinfo = serverinfo_loads(&o, &host, &paired, &base).await?;
    eprintln!("[4/9] native reconnects and pairings, GameStream pairings");
    let pairings = pairing_loads(&o, &host, &paired, work).await?;
    let loaded = sampler.finish();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = host.proc.rss_kib().unwrap_or(0);
    eprintln!("[5/9] baseline: its memory after its load");
    let memory = Memory {
        idle: host.idle_rss,
        loaded,
        after,
        base: base.rss_kib().unwrap_or(0),
    };
    base.stop()?;
    host.proc.stop()?;
    eprintln!("[6/9] baseline: openssl s_server (s_time, and this generator)");
    let (s_time_rate, handshakes) = s_server_baseline(&o, &state, work, &paired).await?;
    let startups = startups(&o, &bin, &state, work)?;

    let mut rows = serverinfo_rows(&serverinfo, s_time_rate, &handshakes);
    rows.extend(pairing_rows(&o, &pairings, &handshakes));
    rows.extend(process_rows(&o, host.first_ready, &memory, &startups));
    print_table(&o, rows);
    Ok(())
}

fn serverinfo_rows(si: &ServerInfo, s_time_rate: f64, handshakes: &Stats) -> Vec<Row> {
    let hs = handshakes.rate();
    let pair = |what: &str, (ours, base): &(Stats, Stats)| {
        row(
            what,
            ours.cell("req/s"),
            base.cell("req/s"),
            ratio(ours.rate(), base.rate()),
        )
    };
    vec![
        pair("`/serverinfo`, HTTP, keep-alive", &si.http),
        pair(
            "`/serverinfo`, HTTPS + paired client cert, keep-alive",
            &si.https,
        ),
        pair(
            "`/serverinfo`, HTTPS + paired client cert, new TLS handshake per request",
            &si.https_new,
        ),
        row(
            "TLS handshake + `GET /`, `openssl s_server -www` (client cert)",
            "—".into(),
            format!(
                "{} · `s_time -new` (1 at a time): {} conn/s",
                handshakes.cell("conn/s"),
                fmt_rate(s_time_rate)
            ),
            "baseline".into(),
        ),
        row(
            "`/serverinfo` HTTPS new handshake vs. `s_server`",
            si.https_new.0.cell("req/s"),
            handshakes.cell("conn/s"),
            ratio(si.https_new.0.rate(), hs),
        ),
    ]
}

fn pairing_rows(o: &Opts, p: &Pairings, handshakes: &Stats) -> Vec<Row> {
    let hs = handshakes.rate();
    let vs = |what: &str, s: &Stats, unit: &str| {
        row(
            what,
            s.cell(unit),
            handshakes.cell("conn/s"),
            ratio(s.rate(), hs),
        )
    };
    vec![
        vs(
            "native pinned reconnect (TLS 1.3 + hello/welcome + close), vs. `s_server`",
            &p.native_reconnects,
            "conn/s",
        ),
        vs(
            &format!(
                "native full pairing (console arm + TLS + SPAKE2 + durable write), {} in a row, vs. `s_server`",
                o.pairings
            ),
            &p.native,
            "pairings/s",
        ),
        vs(
            &format!(
                "GameStream full pairing (phases 1-5, PIN via console API), {} in a row, vs. `s_server`",
                o.pairings
            ),
            &p.gamestream,
            "pairings/s",
        ),
    ]
}

fn process_rows(o: &Opts, first_ready: Duration, m: &Memory, st: &Startups) -> Vec<Row> {
    let (st_med, st_min, st_rss) = st.existing;
    let (many_med, many_min, many_rss) = st.many;
    vec![
        row(
            "RSS idle (after first start) / peak under the load above / after it",
            format!("{} / {} / {}", mib(m.idle), mib(m.loaded), mib(m.after)),
            format!("actix baseline after its load: {}", mib(m.base)),
            ratio(m.loaded as f64, m.base as f64),
        ),
        row(
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
        ),
        row(
            &format!(
                "start-up with {} paired devices (trust.json {:.1} MiB)",
                o.devices,
                st.trust_size as f64 / (1024.0 * 1024.0)
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
        ),
    ]
}

fn print_table(o: &Opts, rows: Vec<Row>) {
    println!(
        "\n{} concurrent clients, {} s per HTTP/native load, one generator thread\n",
        o.concurrency,
        o.duration.as_secs_f64()
    );
    println!("| measurement | punktfunk serve | baseline | ratio |");
    println!("|---|---|---|---|");
    for r in rows {
        println!("| {} | {} | {} | {} |", r.what, r.ours, r.base, r.ratio);
    }
}

pub(crate) struct Row {
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
