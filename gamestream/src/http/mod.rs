//! The thin actix-web shell of the GameStream front door.
//!
//! Two listeners, one set of routes: plain HTTP (47989) and HTTPS (47984).
//! Every reply is HTTP 200 with an XML document from [`crate::xml`] (but
//! the box art of a listed app, a PNG); the
//! pairing logic is the core's ([`crate::PairingSession`]), trust is the
//! shared service's ([`punktfunk_certs::Trust`]). What lives here:
//!
//! - the transport: HTTP/1.1 only (the HTTPS acceptor never selects `h2` in
//!   ALPN and the service cannot speak it), request-head timeouts, bounded
//!   request heads (actix-http's 128 KiB, 96 headers), and the client certificate taken
//!   from each TLS connection when it is accepted;
//! - authorisation: each HTTPS request is let through only if the exact
//!   SHA-256 fingerprint of that certificate is in the registry *now*, so a
//!   revocation takes effect on the very next request, even on a kept-alive
//!   connection; otherwise GFE's XML 401;
//! - the `/pair` shell (`pairing.rs`): pending requests in the gate, the held
//!   `getservercert`, the in-flight sessions, and the registry write;
//! - `/appasset`, the one reply that is not XML: box art is an image
//!   ([`crate::boxart`]);
//! - `/serverinfo`, what every Moonlight client on the LAN polls every few
//!   seconds, rendered once per local address and door and then served as
//!   the same bytes (`ServerInfoCache`).
//!
//! Start it with [`server`]. It runs no timer of its own: a request whose
//! client stops halfway ends at its phase's deadline by the trust service's
//! one expiry timer (`Trust::keep_request_until`), and a full attempts map
//! gives up the stale ones.

mod pairing;

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::pin::Pin as StdPin;
use std::sync::Arc;
use std::time::Duration;

use actix_http::{HttpService, KeepAlive};
use actix_server::Server;
use actix_service::{map_config, IntoServiceFactory, ServiceFactoryExt};
use actix_web::dev::{AppConfig, Payload};
use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{web, App, FromRequest, HttpRequest, HttpResponse, Responder, ResponseError};
use arc_swap::ArcSwap;
use futures_util::future::Either;
use openssl::ssl::{AlpnError, SslAcceptor, SslAcceptorBuilder};
use punktfunk_certs::{Denied, Fingerprint, FrontDoor, Grant, HostIdentity, Permissions, Trust};
use punktfunk_conn::actix::SslStream;
use punktfunk_conn::{Admission, Limits, OneAtATime, SlotUse, Use};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::xml::{self, App as AppEntry, AppId, Channel, HostInfo};
use crate::Reply;

pub use pairing::MAX_SESSIONS;

/// Longest wait for a request head after a connection opens (or between
/// kept-alive requests).
const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an idle kept-alive connection stays open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Longest TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a closing connection may take to flush.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a stopping server waits for requests in flight.
const SHUTDOWN_TIMEOUT_S: u64 = 5;

/// The one app `/applist` offers: clients ignore an empty list or id 0.
const DESKTOP: (u32, &str) = (1, "Desktop");

/// Most `/serverinfo` renderings kept: one per local address a client
/// reached the host on and door. A host has a handful of addresses; the cap
/// only bounds memory on one with very many (IPv6 privacy addresses).
const MAX_SERVER_INFO_RENDERINGS: usize = 16;

/// What the GameStream handlers share.
pub struct State {
    trust: Arc<Trust>,
    host: Arc<HostIdentity>,
    host_name: String,
    ports: Ports,
    apps: Vec<AppEntry>,
    sessions: pairing::InFlightPairings,
    server_info: ServerInfoCache,
    shutdown: watch::Receiver<bool>,
}

/// The ports `/serverinfo` advertises (the bound ones, which differ from
/// the configured ones with port 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// Plain HTTP (`ExternalPort`).
    pub http: u16,
    /// HTTPS (`HttpsPort`).
    pub https: u16,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("host_name", &self.host_name)
            .field("ports", &self.ports)
            .finish_non_exhaustive()
    }
}

impl State {
    /// The shared state. When `shutdown` turns `true`, requests held for a
    /// PIN are answered and their pending requests end.
    pub fn new(
        trust: Arc<Trust>,
        host: Arc<HostIdentity>,
        host_name: String,
        ports: Ports,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let apps = AppId::new(DESKTOP.0)
            .map(|id| AppEntry {
                id,
                title: DESKTOP.1.to_owned(),
            })
            .into_iter()
            .collect();
        Self {
            trust,
            host,
            host_name,
            ports,
            apps,
            sessions: pairing::InFlightPairings::default(),
            server_info: ServerInfoCache::default(),
            shutdown,
        }
    }

