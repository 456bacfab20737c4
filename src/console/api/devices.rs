//! The paired devices: list, one, rename, remove.

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
