//! In-process tests of the handlers (`actix_web::test`, no sockets): the
//! shell's own decisions. Real clients over real sockets are in the
//! workspace's `tests/gamestream.rs`.

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::web::Bytes;
use actix_web::{test, web};
use punktfunk_certs::{
    Actor, Device, Fingerprint, FrontDoor, GateConfig, HostIdentity, Identity, PendingId,
    RequestEnd, SystemClock, Trust, Via,
};
use tokio::sync::watch;

use super::{app, Conn, Ports, State};
use crate::testdata::{host_identity, CLIENT_CRT};

struct Fixture {
    state: web::Data<State>,
    stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

fn fixture(max_pending: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config = GateConfig {
        max_pending,
        ..GateConfig::default()
    };
    let trust = Trust::open(dir.path(), config, Arc::new(SystemClock));
    let host = HostIdentity {
        identity: host_identity(),
        uuid: "2f6c1a9e-1c3b-4d0e-9a57-0d4f8f4e7b21".into(),
        created: false,
    };
    let (stop, stopped) = watch::channel(false);
    let state = web::Data::new(State::new(
        Arc::new(trust.unwrap()),
        Arc::new(host),
        "den".into(),
        Ports {
            http: 47989,
            https: 47984,
        },
        stopped,
    ));
    Fixture {
        state,
        stop,
        _dir: dir,
    }
}

fn get_server_cert(cert_pem: &str) -> String {
    format!(
        "/pair?uniqueid=0123456789ABCDEF&devicename=roth&updateState=1&phrase=getservercert\
         &salt=00112233445566778899aabbccddeeff&clientcert={}",
        hex::encode(cert_pem.as_bytes())
    )
}

fn request(uri: &str, peer: &str) -> actix_http::Request {
    test::TestRequest::get()
        .uri(uri)
        .peer_addr(peer.parse().unwrap())
        .to_request()
}

async fn body(resp: ServiceResponse) -> String {
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        crate::xml::CONTENT_TYPE
    );
    let xml = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
    // Every reply a test reads is well-formed XML with a <root status_code>.
    punktfunk_testsupport::xml::reply(&xml);
    xml
}

