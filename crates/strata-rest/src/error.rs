//! The REST spec's `ErrorModel`: `{"error": {"message", "type", "code"}}` with the HTTP status
//! equal to `code`.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An error answered as the spec's `ErrorModel`.
#[derive(Debug)]
pub struct RestError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
}

pub type RestResult<T> = std::result::Result<T, RestError>;

impl RestError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        RestError {
            status,
            kind,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequestException", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "NotAuthorizedException", message)
    }

    /// Authenticated, but the token's scopes, grants or role do not allow this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "ForbiddenException", message)
    }

    pub fn no_namespace(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NoSuchNamespaceException", message)
    }

    pub fn no_table(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NoSuchTableException", message)
    }

    pub fn exists(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "AlreadyExistsException", message)
    }

    pub fn commit_failed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "CommitFailedException", message)
    }

    pub fn not_empty(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "NamespaceNotEmptyException", message)
    }

    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_ACCEPTABLE,
            "UnsupportedOperationException",
            message,
        )
    }

    pub fn server(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceFailureException",
            message,
        )
    }
}

impl From<iceberg::Error> for RestError {
    fn from(e: iceberg::Error) -> Self {
        use iceberg::ErrorKind as K;
        let message = e.to_string();
        match e.kind() {
            K::NamespaceNotFound => RestError::no_namespace(message),
            K::TableNotFound => RestError::no_table(message),
            K::NamespaceAlreadyExists | K::TableAlreadyExists => RestError::exists(message),
            K::CatalogCommitConflicts => RestError::commit_failed(message),
            K::DataInvalid | K::PreconditionFailed => RestError::bad_request(message),
            K::FeatureUnsupported => RestError::unsupported(message),
            _ => RestError::server(message),
        }
    }
}

impl From<strata_table::Error> for RestError {
    fn from(e: strata_table::Error) -> Self {
        use strata_table::Error as E;
        match &e {
            E::NotFound(_) => RestError::no_table(e.to_string()),
            E::Conflict { .. } => RestError::commit_failed(e.to_string()),
            E::Invalid(_) | E::Sql(_) => RestError::bad_request(e.to_string()),
            E::Iceberg { cause, .. } => {
                let mut r = RestError::from(iceberg::Error::new(cause.kind(), cause.message()));
                r.message = e.to_string();
                r
            }
            _ => RestError::server(e.to_string()),
        }
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        // A server error's message can name internal paths: it goes to the log, and the
        // client gets a reference to find it there.
        let message = if self.status.is_server_error() {
            let reference = uuid::Uuid::new_v4().simple().to_string();
            let reference = &reference[..12];
            tracing::warn!(status = %self.status, kind = self.kind, message = %self.message, reference, "rest catalog error");
            format!("internal error in the catalog server (reference {reference} in its log); retry later")
        } else {
            self.message
        };
        let body = serde_json::json!({
            "error": {
                "message": message,
                "type": self.kind,
                "code": self.status.as_u16(),
            }
        });
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}
