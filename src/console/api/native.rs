//! The console over the native door (docs/native-protocol.md § 4.10): a
//! trusted device's session signs in with the console password, under the
//! web login's limits, and then does what the Pairing page does, through
//! the same trust calls, answered with the same JSON.
//!
//! WIP (issue 23): the device's console sessions live in memory (a host
//! restart signs them out), and `enter_pin` takes no grant yet. Audit
//! entries name the device the console was used on (`by`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use punktfunk_certs::FrontDoor;
use punktfunk_native::endpoint::{ConsoleAnswer, ConsoleDoor};
use punktfunk_native::message::{ConsoleAction, ConsoleError, Waiting};

use super::super::auth::Stamp;
use super::*;

/// How long a device's console session lasts after its login.
pub(crate) const DEVICE_SESSION_LIFETIME: Duration = Duration::from_secs(30 * 86_400);

/// The console as the native door's sessions reach it.
#[derive(Clone)]
pub(crate) struct NativeConsole {
    state: web::Data<ConsoleState>,
    signed_in: Arc<Mutex<HashMap<Fingerprint, SignedIn>>>,
}

/// A device's console session.
#[derive(Debug, Clone, Copy)]
struct SignedIn {
    since: Instant,
    /// The password file it signed in under: a new password ends it.
    stamp: Option<Stamp>,
}

impl std::fmt::Debug for NativeConsole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeConsole").finish_non_exhaustive()
    }
}

impl NativeConsole {
    /// The console for the native door's sessions; its sessions end the
    /// moment their device is removed or may no longer connect (a task on
    /// the current runtime follows the trust events).
    pub(crate) fn new(state: web::Data<ConsoleState>) -> Self {
        let this = Self {
            state,
            signed_in: Arc::default(),
        };
        tokio::spawn(this.clone().end_with_access());
        this
    }

    /// Signs a device out as soon as it is removed, disabled or expired, so
    /// enabling it again does not bring its console session back.
    async fn end_with_access(self) {
        use punktfunk_certs::TrustEvent;
        use tokio::sync::broadcast::error::RecvError;
        let mut events = self.state.trust.subscribe();
        loop {
            match events.recv().await {
                Ok(TrustEvent::DeviceRemoved { fingerprint })
                | Ok(TrustEvent::AccessChanged {
                    fingerprint,
                    ended: true,
                }) => {
                    self.signed_in
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&fingerprint);
                }
                Ok(_) => {}
                // Missed some: check every signed-in device now (a device
                // disabled and enabled again meanwhile is not caught).
                Err(RecvError::Lagged(_)) => {
                    let signed: Vec<Fingerprint> = self
                        .signed_in
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .keys()
                        .copied()
                        .collect();
                    for fp in signed {
                        self.is_signed_in(&fp);
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    }

    /// Whether `device` has a live console session: signed in, under the
    /// current password, within its lifetime, and still trusted at the
    /// native door (removed or disabled ends it for good).
    fn is_signed_in(&self, device: &Fingerprint) -> bool {
        let mut map = self.signed_in.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = map.get(device).copied() else {
            return false;
        };
        let live = s.since.elapsed() < DEVICE_SESSION_LIFETIME
            && s.stamp == self.state.password.stamp()
            && self
                .state
                .trust
                .authorize(FrontDoor::Native, device)
                .is_ok();
        if !live {
            map.remove(device);
        }
        live
    }

    async fn login(
        &self,
        device: Fingerprint,
        address: IpAddr,
        password: String,
    ) -> Result<serde_json::Value, ApiError> {
        let key = AddressKey::of(address);
        let mut permit = self
            .state
            .limiter
            .admit(key, Instant::now())
            .map_err(|refusal| {
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorCode::RateLimited,
                    match refusal {
                        Refusal::Address(wait) | Refusal::Budget(wait) | Refusal::Browser(wait) => {
                            format!(
                                "too many login attempts; try again in {} s",
                                wait.as_secs().max(1)
                            )
                        }
                        Refusal::Busy => "the host is checking other logins; try again".into(),
                    },
                )
            })?;
        let file = self.state.password.clone();
        let ok = web::block(move || file.verify(&password, permit.memory()))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
        if !ok {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::WrongPassword,
                "wrong password",
            ));
        }
        self.state.limiter.succeeded(key);
        let stamp = self.state.password.stamp();
        self.signed_in
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                device,
                SignedIn {
                    since: Instant::now(),
                    stamp,
                },
            );
        tracing::info!(fp = %device.short(), %address, "console: signed in from a paired device");
        Ok(serde_json::json!({"signed_in_for_s": DEVICE_SESSION_LIFETIME.as_secs()}))
    }

    /// What a signed-in device asks, as the console's handlers do it.
    async fn signed_in_act(
        &self,
        device: Fingerprint,
        address: IpAddr,
        action: ConsoleAction,
    ) -> Result<serde_json::Value, ApiError> {
        let actor = Actor::console_on(device, address);
        let trust = self.state.trust.clone();
        let value = match action {
            ConsoleAction::Login { .. } | ConsoleAction::Logout | ConsoleAction::Watch => {
                serde_json::json!({})
            }
            ConsoleAction::Approve {
                id,
                label: raw,
                grant,
            } => {
                let id = request_id(&id)?;
                let label = label(raw)?;
                let access = grant_access(&trust, grant)?;
                let device = web::block(move || trust.approve_as(id, label, access, actor))
                    .await
                    .map_err(ApiError::internal)?
                    .map_err(trust_error)?;
                to_json(DeviceReply::from(&device))?
            }
            ConsoleAction::Deny { id } => {
                let id = request_id(&id)?;
                let entry = trust.deny(id, actor).map_err(gate_error)?;
                recorded(entry).await?;
                serde_json::json!({})
            }
            ConsoleAction::Arm { grant } => {
                if !self.state.links.native_runs() {
                    return Err(no_native());
                }
                let access = grant_access(&trust, grant)?;
                let (armed, entry) = trust.arm_as(access, actor, &mut OsRng);
                let now = trust.now();
                recorded(entry).await?;
                let addresses = self.state.links.addresses(None);
                to_json(ArmedReply {
                    expires_in_s: expires_in(armed.expires, now),
                    link: pairing_link(&self.state, &addresses, &armed.link).map(|l| l.to_uri()),
                    pin: armed.pin.clone(),
                    pin_used: armed.pin_taken,
                })?
            }
            ConsoleAction::Disarm => {
                if let Some(entry) = trust.disarm(actor) {
                    recorded(entry).await?;
                }
                serde_json::json!({})
            }
            ConsoleAction::Devices => to_json(DeviceList {
                devices: device_replies(&trust),
            })?,
            ConsoleAction::Revoke { fingerprint } => {
                let device = web::block(move || trust.revoke(&fingerprint, actor))
                    .await
                    .map_err(ApiError::internal)?
                    .map_err(trust_error)?;
                to_json(DeviceReply::from(&device))?
            }
            ConsoleAction::EnterPin {
                id,
                pin,
                label: raw,
            } => {
                let id = request_id(&id)?;
                let pin: Pin = pin
                    .trim()
                    .parse()
                    .map_err(|e: punktfunk_certs::secret::BadPin| gate_error(e.into()))?;
                let label = label(raw)?;
                let result = pin_outcome(&self.state, id, pin, label, None, actor).await?;
                to_json(PinOutcome { result })?
            }
        };
        Ok(value)
    }
}

