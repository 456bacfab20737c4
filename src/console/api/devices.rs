//! The paired devices: list, one, rename, change what one may do, remove.

use super::*;

/// `GET /api/devices`: the paired devices, as `/api/pairing` lists them.
pub(super) async fn devices(_: Authed, state: web::Data<ConsoleState>) -> HttpResponse {
    let devices = device_replies(&state.trust);
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(DeviceList { devices })
}

/// Every paired device as the API shows it: the device list, the Pairing
/// page's, and the native door's `devices`.
pub(super) fn device_replies(trust: &punktfunk_certs::Trust) -> Vec<DeviceReply> {
    trust
        .registry()
        .list()
        .iter()
        .map(|d| DeviceReply::from(&**d))
        .collect()
}

/// `GET /api/devices/{fingerprint}`: one paired device.
pub(super) async fn device(
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

pub(super) async fn rename(
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

pub(super) async fn remove(
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

/// `PATCH /api/devices/{fingerprint}/access`: what the device may do. Each
/// field given is one change, applied and recorded in this order: its
/// permissions (`may`), `enabled`, `expires_at`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AccessBody {
    may: Option<May>,
    enabled: Option<bool>,
    /// Absent: unchanged; `null`: no end (also renews an expired device);
    /// `"first_session"`: when its first session ends.
    #[serde(default, deserialize_with = "present")]
    expires_at: Option<End>,
}

/// When a device's access ends, as `PATCH …/access` sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// At this time, or never (`None`).
    At(Option<u64>),
    /// When its first session ends.
    FirstSession,
}

/// The end of year 9999: the latest `expires_at` taken.
const LATEST: u64 = 253_402_300_799;

/// A field that is present: `"first_session"`, or a time (`null`
/// included; a whole number, see [`whole_number`]) no later than
/// [`LATEST`].
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<End>, D::Error> {
    use serde::de::Error;
    let value = serde_json::Value::deserialize(d)?;
    if value.as_str() == Some("first_session") {
        return Ok(Some(End::FirstSession));
    }
    if value.is_string() {
        return Err(Error::custom(
            "`expires_at` is Unix seconds, null or \"first_session\"",
        ));
    }
    match whole_number(value).map_err(Error::custom)? {
        Some(t) if t > LATEST => Err(Error::custom(format!(
            "`expires_at` {t} is after the year 9999"
        ))),
        at => Ok(Some(End::At(at))),
    }
}

impl AccessBody {
    /// The changes it asks for, in order.
    fn changes(self) -> Result<Vec<AccessChange>, ApiError> {
        let permissions = self.may.map(|May(p)| p);
        let changes: Vec<AccessChange> = [
            permissions.map(AccessChange::Permissions),
            self.enabled.map(AccessChange::Enabled),
            self.expires_at.map(|end| match end {
                End::At(at) => AccessChange::Expires(at),
                End::FirstSession => AccessChange::UntilFirstSession,
            }),
        ]
        .into_iter()
        .flatten()
        .collect();
        if changes.is_empty() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                "nothing to change: give `may`, `enabled` or `expires_at`",
            ));
        }
        Ok(changes)
    }
}

pub(super) async fn change_access(
    auth: Authed,
    state: web::Data<ConsoleState>,
    fp: web::Path<Fingerprint>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let fp = fp.into_inner();
    // An unknown permission name is the caller's mistake: `invalid`, with
    // the names there are.
    let body: AccessBody = serde_json::from_slice(&body).map_err(|e| {
        let code = if e.to_string().contains("is not a permission") {
            ErrorCode::Invalid
        } else {
            ErrorCode::BadRequest
        };
        ApiError::new(StatusCode::BAD_REQUEST, code, e.to_string())
    })?;
    let changes = body.changes()?;
    let trust = state.trust.clone();
    let device = web::block(move || {
        let mut last = None;
        for change in changes {
            last = Some(trust.change_access(&fp, change, auth.actor)?);
        }
        last.ok_or(TrustError::Registry(RegistryError::NotFound(fp)))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(trust_error)?;
    Ok(HttpResponse::Ok().json(DeviceReply::from(&device)))
}
