//! The collector's one error type, and its mapping to HTTP responses (the only place that
//! decides a status code).
//!
//! Error bodies are `{"error": reason, "code": kind, "message": reason}`: `error` is what Strata
//! documents; `code` and `message` are what the Segment and RudderStack SDKs read when a request
//! fails.
//!
//! A client's own mistakes are explained in full. Server-side conditions (the bus refusing an
//! append: a full disk, a failing disk, overload) are named, never detailed: their text holds
//! file paths and OS messages, which go to the server log (see `routes.rs`), not to clients.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Client's fault, retry cannot help: no or unknown write key, bad or stale signature.
    #[error("{0}")]
    Unauthorized(String),
    /// Client's fault: the body is not what the API takes (bad JSON, wrong shape, not UTF-8).
    #[error("{0}")]
    BadRequest(String),
    /// Client's fault: the body (on the wire or decompressed) exceeds `server.max_body_bytes`.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// Client's fault: a `Content-Encoding` other than gzip or identity.
    #[error("{0}")]
    UnsupportedEncoding(String),
    /// Client's fault (or a slow network): the body did not arrive in time. A retry may help.
    #[error("{0}")]
    Timeout(String),
    /// Too many requests at once: back off and retry.
    #[error("{0}")]
    Overloaded(String),
    /// The bus refused or failed the append. Nothing was acknowledged; a retry may help.
    #[error("bus unavailable: {0}")]
    Bus(#[from] strata_bus::Error),
    /// Startup: the app registry, the geo database or the bus could not be opened (user's
    /// configuration or the environment; not an HTTP error).
    #[error("{0}")]
    Setup(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            Error::Overloaded(_) | Error::Bus(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Setup(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Short machine-readable kind (the `code` field of the error body).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Unauthorized(_) => "unauthorized",
            Error::BadRequest(_) => "bad_request",
            Error::PayloadTooLarge(_) => "payload_too_large",
            Error::UnsupportedEncoding(_) => "unsupported_encoding",
            Error::Timeout(_) => "timeout",
            Error::Overloaded(_) => "overloaded",
            Error::Bus(e) => match e.root() {
                strata_bus::Error::Overloaded(_) => "overloaded",
                strata_bus::Error::StorageFull { .. } => "disk_full",
                _ => "unavailable",
            },
            Error::Setup(_) => "internal",
        }
    }

    /// Whether the same request may succeed later.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Error::Timeout(_) | Error::Overloaded(_) | Error::Bus(_)
        )
    }

    /// What the client is told: the whole reason for its own mistakes, only the condition for
    /// the server's.
    pub fn public_message(&self) -> String {
        match self {
            Error::Bus(e) => match e.root() {
                strata_bus::Error::Overloaded(_) => "the server is overloaded; retry later",
                strata_bus::Error::StorageFull { .. } => "the server's disk is full; retry later",
                strata_bus::Error::Io { .. } => {
                    "the server cannot write events to its storage; retry later"
                }
                strata_bus::Error::Closed => "the server is shutting down; retry later",
                _ => "the server's event log is unavailable; retry later",
            }
            .to_string(),
            Error::Setup(_) => "internal server error".to_string(),
            other => other.to_string(),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = self.public_message();
        let body = serde_json::json!({
            "error": message,
            "code": self.code(),
            "message": message,
        });
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(e: Error) -> (StatusCode, serde_json::Value, Option<HeaderValue>) {
        let response = e.into_response();
        let status = response.status();
        let retry = response.headers().get(header::RETRY_AFTER).cloned();
        let bytes = futures_body(response);
        (status, serde_json::from_slice(&bytes).unwrap(), retry)
    }

    fn futures_body(response: Response) -> Vec<u8> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(axum::body::to_bytes(response.into_body(), 1 << 20))
            .unwrap()
            .to_vec()
    }

    #[test]
    fn server_conditions_are_named_without_paths() {
        let full = strata_bus::Error::io(
            "writing /srv/strata/data/bus/topics/events/0/00000000000000000000.log",
            std::io::Error::from(std::io::ErrorKind::StorageFull),
        );
        let (status, json, retry) = body(Error::Bus(full));
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(retry.is_some());
        assert_eq!(json["code"], "disk_full");
        assert_eq!(json["error"], "the server's disk is full; retry later");
        assert!(!json.to_string().contains("/srv"), "{json}");

        let partial = strata_bus::Error::Partial {
            appended: vec![0],
            total: 2,
            source: Box::new(strata_bus::Error::io(
                "fsync /srv/strata/data/bus/x.log",
                std::io::Error::other("EIO"),
            )),
        };
        let (status, json, _) = body(Error::Bus(partial));
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(json["code"], "unavailable");
        assert!(!json.to_string().contains("/srv"), "{json}");
        assert!(
            json["error"].as_str().unwrap().contains("storage"),
            "{json}"
        );

        // A client's own mistake keeps its full reason.
        let (status, json, _) = body(Error::BadRequest("batch must be an array".into()));
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(json["error"], "batch must be an array");
    }
}
