//! The console's JSON API routes.

use std::future::{ready, Ready};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use punktfunk_certs::gate::{Attempt, PendingOutcome};
use punktfunk_certs::otp::Passphrase;
use punktfunk_certs::{
    AddressKey, Claimant, Device, DisplayName, Fingerprint, GateError, Label, PendingId, Pin,
    RegistryError, TrustError, TrustEvent,
};
use punktfunk_native::PairingLink;
use rand::rngs::OsRng;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{Refusal, SESSION_LIFETIME};
use super::{ApiError, ConsoleState, CSRF_HEADER, SESSION_COOKIE};

/// How long `POST /api/pending/{id}/pin` waits for the pairing to finish.
const PIN_OUTCOME_WAIT: Duration = Duration::from_secs(90);

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api")
            .route("/login", web::post().to(login))
            .route("/logout", web::post().to(logout))
            .route("/host", web::get().to(host))
            .route("/events", web::get().to(events))
            .route("/session", web::get().to(session))
            .route("/pairing", web::get().to(pairing))
            .route("/pairing/arm", web::post().to(arm))
            .route("/pairing/disarm", web::post().to(disarm))
            .route("/pending/deny-all", web::post().to(deny_all))
            .route("/otp", web::post().to(create_otp))
            .route("/otp", web::delete().to(cancel_otp))
            .route("/otp/qr.svg", web::get().to(otp_qr))
            .route("/pairing/qr.svg", web::get().to(pairing_qr))
            .route("/pending/{id}/approve", web::post().to(approve))
            .route("/pending/{id}/deny", web::post().to(deny))
            .route("/pending/{id}/pin", web::post().to(enter_pin))
            .route("/devices/{fingerprint}", web::patch().to(rename))
            .route("/devices/{fingerprint}", web::delete().to(remove))
            .default_service(web::to(|| async {
                Err::<HttpResponse, _>(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no such API route",
                ))
            })),
    );
}

/// Proof that the request carries a live session, and for anything but GET
/// a matching CSRF token from the same origin.
pub(crate) struct Authed {
    token: String,
    csrf: String,
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
        .json(json!({"error": {"code": "rate_limited", "message": format!(
            "{message}; try again in {secs} s")}}))
}

#[derive(Deserialize)]
struct LoginBody {
    password: String,
}

async fn login(
    req: HttpRequest,
    state: web::Data<ConsoleState>,
    body: web::Json<LoginBody>,
) -> Result<HttpResponse, ApiError> {
    let ip = peer_ip(&req);
    let key = AddressKey::of(ip);
    // Paid for before the (expensive) check runs: see `auth`.
    let mut permit = match state.limiter.admit(key, Instant::now()) {
        Ok(p) => p,
        Err(refusal) => return Ok(refused_login(refusal, key)),
    };
    let password = body.into_inner().password;
    let file = state.password.clone();
    let ok = web::block(move || file.verify(&password, permit.memory()))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    if !ok {
        tracing::warn!(%ip, checks = state.limiter.checks(), "console: wrong password");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong_password",
            "wrong password",
        ));
    }
    state.limiter.succeeded(key);
    let (token, csrf) = state.sessions.create(Instant::now());
    tracing::info!(%ip, "console: logged in");
    Ok(HttpResponse::Ok()
        .cookie(session_cookie(token, SESSION_LIFETIME))
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({ "csrf": csrf })))
}

async fn logout(auth: Authed, state: web::Data<ConsoleState>) -> HttpResponse {
    state.sessions.remove(&auth.token);
    HttpResponse::Ok()
        .cookie(session_cookie(String::new(), Duration::ZERO))
        .json(json!({}))
}

/// The host's name and fingerprint, before login: the login page shows the
/// fingerprint so the user can check the self-signed certificate.
async fn host(state: web::Data<ConsoleState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "name": state.host_name,
        "fingerprint": state.host_fingerprint,
        "fingerprint_grouped": state.host_fingerprint.grouped(),
    }))
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
        .json(json!({ "csrf": auth.csrf }))
}

