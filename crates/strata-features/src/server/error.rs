//! The one place that decides the HTTP answer of a feature-store error.
//!
//! Error bodies are `{"error": reason, "code": kind, "detail": reason}`: `error` is the
//! reason; `code` a short machine-readable kind; `detail` repeats the reason under the name
//! FastAPI (and so Feast's feature server) uses for it, which Feast's clients print.
//!
//! A client's own mistakes are explained in full. Server-side conditions are named; the store
//! being unavailable says why (Redis down, a timeout), which holds no secret (URLs are
//! redacted by the store), so an operator reading the client's error knows what to fix.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::Error;

impl Error {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotMaterialized(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Online(strata_online::Error::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Lake(e) if e.retryable() => StatusCode::SERVICE_UNAVAILABLE,
            Error::Online(_)
            | Error::Lake(_)
            | Error::Internal(_)
            | Error::Io { .. }
            | Error::View { .. }
            | Error::Plan(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Short machine-readable kind (the `code` field of the error body, and the `code` label
    /// of `strata_features_errors_total`).
    pub fn code(&self) -> &'static str {
        match self {
            Error::BadRequest(_) => "bad_request",
            Error::TooLarge(_) => "payload_too_large",
            Error::Unauthorized(_) => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::NotMaterialized(_) => "not_materialized",
            Error::Online(strata_online::Error::Unavailable(_)) => "store_unavailable",
            Error::Lake(e) if e.retryable() => "unavailable",
            _ => "internal",
        }
    }

    /// What the client is told: the whole reason for its own mistakes and for the store
    /// being unavailable; only the condition for internal failures (the log has the rest).
    pub fn public_message(&self) -> String {
        match self.status() {
            StatusCode::INTERNAL_SERVER_ERROR => match self {
                Error::Online(strata_online::Error::Corrupt(_)) => {
                    "the online store holds data this server cannot read (see the server log)"
                        .to_string()
                }
                _ => "internal server error (see the server log)".to_string(),
            },
            _ => self.to_string(),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = self.public_message();
        if status.is_server_error() {
            tracing::warn!(error = %self, code = self.code(), "feature request failed");
        }
        let body = serde_json::json!({
            "error": message,
            "code": self.code(),
            "detail": message,
        });
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(e: Error) -> (StatusCode, serde_json::Value) {
        let response = e.into_response();
        let status = response.status();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = rt
            .block_on(axum::body::to_bytes(response.into_body(), 1 << 20))
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[test]
    fn statuses_codes_and_messages() {
        let (s, j) = answer(Error::BadRequest("unknown feature view nope".into()));
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(j["error"], "unknown feature view nope");
        assert_eq!(j["detail"], "unknown feature view nope");
        assert_eq!(j["code"], "bad_request");

        let (s, j) = answer(Error::Online(strata_online::Error::Unavailable(
            "redis: connection refused".into(),
        )));
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(j["code"], "store_unavailable");
        assert!(j["error"].as_str().unwrap().contains("connection refused"));

        let (s, j) = answer(Error::NotMaterialized("user_features".into()));
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert!(j["error"]
            .as_str()
            .unwrap()
            .contains("strata features materialize user_features"));

        let (s, j) = answer(Error::Internal(
            "reading /srv/data/catalog_tokens.json".into(),
        ));
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!j.to_string().contains("/srv"), "{j}");

        assert_eq!(
            answer(Error::Unauthorized("x".into())).0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            answer(Error::Forbidden("x".into())).0,
            StatusCode::FORBIDDEN
        );
    }
}
