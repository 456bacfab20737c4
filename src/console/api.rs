//! The console's JSON API routes.

use std::future::{ready, Ready};
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use actix_web::cookie::{Cookie, SameSite};
use actix_web::error::PathError;
use actix_web::http::{Method, StatusCode};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError as _};
use punktfunk_certs::audit::{self, Door, Query};
use punktfunk_certs::gate::PendingOutcome;
use punktfunk_certs::otp::Passphrase;
use punktfunk_certs::{
    Actor, AddressKey, AuditError, DisplayName, Entry, Event, Fingerprint, GateError, Label,
    LinkSecret, Outcome, PendingId, Pin, RegistryError, TrustError, TrustEvent,
};
use punktfunk_native::PairingLink;
use rand::rngs::OsRng;
use serde::Deserialize;

use super::auth::{Refusal, SESSION_LIFETIME};
use super::known::{KNOWN_COOKIE, KNOWN_COOKIE_PATH, KNOWN_LIFETIME};
use super::links::LinkHost;
use super::replies::{
    expires_in, ArmedReply, BlockReply, Blocked, Csrf, DeniedAll, DeviceList, DeviceReply, Done,
    ErrorReply, ExchangeReply, HostReply, HostSummary, LastAttemptReply, Lifted, OtpCancelled,
    OtpLastReply, OtpLink, OtpReply, PairingState, PendingReply, PinOutcome,
};
use super::{ApiError, ConsoleState, CSRF_HEADER, SESSION_COOKIE};

/// How long `POST /api/pending/{id}/pin` waits for the pairing to finish.
const PIN_OUTCOME_WAIT: Duration = Duration::from_secs(90);

/// Declares the API's routes once: [`ROUTES`] (method and path, for the
/// OpenAPI document's test) and the scope that registers them are made from
/// the same list, so neither can leave out what the other has.
macro_rules! api_routes {
    ($($method:ident $path:literal => $handler:path;)*) => {
        /// Every route under `/api`: `(method, path)`, lowercase method and
        /// the path as `docs/console-api.json` writes it. The test that holds
        /// the document to it reads it, and so does the 405 answer.
        pub(crate) const ROUTES: &[(&str, &str)] = &[$((stringify!($method), concat!("/api", $path))),*];

        fn register(scope: actix_web::Scope) -> actix_web::Scope {
            scope$(.route($path, web::$method().to($handler)))*
        }
    };
}

api_routes! {
    post "/login" => login;
    post "/logout" => logout;
    get "/host" => host;
    get "/openapi.json" => openapi;
    get "/events" => events;
    get "/audit" => audit_page;
    get "/session" => session;
    get "/pairing" => pairing;
    post "/pairing/arm" => arm;
    post "/pairing/disarm" => disarm;
    post "/pending/deny-all" => deny_all;
    post "/pending/deny-address" => deny_address;
    post "/blocks" => block;
    delete "/blocks/{address}" => unblock;
    post "/otp" => create_otp;
    delete "/otp" => cancel_otp;
    get "/otp/qr.svg" => otp_qr;
    get "/pairing/qr.svg" => pairing_qr;
    post "/pending/{id}/approve" => approve;
    post "/pending/{id}/deny" => deny;
    post "/pending/{id}/pin" => enter_pin;
    get "/devices" => devices;
    get "/devices/{fingerprint}" => device;
    patch "/devices/{fingerprint}" => rename;
    delete "/devices/{fingerprint}" => remove;
}

/// The OpenAPI 3.1 document of this API (`GET /api/openapi.json`).
pub(crate) const OPENAPI: &str = include_str!("../../docs/console-api.json");

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        register(web::scope("/api"))
            .wrap(actix_web::middleware::from_fn(super::body_limit))
            .default_service(web::to(unrouted)),
    );
}

/// No route took the request: 405 with `Allow` if the path has routes for
/// other methods, else 404.
async fn unrouted(req: HttpRequest) -> HttpResponse {
    let allowed: Vec<String> = ROUTES
        .iter()
        .filter(|(_, path)| actix_web::dev::ResourceDef::new(*path).is_match(req.path()))
        .map(|(method, _)| method.to_ascii_uppercase())
        .collect();
    if allowed.is_empty() {
        return ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API route")
            .error_response();
    }
    let allow = allowed.join(", ");
    let mut reply = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not allowed here; this route takes {allow}",
            req.method()
        ),
    )
    .error_response();
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&allow) {
        reply
            .headers_mut()
            .insert(actix_web::http::header::ALLOW, value);
    }
    reply
}

/// `GET /api/openapi.json`: public documentation, like the page itself.
async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("Cache-Control", "no-cache"))
        .body(OPENAPI)
}

/// Proof that the request carries a live session, and for anything but GET
/// a matching CSRF token from the same origin.
pub(crate) struct Authed {
    token: String,
    csrf: String,
    /// The console user, as the audit trail names them.
    actor: Actor,
}

impl FromRequest for Authed {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(authenticate(req))
    }
}