/// Waits until the gate lists a request, and returns its id.
async fn wait_pending(state: &State) -> PendingId {
    for _ in 0..200 {
        if let Some((id, _)) = state.trust.view().waiting().next() {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no pending request appeared")
}

#[actix_web::test]
async fn plain_http_answers_xml_with_http_200_everywhere() {
    let f = fixture(8);
    let app = test::init_service(app(f.state.clone())).await;
    let cases = [
        ("/serverinfo", "<PairStatus>0</PairStatus>"),
        ("/applist", "status_code=\"401\" query=\"applist\""),
        ("/launch?appid=1", "status_code=\"401\""),
        ("/unpair?uniqueid=x", "<root status_code=\"200\"/>"),
        ("/nowhere", "status_code=\"404\""),
        (
            "/pair?uniqueid=a&phrase=pairchallenge",
            "status_code=\"400\"",
        ),
        ("/pair?uniqueid=a&clientchallenge=zz", "status_code=\"400\""),
        ("/pair", "status_code=\"400\""),
    ];
    for (uri, expected) in cases {
        let resp = app.call(request(uri, "192.0.2.7:5000")).await.unwrap();
        let xml = body(resp).await;
        assert!(xml.contains(expected), "{uri}: {xml}");
    }
}

#[actix_web::test]
async fn the_pin_entered_for_the_request_releases_its_held_reply() {
    let f = fixture(8);
    let app = test::init_service(app(f.state.clone())).await;
    let held = app.call(request(&get_server_cert(CLIENT_CRT), "192.0.2.7:5000"));
    let enter = async {
        let id = wait_pending(&f.state).await;
        let pending = f.state.trust.view().request(id).cloned().unwrap();
        // Every stock client says "roth"; the console shows where it is.
        assert_eq!(pending.request.name, "Moonlight on 192.0.2.7");
        assert_eq!(pending.request.address.to_string(), "192.0.2.7:5000");
        let _ = f
            .state
            .trust
            .enter_pin(id, "1234".parse().unwrap(), None, Actor::cli())
            .unwrap();
        id
    };
    let (resp, id) = tokio::join!(held, enter);
    let xml = body(resp.unwrap()).await;
    assert!(xml.contains("<paired>1</paired><plaincert>"), "{xml}");

    // The client found the PIN wrong and gives up: /unpair from the same
    // uniqueid and address is how the host learns it.
    let resp = app
        .call(request(
            "/unpair?uniqueid=0123456789ABCDEF",
            "192.0.2.7:6000",
        ))
        .await
        .unwrap();
    body(resp).await;
    assert_eq!(
        f.state.trust.request_ended(id),
        Some(RequestEnd::PinRejected)
    );
    assert_eq!(f.state.sessions.len(), 0);
}

#[actix_web::test]
async fn a_held_request_whose_client_goes_away_is_abandoned() {
    let f = fixture(8);
    let app = test::init_service(app(f.state.clone())).await;
    let held = app.call(request(&get_server_cert(CLIENT_CRT), "192.0.2.7:5000"));
    let id = tokio::select! {
        _ = held => panic!("answered without a PIN"),
        id = wait_pending(&f.state) => id,
    };
    // `held` was dropped by `select!`, as actix drops a handler whose
    // connection closed.
    assert_eq!(f.state.trust.request_ended(id), Some(RequestEnd::Abandoned));
    assert_eq!(f.state.sessions.len(), 0);
}

#[actix_web::test]
async fn held_requests_are_answered_on_shutdown_and_refused_when_the_gate_is_full() {
    let f = fixture(1);
    let app = test::init_service(app(f.state.clone())).await;
    let other = Identity::generate("other client").unwrap();
    let first = app.call(request(&get_server_cert(CLIENT_CRT), "192.0.2.7:5000"));
    let rest = async {
        let id = wait_pending(&f.state).await;
        let resp = app
            .call(request(
                &get_server_cert(other.cert_pem()),
                "192.0.2.8:5000",
            ))
            .await
            .unwrap();
        let busy = body(resp).await;
        f.stop.send(true).unwrap();
        (id, busy)
    };
    let (resp, (id, busy)) = tokio::join!(first, rest);
    assert!(busy.contains("status_code=\"503\""), "{busy}");
    assert!(busy.contains("too many pairing requests"), "{busy}");
    let xml = body(resp.unwrap()).await;
    assert!(xml.contains("status_code=\"503\""), "{xml}");
    assert!(xml.contains("shutting down"), "{xml}");
    assert_eq!(f.state.trust.request_ended(id), Some(RequestEnd::Abandoned));
}

/// Pairs the test client certificate and returns its fingerprint.
fn paired_client(state: &State) -> Fingerprint {
    let der = openssl::x509::X509::from_pem(CLIENT_CRT.as_bytes())
        .unwrap()
        .to_der()
        .unwrap();
    let device = Device::from_der(
        &der,
        FrontDoor::Gamestream,
        punktfunk_certs::DisplayName::sanitize("roth").unwrap(),
        Via::Pin,
        0,
    )
    .unwrap();
    let fp = device.fingerprint;
    let _ = state.trust.admit(device, [127, 0, 0, 1].into()).unwrap();
    fp
}

/// A request as it arrives on an HTTPS connection whose client showed the
/// certificate `fp` (`None`: no certificate).
fn https_request(uri: &str, fp: Option<Fingerprint>) -> actix_http::Request {
    use actix_web::HttpMessage;
    let req = request(uri, "192.0.2.7:5000");
    req.extensions_mut().insert(Conn {
        local: None,
        tls: Some(fp),
    });
    req
}

#[actix_web::test]
async fn appasset_is_a_png_for_listed_apps_and_an_xml_404_otherwise() {
    let f = fixture(8);
    let fp = paired_client(&f.state);
    let app = test::init_service(app(f.state.clone())).await;

    // The listed app (what /applist says), as Moonlight asks for it.
    let listed = app.call(https_request("/applist", Some(fp))).await.unwrap();
    let list = body(listed).await;
    assert!(list.contains("<ID>1</ID>"), "{list}");
    for uri in [
        "/appasset?appid=1&AssetType=2&AssetIdx=0",
        "/appasset?uniqueid=0123456789ABCDEF&uuid=x&appid=1&AssetType=2&AssetIdx=0",
        "/appasset?appid=1",
    ] {
        let resp = app.call(https_request(uri, Some(fp))).await.unwrap();
        assert_eq!(resp.status(), 200, "{uri}");
        assert_eq!(
            resp.headers().get("content-type").unwrap(),
            "image/png",
            "{uri}"
        );
        let bytes = test::read_body(resp).await;
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes.to_vec()));
        let mut reader = decoder.read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        let frame = reader.next_frame(&mut pixels).unwrap();
        assert_eq!(
            (frame.width, frame.height),
            (crate::boxart::WIDTH, crate::boxart::HEIGHT),
            "{uri}"
        );
    }

    // Unknown, missing or malformed app ids: the XML 404, HTTP 200.
    for uri in [
        "/appasset?appid=2&AssetType=2&AssetIdx=0",
        "/appasset?appid=0",
        "/appasset?appid=-1",
        "/appasset?appid=99999999999999999999",
        "/appasset?appid=",
        "/appasset?AppId=1",
        "/appasset",
    ] {
        let resp = app.call(https_request(uri, Some(fp))).await.unwrap();
        let xml = body(resp).await;
        assert!(xml.contains("status_code=\"404\""), "{uri}: {xml}");
        assert!(xml.contains("/applist"), "{uri}: {xml}");
    }

    // Not paired (plain HTTP, no or an unknown certificate): GFE's 401,
    // never the image.
    let stranger = Fingerprint::of_der(b"not a paired certificate");
    for req in [
        request("/appasset?appid=1&AssetType=2&AssetIdx=0", "192.0.2.7:5000"),
        https_request("/appasset?appid=1&AssetType=2&AssetIdx=0", None),
        https_request("/appasset?appid=1&AssetType=2&AssetIdx=0", Some(stranger)),
    ] {
        let xml = body(app.call(req).await.unwrap()).await;
        assert!(
            xml.contains("status_code=\"401\" query=\"appasset\""),
            "{xml}"
        );
    }
}

