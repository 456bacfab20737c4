//! TLS 1.3 to a host: the client certificate, ALPN, and the check of the
//! host's certificate inside the handshake (§ 2).

use super::*;

impl Client {
    pub(super) async fn tls_connect(
        &self,
        addr: &HostAddr,
        expect: Option<Fingerprint>,
    ) -> Result<Tls, ClientError> {
        self.tls_connect_within(addr, expect, timeouts::TLS_HANDSHAKE)
            .await
    }

    /// [`Client::tls_connect`] with its own limit for the TCP connect.
    pub(super) async fn tls_connect_within(
        &self,
        addr: &HostAddr,
        expect: Option<Fingerprint>,
        tcp_limit: std::time::Duration,
    ) -> Result<Tls, ClientError> {
        let tcp = tokio::time::timeout(
            tcp_limit,
            TcpStream::connect((addr.host.as_str(), addr.port)),
        )
        .await
        .map_err(|_| ClientError::Timeout("TCP connect"))?
        .map_err(|e| connection(addr, e.to_string()))?;
        let _ = tcp.set_nodelay(true);

        // What the handshake saw at depth 0, when it did not match the pin.
        let mismatch: Arc<Mutex<Option<Fingerprint>>> = Arc::default();
        let ctx = self
            .tls_context(expect, mismatch.clone())
            .map_err(|e| connection(addr, format!("TLS setup: {e}")))?;
        // The certificate is checked by fingerprint, not by name; the name
        // only goes into SNI.
        let ssl = Ssl::new(&ctx)
            .and_then(|mut ssl| {
                if addr.host.parse::<std::net::IpAddr>().is_err() {
                    ssl.set_hostname(&addr.host)?;
                }
                Ok(ssl)
            })
            .map_err(|e| connection(addr, format!("TLS setup: {e}")))?;
        let mut stream = SslStream::new(ssl, tcp).map_err(|e| connection(addr, e.to_string()))?;
        let handshake = tokio::time::timeout(
            timeouts::TLS_HANDSHAKE,
            std::pin::Pin::new(&mut stream).connect(),
        )
        .await
        .map_err(|_| ClientError::Timeout("TLS handshake"))?;
        if let Err(e) = handshake {
            let seen = *mismatch.lock().unwrap_or_else(|p| p.into_inner());
            return Err(match seen {
                Some(seen) => self.changed(addr, expect, seen),
                None => handshake_failed(addr, &e),
            });
        }
        self.established(addr, expect, stream)
    }

    /// The host presented `seen`, not the certificate on record.
    fn changed(
        &self,
        addr: &HostAddr,
        expect: Option<Fingerprint>,
        seen: Fingerprint,
    ) -> ClientError {
        ClientError::HostIdentityChanged {
            addr: addr.clone(),
            pinned: expect.unwrap_or(seen),
            seen,
            known_hosts: self.known.path.clone(),
        }
    }

    /// The finished handshake: the authoritative check of the host's
    /// certificate, and the exporter value pairing binds to.
    fn established(
        &self,
        addr: &HostAddr,
        expect: Option<Fingerprint>,
        stream: SslStream<TcpStream>,
    ) -> Result<Tls, ClientError> {
        let host_der = stream
            .ssl()
            .peer_certificate()
            .and_then(|c| c.to_der().ok())
            .ok_or_else(|| connection(addr, "the host presented no certificate".into()))?;
        let host_fp = Fingerprint::of_der(&host_der);
        if let Some(expected) = expect {
            if expected != host_fp {
                return Err(self.changed(addr, expect, host_fp));
            }
        }
        let mut ekm = [0u8; crate::pairing::EXPORTER_LEN];
        stream
            .ssl()
            .export_keying_material(&mut ekm, EXPORTER_LABEL, None)
            .map_err(|e| connection(addr, format!("TLS exporter: {e}")))?;
        let (rd, writer) = tokio::io::split(stream);
        Ok(Tls {
            addr: addr.clone(),
            reader: FrameReader::new(rd),
            writer,
            host_fp,
            exporter: Exporter(ekm),
        })
    }

    /// A plain context, not `SslConnector::builder`: that loads the system
    /// CA store (tens of milliseconds per connection), which a client that
    /// checks fingerprints never uses.
    pub(super) fn tls_context(
        &self,
        expect: Option<Fingerprint>,
        mismatch: Arc<Mutex<Option<Fingerprint>>>,
    ) -> Result<SslContext, openssl::error::ErrorStack> {
        let mut b = SslContext::builder(SslMethod::tls_client())?;
        // What `SslConnector` sets too; async writes may retry from a moved buffer.
        b.set_mode(
            SslMode::AUTO_RETRY
                | SslMode::ACCEPT_MOVING_WRITE_BUFFER
                | SslMode::ENABLE_PARTIAL_WRITE,
        );
        b.set_min_proto_version(Some(SslVersion::TLS1_3))?;
        b.set_certificate(self.identity.cert())?;
        b.set_private_key(self.identity.key())?;
        b.check_private_key()?;
        b.set_alpn_protos(ALPN_WIRE)?;
        // No chain validation: the leaf's fingerprint is the whole check
        // (§ 2). Refusing inside the handshake means an impostor never
        // receives our certificate.
        b.set_verify_callback(SslVerifyMode::PEER, move |_, ctx| {
            let (Some(expected), 0) = (expect, ctx.error_depth()) else {
                return true;
            };
            let Some(seen) = ctx
                .current_cert()
                .and_then(|c| c.to_der().ok())
                .map(|der| Fingerprint::of_der(&der))
            else {
                return false;
            };
            if seen == expected {
                true
            } else {
                *mismatch.lock().unwrap_or_else(|p| p.into_inner()) = Some(seen);
                false
            }
        });
        Ok(b.build())
    }
}

