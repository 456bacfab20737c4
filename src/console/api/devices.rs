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
/// permissions (`preset` or `permissions`), `enabled`, `expires_at`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AccessBody {
    preset: Option<Preset>,
    permissions: Option<Permissions>,
    enabled: Option<bool>,
    /// Absent: unchanged; `null`: no end (also renews an expired device).
    #[serde(default, deserialize_with = "present")]
    expires_at: Option<Option<u64>>,
}

/// A field that is present, `null` included. JSON (and its schema) calls
/// `1.0` an integer too, so a whole number written with a fraction is taken.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(Some(None));
    };
    let whole = n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 9_007_199_254_740_992.0)
            .map(|f| f as u64)
    });
    whole
        .map(|t| Some(Some(t)))
        .ok_or_else(|| serde::de::Error::custom(format!("`expires_at` {n} is not Unix seconds")))
}

impl AccessBody {
    /// The changes it asks for, in order.
    fn changes(self) -> Result<Vec<AccessChange>, ApiError> {
        let permissions = match (self.preset, self.permissions) {
            (Some(_), Some(_)) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::BadRequest,
                    "give `preset` or `permissions`, not both",
                ))
            }
            (Some(preset), None) => Some(preset.permissions()),
            (None, permissions) => permissions,
        };
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
                "nothing to change: give `preset`, `permissions`, `enabled` or `expires_at`",
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
