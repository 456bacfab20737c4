//! Pairing: the page's state, arming, the waiting requests (approve,
//! deny, block) and the Moonlight PIN, and the pairing link's QR code.

use super::*;

/// How long `POST /api/pending/{id}/pin` waits for the pairing to finish.
pub(super) const PIN_OUTCOME_WAIT: Duration = Duration::from_secs(90);

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
        pin: a.pin.clone(),
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
    let otp_last = otp_last(&gate);
    // Who runs a native pairing exchange right now (past its `pake`).
    let exchange = gate.exchange().map(|e| ExchangeReply::new(e, now));
    let pending = gate
        .waiting()
        .map(|(id, p)| PendingReply::new(id, p, now))
        .collect();
    let blocks = gate.blocked().map(|b| BlockReply::new(&b, now)).collect();
    drop(gate);
    let devices = device_replies(trust);
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

pub(super) async fn pairing(
    _: Authed,
    req: HttpRequest,
    state: web::Data<ConsoleState>,
) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(pairing_state(&state, opened_on(&req, &state)))
}

/// Arming without the punktfunk app's endpoint would show a PIN nothing
/// listens for.
pub(super) fn no_native() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        ErrorCode::NoNative,
        "the punktfunk app's endpoint is off, so there is nothing to pair it with: start the \
         host with --native (or `native = true` in the settings file); Moonlight pairs \
         without arming",
    )
}

/// `POST /api/pairing/arm`: with `grant`, what the device it pairs may do
/// (the PIN ceremony's picker); with `guest`, a guest invite instead (that
/// grant, and the arming lasts 15 min).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ArmBody {
    grant: Option<GrantBody>,
    guest: Option<GrantBody>,
}

pub(super) async fn arm(
    auth: Authed,
    req: HttpRequest,
    state: web::Data<ConsoleState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    if !native_runs(&state) {
        return Err(no_native());
    }
    let ArmBody { grant, guest } = body_naming_permissions(&body)?;
    let default = state.trust.default_grant();
    let (armed, entry) = match (grant, guest) {
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                "give `grant` (pairing) or `guest` (an invite), not both",
            ))
        }
        (None, Some(guest)) => state
            .trust
            .invite(guest.access(default)?, auth.actor, &mut OsRng),
        (grant, None) => {
            let access = grant.map(|g| g.access(default)).transpose()?;
            state.trust.arm_as(access, auth.actor, &mut OsRng)
        }
    };
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
        pin: armed.pin.clone(),
        pin_used: armed.pin_taken,
    }))
}

pub(super) async fn disarm(
    auth: Authed,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    if let Some(entry) = state.trust.disarm(auth.actor) {
        recorded(entry).await?;
    }
    Ok(HttpResponse::Ok().json(Done {}))
}

/// `POST /api/pending/{id}/approve`: an optional label, and what the
/// device may do (the grant picker; absent: the host's default).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ApproveBody {
    label: Option<String>,
    grant: Option<GrantBody>,
}

pub(super) async fn approve(
    auth: Authed,
    state: web::Data<ConsoleState>,
    id: web::Path<PendingId>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let body: ApproveBody = body_naming_permissions(&body)?;
    let label = label(body.label)?;
    let access = match body.grant {
        Some(grant) => Some(grant.access(state.trust.default_grant())?),
        None => None,
    };
    let trust = state.trust.clone();
    let device = web::block(move || trust.approve_as(id, label, access, auth.actor))
        .await
        .map_err(ApiError::internal)?
        .map_err(trust_error)?;
    tracing::info!(fingerprint = %device.fingerprint.short(), name = %device.name, "device approved in the console");
    Ok(HttpResponse::Ok().json(DeviceReply::from(&device)))
}

