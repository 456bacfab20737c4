//! Processes

use crate::*;

/// A spawned server that announces itself on stdout.
pub(crate) struct Proc {
    pub(crate) child: Child,
    pub(crate) lines: mpsc::Receiver<String>,
    pub(crate) seen: Vec<String>,
}

impl Proc {
    pub(crate) fn spawn(mut cmd: Command) -> Result<(Proc, Instant)> {
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
    pub(crate) fn wait_for(&mut self, word: &str) -> Result<Instant> {
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

    pub(crate) fn addr(&self, what: &str) -> Result<SocketAddr> {
        let prefix = format!("{what} listening on ");
        let url = self
            .seen
            .iter()
            .find_map(|l| l.strip_prefix(&prefix))
            .ok_or_else(|| anyhow!("no {what} listener in {:?}", self.seen))?;
        let addr = url.split("://").nth(1).unwrap_or(url).trim_end_matches('/');
        Ok(addr.parse()?)
    }

    /// A listener of serve's start-up block (`    Moonlight       http   port
    /// 32855`), on loopback (the loads bind serve there).
    pub(crate) fn listener(&self, label: &str, scheme: &str) -> Result<SocketAddr> {
        let port = self
            .seen
            .iter()
            .find_map(|l| {
                let rest = l.trim_start().strip_prefix(label)?;
                match rest.split_whitespace().collect::<Vec<_>>()[..] {
                    [s, "port", port] if s == scheme => port.parse::<u16>().ok(),
                    _ => None,
                }
            })
            .ok_or_else(|| anyhow!("no {label} {scheme} listener in {:?}", self.seen))?;
        Ok(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    pub(crate) fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.child.id())
    }

    /// SIGTERM, then wait.
    pub(crate) fn stop(mut self) -> Result<()> {
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

pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Samples the RSS of `pid` until stopped; keeps the maximum.
pub(crate) struct RssSampler {
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) max: Arc<AtomicU64>,
    pub(crate) thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    pub(crate) fn start(pid: u32) -> Self {
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

    pub(crate) fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.max.load(Ordering::Relaxed)
    }
}

pub(crate) fn serve_command(bin: &Path, state: &Path) -> Command {
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
pub(crate) fn startup(bin: &Path, state: &Path, n: usize) -> Result<(Duration, Duration, u64)> {
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