fn authenticate(req: &HttpRequest) -> Result<Authed, ApiError> {
    let state = req
        .app_data::<web::Data<ConsoleState>>()
        .ok_or_else(|| ApiError::internal("console state missing"))?;
    let unauthorised = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "log in to the console first (your session may have expired)",
        )
    };
    let token = req
        .cookie(SESSION_COOKIE)
        .map(|c| c.value().to_owned())
        .ok_or_else(unauthorised)?;
    let session = state
        .sessions
        .get(&token, Instant::now())
        .ok_or_else(unauthorised)?;
    if req.method() != Method::GET && req.method() != Method::HEAD {
        check_same_origin(req)?;
        let sent = req
            .headers()
            .get(CSRF_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !punktfunk_certs::ct_eq(sent, session.csrf.as_bytes()) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "missing or wrong X-CSRF-Token header; reload the console page",
            ));
        }
    }
    Ok(Authed {
        token,
        csrf: session.csrf,
        actor: Actor::console(peer_ip(req)),
    })
}

/// Refuses state changes a browser marks as cross-site, and any whose
/// `Origin` names another host. (SameSite=Strict and the CSRF token already
/// stop these; this is the belt to those braces.)
fn check_same_origin(req: &HttpRequest) -> Result<(), ApiError> {
    let cross = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "requests from other sites are refused",
        )
    };
    if let Some(site) = req.headers().get("Sec-Fetch-Site") {
        if !matches!(site.as_bytes(), b"same-origin" | b"none") {
            return Err(cross());
        }
    }
    if let Some(origin) = req.headers().get("Origin") {
        // The Host header itself: `connection_info().host()` would believe
        // `Forwarded`/`X-Forwarded-Host`, which the sender chooses, so any
        // origin could vouch for itself.
        let host = req
            .headers()
            .get(actix_web::http::header::HOST)
            .map(|h| h.as_bytes())
            .or_else(|| req.uri().authority().map(|a| a.as_str().as_bytes()))
            .ok_or_else(cross)?;
        if origin.as_bytes().strip_prefix(b"https://") != Some(host) {
            return Err(cross());
        }
    }
    Ok(())
}

fn peer_ip(req: &HttpRequest) -> IpAddr {
    req.peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

fn session_cookie(value: String, max_age: Duration) -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE, value)
        .path("/")
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Strict)
        .max_age(actix_web::cookie::time::Duration::seconds(
            max_age.as_secs() as i64,
        ))
        .finish()
}

/// 429 (this address, or everyone during a flood) or 503 (every check
/// slot busy), with `Retry-After`.
fn refused_login(refusal: Refusal, key: AddressKey) -> HttpResponse {
    let (mut builder, wait, message) = match refusal {
        Refusal::Address(wait) => (
            HttpResponse::TooManyRequests(),
            wait,
            format!("too many login attempts from {key}"),
        ),
        Refusal::Browser(wait) => (
            HttpResponse::TooManyRequests(),
            wait,
            "too many login attempts from this browser".to_owned(),
        ),
        Refusal::Budget(wait) => (
            HttpResponse::TooManyRequests(),
            wait,
            "too many login attempts on this host right now".to_owned(),
        ),
        Refusal::Busy => (
            HttpResponse::ServiceUnavailable(),
            Duration::from_secs(1),
            "the host is checking other login attempts".to_owned(),
        ),
    };
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let secs = secs.max(1);
    tracing::debug!(%key, ?refusal, "console: login attempt refused unchecked");
    builder
        .insert_header(("Retry-After", secs.to_string()))
        .insert_header(("Cache-Control", "no-store"))
        .json(ErrorReply::new(
            "rate_limited",
            &format!("{message}; try again in {secs} s"),
        ))
}

#[derive(Deserialize)]
struct LoginBody {
    password: String,
}

/// The known-browser cookie for a browser that just logged in (`known`).
fn known_cookie(value: String) -> Cookie<'static> {
    Cookie::build(KNOWN_COOKIE, value)
        .path(KNOWN_COOKIE_PATH)
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Strict)
        .max_age(actix_web::cookie::time::Duration::seconds(
            KNOWN_LIFETIME.as_secs() as i64,
        ))
        .finish()
}

