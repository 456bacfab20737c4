//! One-time PINs for Moonlight-family clients: create, cancel, and their
//! `art://` link as a QR code.

use super::*;

#[derive(Deserialize, Default)]
pub(super) struct OtpBody {
    passphrase: Option<String>,
    name: Option<String>,
    /// A guest invite for Moonlight: what the device pairing with this
    /// one-time PIN may do, and for how long.
    guest: Option<GrantBody>,
}

/// The host a one-time PIN's link names: where the console was opened,
/// else the first LAN address.
pub(super) fn otp_host(opened: Option<LinkHost>, addresses: &[IpAddr]) -> Option<LinkHost> {
    opened.or_else(|| addresses.first().copied().map(LinkHost::Ip))
}

/// The `art://` link of a one-time PIN to `host`, `None` until the doors
/// are bound.
pub(super) fn otp_link(
    state: &ConsoleState,
    host: &LinkHost,
    pin: &str,
    passphrase: &str,
) -> Option<OtpLink> {
    let (link, port) = state.links.art_link(host, pin, passphrase)?;
    Some(OtpLink {
        link,
        address: host.to_string(),
        port,
    })
}

/// Makes a one-time PIN for a Moonlight-family client (Apollo/Artemis):
/// the client pairs with it and the passphrase, with no PIN typed here.
pub(super) async fn create_otp(
    auth: Authed,
    req: HttpRequest,
    state: web::Data<ConsoleState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let OtpBody {
        passphrase,
        name,
        guest,
    } = body_naming_permissions(&body)?;
    let access = match guest {
        Some(grant) => Some(grant.access(state.trust.default_grant())?),
        None => None,
    };
    let bad = |e: punktfunk_certs::otp::OtpError| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadPassphrase,
            e.to_string(),
        )
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
        .create_otp_for(passphrase, name, access, auth.actor, &mut OsRng);
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

pub(super) async fn cancel_otp(
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
pub(super) struct OtpQrParams {
    /// The host the link names, as the user edited it on the page.
    address: Option<String>,
}

/// The QR code of the active one-time PIN's `art://` link, to the address
/// the console was opened on, or to `?address=` (an IP address or a DNS
/// name the user typed on the page).
pub(super) async fn otp_qr(
    _: Authed,
    req: HttpRequest,
    state: web::Data<ConsoleState>,
    params: web::Query<OtpQrParams>,
) -> Result<HttpResponse, ApiError> {
    let typed = match params.into_inner().address.filter(|a| !a.trim().is_empty()) {
        Some(raw) => Some(LinkHost::parse(&raw).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadAddress,
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
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NoOtp,
            "no one-time PIN is active",
        )
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

/// How the last one-time PIN went: a wrong passphrase, or the pairing it
/// started (waiting, paired, failed).
pub(super) fn otp_last(gate: &punktfunk_certs::Gate) -> Option<OtpLastReply> {
    gate.last_otp().map(|l| {
        let result = match (l.matched, l.request) {
            (false, _) => PairingResult::WrongPassphrase,
            (true, None) => PairingResult::InProgress,
            (true, Some(id)) => match gate.outcome(id) {
                Some(RequestEnd::Paired) => PairingResult::Paired,
                Some(_) => PairingResult::Failed,
                None => PairingResult::InProgress,
            },
        };
        OtpLastReply {
            address: l.address.to_string(),
            result,
        }
    })
}
