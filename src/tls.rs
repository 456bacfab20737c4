//! TLS server settings built from the host identity, shared by every HTTPS
//! listener so they present the same certificate the same way.

use openssl::ssl::{SslAcceptor, SslAcceptorBuilder, SslMethod, SslMode, SslVerifyMode};
use punktfunk_certs::Identity;

/// An acceptor presenting the host certificate. With `request_client_cert`,
/// it asks for a client certificate and accepts any at the handshake: the
/// caller authorises each request by the certificate's exact fingerprint.
pub(crate) fn acceptor(
    identity: &Identity,
    request_client_cert: bool,
) -> anyhow::Result<SslAcceptorBuilder> {
    // mozilla_intermediate_v5 keeps TLS 1.2 for older Moonlight builds.
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
    b.set_certificate(identity.cert())?;
    b.set_private_key(identity.key())?;
    b.check_private_key()?;
    // An idle connection keeps no 16 KiB read and write buffers: under a
    // flood of idle connections that is most of their memory.
    b.set_mode(SslMode::RELEASE_BUFFERS);
    if request_client_cert {
        // Self-signed, v1, expired: all accepted here; the registry decides.
        b.set_verify_callback(SslVerifyMode::PEER, |_, _| true);
    }
    Ok(b)
}
