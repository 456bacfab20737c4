//! Who may call the API: the session cookie and CSRF check every handler
//! takes ([`Authed`]), logging in and out.

use super::*;

/// Proof that the request carries a live session, and for anything but GET
/// a matching CSRF token from the same origin.
pub(crate) struct Authed {
    pub(super) token: String,
    pub(super) csrf: String,
    /// The console user, as the audit trail names them.
    pub(super) actor: Actor,
}

impl FromRequest for Authed {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(authenticate(req))
    }
}

pub(super) fn authenticate(req: &HttpRequest) -> Result<Authed, ApiError> {
    let state = req
        .app_data::<web::Data<ConsoleState>>()
        .ok_or_else(|| ApiError::internal("console state missing"))?;
    let unauthorised = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
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
                ErrorCode::Csrf,
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
pub(super) fn check_same_origin(req: &HttpRequest) -> Result<(), ApiError> {
    let cross = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::CrossOrigin,
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

pub(super) fn session_cookie(value: String, max_age: Duration) -> Cookie<'static> {
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
pub(super) fn refused_login(refusal: Refusal, key: AddressKey) -> HttpResponse {
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
            ErrorCode::RateLimited,
            &format!("{message}; try again in {secs} s"),
        ))
}

#[derive(Deserialize)]
pub(super) struct LoginBody {
    password: String,
}

/// The known-browser cookie for a browser that just logged in (`known`).
pub(super) fn known_cookie(value: String) -> Cookie<'static> {
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

pub(super) async fn login(
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
    let login = |outcome| login_entry(ip, known.is_some(), outcome);
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
            ErrorCode::WrongPassword,
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
    note_first_login(&state).await;
    let recorded = recorded(state.trust.record(login(Outcome::Ok))).await;
    logged_in(&state, recorded, token, &csrf)
}

/// The `login` entry of an attempt from `ip` (from a known browser or not).
fn login_entry(ip: IpAddr, known: bool, outcome: Outcome) -> Entry {
    let entry = Entry::new(Event::Login, Door::Console)
        .address(ip)
        .outcome(outcome);
    if known {
        entry.detail("known browser")
    } else {
        entry
    }
}

/// The start-up lines stop repeating how to get in (src/first_start.rs).
async fn note_first_login(state: &ConsoleState) {
    let dir = state.password.dir().to_path_buf();
    if !crate::first_start::logged_in(&dir) {
        match web::block(move || crate::first_start::note_login(&dir)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("cannot record the first console login: {e}"),
            Err(e) => tracing::warn!("cannot record the first console login: {e}"),
        }
    }
}

/// The answer to a right password: the CSRF token (or `not_recorded`, if
/// the trail could not take the login), the session cookie and the known
/// browser's cookie.
fn logged_in(
    state: &ConsoleState,
    recorded: Result<(), ApiError>,
    token: String,
    csrf: &str,
) -> Result<HttpResponse, ApiError> {
    let mut reply = match recorded {
        Ok(()) => HttpResponse::Ok().json(Csrf { csrf }),
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

pub(super) async fn logout(
    auth: Authed,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    state.sessions.remove(&auth.token);
    recorded(state.trust.record(auth.actor.entry(Event::Logout))).await?;
    Ok(HttpResponse::Ok()
        .cookie(session_cookie(String::new(), Duration::ZERO))
        .json(Done {}))
}

pub(super) async fn session(auth: Authed) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(Csrf { csrf: &auth.csrf })
}