async fn login(
    req: HttpRequest,
    state: web::Data<ConsoleState>,
    body: web::Json<LoginBody>,
) -> Result<HttpResponse, ApiError> {
    let ip = peer_ip(&req);
    let key = AddressKey::of(ip);
    // A browser that logged in before, by the cookie the host signed then
    // (under the current password hash: a new password voids it).
    let known = req.cookie(KNOWN_COOKIE).and_then(|cookie| {
        let hash = state.password.hash().ok()?;
        state.known.verify(cookie.value(), &hash, SystemTime::now())
    });
    let login = |outcome| {
        let entry = Entry::new(Event::Login, Door::Console)
            .address(ip)
            .outcome(outcome);
        match known {
            Some(_) => entry.detail("known browser"),
            None => entry,
        }
    };
    // Paid for before the (expensive) check runs: see `auth`.
    let admitted = match known {
        Some(id) => state.limiter.admit_known(id, Instant::now()).await,
        None => state.limiter.admit(key, Instant::now()),
    };
    let mut permit = match admitted {
        Ok(p) => p,
        Err(refusal) => {
            // Budgeted in the audit trail like the attempts themselves; the
            // refusal is the answer even if the trail cannot take it.
            let _ = recorded(state.trust.record(login(Outcome::RateLimited))).await;
            return Ok(refused_login(refusal, key));
        }
    };
    let password = body.into_inner().password;
    let file = state.password.clone();
    let ok = web::block(move || file.verify(&password, permit.memory()))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    if !ok {
        tracing::warn!(%ip, known = known.is_some(), checks = state.limiter.checks(), "console: wrong password");
        let _ = recorded(state.trust.record(login(Outcome::Failed))).await;
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong_password",
            "wrong password",
        ));
    }
    state.limiter.succeeded(key);
    if let Some(id) = known {
        state.limiter.succeeded_known(id);
    }
    // The login takes effect first, like every other decision: a trail
    // that cannot be written (a full disk) must not lock the owner out.
    let (token, csrf) = state.sessions.create(Instant::now());
    tracing::info!(%ip, known = known.is_some(), "console: logged in");
    // The start-up lines stop repeating how to get in (src/first_start.rs).
    let dir = state.password.dir().to_path_buf();
    if !crate::first_start::logged_in(&dir) {
        match web::block(move || crate::first_start::note_login(&dir)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("cannot record the first console login: {e}"),
            Err(e) => tracing::warn!("cannot record the first console login: {e}"),
        }
    }
    let mut reply = match recorded(state.trust.record(login(Outcome::Ok))).await {
        Ok(()) => HttpResponse::Ok().json(Csrf { csrf: &csrf }),
        // `not_recorded`, with the session cookie: the page reads its CSRF
        // token from `GET /api/session`.
        Err(e) => e.error_response(),
    };
    reply.headers_mut().insert(
        actix_web::http::header::CACHE_CONTROL,
        actix_web::http::header::HeaderValue::from_static("no-store"),
    );
    let cookie = session_cookie(token, SESSION_LIFETIME);
    reply.add_cookie(&cookie).map_err(ApiError::internal)?;
    // Bound to the hash as it is now (a `set-password` since the check
    // gives a cookie for the new one: it still takes the password to use).
    if let Ok(hash) = state.password.hash() {
        let value = state.known.issue(&hash, SystemTime::now());
        reply
            .add_cookie(&known_cookie(value))
            .map_err(ApiError::internal)?;
    }
    Ok(reply)
}

async fn logout(auth: Authed, state: web::Data<ConsoleState>) -> Result<HttpResponse, ApiError> {
    state.sessions.remove(&auth.token);
    recorded(state.trust.record(auth.actor.entry(Event::Logout))).await?;
    Ok(HttpResponse::Ok()
        .cookie(session_cookie(String::new(), Duration::ZERO))
        .json(Done {}))
}

/// Waits until an audit entry is on disk; a failure is the operator's to
/// see (the action took effect; the host's log has the cause).
async fn recorded(ticket: punktfunk_certs::audit::Ticket) -> Result<(), ApiError> {
    ticket.durable().await.map_err(audit_error)
}

fn audit_error(e: AuditError) -> ApiError {
    tracing::error!("console: {e}");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "not_recorded",
        "the action took effect, but the audit trail could not record it; the host's log says why",
    )
}

#[derive(Deserialize)]
struct AuditParams {
    limit: Option<usize>,
    before: Option<u64>,
    device: Option<String>,
}

/// Most entries one `GET /api/audit` returns.
const AUDIT_PAGE_MAX: usize = 500;

/// `GET /api/audit?limit=N&before=CURSOR&device=FP`: the audit trail,
/// newest first, `{"events": [...], "next": CURSOR|null}`.
async fn audit_page(
    _: Authed,
    state: web::Data<ConsoleState>,
    params: web::Query<AuditParams>,
) -> Result<HttpResponse, ApiError> {
    let AuditParams {
        limit,
        before,
        device,
    } = params.into_inner();
    let device = device
        .map(|d| {
            d.parse::<Fingerprint>().map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("device: {e}"),
                )
            })
        })
        .transpose()?;
    let query = Query {
        limit: limit.unwrap_or(50).min(AUDIT_PAGE_MAX),
        before,
        after: None,
        device,
    };
    let dir = state.trust.audit_dir().to_path_buf();
    let page = web::block(move || audit::read(&dir, &query))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(page))
}

/// The host as the page heads it.
fn host_summary(state: &ConsoleState) -> HostSummary<'_> {
    HostSummary::new(
        state.host_fingerprint,
        &state.host_name,
        native_runs(state),
        state.open,
    )
}