/// A waiting request's id as a `console` message names it.
fn request_id(raw: &str) -> Result<PendingId, ApiError> {
    raw.parse()
        .map_err(|_| gate_error(GateError::UnknownRequest))
}

/// The grant picker's value (the console API's `Grant`), as what the
/// device may do.
fn grant_access(
    trust: &punktfunk_certs::Trust,
    grant: Option<serde_json::Value>,
) -> Result<Option<punktfunk_certs::Access>, ApiError> {
    let Some(grant) = grant else {
        return Ok(None);
    };
    let grant: GrantBody = serde_json::from_value(grant).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            e.to_string(),
        )
    })?;
    Ok(Some(grant.access(trust.default_grant())?))
}

fn to_json(reply: impl serde::Serialize) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(reply).map_err(ApiError::internal)
}

fn console_error(e: ApiError) -> ConsoleError {
    ConsoleError {
        code: e.code().as_str().to_owned(),
        message: e.message(),
    }
}

impl ConsoleDoor for NativeConsole {
    fn act(&self, device: Fingerprint, address: IpAddr, action: ConsoleAction) -> ConsoleAnswer {
        let this = self.clone();
        Box::pin(async move {
            match action {
                ConsoleAction::Login { password } => {
                    this.login(device, address, password).await.map_err(console_error)
                }
                ConsoleAction::Logout => {
                    this.signed_in
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&device);
                    Ok(serde_json::json!({}))
                }
                _ if !this.is_signed_in(&device) => Err(ConsoleError {
                    code: "not_signed_in".into(),
                    message: "sign in to the console first (`console` op `login`, with the console password)".into(),
                }),
                action => this.signed_in_act(device, address, action).await.map_err(console_error),
            }
        })
    }

    fn waiting(&self, device: Fingerprint) -> Option<Waiting> {
        if !self.is_signed_in(&device) {
            return None;
        }
        let now = self.state.trust.now();
        let gate = self.state.trust.view();
        let requests = gate
            .waiting()
            .take(punktfunk_native::message::MAX_WAITING)
            .filter_map(|(id, p)| serde_json::to_value(PendingReply::new(id, p, now)).ok())
            .collect();
        Some(Waiting { requests })
    }
}
