//! Test support: start the real `punktfunk` binary on loopback with a
//! temporary state dir and ports chosen by the OS, and talk to it.

#![allow(dead_code)] // each test binary uses a different part of this

pub mod moonlight;
pub mod netns;
pub mod raw_native;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_punktfunk");

/// A running `punktfunk serve`.
pub struct Host {
    pub child: Child,
    pub state_dir: PathBuf,
    pub console: String,
    pub password: Option<String>,
    pub lines: Vec<String>,
    /// The address the start-up block says the doors listen on, as a URL
    /// host (`127.0.0.1` for a wildcard).
    listen_host: String,
    stdout: mpsc::Receiver<String>,
    _tmp: Option<tempfile::TempDir>,
}

/// `serve` on loopback with OS-chosen ports and no mDNS (tests run in
/// parallel; announcing would make them see each other).
pub fn serve_command(state_dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = announcing_serve_command(state_dir, extra);
    cmd.arg("--no-mdns");
    cmd
}

/// Like [`serve_command`], but the host announces itself on mDNS.
pub fn announcing_serve_command(state_dir: &Path, extra: &[&str]) -> Command {
    serve_command_bound(state_dir, "127.0.0.1", extra)
}

/// `serve` on `bind` (e.g. an address of a [`netns::Netns`]) with
/// OS-chosen ports, announcing on mDNS.
pub fn serve_command_bound(state_dir: &Path, bind: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--bind", bind])
        .args([
            "--http-port",
            "0",
            "--https-port",
            "0",
            "--console-port",
            "0",
            "--native-port",
            "0",
        ])
        .arg("--state-dir")
        .arg(state_dir)
        .args(extra)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
}

impl Host {
    /// Starts a host on a fresh temporary state dir.
    pub fn start(extra: &[&str]) -> Host {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let mut host = Host::start_in(&dir, extra);
        host._tmp = Some(tmp);
        host
    }

    /// Starts a host on a fresh state dir listening on `bind` only (an
    /// address of a [`netns::Netns`], say), without mDNS.
    pub fn start_bound(bind: &str, extra: &[&str]) -> Host {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let mut cmd = serve_command_bound(&dir, bind, extra);
        cmd.arg("--no-mdns");
        let mut host = Host::start_with(cmd, &dir);
        host._tmp = Some(tmp);
        host
    }

    /// Starts a host on `dir` and waits until every listener is up.
    pub fn start_in(dir: &Path, extra: &[&str]) -> Host {
        Host::start_with(serve_command(dir, extra), dir)
    }

    /// Starts `cmd` (a `serve` command on `dir`) and waits until it is ready.
    pub fn start_with(mut cmd: Command, dir: &Path) -> Host {
        let mut child = cmd.spawn().expect("spawn punktfunk");
        let rx = lines_of(&mut child);
        let mut host = Host {
            child,
            state_dir: dir.to_path_buf(),
            console: String::new(),
            password: None,
            lines: Vec::new(),
            listen_host: "127.0.0.1".into(),
            stdout: rx,
            _tmp: None,
        };
        host.wait_ready();
        host
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.console.is_empty() || !self.lines.iter().any(|l| l.starts_with("ready")) {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.stdout.recv_timeout(left) {
                Ok(l) => l,
                Err(_) => panic!("host did not become ready; stdout so far: {:?}", self.lines),
            };
            if let Some(at) = listen_host(&line) {
                self.listen_host = at;
            }
            if let Some(("console", scheme, port)) = listener(&line) {
                self.console = format!("{scheme}://{}:{port}", self.listen_host);
            }
            if let Some(pw) = generated_password(&line) {
                self.password = Some(pw);
            }
            self.lines.push(line);
        }
    }