    /// The `/serverinfo` document for a request that reached `local_ip`
    /// over `channel`, rendered on first use and the same bytes after.
    fn server_info(&self, local_ip: IpAddr, channel: Channel) -> Bytes {
        let key = (local_ip, channel);
        if let Some(bytes) = self.server_info.get(key) {
            return bytes;
        }
        let info = HostInfo {
            host_name: &self.host_name,
            unique_id: &self.host.uuid,
            http_port: self.ports.http,
            https_port: self.ports.https,
            local_ip,
        };
        let bytes = Bytes::from(xml::server_info(&info, channel).to_xml());
        self.server_info.insert(key, bytes.clone());
        bytes
    }
}

/// Rendered `/serverinfo` replies, keyed by what varies between requests.
///
/// What the document says is fixed for the life of a [`State`] but for two
/// inputs: `LocalIP` (the local address of the connection) and the door
/// (`PairStatus`: always 0 over plain HTTP, as GFE and Sunshine answer
/// there; 1 over HTTPS, which only trusted certificates reach). Host name,
/// `uniqueid` and ports are set when the state is made and never change,
/// and no trust event (arming, pairing, revoking) changes a byte, so the
/// key is the whole invalidation: a new address or door is a new entry.
/// Whether a request may see the HTTPS document at all is still decided
/// per request, by [`Caller`], before this is read.
#[derive(Default)]
struct ServerInfoCache {
    rendered: ArcSwap<Vec<((IpAddr, Channel), Bytes)>>,
}

impl ServerInfoCache {
    fn get(&self, key: (IpAddr, Channel)) -> Option<Bytes> {
        self.rendered
            .load()
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, bytes)| bytes.clone())
    }

    fn insert(&self, key: (IpAddr, Channel), bytes: Bytes) {
        self.rendered.rcu(|current| {
            let mut next = if current.len() >= MAX_SERVER_INFO_RENDERINGS {
                Vec::new()
            } else {
                current.as_ref().clone()
            };
            if !next.iter().any(|(k, _)| *k == key) {
                next.push((key, bytes.clone()));
            }
            next
        });
    }
}

/// Makes the HTTPS acceptor HTTP/1.1-only: `http/1.1` is selected when the
/// client offers it and nothing else ever is (GameStream clients speak
/// HTTP/1.1; `research/gamestream.md` §10.1).
pub fn http1_only(mut builder: SslAcceptorBuilder) -> io::Result<SslAcceptor> {
    builder.set_alpn_select_callback(|_, offered| {
        openssl::ssl::select_next_proto(b"\x08http/1.1", offered).ok_or(AlpnError::NOACK)
    });
    Ok(builder.build())
}

/// The two listeners, each on its own actix server with its own worker
/// thread (so a flood on one cannot starve the other), HTTP/1.1 only.
/// `https_acceptor` must present the host certificate and request (and
/// accept any) client certificate; pass it through [`http1_only`].
///
/// Every connection first takes a place in its listener's [`Admission`]
/// (docs/limits.md: per source address and per port, the oldest idle one
/// evicted when full) and is then served one request at a time
/// ([`punktfunk_conn::OneAtATime`]), so a peer that pipelines requests and
/// never reads cannot make replies pile up.
///
/// A client that closes its end while its `getservercert` is held has gone
/// away: half-closed connections are not kept, so its handler is dropped,
/// which ends the pending request as `abandoned`.
pub fn server(
    state: web::Data<State>,
    http: TcpListener,
    https: TcpListener,
    https_acceptor: SslAcceptor,
) -> io::Result<Servers> {
    let http_state = state.clone();
    let plain = Admission::new(Limits::PLAIN);
    let secure = Admission::new(Limits::TLS);
    let http = one_worker()
        .listen("gamestream-http", http, move || {
            punktfunk_conn::actix::plain(plain.clone(), KEEP_ALIVE).and_then(
                h1_builder!()
                    .on_connect_ext(|io: &OneAtATime<TcpStream>, ext| {
                        ext.insert(Conn {
                            local: io.get_ref().local_addr().ok(),
                            tls: None,
                        });
                        ext.insert(io.user());
                    })
                    .h1(map_config(service(http_state.clone()), |_| {
                        AppConfig::default()
                    })),
            )
        })?
        .run();
    let https = one_worker()
        .listen("gamestream-https", https, move || {
            punktfunk_conn::actix::tls(
                secure.clone(),
                https_acceptor.clone(),
                TLS_HANDSHAKE_TIMEOUT,
                KEEP_ALIVE,
            )
            .and_then(
                h1_builder!()
                    .on_connect_ext(|io: &OneAtATime<SslStream<TcpStream>>, ext| {
                        ext.insert(Conn {
                            local: io.get_ref().get_ref().local_addr().ok(),
                            tls: Some(peer_fingerprint(io.get_ref())),
                        });
                        ext.insert(io.user());
                    })
                    .h1(map_config(service(state.clone()), |_| AppConfig::default())),
            )
        })?
        .run();
    Ok(Servers { http, https })
}

