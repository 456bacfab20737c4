//! What the host is and what it recorded: its summary, the live event
//! stream and the audit trail's pages.

use super::*;

#[derive(Deserialize)]
pub(super) struct AuditParams {
    limit: Option<usize>,
    before: Option<u64>,
    device: Option<String>,
}

/// Most entries one `GET /api/audit` returns.
pub(super) const AUDIT_PAGE_MAX: usize = 500;

/// `GET /api/audit?limit=N&before=CURSOR&device=FP`: the audit trail,
/// newest first, `{"events": [...], "next": CURSOR|null}`.
pub(super) async fn audit_page(
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
                    ErrorCode::BadRequest,
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
pub(super) fn host_summary(state: &ConsoleState) -> HostSummary<'_> {
    HostSummary::new(
        state.links.host_fingerprint,
        &state.links.host_name,
        native_runs(state),
        state.open,
    )
}

/// Whether the punktfunk app's endpoint runs (`--native`): only then does
/// an armed PIN or a pairing link reach anything.
pub(super) fn native_runs(state: &ConsoleState) -> bool {
    state.links.native_runs()
}

/// The address the browser opened the console on (its `Host` header), if
/// it is one a device elsewhere can use (`LinkHost::from_host_header`).
/// Read from the header itself, never from `Forwarded`/`X-Forwarded-Host`.
pub(super) fn opened_on(req: &HttpRequest, state: &ConsoleState) -> Option<LinkHost> {
    let raw = req
        .headers()
        .get(actix_web::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))?;
    LinkHost::from_host_header(raw, &state.links.host_name)
}

/// The host's name and fingerprint, before login: the login page shows the
/// fingerprint so the user can check the self-signed certificate.
pub(super) async fn host(state: web::Data<ConsoleState>) -> HttpResponse {
    // Read from the interfaces at each request: addresses change.
    let urls = state
        .links
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
pub(super) async fn events(auth: Authed, state: web::Data<ConsoleState>) -> HttpResponse {
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
