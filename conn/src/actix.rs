//! The first steps of an HTTP door's connection, as actix services to put
//! in front of an actix-http `H1Service` (`plain(..).and_then(h1)`): take a
//! place in the door's [`Admission`] (or close the connection at once), run
//! the TLS handshake within its time limit (ended early if the connection
//! is evicted meanwhile), and wrap the stream in [`OneAtATime`].

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_http::error::DispatchError;
use actix_service::{fn_service, ServiceFactory};
use openssl::ssl::{Ssl, SslAcceptor};
use tokio::net::TcpStream;
pub use tokio_openssl::SslStream;

use crate::{Admission, OneAtATime, Slot};

/// What an `H1Service` is given: the stream and the peer's address.
pub type Accepted<S> = (OneAtATime<S>, Option<SocketAddr>);

/// Plain HTTP: admission, then [`OneAtATime`] (closed when its peer takes
/// no reply bytes for `stall_limit`).
pub fn plain(
    admission: Arc<Admission>,
    stall_limit: Duration,
) -> impl ServiceFactory<
    TcpStream,
    Config = (),
    Response = Accepted<TcpStream>,
    Error = DispatchError,
    InitError = (),
> + Clone {
    fn_service(move |tcp: TcpStream| {
        let admission = admission.clone();
        async move {
            let (slot, peer) = take_place(&admission, &tcp)?;
            Ok((OneAtATime::new(tcp, slot, stall_limit), Some(peer)))
        }
    })
}

/// HTTPS: admission, the TLS handshake (at most `handshake_timeout`), then
/// [`OneAtATime`].
pub fn tls(
    admission: Arc<Admission>,
    acceptor: SslAcceptor,
    handshake_timeout: Duration,
    stall_limit: Duration,
) -> impl ServiceFactory<
    TcpStream,
    Config = (),
    Response = Accepted<SslStream<TcpStream>>,
    Error = DispatchError,
    InitError = (),
> + Clone {
    fn_service(move |tcp: TcpStream| {
        let admission = admission.clone();
        let acceptor = acceptor.clone();
        async move {
            let (slot, peer) = take_place(&admission, &tcp)?;
            let handshake = async {
                // No TLS state until the peer says something: a connection
                // that never sends its ClientHello costs only its socket.
                tcp.readable().await.map_err(DispatchError::Io)?;
                let ssl = Ssl::new(acceptor.context())
                    .map_err(|e| DispatchError::Io(io::Error::other(e)))?;
                let mut stream =
                    SslStream::new(ssl, tcp).map_err(|e| DispatchError::Io(io::Error::other(e)))?;
                std::pin::Pin::new(&mut stream)
                    .accept()
                    .await
                    .map_err(|e| DispatchError::Io(io::Error::other(e)))?;
                Ok::<_, DispatchError>(stream)
            };
            let stream = tokio::select! {
                done = tokio::time::timeout(handshake_timeout, handshake) => match done {
                    Ok(stream) => stream?,
                    Err(_) => {
                        return Err(DispatchError::Io(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "TLS handshake timed out",
                        )))
                    }
                },
                () = slot.evicted() => {
                    return Err(DispatchError::Io(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "closed in its TLS handshake to make room",
                    )));
                }
            };
            Ok((OneAtATime::new(stream, slot, stall_limit), Some(peer)))
        }
    })
}

fn take_place(
    admission: &Arc<Admission>,
    tcp: &TcpStream,
) -> Result<(Slot, SocketAddr), DispatchError> {
    let peer = tcp.peer_addr().map_err(DispatchError::Io)?;
    // No Nagle: a reply must not wait ~40 ms for the peer's delayed ACK
    // (after a TLS 1.3 handshake, behind the session tickets).
    let _ = tcp.set_nodelay(true);
    bound_kernel_buffers(tcp);
    let slot = admission.admit(peer.ip()).map_err(|refused| {
        tracing::debug!("connection from {peer} closed: {refused}");
        DispatchError::Io(io::Error::other(refused))
    })?;
    Ok((slot, peer))
}

/// Kernel buffer sizes of an accepted connection (docs/limits.md).
pub const SOCKET_BUFFER: usize = 64 * 1024;

/// Fixes the connection's kernel buffers at [`SOCKET_BUFFER`] instead of
/// letting them grow to megabytes: a peer that never reads its replies then
/// gets a few dozen answers out of the host, not thousands, and a peer that
/// sends without end fills little kernel memory. Plenty for these doors'
/// replies on a LAN.
fn bound_kernel_buffers(tcp: &TcpStream) {
    let socket = socket2::SockRef::from(tcp);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
}
