//! openssl s_server / s_time

use crate::*;

pub(crate) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub(crate) fn s_server(state: &Path, port: u16) -> Result<Child> {
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
pub(crate) fn s_time(port: u16, cert: &Path, key: &Path, secs: u64) -> Result<f64> {
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