/// Whether the punktfunk app's endpoint runs (`--native`): only then does
/// an armed PIN or a pairing link reach anything.
fn native_runs(state: &ConsoleState) -> bool {
    state.reach.get().is_some_and(|r| r.native.is_some())
}

/// The address the browser opened the console on (its `Host` header), if
/// it is one a device elsewhere can use (`LinkHost::from_host_header`).
/// Read from the header itself, never from `Forwarded`/`X-Forwarded-Host`.
fn opened_on(req: &HttpRequest, state: &ConsoleState) -> Option<LinkHost> {
    let raw = req
        .headers()
        .get(actix_web::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))?;
    LinkHost::from_host_header(raw, &state.host_name)
}

/// The host's name and fingerprint, before login: the login page shows the
/// fingerprint so the user can check the self-signed certificate.
async fn host(state: web::Data<ConsoleState>) -> HttpResponse {
    // Read from the interfaces at each request: addresses change.
    let urls = state
        .reach
        .get()
        .map(|r| r.console_urls())
        .unwrap_or_default();
    HttpResponse::Ok().json(HostReply {
        console_urls: urls,
        host: host_summary(&state),
    })
}

/// Server-sent events: one `data: changed` per trust change, so the page
/// re-reads `/api/pairing` without polling. Ends when the session does.
async fn events(auth: Authed, state: web::Data<ConsoleState>) -> HttpResponse {
    use tokio::sync::broadcast::error::RecvError;
    const KEEPALIVE: Duration = Duration::from_secs(15);
    let rx = state.trust.subscribe();
    let stream = futures_util::stream::unfold(
        (rx, state, auth.token, true),
        |(mut rx, state, token, first)| async move {
            if first {
                // Tells the page the stream is live (and to refresh once).
                let hello = web::Bytes::from_static(b"retry: 3000\ndata: changed\n\n");
                return Some((Ok::<_, actix_web::Error>(hello), (rx, state, token, false)));
            }
            let chunk = match tokio::time::timeout(KEEPALIVE, rx.recv()).await {
                // New audit entries only change the Activity list.
                Ok(Ok(TrustEvent::Audited { .. })) => "data: audit\n\n",
                Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) => "data: changed\n\n",
                Ok(Err(RecvError::Closed)) => return None,
                Err(_) => ": keepalive\n\n",
            };
            state.sessions.get(&token, Instant::now())?;
            Some((
                Ok(web::Bytes::from_static(chunk.as_bytes())),
                (rx, state, token, false),
            ))
        },
    );
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-store"))
        .streaming(stream)
}

async fn session(auth: Authed) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(Csrf { csrf: &auth.csrf })
}

/// The whole Pairing page state; `opened` is where the browser reached the
/// console ([`opened_on`]), which the links name first.
pub(crate) fn pairing_state(state: &ConsoleState, opened: Option<LinkHost>) -> PairingState<'_> {
    let trust = &state.trust;
    let now = trust.now();
    // Read before the gate is locked: it asks the kernel for the interfaces.
    let addresses = link_addresses(state, opened.as_ref());
    let otp_host = otp_host(opened, &addresses);
    let gate = trust.view();
    let armed = gate.arming().map(|a| ArmedReply {
        expires_in_s: expires_in(a.expires, now),
        link: pairing_link(state, &addresses, &a.link).map(|l| l.to_uri()),
        pin: a.pin.as_str().to_owned(),
        pin_used: a.pin_taken,
    });
    let last_attempt = gate
        .last_attempt()
        .map(|a| LastAttemptReply::new(&a.by, &a.result));
    let otp = gate.active_otp().map(|o| {
        let link = otp_host
            .as_ref()
            .and_then(|h| otp_link(state, h, o.pin().as_str(), o.passphrase().as_str()));
        OtpReply::new(o, now, link)
    });
    // The wrong tries at it so far, shown live.
    let otp = otp.map(|o| o.with_tries(gate.otp_tries(), now));
    // How the last one-time PIN went: a wrong passphrase, or the pairing
    // it started (waiting, paired, failed).
    let otp_last = gate.last_otp().map(|l| {
        let result = match (l.matched, l.request) {
            (false, _) => "wrong_passphrase",
            (true, None) => "in_progress",
            (true, Some(id)) => match gate.outcome(id) {
                Some(PendingOutcome::Paired) => "paired",
                Some(_) => "failed",
                None => "in_progress",
            },
        };
        OtpLastReply {
            address: l.address.to_string(),
            result,
        }
    });
    // Who runs a native pairing exchange right now (past its `pake`).
    let exchange = gate.exchange().map(|e| ExchangeReply::new(e, now));
    let pending = gate
        .waiting()
        .map(|(id, p)| PendingReply::new(id, p, now))
        .collect();
    let blocks = gate.blocked().map(|b| BlockReply::new(&b, now)).collect();
    drop(gate);
    let devices = trust
        .registry()
        .list()
        .iter()
        .map(|d| DeviceReply::from(&**d))
        .collect();
    PairingState {
        armed,
        blocks,
        devices,
        exchange,
        host: host_summary(state),
        last_attempt,
        otp,
        otp_last,
        pending,
    }
}