/// The running GameStream listeners.
pub struct Servers {
    /// Plain HTTP (47989).
    pub http: Server,
    /// HTTPS (47984).
    pub https: Server,
}

fn one_worker() -> actix_server::ServerBuilder {
    Server::build()
        .workers(1)
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_TIMEOUT_S)
}

/// actix-http's settings for both listeners (a macro: the builder's type
/// names the service it will get).
macro_rules! h1_builder {
    () => {
        HttpService::build()
            .client_request_timeout(REQUEST_HEAD_TIMEOUT)
            .client_disconnect_timeout(DISCONNECT_TIMEOUT)
            .keep_alive(KeepAlive::Timeout(KEEP_ALIVE))
            .h1_allow_half_closed(false)
    };
}
use h1_builder;

fn service(
    state: web::Data<State>,
) -> impl actix_service::ServiceFactory<
    actix_http::Request,
    Config = AppConfig,
    Response = actix_web::dev::ServiceResponse,
    Error = HttpResponse,
    InitError = (),
> {
    app(state)
        .into_factory()
        .map_err(|e: actix_web::Error| e.error_response())
}

/// The routes, on an actix [`App`]; tests build it with
/// `actix_web::test::init_service`.
pub fn app(
    state: web::Data<State>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(state)
        .app_data(web::QueryConfig::default().error_handler(|e, _| {
            Refusal(Reply::error(400, format!("malformed query: {e}"))).into()
        }))
        .service(web::resource("/serverinfo").to(server_info))
        .service(web::resource("/pair").to(pair))
        .service(web::resource("/unpair").to(unpair))
        .service(web::resource("/applist").to(app_list))
        .service(web::resource("/appasset").to(app_asset))
        .service(web::resource("/launch").to(launch))
        .service(web::resource("/resume").to(resume))
        .service(web::resource("/cancel").to(cancel))
        .default_service(web::to(not_found))
}

// ---- transport --------------------------------------------------------------

/// What a connection told us when it was accepted.
#[derive(Debug, Clone, Copy)]
struct Conn {
    local: Option<SocketAddr>,
    /// `Some` on HTTPS: the fingerprint of the client certificate, if any.
    tls: Option<Option<Fingerprint>>,
}

fn peer_fingerprint(io: &SslStream<TcpStream>) -> Option<Fingerprint> {
    let cert = io.ssl().peer_certificate()?;
    cert.to_der().ok().map(|der| Fingerprint::of_der(&der))
}

/// Who is asking, over which door; for HTTPS, already authorised, with
/// what its device may do.
#[derive(Debug, Clone)]
struct Caller {
    channel: Channel,
    local_ip: IpAddr,
    peer: Option<SocketAddr>,
    /// Over HTTPS, the device's grant.
    grant: Option<Grant>,
}

impl FromRequest for Caller {
    type Error = Refusal;
    /// Ready at once, without an allocation (`/serverinfo` is the hot
    /// path), unless an authorised HTTPS request has to record `last_seen`
    /// first.
    type Future = Either<
        std::future::Ready<Result<Self, Refusal>>,
        StdPin<Box<dyn Future<Output = Result<Self, Refusal>>>>,
    >;

    /// Over HTTPS, the connection's certificate must be in the registry at
    /// this very request (Sunshine checks at the handshake only, so a
    /// revoked client keeps its open connection; this does not).
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Without connection data (in-process tests) the request counts as
        // plain HTTP: no certificate, nothing authorised.
        let conn = req
            .conn_data::<Conn>()
            .copied()
            .or_else(|| test_conn(req))
            .unwrap_or(Conn {
                local: None,
                tls: None,
            });
        let local_ip = conn
            .local
            .map(|a| a.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let peer = req.peer_addr();
        let state = req.app_data::<web::Data<State>>();
        let Some(cert) = conn.tls else {
            return Either::Left(std::future::ready(Ok(Self {
                channel: Channel::Http,
                local_ip,
                peer,
                grant: None,
            })));
        };
        let grant = match authorize(cert, state, req.path()) {
            Ok(grant) => grant,
            Err(refused) => return Either::Left(std::future::ready(Err(refused))),
        };
        let seen = grant.clone();
        let caller = Self {
            channel: Channel::AuthorizedHttps,
            local_ip,
            peer,
            grant: Some(grant),
        };
        // last_seen is coarse: most requests need no write, and no hop to
        // the blocking pool.
        let Some(trust) = state.filter(|_| seen.seen_due()).map(|s| s.trust.clone()) else {
            return Either::Left(std::future::ready(Ok(caller)));
        };
        Either::Right(Box::pin(async move {
            trust.seen(&seen).await;
            Ok(caller)
        }))
    }
}