/// A plain-HTTP request that reached the host on `local`.
fn http_request_to(uri: &str, local: &str) -> actix_http::Request {
    use actix_web::HttpMessage;
    let req = request(uri, "192.0.2.7:5000");
    req.extensions_mut().insert(Conn {
        local: Some(local.parse().unwrap()),
        tls: None,
    });
    req
}

#[actix_web::test]
async fn serverinfo_is_rendered_once_and_changes_only_with_what_it_shows() {
    let f = fixture(8);
    let app = test::init_service(app(f.state.clone())).await;
    let get = |req| async { body(app.call(req).await.unwrap()).await };
    let fresh = |ip: &str, channel| {
        let info = crate::xml::HostInfo {
            host_name: "den",
            unique_id: &f.state.host.uuid,
            http_port: 47989,
            https_port: 47984,
            local_ip: ip.parse().unwrap(),
        };
        crate::xml::server_info(&info, channel).to_xml()
    };

    let first = get(http_request_to("/serverinfo", "192.168.1.20:47989")).await;
    assert_eq!(first, fresh("192.168.1.20", crate::xml::Channel::Http));
    assert!(first.contains("<LocalIP>192.168.1.20</LocalIP>"), "{first}");

    // Trust changes do not show over plain HTTP (PairStatus stays 0 there,
    // as in GFE and Sunshine): the reply stays byte for byte the same.
    let _ = f.state.trust.arm(Actor::cli(), &mut rand::rngs::OsRng);
    let fp = paired_client(&f.state);
    for _ in 0..3 {
        let again = get(http_request_to("/serverinfo", "192.168.1.20:47989")).await;
        assert_eq!(again, first);
    }

    // Another local address is another document, and the first one is
    // still served for its own address.
    let other = get(http_request_to("/serverinfo", "[::ffff:10.0.0.7]:47989")).await;
    assert_eq!(other, fresh("10.0.0.7", crate::xml::Channel::Http));
    assert!(other.contains("<LocalIP>10.0.0.7</LocalIP>"), "{other}");
    assert_ne!(other, first);
    assert_eq!(
        get(http_request_to("/serverinfo", "192.168.1.20:47989")).await,
        first
    );

    // The paired certificate over HTTPS sees PairStatus 1; that rendering
    // does not leak into the plain-HTTP one, nor to a revoked device.
    let https = get(https_request("/serverinfo", Some(fp))).await;
    assert!(https.contains("<PairStatus>1</PairStatus>"), "{https}");
    assert_eq!(
        https,
        fresh("127.0.0.1", crate::xml::Channel::AuthorizedHttps)
    );
    let plain = get(request("/serverinfo", "192.0.2.7:5000")).await;
    assert!(plain.contains("<PairStatus>0</PairStatus>"), "{plain}");
    f.state
        .trust
        .revoke(&fp, punktfunk_certs::Actor::cli())
        .unwrap();
    let revoked = get(https_request("/serverinfo", Some(fp))).await;
    assert!(revoked.contains("status_code=\"401\""), "{revoked}");
}

#[actix_web::test]
async fn the_serverinfo_cache_is_bounded() {
    let cache = super::ServerInfoCache::default();
    for i in 0..=super::MAX_SERVER_INFO_RENDERINGS as u32 {
        let ip = std::net::IpAddr::from(i.to_be_bytes());
        cache.insert((ip, crate::xml::Channel::Http), Bytes::from(i.to_string()));
        assert!(cache.rendered.load().len() <= super::MAX_SERVER_INFO_RENDERINGS);
    }
    let last = std::net::IpAddr::from((super::MAX_SERVER_INFO_RENDERINGS as u32).to_be_bytes());
    assert!(cache.get((last, crate::xml::Channel::Http)).is_some());
}
