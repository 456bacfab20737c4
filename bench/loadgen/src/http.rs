//! A minimal HTTP/1.1 client over any stream

use crate::*;

pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Resp {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "HTTP {}: not JSON: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub(crate) fn request_bytes(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
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

pub(crate) async fn roundtrip<S: AsyncRead + AsyncWrite + Unpin>(
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

pub(crate) fn connector(identity: Option<&Identity>) -> Result<SslConnector> {
    let mut b = SslConnector::builder(SslMethod::tls_client())?;
    // Self-signed hosts: trust is by fingerprint, not checked here.
    b.set_verify(SslVerifyMode::NONE);
    if let Some(id) = identity {
        b.set_certificate(id.cert())?;
        b.set_private_key(id.key())?;
    }
    Ok(b.build())
}

pub(crate) type Tls = SslStream<TcpStream>;

pub(crate) async fn tcp(addr: SocketAddr) -> Result<TcpStream> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// A full TLS handshake (no session resumption).
pub(crate) async fn tls(addr: SocketAddr, c: &SslConnector) -> Result<Tls> {
    let ssl = c
        .configure()?
        .verify_hostname(false)
        .use_server_name_indication(false)
        .into_ssl("127.0.0.1")?;
    let mut s = SslStream::new(ssl, tcp(addr).await?)?;
    StdPin::new(&mut s).connect().await?;
    Ok(s)
}

pub(crate) enum Conn {
    Plain(BufReader<TcpStream>),
    Tls(BufReader<Tls>),
}

impl Conn {
    pub(crate) async fn open(addr: SocketAddr, tls_with: Option<&SslConnector>) -> Result<Conn> {
        Ok(match tls_with {
            None => Conn::Plain(BufReader::new(tcp(addr).await?)),
            Some(c) => Conn::Tls(BufReader::new(tls(addr, c).await?)),
        })
    }

    pub(crate) async fn roundtrip(&mut self, request: &[u8]) -> Result<Resp> {
        match self {
            Conn::Plain(io) => roundtrip(io, request).await,
            Conn::Tls(io) => roundtrip(io, request).await,
        }
    }
}
