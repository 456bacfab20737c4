//! The paired devices: list, one, rename, change what one may do, remove.

use super::*;

/// `GET /api/devices`: the paired devices, as `/api/pairing` lists them.
pub(super) async fn devices(_: Authed, state: web::Data<ConsoleState>) -> HttpResponse {
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
    /// Absent: unchanged; `null`: no end (also renews an expired device).
    #[serde(default, deserialize_with = "present")]
    expires_at: Option<Option<u64>>,
}

/// The end of year 9999: the latest `expires_at` taken.
const LATEST: u64 = 253_402_300_799;

/// A field that is present, `null` included (a whole number, see
/// [`whole_number`]), no later than [`LATEST`].
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
    match whole_number(d)? {
        Some(t) if t > LATEST => Err(serde::de::Error::custom(format!(
            "`expires_at` {t} is after the year 9999"
        ))),
        at => Ok(Some(at)),
    }
}

impl AccessBody {
    /// The changes it asks for, in order.
    fn changes(self) -> Result<Vec<AccessChange>, ApiError> {
        let permissions = self.may.map(|May(p)| p);
        let changes: Vec<AccessChange> = [
            permissions.map(AccessChange::Permissions),
            self.enabled.map(AccessChange::Enabled),
            self.expires_at.map(AccessChange::Expires),
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
