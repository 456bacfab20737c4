//! Listening sockets for the doors: `::` means every address of both
//! families (IPv6-only off, so IPv4 clients arrive as mapped addresses),
//! which is the default, since Moonlight clients use IPv6 where the LAN
//! has it.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Socket, Type};

/// Connections the kernel queues before the door accepts them.
const BACKLOG: i32 = 1024;

/// The address to listen on when none is configured: `::` (dual-stack),
/// or `0.0.0.0` with a log line on a machine without IPv6.
pub(crate) fn default_bind() -> IpAddr {
    let any6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0);
    match listen(any6) {
        Ok(_) => any6.ip(),
        Err(e) => {
            tracing::info!("no IPv6 on this machine ({e}); listening on 0.0.0.0, IPv4 only");
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        }
    }
}

/// A listening TCP socket on `addr`; on `::` it takes IPv4 too.
pub(crate) fn listen(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if addr.is_ipv6() {
        // Explicit: the system default (net.ipv6.bindv6only) varies.
        socket.set_only_v6(!addr.ip().is_unspecified())?;
    }
    // A restarted host gets its ports back while old connections linger
    // in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_v6_listener_takes_ipv4_and_ipv6() {
        let any = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0);
        let Ok(listener) = listen(any) else {
            // No IPv6 here: default_bind says 0.0.0.0.
            assert!(default_bind().is_ipv4());
            return;
        };
        let port = listener.local_addr().unwrap().port();
        for ip in ["127.0.0.1", "::1"] {
            let to = SocketAddr::new(ip.parse().unwrap(), port);
            std::net::TcpStream::connect(to).unwrap_or_else(|e| panic!("{to}: {e}"));
        }
        assert!(default_bind().is_ipv6());
    }
}
