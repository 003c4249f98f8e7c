//! Errors that reach HTTP, as one JSON shape per API generation:
//! v2 (and operations): `{"error": {"code": "...", "message": "..."}}`;
//! v1 (the Grafana plugin's contract): `{"error": "..."}`.

use axum::Json;
use axum::http::StatusCode;
use axum::http::header::{ALLOW, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// An error answered by the v2 API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// A query parameter or path segment is invalid (400).
    BadRequest(String),
    /// The object, path or route does not exist (404).
    NotFound(String),
    /// The route exists but not for this method (405).
    MethodNotAllowed,
    /// The server is not ready for this request (503), e.g. before the first load.
    Unavailable(String),
}

/// The body of every v2 error.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ErrorDetail {
    /// Stable, machine-readable: `bad_request`, `not_found`, `method_not_allowed`, `unavailable`.
    pub code: &'static str,
    /// For people.
    pub message: String,
}

impl ApiError {
    /// Shorthand for a 400.
    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError::BadRequest(message.into())
    }

    /// Shorthand for a 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::NotFound(message.into())
    }

    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m.clone()),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m.clone()),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "only GET is supported".into(),
            ),
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", m.clone()),
        }
    }

    /// The same error in the v1 contract's shape.
    pub fn v1(self) -> V1Error {
        V1Error(self)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        let mut resp = (
            status,
            Json(ErrorBody {
                error: ErrorDetail { code, message },
            }),
        )
            .into_response();
        if status == StatusCode::METHOD_NOT_ALLOWED {
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        resp
    }
}

/// An error answered by the v1 API: `{"error": "message"}`.
#[derive(Debug)]
pub struct V1Error(pub ApiError);

/// The body of every v1 error.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct V1ErrorBody {
    /// What went wrong.
    pub error: String,
}

impl IntoResponse for V1Error {
    fn into_response(self) -> Response {
        let (status, _, message) = self.0.parts();
        let mut resp = (status, Json(V1ErrorBody { error: message })).into_response();
        if status == StatusCode::METHOD_NOT_ALLOWED {
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        resp
    }
}

impl From<ApiError> for V1Error {
    fn from(e: ApiError) -> Self {
        V1Error(e)
    }
}