fn expires_in(deadline: Instant, now: Instant) -> u64 {
    let left = deadline.saturating_duration_since(now);
    // Round up: "0 s left" while it is still valid would be wrong.
    left.as_secs() + u64::from(left.subsec_nanos() > 0)
}

fn claimant_json(c: &Claimant) -> Value {
    json!({
        "address": c.address.to_string(),
        "name": c.name,
        "fingerprint": c.fingerprint,
    })
}

fn device_json(d: &Device) -> Value {
    json!({
        "fingerprint": d.fingerprint,
        "kind": d.kind,
        "name": d.name,
        "label": d.label,
        "paired_at": d.paired_at,
        "last_seen": d.last_seen,
        "via": d.via,
    })
}

/// The whole Pairing page state.
pub(crate) fn pairing_state(state: &ConsoleState) -> Value {
    let trust = &state.trust;
    let now = trust.now();
    // Read before the gate is locked: it asks the kernel for the interfaces.
    let addresses = lan_addresses(state);
    let mut gate = trust.gate();
    let armed = gate.armed(now).map(|a| {
        json!({
            "pin": a.pin.as_str(),
            "expires_in_s": expires_in(a.expires, now),
            "link": pairing_link(state, &addresses, &a.pin).map(|l| l.to_uri()),
        })
    });
    let last_attempt = gate.last_attempt().map(|a| {
        let mut v = match &a.result {
            Attempt::InProgress => json!({"result": "in_progress"}),
            Attempt::Paired { fingerprint } => {
                json!({"result": "paired", "fingerprint": fingerprint})
            }
            Attempt::Failed => json!({"result": "pin_rejected"}),
        };
        v["by"] = claimant_json(&a.by);
        v
    });
    let otp = gate.otp(now).map(|o| {
        json!({
            "pin": o.pin().as_str(),
            "passphrase": o.passphrase().as_str(),
            "name": o.name(),
            "expires_in_s": expires_in(o.expires(), now),
            "link": otp_link(state, &addresses, o.pin().as_str(), o.passphrase().as_str()),
        })
    });
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
        json!({"result": result, "address": l.address.to_string()})
    });
    // Who holds the one native pairing slot right now.
    let exchange = gate.exchange().map(|e| {
        let mut v = claimant_json(&e.by);
        v["since_s"] = now.saturating_duration_since(e.since).as_secs().into();
        v
    });
    let pending: Vec<Value> = gate
        .pending(now)
        .map(|(id, p)| {
            json!({
                "id": id.to_string(),
                "kind": p.request.kind,
                "name": p.request.name,
                "fingerprint": p.fingerprint,
                "address": p.request.address.ip().to_string(),
                "needs": p.request.needs.as_str(),
                "expires_in_s": expires_in(p.expires, now),
                "age_s": now.saturating_duration_since(p.created).as_secs(),
                "pin_entered": !matches!(p.pin, punktfunk_certs::gate::PinState::Waiting),
            })
        })
        .collect();
    drop(gate);
    let devices: Vec<Value> = trust
        .registry()
        .list()
        .iter()
        .map(|d| device_json(d))
        .collect();
    json!({
        "host": {
            "name": state.host_name,
            "fingerprint": state.host_fingerprint,
            "fingerprint_grouped": state.host_fingerprint.grouped(),
        },
        "armed": armed,
        "last_attempt": last_attempt,
        "exchange": exchange,
        "otp": otp,
        "otp_last": otp_last,
        "pending": pending,
        "devices": devices,
    })
}

async fn pairing(_: Authed, state: web::Data<ConsoleState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(pairing_state(&state))
}

async fn arm(_: Authed, state: web::Data<ConsoleState>) -> HttpResponse {
    let now = state.trust.now();
    let armed = state.trust.gate().arm(now, &mut OsRng);
    tracing::info!("pairing armed from the console");
    HttpResponse::Ok().json(json!({
        "pin": armed.pin.as_str(),
        "expires_in_s": expires_in(armed.expires, now),
        "link": pairing_link(&state, &lan_addresses(&state), &armed.pin).map(|l| l.to_uri()),
    }))
}

async fn disarm(_: Authed, state: web::Data<ConsoleState>) -> HttpResponse {
    state.trust.gate().disarm();
    HttpResponse::Ok().json(json!({}))
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
    };
    ApiError::new(status, code, e.to_string())
}

