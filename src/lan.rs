//! Where clients on the LAN can reach this machine: the addresses a pairing
//! link lists (docs/native-protocol.md § 12) for a listener bound to one
//! address.

use std::net::{IpAddr, Ipv4Addr};

use punktfunk_native::{is_linkable, MAX_LINK_ADDRESSES};

/// The addresses to put in a pairing link for a listener bound to `bind`,
/// in the order a client should try them: IPv4 first, then IPv6.
///
/// - A specific address: just that one (loopback included: a client on
///   this machine can use it). Empty only if a link cannot carry it (an
///   IPv6 link-local address, whose zone means nothing elsewhere).
/// - `0.0.0.0`: the IPv4 addresses of this machine's interfaces; `::`
///   (dual-stack, as Linux and macOS bind it by default): the IPv4 and the
///   IPv6 ones. Loopback and link-local addresses are left out (a client
///   elsewhere cannot use them); if nothing is left, or the interfaces
///   cannot be read, `127.0.0.1`, so the link works on this machine at
///   least.
///
/// At most [`MAX_LINK_ADDRESSES`], each once. The interfaces are read at
/// every call: addresses change (DHCP, Wi-Fi), so ask when making a link.
pub fn link_addresses(bind: IpAddr) -> Vec<IpAddr> {
    if !bind.is_unspecified() {
        return select(bind, []);
    }
    let interfaces = match if_addrs::get_if_addrs() {
        Ok(list) => list.into_iter().map(|i| i.ip()).collect(),
        Err(e) => {
            tracing::warn!("cannot list this machine's network interfaces ({e}); the pairing link lists 127.0.0.1 only");
            Vec::new()
        }
    };
    select(bind, interfaces)
}

/// [`link_addresses`] without the system call: `interfaces` is what the
/// machine's interfaces carry, in the order the system lists them.
fn select(bind: IpAddr, interfaces: impl IntoIterator<Item = IpAddr>) -> Vec<IpAddr> {
    if !bind.is_unspecified() {
        return if is_linkable(bind) {
            vec![bind]
        } else {
            Vec::new()
        };
    }
    let v6_too = bind.is_ipv6();
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for ip in interfaces {
        if ip.is_loopback() || !is_linkable(ip) {
            continue;
        }
        match ip {
            // 169.254/16: self-assigned, only meaningful on one link (and
            // usually a sign that DHCP failed).
            IpAddr::V4(a) if a.is_link_local() => {}
            IpAddr::V4(_) if !v4.contains(&ip) => v4.push(ip),
            IpAddr::V6(_) if v6_too && !v6.contains(&ip) => v6.push(ip),
            _ => {}
        }
    }
    let mut all: Vec<IpAddr> = v4.into_iter().chain(v6).take(MAX_LINK_ADDRESSES).collect();
    if all.is_empty() {
        all.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    const MACHINE: &[&str] = &[
        "127.0.0.1",
        "::1",
        "fe80::1c2d:3eff:fe4f:5a6b",
        "192.168.1.20",
        "fd00::20",
        "169.254.10.1",
        "2001:db8::20",
        "10.8.0.2",
        "192.168.1.20",
    ];

    #[test]
    fn a_specific_bind_is_the_only_address() {
        for a in ["192.168.1.20", "127.0.0.1", "fd00::20", "::1"] {
            assert_eq!(select(a.parse().unwrap(), ips(MACHINE)), ips(&[a]));
        }
        assert!(select("fe80::1".parse().unwrap(), ips(MACHINE)).is_empty());
    }

    #[test]
    fn a_v4_wildcard_lists_the_usable_v4_addresses() {
        assert_eq!(
            select("0.0.0.0".parse().unwrap(), ips(MACHINE)),
            ips(&["192.168.1.20", "10.8.0.2"])
        );
    }

    #[test]
    fn a_v6_wildcard_lists_v4_first_then_v6() {
        assert_eq!(
            select("::".parse().unwrap(), ips(MACHINE)),
            ips(&["192.168.1.20", "10.8.0.2", "fd00::20", "2001:db8::20"])
        );
    }

    #[test]
    fn nothing_usable_falls_back_to_loopback() {
        let only_local = ips(&["127.0.0.1", "::1", "fe80::1", "169.254.1.1"]);
        for bind in ["0.0.0.0", "::"] {
            assert_eq!(
                select(bind.parse().unwrap(), only_local.clone()),
                ips(&["127.0.0.1"])
            );
            assert_eq!(select(bind.parse().unwrap(), []), ips(&["127.0.0.1"]));
        }
    }

    #[test]
    fn capped_for_the_link() {
        let many: Vec<IpAddr> = (1..=40)
            .map(|i| IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)))
            .collect();
        let got = select("0.0.0.0".parse().unwrap(), many.clone());
        assert_eq!(got, many[..MAX_LINK_ADDRESSES]);
    }

    #[test]
    fn reads_this_machines_interfaces() {
        let got = link_addresses("::".parse().unwrap());
        assert!(!got.is_empty() && got.len() <= MAX_LINK_ADDRESSES);
        assert!(got.iter().all(|ip| is_linkable(*ip)), "{got:?}");
        let first_v6 = got.iter().position(IpAddr::is_ipv6).unwrap_or(got.len());
        assert!(got[first_v6..].iter().all(IpAddr::is_ipv6), "{got:?}");
    }
}
