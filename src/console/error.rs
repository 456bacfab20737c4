//! The console API's errors: `{"error": {"code", "message"}}` with an
//! HTTP status, the code one of a fixed, documented set.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

/// The stable `code` of an API error, which the page and clients switch on
/// (`docs/console-api.json`, schema `Error`, lists them with their meaning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorCode {
    BadRequest,
    BadPin,
    BadAddress,
    BadPassphrase,
    Invalid,
    Unauthorized,
    WrongPassword,
    Csrf,
    CrossOrigin,
    NotFound,
    MethodNotAllowed,
    UnknownRequest,
    UnknownDevice,
    NotArmed,
    NoNative,
    NoOtp,
    TooManyPending,
    WaitingElsewhere,
    WrongNeed,
    PinAlreadyEntered,
    Storing,
    Blocked,
    TooManyBlocks,
    PairedAtOtherDoor,
    RateLimited,
    NotRecorded,
    Internal,
}

impl ErrorCode {
    /// Every code, in the API document's order.
    #[cfg(test)]
    pub(crate) const ALL: [Self; 27] = [
        Self::BadRequest,
        Self::BadPin,
        Self::BadAddress,
        Self::BadPassphrase,
        Self::Invalid,
        Self::Unauthorized,
        Self::WrongPassword,
        Self::Csrf,
        Self::CrossOrigin,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::UnknownRequest,
        Self::UnknownDevice,
        Self::NotArmed,
        Self::NoNative,
        Self::NoOtp,
        Self::TooManyPending,
        Self::WaitingElsewhere,
        Self::WrongNeed,
        Self::PinAlreadyEntered,
        Self::Storing,
        Self::Blocked,
        Self::TooManyBlocks,
        Self::PairedAtOtherDoor,
        Self::RateLimited,
        Self::NotRecorded,
        Self::Internal,
    ];

    /// The code as the API writes it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::BadPin => "bad_pin",
            Self::BadAddress => "bad_address",
            Self::BadPassphrase => "bad_passphrase",
            Self::Invalid => "invalid",
            Self::Unauthorized => "unauthorized",
            Self::WrongPassword => "wrong_password",
            Self::Csrf => "csrf",
            Self::CrossOrigin => "cross_origin",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::UnknownRequest => "unknown_request",
            Self::UnknownDevice => "unknown_device",
            Self::NotArmed => "not_armed",
            Self::NoNative => "no_native",
            Self::NoOtp => "no_otp",
            Self::TooManyPending => "too_many_pending",
            Self::WaitingElsewhere => "waiting_elsewhere",
            Self::WrongNeed => "wrong_need",
            Self::PinAlreadyEntered => "pin_already_entered",
            Self::Storing => "storing",
            Self::Blocked => "blocked",
            Self::TooManyBlocks => "too_many_blocks",
            Self::PairedAtOtherDoor => "paired_at_other_door",
            Self::RateLimited => "rate_limited",
            Self::NotRecorded => "not_recorded",
            Self::Internal => "internal",
        }
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// An API error: `{"error": {"code", "message"}}` with an HTTP status.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// The code the client switches on.
    pub(crate) fn code(&self) -> ErrorCode {
        self.code
    }

    /// A failure of the host itself. The detail (which may name files and
    /// paths) goes to the log only, under a short random id the client is
    /// given, so the two can be matched without revealing it.
    pub(crate) fn internal(err: impl std::fmt::Display) -> Self {
        use rand::Rng as _;
        let id = format!("{:08x}", rand::rngs::OsRng.gen::<u32>());
        tracing::error!(error_id = %id, "console: internal error: {err}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            format!("internal error (id {id}); the host's log has the details"),
        )
    }
}

impl ApiError {
    /// What a person reads.
    pub(crate) fn message(&self) -> String {
        self.message.clone()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status)
            .insert_header(("Cache-Control", "no-store"))
            .json(super::replies::ErrorReply::new(self.code, &self.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_codes_are_the_api_document_s_in_its_order() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../docs/console-api.json")).unwrap();
        let documented = &doc["components"]["schemas"]["Error"]["properties"]["error"]
            ["properties"]["code"]["enum"];
        let ours: Vec<_> = ErrorCode::ALL
            .iter()
            .map(|c| serde_json::to_value(c).unwrap())
            .collect();
        assert_eq!(&serde_json::Value::from(ours), documented);
    }
}