async fn pairing(_: Authed, req: HttpRequest, state: web::Data<ConsoleState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(pairing_state(&state, opened_on(&req, &state)))
}

/// Arming without the punktfunk app's endpoint would show a PIN nothing
/// listens for.
fn no_native() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "no_native",
        "the punktfunk app's endpoint is off, so there is nothing to pair it with: start the \
         host with --native (or `native = true` in the settings file); Moonlight pairs \
         without arming",
    )
}

async fn arm(
    auth: Authed,
    req: HttpRequest,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    if !native_runs(&state) {
        return Err(no_native());
    }
    let (armed, entry) = state.trust.arm(auth.actor, &mut OsRng);
    // After arming: the time left is shown rounded up, so a `now` taken
    // before would show one second too many.
    let now = state.trust.now();
    tracing::info!("pairing armed from the console");
    recorded(entry).await?;
    Ok(HttpResponse::Ok().json(ArmedReply {
        expires_in_s: expires_in(armed.expires, now),
        link: pairing_link(
            &state,
            &link_addresses(&state, opened_on(&req, &state).as_ref()),
            &armed.link,
        )
        .map(|l| l.to_uri()),
        pin: armed.pin.as_str().to_owned(),
        pin_used: armed.pin_taken,
    }))
}

async fn disarm(auth: Authed, state: web::Data<ConsoleState>) -> Result<HttpResponse, ApiError> {
    if let Some(entry) = state.trust.disarm(auth.actor) {
        recorded(entry).await?;
    }
    Ok(HttpResponse::Ok().json(Done {}))
}

fn gate_error(e: GateError) -> ApiError {
    let (status, code) = match e {
        GateError::UnknownRequest => (StatusCode::NOT_FOUND, "unknown_request"),
        GateError::NotArmed => (StatusCode::CONFLICT, "not_armed"),
        GateError::TooManyPending | GateError::TooManyFromAddress(_) => {
            (StatusCode::CONFLICT, "too_many_pending")
        }
        GateError::WaitingElsewhere => (StatusCode::CONFLICT, "waiting_elsewhere"),
        GateError::WrongNeed(_) => (StatusCode::CONFLICT, "wrong_need"),
        GateError::PinAlreadyEntered => (StatusCode::CONFLICT, "pin_already_entered"),
        GateError::BadPin => (StatusCode::BAD_REQUEST, "bad_pin"),
        GateError::Storing => (StatusCode::CONFLICT, "storing"),
        GateError::Blocked(_) => (StatusCode::CONFLICT, "blocked"),
        GateError::TooManyBlocks => (StatusCode::CONFLICT, "too_many_blocks"),
        GateError::BadAddress => (StatusCode::BAD_REQUEST, "bad_address"),
    };
    ApiError::new(status, code, e.to_string())
}

fn registry_error(e: RegistryError) -> ApiError {
    match e {
        RegistryError::NotFound(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "unknown_device", e.to_string())
        }
        RegistryError::Certificate(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid", e.to_string())
        }
        RegistryError::PairedAtOtherDoor { .. } => {
            ApiError::new(StatusCode::CONFLICT, "paired_at_other_door", e.to_string())
        }
        other => ApiError::internal(other),
    }
}

fn trust_error(e: TrustError) -> ApiError {
    match e {
        TrustError::Gate(g) => gate_error(g),
        TrustError::Registry(r) => registry_error(r),
        TrustError::Audit(a) => audit_error(a),
    }
}

/// A path segment that does not parse names nothing there is: an id or a
/// fingerprint that cannot exist is answered like one that is not (any
/// more) there, with the parse error as the message. Which it is, is the
/// route's parameter name.
pub(crate) fn path_error(err: PathError, req: &HttpRequest) -> actix_web::Error {
    let message = match &err {
        // The parse error itself, without actix's "Path deserialize error: ".
        PathError::Deserialize(e) => e.to_string(),
        other => other.to_string(),
    };
    let code = if req.match_info().get("fingerprint").is_some() {
        "unknown_device"
    } else if req.match_info().get("id").is_some() {
        // What `GateError::UnknownRequest` answers (`gate_error`).
        "unknown_request"
    } else {
        "not_found"
    };
    ApiError::new(StatusCode::NOT_FOUND, code, message).into()
}

/// An optional JSON body: empty means "no fields".
fn optional_json<T: for<'de> Deserialize<'de> + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string()))
}

#[derive(Deserialize, Default)]
struct LabelBody {
    label: Option<String>,
}

/// A label from the console, cleaned by the one name rule; `None` clears.
fn label(raw: Option<String>) -> Result<Option<Label>, ApiError> {
    match raw {
        None => Ok(None),
        Some(raw) => Label::parse(&raw)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid", e.to_string())),
    }
}