/// The grant of an HTTPS request's certificate (`None`: it showed none),
/// or the answer it gets: GFE's 401 if not paired here (only a
/// Moonlight-paired certificate counts: trust won at the native door does
/// not), its own 403 if disabled or expired.
fn authorize(
    cert: Option<Fingerprint>,
    state: Option<&web::Data<State>>,
    path: &str,
) -> Result<Grant, Refusal> {
    let answer = match (cert, state) {
        (Some(fp), Some(s)) => s.trust.authorize(FrontDoor::Gamestream, &fp),
        _ => Err(Denied::NotPaired),
    };
    answer.map_err(|denied| match denied {
        Denied::NotPaired => Refusal(xml::unauthorized(path)),
        denied => Refusal(xml::access_refused(path, denied)),
    })
}

/// In-process tests have no connection; they put the [`Conn`] a real
/// HTTPS connection would have into the request's extensions.
#[cfg(test)]
fn test_conn(req: &HttpRequest) -> Option<Conn> {
    use actix_web::HttpMessage;
    req.extensions().get::<Conn>().copied()
}

/// Outside tests only the connection itself says what it is.
#[cfg(not(test))]
fn test_conn(_: &HttpRequest) -> Option<Conn> {
    None
}

// ---- replies ----------------------------------------------------------------

/// A GameStream reply as an HTTP response: always 200, XML body.
struct Xml(Reply);

impl Responder for Xml {
    type Body = actix_web::body::BoxBody;

    fn respond_to(self, _: &HttpRequest) -> HttpResponse {
        xml_response(&self.0)
    }
}

fn xml_response(reply: &Reply) -> HttpResponse {
    xml_bytes_response(reply.to_xml().into())
}

/// An XML document rendered earlier, as an HTTP response.
fn xml_bytes_response(xml: Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(xml::CONTENT_TYPE)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(xml)
}

/// A request refused before its handler ran (unpaired certificate, malformed
/// query), rendered the GameStream way: HTTP 200, the error in the XML.
#[derive(Debug)]
struct Refusal(Reply);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}",
            self.0.status_code(),
            self.0.status_message().unwrap_or_default()
        )
    }
}

impl ResponseError for Refusal {
    fn status_code(&self) -> actix_web::http::StatusCode {
        actix_web::http::StatusCode::OK
    }

    fn error_response(&self) -> HttpResponse {
        xml_response(&self.0)
    }
}

// ---- handlers ---------------------------------------------------------------

type Query = web::Query<Vec<(String, String)>>;

async fn server_info(caller: Caller, state: web::Data<State>) -> HttpResponse {
    xml_bytes_response(state.server_info(caller.local_ip, caller.channel))
}

async fn pair(req: HttpRequest, caller: Caller, state: web::Data<State>, query: Query) -> Xml {
    let Some(peer) = caller.peer else {
        return Xml(crate::PairError::Host(crate::HostFault::NoPeerAddress).reply());
    };
    let connection = Held(req.conn_data::<SlotUse>().cloned());
    Xml(state
        .pair(caller.channel, peer, query.into_inner(), &connection)
        .await)
}

/// A pairing request's connection, which waits (for its PIN) while its
/// `getservercert` is held: if the plain door fills up with such
/// connections, a newcomer from an address holding fewer may take the
/// place of one from the address holding the most (docs/limits.md).
pub(super) struct Held(Option<SlotUse>);

impl Held {
    /// Marks the connection as waiting until the guard is dropped.
    pub(super) fn waiting(&self) -> WaitingGuard<'_> {
        if let Some(u) = &self.0 {
            u.set(Use::Waiting);
        }
        WaitingGuard(self)
    }
}

/// See [`Held::waiting`]; back to busy (the reply is on its way) on drop.
pub(super) struct WaitingGuard<'a>(&'a Held);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        if let Some(u) = &self.0 .0 {
            u.set(Use::Busy);
        }
    }
}

