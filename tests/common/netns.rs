//! Network namespaces for tests that need addresses loopback cannot give,
//! above all several IPv6 addresses of one /64 (a home LAN with SLAAC):
//! [`Netns::create`] makes a namespace of its own (root only), puts the
//! addresses on its loopback interface, and [`Netns::run`] runs a closure on
//! a thread inside it, so everything that closure starts (the real host,
//! Moonlight drivers, the CLI) and every socket it opens (reqwest, raw TLS)
//! is in the namespace. The namespace is deleted when the [`Netns`] drops,
//! also when the test fails.

#![allow(dead_code)] // each test binary uses a different part of this

use std::net::IpAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// A network namespace this test made; deleted on drop.
pub struct Netns {
    pub name: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    /// A fresh namespace (named after `tag`, this process and a counter, so
    /// tests in parallel never share one) with loopback up and `addrs`
    /// (`2001:db8:a::1/64`, …) on it, without duplicate address detection.
    /// `None`, with a message saying why, if this is not root: only root
    /// can make namespaces, and the tests that need one then skip.
    pub fn create(tag: &str, addrs: &[&str]) -> Option<Netns> {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIPPED: {tag} needs root to make a network namespace (`ip netns add`)");
            return None;
        }
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "pf-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]).unwrap();
        // From here on, drop deletes it, whatever fails next.
        let ns = Netns { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]).unwrap();
        for a in addrs {
            let family = if a.contains(':') { "-6" } else { "-4" };
            ip(&[
                "-n", &ns.name, family, "addr", "add", a, "dev", "lo", "nodad",
            ])
            .unwrap();
        }
        Some(ns)
    }

    /// Runs `ip -n NAME ARGS…` (adding links, addresses) in the namespace.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all).unwrap();
    }

    /// `program` run by `ip netns exec`: in the namespace and with a
    /// `/sys` of its own, so what the kernel says there of the interfaces
    /// (`/sys/class/net`) is the namespace's (a thread of [`Netns::run`]
    /// still sees the machine's).
    pub fn exec(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs `f` on a thread that entered the namespace, and returns what
    /// it returns (a panic in `f` is this caller's panic, after the thread
    /// ended).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let fd = std::fs::File::open(&path).unwrap();
                rustix::thread::move_into_link_name_space(
                    std::os::fd::AsFd::as_fd(&fd),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .unwrap();
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // A process still inside (a host that did not stop) keeps it busy
        // for a moment; the namespace's name goes at once either way.
        for _ in 0..20 {
            if ip(&["netns", "del", &self.name]).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("could not delete network namespace {}", self.name);
    }
}

/// A browser-like client (cookies, the self-signed host certificate) whose
/// connections come from `from`.
pub fn client_from(from: IpAddr) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .danger_accept_invalid_certs(true)
        .cookie_store(true)
        .local_address(from)
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}
