//! Feed errors and the HTTP status each becomes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A malformed request (400).
    #[error("{0}")]
    BadRequest(String),
    /// Authentication or authorisation (401/403, from the feature server's token checks).
    #[error(transparent)]
    Features(#[from] strata_features::Error),
    /// A model or the catalogue is not there yet (503).
    #[error("{0}")]
    NotReady(String),
    /// Loading the catalogue from the lake failed.
    #[error("feed catalogue: {0}")]
    Catalog(String),
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Features(f) => f.status(),
            Error::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Catalog(_) | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<strata_models::Error> for Error {
    fn from(e: strata_models::Error) -> Self {
        match e {
            strata_models::Error::BadRequest(m) => Error::BadRequest(m),
            strata_models::Error::NotReady(m) => Error::NotReady(m),
            strata_models::Error::Features(f) => Error::Features(f),
            other => Error::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::warn!(error = %self, "feed request failed");
            "internal server error (see the server log)".to_string()
        } else {
            self.to_string()
        };
        (
            status,
            Json(serde_json::json!({"error": message, "detail": message})),
        )
            .into_response()
    }
}