async fn approve(
    auth: Authed,
    state: web::Data<ConsoleState>,
    id: web::Path<PendingId>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let label = label(optional_json::<LabelBody>(&body)?.label)?;
    let trust = state.trust.clone();
    let device = web::block(move || trust.approve(id, label, auth.actor))
        .await
        .map_err(ApiError::internal)?
        .map_err(trust_error)?;
    tracing::info!(fingerprint = %device.fingerprint.short(), name = %device.name, "device approved in the console");
    Ok(HttpResponse::Ok().json(DeviceReply::from(&device)))
}

async fn deny(
    auth: Authed,
    state: web::Data<ConsoleState>,
    id: web::Path<PendingId>,
) -> Result<HttpResponse, ApiError> {
    let entry = state
        .trust
        .deny(id.into_inner(), auth.actor)
        .map_err(gate_error)?;
    recorded(entry).await?;
    Ok(HttpResponse::Ok().json(Done {}))
}

/// Dismisses every waiting request at once (a flood of knocks or
/// Moonlight requests).
async fn deny_all(auth: Authed, state: web::Data<ConsoleState>) -> Result<HttpResponse, ApiError> {
    let denied = state.trust.deny_all(auth.actor);
    tracing::info!(
        denied = denied.count,
        "console: every waiting request denied"
    );
    recorded(denied.ticket).await?;
    Ok(HttpResponse::Ok().json(DeniedAll {
        denied: denied.count,
    }))
}

#[derive(Deserialize)]
struct AddressBody {
    address: String,
}

/// An address the console sent (as the page shows it).
fn address(raw: &str) -> Result<IpAddr, ApiError> {
    raw.trim()
        .parse()
        .map_err(|_| gate_error(GateError::BadAddress))
}

/// `POST /api/pending/deny-address {"address"}`: dismisses every waiting
/// request from one address.
async fn deny_address(
    auth: Authed,
    state: web::Data<ConsoleState>,
    body: web::Json<AddressBody>,
) -> Result<HttpResponse, ApiError> {
    let ip = address(&body.address)?;
    let denied = state.trust.deny_from(ip, auth.actor);
    tracing::info!(denied = denied.count, address = %AddressKey::of(ip), "console: every waiting request from one address denied");
    recorded(denied.ticket).await?;
    Ok(HttpResponse::Ok().json(DeniedAll {
        denied: denied.count,
    }))
}

/// `POST /api/blocks {"address"}`: refuses every pairing request from the
/// address for an hour (its waiting ones are denied).
async fn block(
    auth: Authed,
    state: web::Data<ConsoleState>,
    body: web::Json<AddressBody>,
) -> Result<HttpResponse, ApiError> {
    let ip = address(&body.address)?;
    let (block, denied) = state.trust.block(ip, auth.actor).map_err(gate_error)?;
    let now = state.trust.now();
    tracing::info!(address = %block.address, denied = denied.count, "console: address blocked for an hour");
    recorded(denied.ticket).await?;
    Ok(HttpResponse::Ok().json(Blocked {
        block: BlockReply::new(&block, now),
        denied: denied.count,
    }))
}

/// `DELETE /api/blocks/{address}`: lifts a block.
async fn unblock(
    auth: Authed,
    state: web::Data<ConsoleState>,
    raw: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let ip = address(&raw)?;
    let entry = state.trust.unblock(ip, auth.actor);
    let lifted = entry.is_some();
    if let Some(entry) = entry {
        tracing::info!(address = %AddressKey::of(ip), "console: block lifted");
        recorded(entry).await?;
    }
    Ok(HttpResponse::Ok().json(Lifted { lifted }))
}

#[derive(Deserialize, Default)]
struct OtpBody {
    passphrase: Option<String>,
    name: Option<String>,
}

/// The addresses links name (empty until the doors are bound): the one
/// the console was opened on first (if it is an IP address), then the LAN
/// addresses.
fn link_addresses(state: &ConsoleState, opened: Option<&LinkHost>) -> Vec<IpAddr> {
    let Some(reach) = state.reach.get() else {
        return Vec::new();
    };
    let mut addresses = reach.addresses();
    if let Some(ip) = opened.and_then(LinkHost::ip) {
        addresses.retain(|a| *a != ip);
        addresses.insert(0, ip);
        addresses.truncate(punktfunk_native::MAX_LINK_ADDRESSES);
    }
    addresses
}

/// The host a one-time PIN's link names: where the console was opened,
/// else the first LAN address.
fn otp_host(opened: Option<LinkHost>, addresses: &[IpAddr]) -> Option<LinkHost> {
    opened.or_else(|| addresses.first().copied().map(LinkHost::Ip))
}

/// The native door's pairing link for the arming's `secret`
/// (docs/native-protocol.md § 12): the app pins the host fingerprint from
/// it before connecting, and pairs with the secret, not the typed PIN.
/// `None` without `--native`, or until the doors are bound.
fn pairing_link(
    state: &ConsoleState,
    addresses: &[IpAddr],
    secret: &LinkSecret,
) -> Option<PairingLink> {
    let reach = state.reach.get()?;
    Some(PairingLink {
        addresses: addresses.to_vec(),
        port: reach.native?,
        host_fingerprint: state.host_fingerprint,
        secret: secret.clone(),
        host_name: DisplayName::sanitize_or(&state.host_name, "punktfunk host"),
    })
}