/// Unauthenticated over HTTP: ends this peer's pairing in progress, never
/// removes a device (unlike Sunshine, where it could unpair everyone).
async fn unpair(caller: Caller, state: web::Data<State>, query: Query) -> Xml {
    if let Some(peer) = caller.peer {
        state.cancel_by_client(peer, &query);
        state.audited().await;
    }
    Xml(xml::unpair())
}

async fn app_list(caller: Caller, state: web::Data<State>, req: HttpRequest) -> Xml {
    authorized(caller, &req, Needs::LIST, || xml::app_list(&state.apps))
}

/// `/appasset?appid=N&AssetType=2&AssetIdx=0` (paired clients only): the
/// box art of a listed app, as `image/png`. Clients store whatever comes
/// back as the picture, so a listed app always gets an image (the host's
/// placeholder, [`crate::boxart`]); only an app id that is missing,
/// malformed or not listed gets the XML 404. `AssetType` and `AssetIdx`
/// are ignored, as Sunshine does (every client sends 2 and 0).
async fn app_asset(
    caller: Caller,
    state: web::Data<State>,
    req: HttpRequest,
    query: Query,
) -> HttpResponse {
    if let Err(refused) = permitted(&caller, &req, Needs::LIST) {
        return xml_response(&refused);
    }
    let listed = query
        .iter()
        .find(|(k, _)| k == "appid")
        .and_then(|(_, v)| v.parse::<u32>().ok())
        .is_some_and(|id| state.apps.iter().any(|app| app.id.get() == id));
    if !listed {
        return xml_response(&xml::app_asset_unknown());
    }
    match crate::boxart::placeholder_png() {
        Ok(png) => HttpResponse::Ok()
            .content_type(crate::boxart::CONTENT_TYPE)
            .body(png),
        Err(e) => {
            tracing::error!("gamestream: {e}");
            xml_response(&xml::app_asset_unavailable())
        }
    }
}

async fn launch(caller: Caller, req: HttpRequest) -> Xml {
    authorized(caller, &req, Needs::LAUNCH, xml::launch_unavailable)
}

async fn resume(caller: Caller, req: HttpRequest) -> Xml {
    authorized(caller, &req, Needs::STREAM, xml::resume_unavailable)
}

async fn cancel(caller: Caller, req: HttpRequest) -> Xml {
    authorized(caller, &req, Needs::LAUNCH, xml::cancel)
}

/// Over HTTPS, an unpaired certificate gets the 401 first, on every path.
async fn not_found(_: Caller) -> Xml {
    Xml(xml::not_found())
}

/// What a path needs of a paired device's grant (Apollo's checks,
/// `nvhttp.cpp`): any one of `any`, described as `what`.
struct Needs {
    any: Permissions,
    what: &'static str,
}

impl Needs {
    /// `/applist`, `/appasset`.
    const LIST: Needs = Needs {
        any: Permissions::LIST,
        what: "list apps",
    };
    /// `/resume`: viewing the stream that runs (or launching).
    const STREAM: Needs = Needs {
        any: Permissions::LAUNCH.with(Permissions::VIEW),
        what: "launch apps or view streams",
    };
    /// `/launch` and `/cancel`: starting or quitting an app. (Apollo lets
    /// `view` launch the app that already runs; on this host none runs.)
    const LAUNCH: Needs = Needs {
        any: Permissions::LAUNCH,
        what: "launch or quit apps",
    };
}

/// Paths for paired clients only: over plain HTTP no certificate was shown,
/// so the answer is the same XML 401 an unpaired certificate gets; a paired
/// device without the permission the path needs gets a 403 naming it.
fn authorized(
    caller: Caller,
    req: &HttpRequest,
    needs: Needs,
    reply: impl FnOnce() -> Reply,
) -> Xml {
    match permitted(&caller, req, needs) {
        Ok(()) => Xml(reply()),
        Err(refused) => Xml(refused),
    }
}

/// Whether `caller` may use this path: see [`authorized`].
fn permitted(caller: &Caller, req: &HttpRequest, needs: Needs) -> Result<(), Reply> {
    match (&caller.channel, &caller.grant) {
        (Channel::AuthorizedHttps, Some(grant)) if grant.permissions().intersects(needs.any) => {
            Ok(())
        }
        (Channel::AuthorizedHttps, Some(grant)) => {
            tracing::info!(fingerprint = %grant.fingerprint().short(), path = req.path(), "gamestream: permission denied");
            Err(xml::permission_denied(req.path(), needs.what))
        }
        _ => Err(xml::unauthorized(req.path())),
    }
}

#[cfg(test)]
mod tests;
