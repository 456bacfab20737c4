//! A bare native-protocol client for attack tests: TLS 1.3 from a chosen
//! loopback source address (the whole of 127/8 is loopback, so another
//! address is another machine on the LAN), with a chosen certificate, that
//! sends exactly the frames a test writes (docs/native-protocol.md § 3, § 4)
//! and reads the host's answers as JSON.

#![allow(dead_code)] // each test binary uses a different part of this

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use openssl::ssl::{Ssl, SslContext, SslMethod, SslStream, SslVerifyMode, SslVersion};
use punktfunk_certs::Identity;
use serde_json::{json, Value};

/// The native port of a running host, at the address it listens on.
pub fn addr(host: &super::Host) -> SocketAddr {
    let url = host.url("native");
    let at = url.rsplit_once("://").map_or(url.as_str(), |(_, a)| a);
    at.parse()
        .unwrap_or_else(|e| panic!("native listener {url}: {e}"))
}

/// A TCP connection to `dst` from the address `src` (IPv4 or IPv6).
pub fn tcp_from(src: &str, dst: SocketAddr) -> TcpStream {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(dst),
        socket2::Type::STREAM,
        None,
    )
    .unwrap();
    let src = SocketAddr::new(src.parse().unwrap(), 0);
    sock.bind(&src.into()).unwrap();
    sock.connect_timeout(&dst.into(), Duration::from_secs(10))
        .unwrap();
    let tcp: TcpStream = sock.into();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    tcp
}

/// One connection, past the TLS handshake.
pub struct Raw {
    pub tls: SslStream<TcpStream>,
}

impl Raw {
    /// Connects from `src` presenting `id`.
    pub fn connect(src: &str, dst: SocketAddr, id: &Identity) -> Raw {
        Raw::try_connect(src, dst, id)
            .unwrap_or_else(|| panic!("the host closed the connection from {src} in its handshake"))
    }

    /// Connects from `src` presenting `id`; `None` if the host closed the
    /// connection before the handshake completed (no room for it).
    pub fn try_connect(src: &str, dst: SocketAddr, id: &Identity) -> Option<Raw> {
        let mut b = SslContext::builder(SslMethod::tls_client()).ok()?;
        b.set_verify(SslVerifyMode::NONE);
        b.set_min_proto_version(Some(SslVersion::TLS1_3)).ok()?;
        b.set_certificate(id.cert()).ok()?;
        b.set_private_key(id.key()).ok()?;
        let ssl = Ssl::new(&b.build()).ok()?;
        let tls = ssl.connect(tcp_from(src, dst)).ok()?;
        Some(Raw { tls })
    }

    /// Sends one frame.
    pub fn send(&mut self, msg: &Value) {
        assert!(self.try_send(msg), "the host closed the connection");
    }

    /// Sends one frame; `false` if the host closed the connection.
    pub fn try_send(&mut self, msg: &Value) -> bool {
        let body = serde_json::to_vec(msg).unwrap();
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend(body);
        self.tls.write_all(&frame).is_ok()
    }

    /// Reads one frame; `None` when the host closed the connection.
    pub fn recv(&mut self) -> Option<Value> {
        let mut len = [0u8; 4];
        self.tls.read_exact(&mut len).ok()?;
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        self.tls.read_exact(&mut body).ok()?;
        Some(serde_json::from_slice(&body).unwrap())
    }

    /// Sends `hello` and returns the host's answer.
    pub fn hello(&mut self, name: &str, intent: &str) -> Value {
        self.send(&json!({"type": "hello", "protocol": 1, "device_name": name, "intent": intent}));
        self.recv()
            .expect("the host closed without answering hello")
    }
}

/// Knocks (`hello{connect}`) from `src` with a fresh identity; returns the
/// connection, the identity and the host's answer.
pub fn knock(src: &str, dst: SocketAddr, name: &str) -> (Raw, Identity, Value) {
    try_knock(src, dst, name).expect("the host closed the connection without answering hello")
}

/// [`knock`], or `None` if the host closed the connection before it
/// answered (no room for it).
pub fn try_knock(src: &str, dst: SocketAddr, name: &str) -> Option<(Raw, Identity, Value)> {
    let id = Identity::generate_p256("knock").unwrap();
    let mut raw = Raw::try_connect(src, dst, &id)?;
    let hello = json!({"type": "hello", "protocol": 1, "device_name": name, "intent": "connect"});
    if !raw.try_send(&hello) {
        return None;
    }
    let answer = raw.recv()?;
    Some((raw, id, answer))
}

/// `hello{intent: pair}` from `src` as `id`: the connection, if the host
/// answered `welcome{pairing}`.
pub fn welcomed_to_pair(src: &str, dst: SocketAddr, id: &Identity) -> Option<Raw> {
    let mut raw = Raw::try_connect(src, dst, id)?;
    let hello = json!({"type": "hello", "protocol": 1, "device_name": "staller", "intent": "pair"});
    if !raw.try_send(&hello) {
        return None;
    }
    raw.recv().filter(|w| w["status"] == "pairing").map(|_| raw)
}
