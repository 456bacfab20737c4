//! Where clients on the LAN can reach this machine: the addresses a pairing
//! link lists (docs/native-protocol.md § 12), the console's links and the
//! start-up lines show, for a listener bound to one address.
//!
//! A LAN address is one on an interface that reaches the network a client
//! is on: a physical NIC (Ethernet, Wi-Fi), or a virtual one stacked on
//! such a NIC (a bridge with the NIC as a port, a VLAN, a bond). Told
//! apart by what the kernel says of the interface, not by its name:
//! loopback and point-to-point (VPN tunnels) by their flags, virtual
//! devices by living under `/sys/devices/virtual/net` (docker0, veth,
//! tun, wireguard, dummy), and a virtual one counts only through a LAN
//! interface below it (`lower_*`). The owner can name the addresses
//! instead (`advertise` in the settings file, [`set_advertised`]).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::OnceLock;

use punktfunk_native::{is_linkable, MAX_LINK_ADDRESSES};

/// The addresses to put in a pairing link for a listener bound to `bind`,
/// in the order a client should try them: IPv4 first, then IPv6.
///
/// - A specific address: just that one (loopback included: a client on
///   this machine can use it). Empty only if a link cannot carry it (an
///   IPv6 link-local address, whose zone means nothing elsewhere).
/// - `0.0.0.0`: the IPv4 addresses of this machine's interfaces; `::`
///   (dual-stack, as Linux and macOS bind it by default): the IPv4 and the
///   IPv6 ones, of LAN interfaces only (module docs). Loopback and
///   link-local addresses are left out (a client elsewhere cannot use
///   them); if nothing is left, or the interfaces cannot be read,
///   `127.0.0.1`, so the link works on this machine at least.
/// - The owner's `advertise` list, if set, instead of all that.
///
/// At most [`MAX_LINK_ADDRESSES`], each once. The interfaces are read at
/// every call: addresses change (DHCP, Wi-Fi), so ask when making a link.
pub fn link_addresses(bind: IpAddr) -> Vec<IpAddr> {
    let mut all = lan_addresses(bind);
    if all.is_empty() && bind.is_unspecified() {
        all.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    all
}

/// The addresses the owner named (`advertise`), set once at start.
static ADVERTISED: OnceLock<Vec<IpAddr>> = OnceLock::new();

/// Gives out `addresses` instead of the interfaces' from now on (the
/// settings file's `advertise`; an empty list keeps the interfaces').
pub fn set_advertised(addresses: Vec<IpAddr>) {
    if !addresses.is_empty() {
        let _ = ADVERTISED.set(addresses);
    }
}

/// Whether [`set_advertised`] named addresses.
pub fn advertised() -> bool {
    ADVERTISED.get().is_some()
}

/// [`link_addresses`] without the loopback fallback: empty when this
/// machine has no LAN address (only loopback, containers, VPNs) or the
/// bind address cannot be put in a link.
pub fn lan_addresses(bind: IpAddr) -> Vec<IpAddr> {
    if let Some(named) = ADVERTISED.get() {
        return named.iter().copied().take(MAX_LINK_ADDRESSES).collect();
    }
    if !bind.is_unspecified() {
        return select(bind, []);
    }
    let interfaces = match if_addrs::get_if_addrs() {
        Ok(list) => list
            .into_iter()
            .filter(|i| is_lan_interface(Path::new(SYS_NET), &i.name, 0))
            .map(|i| i.ip())
            .collect(),
        Err(e) => {
            tracing::warn!(
                "cannot list this machine's network interfaces ({e}); no LAN address to give out"
            );
            Vec::new()
        }
    };
    select(bind, interfaces)
}

/// Where the kernel describes the network interfaces.
const SYS_NET: &str = "/sys/class/net";
const IFF_LOOPBACK: u32 = 0x8;
const IFF_POINTOPOINT: u32 = 0x10;

/// Whether the interface `name`, as `sys` (`/sys/class/net`) describes it,
/// reaches a LAN (see the module docs). An interface `sys` does not know
/// (no sysfs, or one of another network namespace) is kept: the address
/// is not hidden for want of knowing.
fn is_lan_interface(sys: &Path, name: &str, depth: u8) -> bool {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return false;
    }
    let dir = sys.join(name);
    let Ok(real) = std::fs::canonicalize(&dir) else {
        return true;
    };
    let flags = std::fs::read_to_string(dir.join("flags"))
        .ok()
        .and_then(|f| u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok())
        .unwrap_or(0);
    if flags & (IFF_LOOPBACK | IFF_POINTOPOINT) != 0 {
        return false;
    }
    if !real.components().any(|c| c.as_os_str() == "virtual") {
        return true;
    }
    // A bridge, VLAN or bond counts through a LAN interface below it.
    depth < 4
        && std::fs::read_dir(&dir).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix("lower_"))
                    .is_some_and(|lower| is_lan_interface(sys, lower, depth + 1))
            })
        })
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
    v4.into_iter().chain(v6).take(MAX_LINK_ADDRESSES).collect()
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
    fn nothing_usable_is_nothing() {
        let only_local = ips(&["127.0.0.1", "::1", "fe80::1", "169.254.1.1"]);
        for bind in ["0.0.0.0", "::"] {
            assert!(select(bind.parse().unwrap(), only_local.clone()).is_empty());
            assert!(select(bind.parse().unwrap(), []).is_empty());
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

    /// A fake `/sys/class/net`: each interface a link to its device dir.
    fn fake_sys(ifaces: &[(&str, bool, u32, &[&str])]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let class = t.path().join("class");
        std::fs::create_dir_all(&class).unwrap();
        for (name, virt, flags, lowers) in ifaces {
            let dev = if *virt {
                t.path().join("devices/virtual/net").join(name)
            } else {
                t.path()
                    .join("devices/pci0000:00/0000:00:1f.6/net")
                    .join(name)
            };
            std::fs::create_dir_all(&dev).unwrap();
            std::fs::write(dev.join("flags"), format!("{flags:#x}\n")).unwrap();
            for l in *lowers {
                std::os::unix::fs::symlink(format!("../{l}"), dev.join(format!("lower_{l}")))
                    .unwrap();
            }
            std::os::unix::fs::symlink(&dev, class.join(name)).unwrap();
        }
        t
    }

    #[test]
    fn lan_interfaces_by_kind_not_name() {
        let t = fake_sys(&[
            ("lo", true, 0x9, &[]),
            ("eth0", false, 0x1003, &[]),
            ("wlp2s0", false, 0x1003, &[]),
            ("docker0", true, 0x1003, &["veth1a2b"]),
            ("veth1a2b", true, 0x1003, &[]),
            ("tun0", true, 0x1091, &[]),
            ("wg0", true, 0x91, &[]),
            ("br0", true, 0x1003, &["eth0"]),
            ("ppp0", false, 0x1091, &[]),
        ]);
        let sys = t.path().join("class");
        let lan: Vec<&str> = [
            "lo", "eth0", "wlp2s0", "docker0", "veth1a2b", "tun0", "wg0", "br0", "ppp0",
        ]
        .into_iter()
        .filter(|n| is_lan_interface(&sys, n, 0))
        .collect();
        assert_eq!(lan, ["eth0", "wlp2s0", "br0"]);
        // Unknown to this sysfs: kept.
        assert!(is_lan_interface(&sys, "enp9s0", 0));
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
