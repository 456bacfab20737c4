//! The console's JSON API routes.

use std::future::{ready, Ready};
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use actix_web::cookie::{Cookie, SameSite};
use actix_web::error::PathError;
use actix_web::http::{Method, StatusCode};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError as _};
use punktfunk_certs::audit::{self, Door, Query};
use punktfunk_certs::gate::RequestEnd;
use punktfunk_certs::otp::Passphrase;
use punktfunk_certs::{
    Access, AccessChange, Actor, AddressKey, AuditError, DisplayName, Entry, Event, Fingerprint,
    GateError, Label, LinkSecret, May, Outcome, PendingId, Permissions, Pin, RegistryError,
    TrustError, TrustEvent, Until,
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
    OtpLastReply, OtpLink, OtpReply, PairingResult, PairingState, PendingReply, PinOutcome,
};
use super::{ApiError, ConsoleState, ErrorCode, CSRF_HEADER, SESSION_COOKIE};

mod devices;
mod host;
mod native;
mod otp;
mod pairing;
mod session;

use devices::*;
use host::*;
pub(crate) use native::NativeConsole;
use otp::*;
use pairing::*;
pub(crate) use session::Authed;
use session::*;

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
    patch "/devices/{fingerprint}/access" => change_access;
}

/// The OpenAPI 3.1 document of this API (`GET /api/openapi.json`).
pub(crate) const OPENAPI: &str = include_str!("../../../docs/console-api.json");

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
        return ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "no such API route",
        )
        .error_response();
    }
    let allow = allowed.join(", ");
    let mut reply = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
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

fn peer_ip(req: &HttpRequest) -> IpAddr {
    req.peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
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
        ErrorCode::NotRecorded,
        "the action took effect, but the audit trail could not record it; the host's log says why",
    )
}

fn gate_error(e: GateError) -> ApiError {
    let (status, code) = match e {
        GateError::UnknownRequest => (StatusCode::NOT_FOUND, ErrorCode::UnknownRequest),
        GateError::NotArmed => (StatusCode::CONFLICT, ErrorCode::NotArmed),
        GateError::TooManyPending | GateError::TooManyFromAddress(_) => {
            (StatusCode::CONFLICT, ErrorCode::TooManyPending)
        }
        GateError::WaitingElsewhere => (StatusCode::CONFLICT, ErrorCode::WaitingElsewhere),
        GateError::WrongNeed(_) => (StatusCode::CONFLICT, ErrorCode::WrongNeed),
        GateError::PinAlreadyEntered => (StatusCode::CONFLICT, ErrorCode::PinAlreadyEntered),
        GateError::BadPin => (StatusCode::BAD_REQUEST, ErrorCode::BadPin),
        GateError::Storing => (StatusCode::CONFLICT, ErrorCode::Storing),
        GateError::Blocked(_) => (StatusCode::CONFLICT, ErrorCode::Blocked),
        GateError::TooManyBlocks => (StatusCode::CONFLICT, ErrorCode::TooManyBlocks),
        GateError::BadAddress => (StatusCode::BAD_REQUEST, ErrorCode::BadAddress),
    };
    ApiError::new(status, code, e.to_string())
}

fn registry_error(e: RegistryError) -> ApiError {
    match e {
        RegistryError::NotFound(_) => ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::UnknownDevice,
            e.to_string(),
        ),
        RegistryError::Certificate(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::Invalid, e.to_string())
        }
        RegistryError::PairedAtOtherDoor { .. } => ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::PairedAtOtherDoor,
            e.to_string(),
        ),
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
        ErrorCode::UnknownDevice
    } else if req.match_info().get("id").is_some() {
        // What `GateError::UnknownRequest` answers (`gate_error`).
        ErrorCode::UnknownRequest
    } else {
        ErrorCode::NotFound
    };
    ApiError::new(StatusCode::NOT_FOUND, code, message).into()
}

/// An optional JSON body: empty means "no fields".
fn optional_json<T: for<'de> Deserialize<'de> + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            e.to_string(),
        )
    })
}

#[derive(Deserialize, Default)]
struct LabelBody {
    label: Option<String>,
}

/// What a device the console admits may do: the grant picker (approve, a
/// Moonlight PIN) and a guest invite (arm, a one-time PIN). A preset or a
/// set of permissions (neither: the host's default), and how long after
/// pairing its access lasts (absent: no end).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    may: Option<May>,
    #[serde(default, deserialize_with = "whole_number")]
    for_s: Option<u64>,
    /// `true`: its access ends when its first session does; not with
    /// `for_s`.
    first_session: Option<bool>,
}

/// A whole number of seconds, `null` included; JSON (and its schema) calls
/// `1.0` an integer too, so a whole number written with a fraction is taken.
fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let whole = n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 9_007_199_254_740_992.0)
            .map(|f| f as u64)
    });
    whole
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom(format!("{n} is not a whole number of seconds")))
}

/// Longest a grant's `for_s` may be: a guest's access is counted in hours
/// or days (Parsec's invites last at most 5 days); a year is a mistake.
const MAX_GRANT_SECONDS: u64 = 366 * 86_400;

impl GrantBody {
    fn access(self, default: Permissions) -> Result<Access, ApiError> {
        let bad =
            |message: &str| ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message);
        let permissions = self.may.map_or(default, |May(p)| p);
        let until = match self.for_s {
            Some(_) if self.first_session.is_some() => {
                return Err(bad("give `for_s` or `first_session`, not both"))
            }
            None if self.first_session == Some(true) => Until::FirstSession,
            None => Until::Never,
            Some(0) => return Err(bad("`for_s` is at least 1 second")),
            Some(s) if s > MAX_GRANT_SECONDS => {
                return Err(bad("`for_s` is at most 366 days (31622400 seconds)"))
            }
            Some(s) => Until::For(s),
        };
        Ok(Access {
            permissions,
            until,
            invite: false,
        })
    }
}

/// An optional JSON body that may name a permission nobody defined: that
/// is `invalid`, with the names there are; anything else wrong,
/// `bad_request`.
fn body_naming_permissions<T: for<'de> Deserialize<'de> + Default>(
    body: &[u8],
) -> Result<T, ApiError> {
    optional_json(body).map_err(permission_named)
}

/// [`body_naming_permissions`] for a body that must be there.
fn required_body_naming_permissions<T: for<'de> Deserialize<'de>>(
    body: &[u8],
) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                e.to_string(),
            )
        })
        .map_err(permission_named)
}

fn permission_named(e: ApiError) -> ApiError {
    if e.message().contains("is not a permission") {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::Invalid, e.message())
    } else {
        e
    }
}

/// A label from the console, cleaned by the one name rule; `None` clears.
fn label(raw: Option<String>) -> Result<Option<Label>, ApiError> {
    match raw {
        None => Ok(None),
        Some(raw) => Label::parse(&raw)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::Invalid, e.to_string())),
    }
}

fn svg_response(data: &str) -> Result<HttpResponse, ApiError> {
    let svg = super::links::qr_svg(data).map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type("image/svg+xml")
        .insert_header(("Cache-Control", "no-store"))
        .body(svg))
}

#[cfg(test)]
mod tests;