pub(super) type Reader = FrameReader<ReadHalf<SslStream<TcpStream>>>;
pub(super) type Writer = WriteHalf<SslStream<TcpStream>>;

/// A TLS connection before the session.
pub(super) struct Tls {
    pub(super) addr: HostAddr,
    pub(super) reader: Reader,
    pub(super) writer: Writer,
    pub(super) host_fp: Fingerprint,
    pub(super) exporter: Exporter,
}

impl Tls {
    pub(super) async fn send(&mut self, msg: &Message) -> Result<(), ClientError> {
        frame_io::send(&mut self.writer, msg)
            .await
            .map_err(|e| write_error(&self.addr, e))
    }

    pub(super) async fn recv(
        &mut self,
        limit: std::time::Duration,
        what: &'static str,
    ) -> Result<Message, ClientError> {
        self.reader
            .next(Instant::now() + limit)
            .await
            .map_err(|e| read_error(&self.addr, e, what))
    }

    pub(super) async fn hello(
        &mut self,
        name: &DisplayName,
        intent: Intent,
    ) -> Result<crate::message::Welcome, ClientError> {
        let hello = handshake::hello_offering(name.clone(), intent, Features::ALL);
        self.send(&hello).await?;
        let reply = self.recv(timeouts::PAIRING_STEP, "welcome").await?;
        handshake::read_welcome(reply, intent, self.host_fp).map_err(ClientError::from_handshake)
    }

    /// `AwaitDecision` (§ 7.2): ping every 30 s until the host decides.
    pub(super) async fn await_decision(&mut self) -> Result<Decision, ClientError> {
        let mut next_ping = Instant::now() + timeouts::PING_INTERVAL;
        let mut idle = Instant::now() + timeouts::SESSION_IDLE;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next_ping) => {
                    self.send(&Message::Ping).await?;
                    next_ping = Instant::now() + timeouts::PING_INTERVAL;
                }
                msg = self.reader.next(idle) => {
                    let msg = msg.map_err(|e| read_error(&self.addr, e, "decision"))?;
                    idle = Instant::now() + timeouts::SESSION_IDLE;
                    if let Some(d) = handshake::read_decision(msg).map_err(ClientError::from_handshake)? {
                        return Ok(d);
                    }
                }
            }
        }
    }

    /// The session `welcome` opened (`trusted`, `open`), or that opens
    /// after `confirm{cB}` or `decision{approved}`: a host that speaks
    /// `grant` sends it next (§ 4.9).
    pub(super) async fn into_session(
        mut self,
        welcome: Welcome,
        status: Status,
    ) -> Result<Session, ClientError> {
        let mut grant = welcome.grant;
        if grant.is_none() && welcome.features.grant {
            grant = match self.recv(timeouts::PAIRING_STEP, "grant").await? {
                Message::Grant(g) => Some(g),
                Message::Error(e) => return Err(ClientError::Host(e)),
                other => {
                    return Err(ClientError::BadMessage(format!(
                        "expected a `grant` message, the host sent `{}`",
                        other.type_name()
                    )))
                }
            };
        }
        Ok(Session::new(self, welcome.host_name, status, grant))
    }
}

pub(super) fn read_error(addr: &HostAddr, e: ReadError, what: &'static str) -> ClientError {
    match e {
        ReadError::Timeout => ClientError::Timeout(what),
        ReadError::Eof => ClientError::Connection {
            addr: addr.clone(),
            reason: format!("the host closed the connection while this client waited for `{what}`"),
        },
        ReadError::Io(e) => ClientError::Connection {
            addr: addr.clone(),
            reason: e.to_string(),
        },
        ReadError::Frame(e @ crate::FrameError::Http) => {
            ClientError::BadMessage(format!("{addr}: {e}"))
        }
        ReadError::Frame(e) => ClientError::BadMessage(e.to_string()),
        ReadError::Message(e) => ClientError::BadMessage(e.to_string()),
    }
}

pub(super) fn write_error(addr: &HostAddr, e: WriteError) -> ClientError {
    match e {
        WriteError::Timeout => ClientError::Timeout("sending"),
        other => ClientError::Connection {
            addr: addr.clone(),
            reason: other.to_string(),
        },
    }
}

/// No connection to `addr`, or it broke, and why.
fn connection(addr: &HostAddr, reason: String) -> ClientError {
    ClientError::Connection {
        addr: addr.clone(),
        reason,
    }
}

/// A handshake that failed for another reason than the host's certificate.
fn handshake_failed(addr: &HostAddr, e: &openssl::ssl::Error) -> ClientError {
    // OpenSSL's words for a reply that is not TLS at all: typically an
    // HTTP server's plain-text error.
    if e.to_string().contains("wrong version number") {
        return connection(
            addr,
            format!(
                "the port does not speak TLS (a plain HTTP port, such as Moonlight's 47989?), \
                 so not the punktfunk protocol; the native endpoint is port {} by default ({e})",
                crate::DEFAULT_PORT
            ),
        );
    }
    connection(addr, format!("TLS handshake failed: {e}"))
}
