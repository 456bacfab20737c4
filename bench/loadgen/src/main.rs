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
use punktfunk_certs::{Device, Identity, FrontDoor, Registry, Via};
use punktfunk_native::{Client, Connected, DisplayName, HostAddr, NewHost, Pin};
use punktfunk_testsupport::{moonlight, xml};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

mod baseline;
mod console;
mod gamestream;
mod http;
mod load;
mod native;
mod procs;
mod s_server;

use console::*;
use gamestream::*;
use http::*;
use load::*;
use native::*;
use procs::*;
use s_server::*;

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
                FrontDoor::Native,
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