pub(super) async fn deny(
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
pub(super) async fn deny_all(
    auth: Authed,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
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
pub(super) struct AddressBody {
    address: String,
}

/// An address the console sent (as the page shows it).
pub(super) fn address(raw: &str) -> Result<IpAddr, ApiError> {
    raw.trim()
        .parse()
        .map_err(|_| gate_error(GateError::BadAddress))
}

/// `POST /api/pending/deny-address {"address"}`: dismisses every waiting
/// request from one address.
pub(super) async fn deny_address(
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
pub(super) async fn block(
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
pub(super) async fn unblock(
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

#[derive(Deserialize)]
pub(super) struct PinBody {
    /// Zeroed once parsed, like the [`Pin`] it becomes.
    pin: zeroize::Zeroizing<String>,
    label: Option<String>,
    /// What the device may do if it pairs (absent: the host's default).
    grant: Option<GrantBody>,
}

/// Enters the PIN a Moonlight client shows for request `id`, then answers
/// with the real outcome once the pairing ends: `paired` only after the
/// client proved the PIN and the device is stored.
pub(super) async fn enter_pin(
    auth: Authed,
    state: web::Data<ConsoleState>,
    id: web::Path<PendingId>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let PinBody { pin, label, grant } = required_body_naming_permissions(&body)?;
    let pin: Pin = pin
        .trim()
        .parse()
        .map_err(|e: punktfunk_certs::secret::BadPin| gate_error(e.into()))?;
    let label = self::label(label)?;
    let access = match grant {
        Some(grant) => Some(grant.access(state.trust.default_grant())?),
        None => None,
    };
    let result = pin_outcome(&state, id, pin, label, access, auth.actor).await?;
    Ok(match result {
        PairingResult::Waiting => HttpResponse::Accepted().json(PinOutcome { result }),
        result => HttpResponse::Ok().json(PinOutcome { result }),
    })
}

/// Enters `pin` for request `id` and waits (at most [`PIN_OUTCOME_WAIT`])
/// for how the pairing ends: the web console's and the native door's.
pub(super) async fn pin_outcome(
    state: &ConsoleState,
    id: PendingId,
    pin: Pin,
    label: Option<Label>,
    access: Option<punktfunk_certs::Access>,
    actor: Actor,
) -> Result<PairingResult, ApiError> {
    // Subscribe before entering the PIN so the outcome cannot slip past.
    let mut events = state.trust.subscribe();
    let entry = state
        .trust
        .enter_pin_for(id, pin, label, access, actor)
        .map_err(gate_error)?;
    recorded(entry).await?;
    let outcome = tokio::time::timeout(
        PIN_OUTCOME_WAIT,
        state.trust.request_outcome(&mut events, id),
    )
    .await
    .ok()
    .flatten();
    // `moonlight_qt_bug` is not a wrong PIN (gamestream
    // `Outcome::MoonlightQtBug`): the page says to press Pair in Moonlight
    // again. Still running after the wait: say so rather than guess.
    Ok(outcome.map_or(PairingResult::Waiting, PairingResult::of_request))
}

/// The addresses links name (empty until the doors are bound): the one
/// the console was opened on first (if it is an IP address), then the LAN
/// addresses.
pub(super) fn link_addresses(state: &ConsoleState, opened: Option<&LinkHost>) -> Vec<IpAddr> {
    state.links.addresses(opened.and_then(LinkHost::ip))
}

/// The native door's pairing link for the arming's `secret`
/// (docs/native-protocol.md § 12): the app pins the host fingerprint from
/// it before connecting, and pairs with the secret, not the typed PIN.
/// `None` without `--native`, or until the doors are bound.
pub(super) fn pairing_link(
    state: &ConsoleState,
    addresses: &[IpAddr],
    secret: &LinkSecret,
) -> Option<PairingLink> {
    state.links.pairing_link(addresses, secret)
}

/// The QR code of the armed PIN's pairing link.
pub(super) async fn pairing_qr(
    _: Authed,
    req: HttpRequest,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    let secret = state.trust.view().arming().map(|a| a.link.clone());
    let secret = secret.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotArmed,
            "pairing is not armed",
        )
    })?;
    let addresses = link_addresses(&state, opened_on(&req, &state).as_ref());
    let link = pairing_link(&state, &addresses, &secret).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NoNative,
            "the punktfunk app's endpoint is off (start the host with --native)",
        )
    })?;
    svg_response(&link.to_uri())
}