fn registry_error(e: RegistryError) -> ApiError {
    match e {
        RegistryError::NotFound(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "unknown_device", e.to_string())
        }
        RegistryError::Invalid(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid", e.to_string())
        }
        other => ApiError::internal(other),
    }
}

fn trust_error(e: TrustError) -> ApiError {
    match e {
        TrustError::Gate(g) => gate_error(g),
        TrustError::Registry(r) => registry_error(r),
    }
}

fn pending_id(raw: &str) -> Result<PendingId, ApiError> {
    raw.parse().map_err(gate_error)
}

fn fingerprint(raw: &str) -> Result<Fingerprint, ApiError> {
    raw.parse()
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, "unknown_device", format!("{e}")))
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
    _: Authed,
    state: web::Data<ConsoleState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = pending_id(&path)?;
    let label = label(optional_json::<LabelBody>(&body)?.label)?;
    let trust = state.trust.clone();
    let device = web::block(move || trust.approve(id, label))
        .await
        .map_err(ApiError::internal)?
        .map_err(trust_error)?;
    tracing::info!(fingerprint = %device.fingerprint.short(), name = %device.name, "device approved in the console");
    Ok(HttpResponse::Ok().json(device_json(&device)))
}

async fn deny(
    _: Authed,
    state: web::Data<ConsoleState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = pending_id(&path)?;
    let now = state.trust.now();
    state.trust.gate().deny(id, now).map_err(gate_error)?;
    Ok(HttpResponse::Ok().json(json!({})))
}

/// Dismisses every waiting request at once (a flood of knocks or
/// Moonlight requests).
async fn deny_all(_: Authed, state: web::Data<ConsoleState>) -> HttpResponse {
    let now = state.trust.now();
    let denied = state.trust.gate().deny_all(now);
    tracing::info!(denied, "console: every waiting request denied");
    HttpResponse::Ok().json(json!({ "denied": denied }))
}

#[derive(Deserialize, Default)]
struct OtpBody {
    passphrase: Option<String>,
    name: Option<String>,
}

/// The addresses links name (empty until the doors are bound).
fn lan_addresses(state: &ConsoleState) -> Vec<IpAddr> {
    state.reach.get().map(|r| r.addresses()).unwrap_or_default()
}

/// The native door's pairing link for the armed `pin` (docs/native-protocol.md
/// § 12): the app pins the host fingerprint from it before connecting.
/// `None` without `--native`, or until the doors are bound.
fn pairing_link(state: &ConsoleState, addresses: &[IpAddr], pin: &Pin) -> Option<PairingLink> {
    let reach = state.reach.get()?;
    Some(PairingLink {
        addresses: addresses.to_vec(),
        port: reach.native?,
        host_fingerprint: state.host_fingerprint,
        pin: pin.clone(),
        host_name: DisplayName::sanitize_or(&state.host_name, "punktfunk host"),
    })
}

/// The QR code of the armed PIN's pairing link.
async fn pairing_qr(_: Authed, state: web::Data<ConsoleState>) -> Result<HttpResponse, ApiError> {
    let now = state.trust.now();
    let pin = state.trust.gate().armed(now).map(|a| a.pin.clone());
    let pin = pin
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_armed", "pairing is not armed"))?;
    let link = pairing_link(&state, &lan_addresses(&state), &pin).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_native_door",
            "the native door is off (start the host with --native)",
        )
    })?;
    svg_response(&link.to_uri())
}

/// The `art://` link of a one-time PIN, `None` until the doors are bound.
fn otp_link(
    state: &ConsoleState,
    addresses: &[IpAddr],
    pin: &str,
    passphrase: &str,
) -> Option<String> {
    let reach = state.reach.get()?;
    let ip = *addresses.first()?;
    Some(super::links::art_link(
        ip,
        reach.gamestream_http,
        pin,
        passphrase,
        &state.host_name,
    ))
}

