//! The API's one error shape: `{"error": {"code", "message", "errors"?}}`, with the status
//! that says what the caller can do about it.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, for programs: `unauthorized`, `forbidden`, `not_found`, `bad_request`,
    /// `invalid_spec`, `conflict`, `busy`, `unavailable`, `internal`.
    pub code: &'static str,
    /// For people: what is wrong and where.
    pub message: String,
    /// Every problem, when there are several (an invalid spec).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: ErrorDetail,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            detail: ErrorDetail {
                code,
                message: message.into(),
                errors: Vec::new(),
            },
        }
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required (Authorization: Bearer herd_…)",
        )
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn invalid_spec(errors: Vec<String>) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_spec",
            format!("the spec cannot run: {} problem(s)", errors.len()),
        );
        e.detail.errors = errors;
        e
    }

    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is larger than {limit} bytes"),
        )
    }

    pub fn busy(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.detail.code, self.detail.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut r = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED {
            r.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"herd\""));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.insert_header((header::RETRY_AFTER, "1"));
        }
        r.json(ErrorBody {
            error: self.detail.clone(),
        })
    }
}

impl From<crate::serve::history::Call> for ApiError {
    fn from(e: crate::serve::history::Call) -> ApiError {
        use crate::serve::history::Call;
        match e {
            Call::Busy => ApiError::busy(e.to_string()),
            Call::Gone => ApiError::unavailable(e.to_string()),
            Call::Store(crate::store::StoreError::Unavailable(why)) => {
                ApiError::unavailable(format!("the run history is unavailable: {why}"))
            }
            // A cap of the history's (specs, versions, schedules, tokens).
            Call::Store(
                e @ (crate::store::StoreError::Full(_) | crate::store::StoreError::TooManyTokens),
            ) => ApiError::conflict(e.to_string()),
            Call::Store(s) => {
                tracing::error!(error = %s, "run history");
                ApiError::internal("the run history could not be read (see the server's log)")
            }
        }
    }
}
