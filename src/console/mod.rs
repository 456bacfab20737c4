//! The web console: an authenticated JSON API (the contract the page and the
//! tests use) on HTTPS with the host certificate, plus the page itself.
//!
//! Handlers stay thin: authenticate, call the trust service, render JSON.
//! Everything that writes the registry runs on a blocking thread (fsync).

pub(crate) mod api;
pub(crate) mod auth;
mod error;
pub(crate) mod known;
pub(crate) mod links;
mod page;
mod replies;

pub(crate) use error::{ApiError, ErrorCode};

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::web;
use punktfunk_certs::Trust;

use auth::{LoginLimiter, PasswordFile, Sessions};

/// Name of the session cookie.
pub(crate) const SESSION_COOKIE: &str = "pf_session";
/// Header carrying the CSRF token on every state change.
pub(crate) const CSRF_HEADER: &str = "X-CSRF-Token";

/// What the console handlers share.
pub(crate) struct ConsoleState {
    pub(crate) trust: Arc<Trust>,
    /// The host's name, fingerprint and doors, for the links it hands out.
    pub(crate) links: Arc<links::Links>,
    pub(crate) password: PasswordFile,
    pub(crate) sessions: Sessions,
    pub(crate) limiter: LoginLimiter,
    /// Signs and checks the known-browser cookies (`known`).
    pub(crate) known: known::KnownBrowsers,
    /// Open mode is on (`--open`): the page warns while it is.
    pub(crate) open: bool,
}

/// How long a request body may take to arrive, from the moment its head
/// was read.
pub(crate) const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(15);

/// Middleware: the request body must arrive within [`BODY_DEADLINE`]. actix
/// times only the request head, so a body sent a byte at a time would hold
/// a handler for ever. Only the body is timed, not the handler: `POST
/// /api/pending/{id}/pin` legitimately waits for Moonlight much longer.
pub(crate) fn body_deadline<S>(mut req: actix_web::dev::ServiceRequest, srv: &S) -> S::Future
where
    S: actix_web::dev::Service<actix_web::dev::ServiceRequest>,
{
    use actix_web::error::PayloadError;
    use actix_web::HttpMessage as _;
    use futures_util::StreamExt as _;

    let deadline = tokio::time::Instant::now() + BODY_DEADLINE;
    let body = req.take_payload();
    let timed = futures_util::stream::unfold(Some(body), move |body| async move {
        let mut body = body?;
        match tokio::time::timeout_at(deadline, body.next()).await {
            Ok(Some(chunk)) => Some((chunk, Some(body))),
            Ok(None) => None,
            // One error, then the stream ends.
            Err(_) => Some((
                Err(PayloadError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the request body took too long to arrive",
                ))),
                None,
            )),
        }
    });
    req.set_payload(actix_web::dev::Payload::Stream {
        payload: Box::pin(timed),
    });
    srv.call(req)
}

/// The largest request body the console reads, on every route (JSON or
/// not): nothing the console takes is anywhere near it.
pub(crate) const BODY_LIMIT: usize = 4096;

/// Middleware on `/api`: the body limit, in this one place for every route.
/// A body announced larger than [`BODY_LIMIT`] is refused unread; any other
/// is read here (at most [`BODY_LIMIT`] bytes, within [`BODY_DEADLINE`]) and
/// handed on whole, so a chunked body that runs over gets the same answer:
/// 400 `bad_request`, like a JSON body over its limit always did.
pub(crate) async fn body_limit(
    mut req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    use actix_web::HttpMessage as _;
    use futures_util::StreamExt as _;

    let too_large = |size: String| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            format!("the request body ({size}) is larger than allowed (limit: {BODY_LIMIT} bytes)"),
        )
    };
    let announced = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(len) = announced.filter(|len| *len > BODY_LIMIT as u64) {
        return Err(too_large(format!("{len} bytes")).into());
    }
    let mut payload = req.take_payload();
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                format!("cannot read the request body: {e}"),
            )
        })?;
        if body.len() + chunk.len() > BODY_LIMIT {
            return Err(too_large(format!("over {BODY_LIMIT} bytes")).into());
        }
        body.extend_from_slice(&chunk);
    }
    // Every body the API takes is a JSON object; serde would read a struct
    // from an array as well (`[null, null]` as `{}`), so refuse those here.
    if serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|v| !v.is_object()) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "the request body must be a JSON object",
        )
        .into());
    }
    req.set_payload(actix_web::dev::Payload::from(body.freeze()));
    next.call(req).await
}

/// Mounts the console on an actix `App`.
pub(crate) fn configure(state: web::Data<ConsoleState>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(state)
            .app_data(
                // [`body_limit`] has already refused anything larger.
                web::JsonConfig::default()
                    .limit(BODY_LIMIT)
                    .error_handler(|err, _| {
                        ApiError::new(
                            StatusCode::BAD_REQUEST,
                            ErrorCode::BadRequest,
                            err.to_string(),
                        )
                        .into()
                    }),
            )
            .app_data(web::PathConfig::default().error_handler(api::path_error))
            // A query that does not parse answers like every other refusal.
            .app_data(web::QueryConfig::default().error_handler(|err, _| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::BadRequest,
                    err.to_string(),
                )
                .into()
            }))
            .configure(api::routes)
            .configure(page::routes);
    }
}