/// Makes a one-time PIN for a Moonlight-family client (Apollo/Artemis):
/// the client pairs with it and the passphrase, with no PIN typed here.
async fn create_otp(
    _: Authed,
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
    let now = state.trust.now();
    let otp = state
        .trust
        .gate()
        .create_otp(passphrase, name, now, &mut OsRng);
    tracing::info!("console: one-time PIN created");
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({
            "pin": otp.pin().as_str(),
            "passphrase": otp.passphrase().as_str(),
            "name": otp.name(),
            "expires_in_s": expires_in(otp.expires(), now),
            "link": otp_link(&state, &lan_addresses(&state), otp.pin().as_str(), otp.passphrase().as_str()),
        })))
}

async fn cancel_otp(_: Authed, state: web::Data<ConsoleState>) -> HttpResponse {
    let cancelled = state.trust.gate().cancel_otp();
    HttpResponse::Ok().json(json!({ "cancelled": cancelled }))
}

/// The QR code of the active one-time PIN's `art://` link.
async fn otp_qr(_: Authed, state: web::Data<ConsoleState>) -> Result<HttpResponse, ApiError> {
    let now = state.trust.now();
    let active = state
        .trust
        .gate()
        .otp(now)
        .map(|o| (o.pin().clone(), o.passphrase().clone()));
    let (pin, passphrase) = active.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "no_otp", "no one-time PIN is active")
    })?;
    let link = otp_link(
        &state,
        &lan_addresses(&state),
        pin.as_str(),
        passphrase.as_str(),
    )
    .ok_or_else(|| ApiError::internal("the doors are not bound yet"))?;
    svg_response(&link)
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
    _: Authed,
    state: web::Data<ConsoleState>,
    path: web::Path<String>,
    body: web::Json<PinBody>,
) -> Result<HttpResponse, ApiError> {
    let id = pending_id(&path)?;
    let PinBody { pin, label } = body.into_inner();
    let pin: Pin = pin.trim().parse().map_err(gate_error)?;
    let label = self::label(label)?;
    // Subscribe before entering the PIN so the outcome cannot slip past.
    let mut events = state.trust.subscribe();
    let now = state.trust.now();
    state
        .trust
        .gate()
        .enter_pin(id, pin, label, now)
        .map_err(gate_error)?;
    let outcome = tokio::time::timeout(PIN_OUTCOME_WAIT, async {
        loop {
            match events.recv().await {
                Ok(TrustEvent::PendingRemoved { id: done, outcome }) if done == id => {
                    return Some(outcome)
                }
                Ok(_) => {}
                // Fell behind: the gate remembers recent outcomes.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    if let Some(o) = state.trust.gate().outcome(id) {
                        return Some(o);
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .await
    .ok()
    .flatten();
    let result = match outcome {
        Some(PendingOutcome::Paired) => "paired",
        Some(PendingOutcome::PinRejected) => "pin_rejected",
        Some(_) => "abandoned",
        // Still running after the wait: say so rather than guess.
        None => {
            return Ok(HttpResponse::Accepted().json(json!({"result": "waiting"})));
        }
    };
    Ok(HttpResponse::Ok().json(json!({ "result": result })))
}

async fn rename(
    _: Authed,
    state: web::Data<ConsoleState>,
    path: web::Path<String>,
    body: web::Json<LabelBody>,
) -> Result<HttpResponse, ApiError> {
    let fp = fingerprint(&path)?;
    let label = label(body.into_inner().label)?;
    let trust = state.trust.clone();
    web::block(move || trust.registry().set_label(&fp, label))
        .await
        .map_err(ApiError::internal)?
        .map_err(registry_error)?;
    let device = state
        .trust
        .registry()
        .get(&fp)
        .ok_or_else(|| registry_error(RegistryError::NotFound(fp)))?;
    Ok(HttpResponse::Ok().json(device_json(&device)))
}

async fn remove(
    _: Authed,
    state: web::Data<ConsoleState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let fp = fingerprint(&path)?;
    let trust = state.trust.clone();
    let device = web::block(move || trust.revoke(&fp))
        .await
        .map_err(ApiError::internal)?
        .map_err(registry_error)?;
    tracing::info!(fingerprint = %fp.short(), name = %device.name, "device revoked in the console");
    Ok(HttpResponse::Ok().json(device_json(&device)))
}