    /// The `https://127.0.0.1:PORT` of a listener of the start-up block
    /// (`console`, `gamestream-http`, `gamestream-https`, `native`).
    pub fn url(&self, what: &str) -> String {
        self.lines
            .iter()
            .find_map(|l| match listener(l) {
                Some((w, scheme, port)) if w == what => {
                    Some(format!("{scheme}://{}:{port}", self.listen_host))
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("no {what} listener in {:?}", self.lines))
    }

    pub fn password(&self) -> &str {
        self.password
            .as_deref()
            .expect("the host printed no password")
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(mut self) -> ExitStatus {
        signal(&self.child, "TERM");
        wait_timeout(&mut self.child, Duration::from_secs(20))
            .expect("host did not stop on SIGTERM")
    }

    /// SIGKILL, no cleanup.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The listener lines of the start-up block (src/host.rs `LISTENERS`):
/// internal name, what the block calls it, protocol.
const LISTENERS: [(&str, &str, &str); 4] = [
    ("console", "console", "https"),
    ("gamestream-http", "Moonlight", "http"),
    ("gamestream-https", "Moonlight", "https"),
    ("native", "punktfunk app", "tls"),
];

/// `    console         https  port 40011` → ("console", "https", 40011).
pub fn listener(line: &str) -> Option<(&'static str, &'static str, u16)> {
    let line = line.trim();
    LISTENERS.iter().find_map(|(what, label, scheme)| {
        let mut words = line.strip_prefix(label)?.split_whitespace();
        (words.next()? == *scheme && words.next()? == "port").then_some(())?;
        Some((*what, *scheme, words.next()?.parse().ok()?))
    })
}

/// `  listening on 127.0.0.1 only:` → `127.0.0.1`; a wildcard → `127.0.0.1`.
pub fn listen_host(line: &str) -> Option<String> {
    let rest = line.trim().strip_prefix("listening on ")?;
    if rest.starts_with("every ") {
        return Some("127.0.0.1".into());
    }
    Some(rest.strip_suffix(" only:")?.to_owned())
}

/// The generated password of a `console password: PW  (generated; …)` line.
pub fn generated_password(line: &str) -> Option<String> {
    let rest = line.strip_prefix("console password: ")?;
    let (pw, after) = rest.split_once(' ')?;
    after
        .trim_start()
        .starts_with("(generated")
        .then(|| pw.to_owned())
}

/// Reads a child's stdout lines on a thread.
pub fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A tokio runtime for in-process clients (two workers: the machine may
/// have only two cores).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Arms pairing from the console; the PIN.
pub fn arm(console: &Console) -> String {
    let (status, body) = console.send("POST", "/api/pairing/arm", None);
    assert_eq!(status, 200, "{body}");
    body["pin"].as_str().unwrap().to_owned()
}

/// Arms pairing from the console; the PIN and the pairing link (QR code)
/// the console shows for it (with `--native`).
pub fn arm_with_link(console: &Console) -> (String, String) {
    let (status, body) = console.send("POST", "/api/pairing/arm", None);
    assert_eq!(status, 200, "{body}");
    let link = body["link"].as_str().expect("a pairing link").to_owned();
    (body["pin"].as_str().unwrap().to_owned(), link)
}

/// The `s` (secret, hex) of a pairing link.
pub fn link_secret(link: &str) -> String {
    let link = punktfunk_native::PairingLink::parse(link).expect("the link parses");
    link.secret.to_hex().to_string()
}

pub fn signal(child: &Child, sig: &str) {
    signal_pid(child.id(), sig);
}

pub fn signal_pid(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `punktfunk console set-password --state-dir DIR`, the password on its
/// stdin as a script would give it; what it printed and how it exited.
pub fn set_password(state_dir: &Path, password: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(["console", "set-password", "--state-dir"])
        .arg(state_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{password}\n").as_bytes()).unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// A browser-like client: keeps cookies, accepts the self-signed host cert.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .danger_accept_invalid_certs(true)
        .cookie_store(true)
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// `POST /api/login` with the host's password through `http`; the answer,
/// checked to be a success (its cookie sets the session).
pub fn logged_in(http: &reqwest::blocking::Client, host: &Host) -> reqwest::blocking::Response {
    let resp = http
        .post(format!("{}/api/login", host.console))
        .json(&serde_json::json!({"password": host.password()}))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200, "login with the host's password");
    resp
}

/// A logged-in console client and its CSRF token.
pub struct Console {
    pub http: reqwest::blocking::Client,
    pub base: String,
    pub csrf: String,
}

impl Console {
    pub fn login(host: &Host) -> Console {
        Console::login_with(host, client())
    }

    /// Logs in from the address `from` (see [`netns::client_from`]).
    pub fn login_from(host: &Host, from: std::net::IpAddr) -> Console {
        Console::login_with(host, netns::client_from(from))
    }

    /// Logs in through `http`, which may already hold a known-browser cookie
    /// from an earlier login (a known browser logs in during a flood).
    pub fn login_with(host: &Host, http: reqwest::blocking::Client) -> Console {
        let body: serde_json::Value = logged_in(&http, host).json().unwrap();
        Console {
            http,
            base: host.console.clone(),
            csrf: body["csrf"].as_str().unwrap().to_owned(),
        }
    }

    pub fn get(&self, path: &str) -> serde_json::Value {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200, "GET {path}");
        resp.json().unwrap()
    }

    /// A state change with the CSRF token; returns (status, body).
    pub fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("X-CSRF-Token", &self.csrf);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().unwrap_or(serde_json::Value::Null))
    }

    pub fn pairing(&self) -> serde_json::Value {
        self.get("/api/pairing")
    }
}

/// A native reference client in `dir` whose identity is `id`. Tests give
/// it P-256 identities: generating RSA keys would dominate their run time.
pub fn native_client_as(
    dir: &Path,
    id: &punktfunk_certs::Identity,
    name: &str,
) -> punktfunk_native::Client {
    use punktfunk_native::client::{CLIENT_CERT_FILE, CLIENT_KEY_FILE};
    std::fs::create_dir_all(dir).unwrap();
    id.save(&dir.join(CLIENT_CERT_FILE), &dir.join(CLIENT_KEY_FILE))
        .unwrap();
    let name = punktfunk_native::DisplayName::sanitize(name).unwrap();
    let client = punktfunk_native::Client::open(dir, name).unwrap();
    assert_eq!(client.fingerprint(), id.fingerprint());
    client
}
