//! The door's TLS: the acceptor (TLS 1.3, a client certificate required,
//! any accepted, ALPN checked) and the handshake, with what the core needs
//! from it.

use super::*;

/// TLS 1.3 only, client certificate required but accepted whatever it is
/// (§ 2), ALPN `punktfunk/1` selected when offered, no session tickets or
/// resumption (every connection carries both certificates and a fresh
/// exporter).
pub(super) fn acceptor(identity: &Identity) -> Result<SslAcceptor, openssl::error::ErrorStack> {
    // mozilla_modern_v5 is TLS 1.3 only.
    let mut b = SslAcceptor::mozilla_modern_v5(SslMethod::tls_server())?;
    b.set_certificate(identity.cert())?;
    b.set_private_key(identity.key())?;
    b.check_private_key()?;
    // The chain is not evaluated: the host decides by fingerprint alone.
    // OpenSSL still checks the CertificateVerify signature, so the client
    // proves it holds the key of the certificate it presented.
    b.set_verify_callback(
        SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
        |_, _| true,
    );
    // Offered: select it; not offered: go on without ALPN (§ 2).
    b.set_alpn_select_callback(|_, offered| {
        ssl::select_next_proto(ALPN_WIRE, offered).ok_or(AlpnError::NOACK)
    });
    b.set_session_cache_mode(ssl::SslSessionCacheMode::OFF);
    // An idle connection keeps no 16 KiB read and write buffers.
    b.set_mode(ssl::SslMode::RELEASE_BUFFERS);
    b.set_options(ssl::SslOptions::NO_TICKET);
    b.set_num_tickets(0)?;
    Ok(b.build())
}

pub(super) type Reader = FrameReader<ReadHalf<SslStream<TcpStream>>>;
pub(super) type Writer = WriteHalf<SslStream<TcpStream>>;

/// The TLS handshake, then what the core needs from it: the client's
/// certificate and the § 6.2 exporter value.
pub(super) async fn tls_accept(
    ctx: &Ctx,
    tcp: TcpStream,
) -> Result<(SslStream<TcpStream>, Vec<u8>, Exporter), Box<dyn std::error::Error + Send + Sync>> {
    // No TLS state until the peer says something: a connection that never
    // sends its ClientHello costs only its socket.
    tcp.readable().await?;
    let ssl = Ssl::new(ctx.acceptor.context())?;
    let mut stream = SslStream::new(ssl, tcp)?;
    std::pin::Pin::new(&mut stream).accept().await?;
    // FAIL_IF_NO_PEER_CERT makes a missing certificate unreachable in
    // practice.
    let cert_der = stream
        .ssl()
        .peer_certificate()
        .ok_or("no client certificate")?
        .to_der()?;
    let mut ekm = [0u8; crate::pairing::EXPORTER_LEN];
    stream
        .ssl()
        .export_keying_material(&mut ekm, EXPORTER_LABEL, None)?;
    Ok((stream, cert_der, Exporter(ekm)))
}
