//! mDNS announcements: `_nvstream._tcp` so Moonlight lists the host, and
//! `_punktfunk._tcp` (with the host fingerprint and whether pairing is
//! required in TXT) for the punktfunk app.

use std::collections::HashMap;

use anyhow::Context;
use mdns_sd::{ServiceDaemon, ServiceInfo};
use punktfunk_certs::Fingerprint;

/// Moonlight browses for this type.
pub(crate) const GAMESTREAM_SERVICE: &str = "_nvstream._tcp.local.";
/// The punktfunk app browses for this type.
pub(crate) const NATIVE_SERVICE: &str = "_punktfunk._tcp.local.";

/// A DNS-SD instance label from the host name: printable, no dots (they
/// would split the label), at most 63 bytes.
pub(crate) fn instance_name(host_name: &str) -> String {
    let mut out = String::new();
    for c in host_name.chars() {
        let c = match c {
            '.' => break, // "box.lan" -> "box"
            c if c.is_alphanumeric() || c == '-' || c == ' ' || c == '_' => c,
            _ => '-',
        };
        if out.len() + c.len_utf8() > 63 {
            break;
        }
        out.push(c);
    }
    let trimmed = out.trim_matches(|c| c == '-' || c == ' ').to_owned();
    if trimmed.is_empty() {
        "punktfunk".to_owned()
    } else {
        trimmed
    }
}

/// What to announce.
pub(crate) struct Announce {
    pub(crate) host_name: String,
    pub(crate) http_port: u16,
    /// `Some((port, pairing_required))` with `--native`.
    pub(crate) native: Option<(u16, bool)>,
    pub(crate) fingerprint: Fingerprint,
    /// Where the doors listen: IPv4 only (`0.0.0.0`) announces no IPv6
    /// address a client could not reach.
    pub(crate) bind: std::net::IpAddr,
}

/// Keeps the announcements alive; they are withdrawn on drop.
pub(crate) struct Mdns {
    daemon: ServiceDaemon,
    names: Vec<String>,
}

impl Mdns {
    pub(crate) fn start(a: &Announce) -> anyhow::Result<Self> {
        let daemon = ServiceDaemon::new().context("cannot start mDNS")?;
        if a.bind.is_ipv4() {
            daemon
                .disable_interface(mdns_sd::IfKind::IPv6)
                .context("cannot limit mDNS to IPv4")?;
        }
        let instance = instance_name(&a.host_name);
        let hostname = format!("{instance}.local.").replace(' ', "-");
        let mut names = Vec::new();
        let gs = ServiceInfo::new(
            GAMESTREAM_SERVICE,
            &instance,
            &hostname,
            "",
            a.http_port,
            None::<HashMap<String, String>>,
        )
        .context("cannot build the _nvstream._tcp announcement")?
        .enable_addr_auto();
        names.push(gs.get_fullname().to_owned());
        daemon
            .register(gs)
            .context("cannot announce _nvstream._tcp")?;
        if let Some((port, required)) = a.native {
            let txt: HashMap<String, String> = [
                ("protocol".to_owned(), "1".to_owned()),
                ("fp".to_owned(), a.fingerprint.to_hex()),
                (
                    "pairing".to_owned(),
                    if required { "required" } else { "open" }.to_owned(),
                ),
            ]
            .into();
            let native =
                ServiceInfo::new(NATIVE_SERVICE, &instance, &hostname, "", port, Some(txt))
                    .context("cannot build the _punktfunk._tcp announcement")?
                    .enable_addr_auto();
            names.push(native.get_fullname().to_owned());
            daemon
                .register(native)
                .context("cannot announce _punktfunk._tcp")?;
        }
        Ok(Self { daemon, names })
    }
}

impl Drop for Mdns {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = self.daemon.unregister(name);
        }
        let _ = self.daemon.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::instance_name;

    #[test]
    fn instance_names_are_sanitised() {
        assert_eq!(instance_name("gaming-pc"), "gaming-pc");
        assert_eq!(instance_name("box.fritz.box"), "box");
        assert_eq!(instance_name("a/b\\c\"d"), "a-b-c-d");
        assert_eq!(instance_name(""), "punktfunk");
        assert_eq!(instance_name("..."), "punktfunk");
        assert!(instance_name(&"é".repeat(100)).len() <= 63);
    }
}
