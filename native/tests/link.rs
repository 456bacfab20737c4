//! Pairing with a link (docs/native-protocol.md § 12) in process, over real
//! TLS on loopback: the reference client's [`Client::pair_link`] against
//! real endpoints, one of them an impostor with its own certificate.
//!
//! Loopback has a whole /8, and a socket bound to 127.0.0.1 does not answer
//! on 127.0.0.9: that is how a link gets an address that refuses, and how
//! two hosts share one port on different addresses.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use punktfunk_certs::{
    Actor, Fingerprint, GateConfig, Identity, LinkSecret, PairWith, SystemClock, Trust,
};
use punktfunk_native::{
    Client, ClientError, DisplayName, Endpoint, EndpointConfig, HostAddr, PairingLink, Status,
    UnknownDevices,
};
use rand::rngs::OsRng;
use tokio::sync::watch;

struct Host {
    _tmp: tempfile::TempDir,
    trust: Arc<Trust>,
    addr: SocketAddr,
    fingerprint: Fingerprint,
    _stop: watch::Sender<bool>,
}

/// A host on `ip:port` (port 0: any) with pairing armed.
async fn host(ip: &str, port: u16) -> (Host, LinkSecret) {
    let tmp = tempfile::tempdir().unwrap();
    let trust =
        Arc::new(Trust::open(tmp.path(), GateConfig::default(), Arc::new(SystemClock)).unwrap());
    let identity = Identity::generate("test host").unwrap();
    let endpoint = Endpoint::bind(
        SocketAddr::new(ip.parse().unwrap(), port),
        &identity,
        EndpointConfig {
            host_name: DisplayName::sanitize("Test Host").unwrap(),
            trust: trust.clone(),
            unknown_devices: UnknownDevices::Refuse,
            max_connections: 16,
            max_connections_per_address: 16,
            console: None,
        },
    )
    .await
    .unwrap();
    let addr = endpoint.local_addr().unwrap();
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(endpoint.run(stopped));
    let pin = trust.arm(Actor::cli(), &mut OsRng).0.link;
    let fingerprint = identity.fingerprint();
    (
        Host {
            _tmp: tmp,
            trust,
            addr,
            fingerprint,
            _stop: stop,
        },
        pin,
    )
}

impl Host {
    fn armed(&self) -> bool {
        self.trust.is_armed(PairWith::Link)
    }
}

fn link(addresses: &[&str], port: u16, fingerprint: Fingerprint, pin: &LinkSecret) -> PairingLink {
    PairingLink {
        addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
        port,
        host_fingerprint: fingerprint,
        secret: pin.clone(),
        host_name: DisplayName::sanitize("Test Host").unwrap(),
    }
}

fn client(dir: &tempfile::TempDir) -> Client {
    Client::open(
        &dir.path().join("client"),
        DisplayName::sanitize("Test iPad").unwrap(),
    )
    .unwrap()
}

async fn pair(
    c: &mut Client,
    l: &PairingLink,
) -> Result<(HostAddr, punktfunk_native::Session), ClientError> {
    tokio::time::timeout(Duration::from_secs(30), c.pair_link(l))
        .await
        .expect("pair_link finishes")
}

/// The link's text is what the client acts on: parse what the host wrote.
fn scanned(l: &PairingLink) -> PairingLink {
    PairingLink::parse(&l.to_uri()).unwrap()
}

#[tokio::test]
async fn pairs_on_the_first_address_that_answers_and_pins_it_there() {
    let (h, pin) = host("127.0.0.1", 0).await;
    let port = h.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let mut c = client(&dir);
    let l = scanned(&link(
        &["127.0.0.9", "127.0.0.1"],
        port,
        h.fingerprint,
        &pin,
    ));

    let (addr, session) = pair(&mut c, &l).await.expect("paired");
    assert_eq!(addr, HostAddr::parse(&format!("127.0.0.1:{port}")).unwrap());
    assert_eq!(session.status(), Status::Trusted);
    assert_eq!(session.host_fingerprint(), h.fingerprint);
    session.close().await;
    assert!(h.trust.is_trusted(&c.fingerprint()));
    assert_eq!(c.pinned(&addr), Some(h.fingerprint));
    let refused = HostAddr::from_ip("127.0.0.9".parse().unwrap(), port);
    assert_eq!(
        c.known_host(&refused),
        None,
        "only the address that answered"
    );

    // And the pin is what a later plain connect uses.
    let connected = c
        .connect(&addr, punktfunk_native::NewHost::Refuse, false)
        .await
        .expect("trusted");
    assert!(matches!(connected, punktfunk_native::Connected::Session(_)));
}

