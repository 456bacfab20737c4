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
use punktfunk_certs::{Device, FrontDoor, Identity, Via};
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
mod run;
mod s_server;

use console::*;
use gamestream::*;
use http::*;
use load::*;
use native::*;
use procs::*;
use run::run;
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
            let mut device = Device::from_der(
                id.cert_der(),
                FrontDoor::Native,
                punktfunk_certs::DisplayName::sanitize_or(&format!("device {i}"), "device"),
                Via::Pin,
                1_700_000_000 + i as u64,
            )?;
            device.permissions = punktfunk_certs::Preset::Play.permissions();
            Ok(device)
        })
        .collect::<Result<Vec<Device>>>()?;
    // The registry file as the host writes it (docs/state-and-audit.md),
    // written whole: a fixture for the start-up measurement, not a change a
    // host makes (those go through the trust service and its audit trail).
    punktfunk_certs::fsutil::write_atomic(
        &state.join(punktfunk_certs::registry::REGISTRY_FILE),
        &punktfunk_certs::registry::encode(devices.iter())?,
    )?;
    Ok(())
}
