//! Who may read features: a bearer token from `<data>/catalog_tokens.json` (`strata tokens
//! create NAME --scope serve`), read on every request so a revocation takes effect at once.
//!
//! - no token, or an unknown, revoked or expired one → 401;
//! - a token without the `serve` scope (or `admin`) → 403: a `catalog:read`/`catalog:write`
//!   token cannot read features;
//! - a token with namespace grants reads only views whose source tables are all in its
//!   namespaces (a query view: every table the query names) → 403 naming what is missing.

use std::path::Path;

use axum::http::{header, HeaderMap};
use strata_core::tokens::{Scope, Token, Tokens};

use crate::error::{Error, Result};

/// The token `headers` present, verified against the token file at `path` (401 when none
/// or a bad one; 500 when the file cannot be read).
pub fn authenticate(headers: &HeaderMap, path: &Path) -> Result<Token> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(presented) = presented else {
        return Err(Error::Unauthorized(
            "missing bearer token: send Authorization: Bearer <token> \
             (strata tokens create NAME --scope serve)"
                .to_string(),
        ));
    };
    let tokens = Tokens::load(path).map_err(|e| {
        tracing::error!(error = %e, "feature server: reading the token file failed");
        Error::Internal(format!("the server cannot read its token file: {e}"))
    })?;
    tokens
        .verify(presented, chrono::Utc::now())
        .cloned()
        .map_err(|refused| Error::Unauthorized(refused.to_string()))
}

/// 403 unless `token` has the `serve` scope (or `admin`).
pub fn require_serve(token: &Token) -> Result<()> {
    if token.has(Scope::Serve) {
        return Ok(());
    }
    Err(Error::Forbidden(format!(
        "token {:?} lacks the serve scope that reading features needs (it has: {})",
        token.name,
        token
            .scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// 403 unless `token` may read every table of `reads` (`namespace.table`); `reads` is an
/// error when the view's source cannot be told (only admin tokens read such a view).
pub fn check_reads(
    token: &Token,
    view: &str,
    reads: &std::result::Result<Vec<String>, String>,
) -> Result<()> {
    if token.has(Scope::Admin) {
        return Ok(());
    }
    let tables = reads.as_ref().map_err(|e| {
        Error::Forbidden(format!(
            "feature view {view}: its source tables cannot be told ({e}), so only admin tokens read it"
        ))
    })?;
    let refused: Vec<&str> = tables
        .iter()
        .filter(|t| {
            let ns = t.split('.').next().unwrap_or_default();
            !token.may_use_namespace(&[ns])
        })
        .map(String::as_str)
        .collect();
    if refused.is_empty() {
        Ok(())
    } else {
        Err(Error::Forbidden(format!(
            "token {:?} may not read feature view {view}: it reads {}, outside the namespaces \
             the token is granted ({})",
            token.name,
            refused.join(", "),
            token.namespaces.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(scopes: Vec<Scope>, namespaces: &[&str]) -> Token {
        Token {
            name: "t".into(),
            sha256: String::new(),
            created_at: String::new(),
            scopes,
            namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
            expires_at: None,
            role: None,
        }
    }

    #[test]
    fn scopes_and_grants() {
        assert!(require_serve(&token(vec![Scope::Serve], &[])).is_ok());
        assert!(require_serve(&token(vec![Scope::Admin], &[])).is_ok());
        let e = require_serve(&token(vec![Scope::CatalogWrite], &[])).unwrap_err();
        assert!(matches!(e, Error::Forbidden(_)), "{e}");

        let reads = Ok(vec!["ads.u".to_string(), "dws.d".to_string()]);
        assert!(check_reads(&token(vec![Scope::Serve], &[]), "v", &reads).is_ok());
        assert!(check_reads(&token(vec![Scope::Serve], &["ads", "dws"]), "v", &reads).is_ok());
        let e = check_reads(&token(vec![Scope::Serve], &["ads"]), "v", &reads).unwrap_err();
        assert!(e.to_string().contains("dws.d"), "{e}");
        // The access log is for admins, whatever the grants.
        let audit = Ok(vec!["audit.access_log".to_string()]);
        assert!(check_reads(&token(vec![Scope::Serve], &[]), "v", &audit).is_err());
        assert!(check_reads(&token(vec![Scope::Admin], &[]), "v", &audit).is_ok());
        let unknown = Err("SQL error".to_string());
        assert!(check_reads(&token(vec![Scope::Serve], &[]), "v", &unknown).is_err());
    }
}