#[tokio::test]
async fn an_impostor_gets_nothing_and_the_next_address_is_not_tried() {
    // The real host on 127.0.0.1, an impostor (its own certificate, also
    // armed) first in the link on the same port.
    let (real, pin) = host("127.0.0.1", 0).await;
    let port = real.addr.port();
    let (impostor, _) = host("127.0.0.3", port).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = client(&dir);
    let l = link(&["127.0.0.3", "127.0.0.1"], port, real.fingerprint, &pin);

    let err = pair(&mut c, &l).await.expect_err("the impostor is refused");
    assert_eq!(err.code(), "host_identity_changed", "{err}");
    match &err {
        ClientError::LinkHostMismatch {
            addr,
            expected,
            seen,
        } => {
            assert_eq!(addr.host(), "127.0.0.3");
            assert_eq!(*expected, real.fingerprint);
            assert_eq!(*seen, impostor.fingerprint);
        }
        other => panic!("{other:?}"),
    }
    // Nothing reached either host's gate, and the real one was not tried.
    assert!(impostor.armed() && real.armed());
    assert!(!impostor.trust.is_trusted(&c.fingerprint()));
    assert!(!real.trust.is_trusted(&c.fingerprint()));
    assert_eq!(
        c.known_host(&HostAddr::from_ip("127.0.0.3".parse().unwrap(), port)),
        None
    );
    assert_eq!(
        c.known_host(&HostAddr::from_ip("127.0.0.1".parse().unwrap(), port)),
        None
    );

    // The PIN is still good for the real host.
    let l = link(&["127.0.0.1"], port, real.fingerprint, &pin);
    pair(&mut c, &l).await.expect("paired with the real host");
}

#[tokio::test]
async fn a_different_pin_on_record_is_refused_before_connecting() {
    let (h, pin) = host("127.0.0.1", 0).await;
    let port = h.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let other = Fingerprint::of_der(b"the host this address had before");
    let client_dir = dir.path().join("client");
    std::fs::create_dir_all(&client_dir).unwrap();
    std::fs::write(
        client_dir.join("known_hosts"),
        format!("127.0.0.1:{port} {other}\n"),
    )
    .unwrap();
    let mut c = client(&dir);
    let l = link(&["127.0.0.9", "127.0.0.1"], port, h.fingerprint, &pin);

    let err = pair(&mut c, &l).await.expect_err("conflicting pin");
    assert_eq!(err.code(), "host_identity_changed", "{err}");
    assert!(
        matches!(&err, ClientError::LinkConflictsWithPin { pinned, link, .. } if *pinned == other && *link == h.fingerprint),
        "{err:?}"
    );
    assert!(h.armed(), "nothing was sent");
    assert_eq!(
        c.pinned(&HostAddr::from_ip("127.0.0.1".parse().unwrap(), port)),
        Some(other)
    );
}

#[tokio::test]
async fn an_accepted_fingerprint_is_replaced_by_the_links() {
    // TOFU accepted someone else's certificate at a knock; the link (seen
    // on the host's screen) is the better authority.
    let (h, pin) = host("127.0.0.1", 0).await;
    let port = h.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let other = Fingerprint::of_der(b"accepted at a knock");
    let client_dir = dir.path().join("client");
    std::fs::create_dir_all(&client_dir).unwrap();
    std::fs::write(
        client_dir.join("known_hosts"),
        format!("127.0.0.1:{port} {other} accepted\n"),
    )
    .unwrap();
    let mut c = client(&dir);
    let (addr, session) = pair(&mut c, &link(&["127.0.0.1"], port, h.fingerprint, &pin))
        .await
        .expect("paired");
    session.close().await;
    assert_eq!(c.pinned(&addr), Some(h.fingerprint));
}

#[tokio::test]
async fn no_address_answering_is_connection_failed_naming_each() {
    let (h, pin) = host("127.0.0.1", 0).await;
    let port = h.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let mut c = client(&dir);
    let l = link(&["127.0.0.9", "127.0.0.10"], port, h.fingerprint, &pin);
    let err = pair(&mut c, &l).await.expect_err("nobody there");
    assert_eq!(err.code(), "connection_failed", "{err}");
    let text = err.to_string();
    for a in ["127.0.0.9", "127.0.0.10"] {
        assert!(text.contains(&format!("{a}:{port}")), "{text}");
    }
    assert!(h.armed());
}