/// The QR code of the armed PIN's pairing link.
async fn pairing_qr(
    _: Authed,
    req: HttpRequest,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    let secret = state.trust.view().arming().map(|a| a.link.clone());
    let secret = secret
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_armed", "pairing is not armed"))?;
    let addresses = link_addresses(&state, opened_on(&req, &state).as_ref());
    let link = pairing_link(&state, &addresses, &secret).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_native",
            "the punktfunk app's endpoint is off (start the host with --native)",
        )
    })?;
    svg_response(&link.to_uri())
}

/// The `art://` link of a one-time PIN to `host`, `None` until the doors
/// are bound.
fn otp_link(state: &ConsoleState, host: &LinkHost, pin: &str, passphrase: &str) -> Option<OtpLink> {
    let reach = state.reach.get()?;
    Some(OtpLink {
        link: super::links::art_link(
            host,
            reach.gamestream_http,
            pin,
            passphrase,
            &state.host_name,
        ),
        address: host.to_string(),
        port: reach.gamestream_http,
    })
}

/// Makes a one-time PIN for a Moonlight-family client (Apollo/Artemis):
/// the client pairs with it and the passphrase, with no PIN typed here.
async fn create_otp(
    auth: Authed,
    req: HttpRequest,
    state: web::Data<ConsoleState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let OtpBody { passphrase, name } = optional_json(&body)?;
    let bad = |e: punktfunk_certs::otp::OtpError| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_passphrase", e.to_string())
    };
    let passphrase = match passphrase
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        Some(p) => Passphrase::parse(p).map_err(bad)?,
        None => Passphrase::generate(&mut OsRng),
    };
    let name = name.as_deref().and_then(DisplayName::sanitize);
    let (otp, entry) = state
        .trust
        .create_otp(passphrase, name, auth.actor, &mut OsRng);
    let now = state.trust.now();
    tracing::info!("console: one-time PIN created");
    recorded(entry).await?;
    let opened = opened_on(&req, &state);
    let link = otp_host(opened.clone(), &link_addresses(&state, opened.as_ref()))
        .and_then(|h| otp_link(&state, &h, otp.pin().as_str(), otp.passphrase().as_str()));
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(OtpReply::new(&otp, now, link)))
}

async fn cancel_otp(
    auth: Authed,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    let entry = state.trust.cancel_otp(auth.actor);
    let cancelled = entry.is_some();
    if let Some(entry) = entry {
        recorded(entry).await?;
    }
    Ok(HttpResponse::Ok().json(OtpCancelled { cancelled }))
}

#[derive(Deserialize)]
struct OtpQrParams {
    /// The host the link names, as the user edited it on the page.
    address: Option<String>,
}

/// The QR code of the active one-time PIN's `art://` link, to the address
/// the console was opened on, or to `?address=` (an IP address or a DNS
/// name the user typed on the page).
async fn otp_qr(
    _: Authed,
    req: HttpRequest,
    state: web::Data<ConsoleState>,
    params: web::Query<OtpQrParams>,
) -> Result<HttpResponse, ApiError> {
    let typed = match params.into_inner().address.filter(|a| !a.trim().is_empty()) {
        Some(raw) => Some(LinkHost::parse(&raw).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_address",
                "the link's address must be an IP address or a host name (letters, digits, \
                 hyphens and dots)",
            )
        })?),
        None => None,
    };
    let active = state
        .trust
        .view()
        .active_otp()
        .map(|o| (o.pin().clone(), o.passphrase().clone()));
    let (pin, passphrase) = active.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "no_otp", "no one-time PIN is active")
    })?;
    let host = match typed {
        Some(h) => Some(h),
        None => {
            let opened = opened_on(&req, &state);
            otp_host(opened.clone(), &link_addresses(&state, opened.as_ref()))
        }
    };
    let link = host
        .and_then(|h| otp_link(&state, &h, pin.as_str(), passphrase.as_str()))
        .ok_or_else(|| ApiError::internal("the doors are not bound yet"))?;
    svg_response(&link.link)
}

fn svg_response(data: &str) -> Result<HttpResponse, ApiError> {
    let svg = super::links::qr_svg(data).map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type("image/svg+xml")
        .insert_header(("Cache-Control", "no-store"))
        .body(svg))
}

#[derive(Deserialize)]
struct PinBody {
    pin: String,
    label: Option<String>,
}

/// Enters the PIN a Moonlight client shows for request `id`, then answers
/// with the real outcome once the pairing ends: `paired` only after the
/// client proved the PIN and the device is stored.
async fn enter_pin(
    auth: Authed,
    state: web::Data<ConsoleState>,
    id: web::Path<PendingId>,
    body: web::Json<PinBody>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let PinBody { pin, label } = body.into_inner();
    let pin: Pin = pin.trim().parse().map_err(gate_error)?;
    let label = self::label(label)?;
    // Subscribe before entering the PIN so the outcome cannot slip past.
    let mut events = state.trust.subscribe();
    let entry = state
        .trust
        .enter_pin(id, pin, label, auth.actor)
        .map_err(gate_error)?;
    recorded(entry).await?;
    let outcome = tokio::time::timeout(
        PIN_OUTCOME_WAIT,
        state.trust.request_outcome(&mut events, id),
    )
    .await
    .ok()
    .flatten();
    let result = match outcome {
        Some(PendingOutcome::Paired) => "paired",
        Some(PendingOutcome::PinRejected) => "pin_rejected",
        // Not a wrong PIN (gamestream `Outcome::MoonlightQtBug`): the page
        // says to press Pair in Moonlight again.
        Some(PendingOutcome::MoonlightQtBug) => "moonlight_qt_bug",
        Some(_) => "abandoned",
        // Still running after the wait: say so rather than guess.
        None => {
            return Ok(HttpResponse::Accepted().json(PinOutcome { result: "waiting" }));
        }
    };
    Ok(HttpResponse::Ok().json(PinOutcome { result }))
}

/// `GET /api/devices`: the paired devices, as `/api/pairing` lists them.
async fn devices(_: Authed, state: web::Data<ConsoleState>) -> HttpResponse {
    let devices = state
        .trust
        .registry()
        .list()
        .iter()
        .map(|d| DeviceReply::from(&**d))
        .collect();
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(DeviceList { devices })
}

/// `GET /api/devices/{fingerprint}`: one paired device.
async fn device(
    _: Authed,
    state: web::Data<ConsoleState>,
    fp: web::Path<Fingerprint>,
) -> Result<HttpResponse, ApiError> {
    let fp = fp.into_inner();
    let device = state
        .trust
        .registry()
        .get(&fp)
        .ok_or_else(|| registry_error(RegistryError::NotFound(fp)))?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(DeviceReply::from(&*device)))
}

async fn rename(
    auth: Authed,
    state: web::Data<ConsoleState>,
    fp: web::Path<Fingerprint>,
    body: web::Json<LabelBody>,
) -> Result<HttpResponse, ApiError> {
    let fp = fp.into_inner();
    let label = label(body.into_inner().label)?;
    let trust = state.trust.clone();
    let device = web::block(move || trust.rename(&fp, label, auth.actor))
        .await
        .map_err(ApiError::internal)?
        .map_err(trust_error)?;
    Ok(HttpResponse::Ok().json(DeviceReply::from(&device)))
}

async fn remove(
    auth: Authed,
    state: web::Data<ConsoleState>,
    fp: web::Path<Fingerprint>,
) -> Result<HttpResponse, ApiError> {
    let fp = fp.into_inner();
    let trust = state.trust.clone();
    let device = web::block(move || trust.revoke(&fp, auth.actor))
        .await
        .map_err(ApiError::internal)?
        .map_err(trust_error)?;
    tracing::info!(fingerprint = %fp.short(), name = %device.name, "device revoked in the console");
    Ok(HttpResponse::Ok().json(DeviceReply::from(&device)))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::{OPENAPI, ROUTES};

    /// The OpenAPI document lists exactly the routes the server registers:
    /// [`ROUTES`] is made from the same list as the scope (`api_routes!`).
    #[test]
    fn the_openapi_document_lists_exactly_the_registered_routes() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("docs/console-api.json");
        assert_eq!(doc["openapi"], "3.1.0");
        const METHODS: [&str; 8] = [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ];
        let documented: BTreeSet<(String, String)> = doc["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .expect("path item")
                    .keys()
                    .filter(|k| METHODS.contains(&k.as_str()))
                    .map(move |method| (method.clone(), path.clone()))
            })
            .collect();
        let registered: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        assert_eq!(
            registered.len(),
            ROUTES.len(),
            "a route is registered twice"
        );
        let undocumented: Vec<_> = registered.difference(&documented).collect();
        let unserved: Vec<_> = documented.difference(&registered).collect();
        assert!(
            undocumented.is_empty(),
            "routes missing from docs/console-api.json: {undocumented:?}"
        );
        assert!(
            unserved.is_empty(),
            "docs/console-api.json lists routes the server lacks: {unserved:?}"
        );
    }

    /// Every operation documents its answers, and every `$ref` resolves.
    #[test]
    fn the_openapi_document_is_self_contained() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        fn refs<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
            match v {
                serde_json::Value::Object(map) => {
                    if let Some(serde_json::Value::String(r)) = map.get("$ref") {
                        out.push(r);
                    }
                    map.values().for_each(|v| refs(v, out));
                }
                serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(!found.is_empty());
        for r in found {
            let pointer = r
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("external $ref {r}"));
            assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
        }
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                assert!(responses.contains_key("200"), "{method} {path}: no 200");
            }
        }
    }
}
