//! Bearer tokens: `<data>/catalog_tokens.json`, one entry per token with its name, the SHA-256
//! of the token (the token itself is printed once by `strata tokens create` and never stored),
//! its scopes, the namespaces it is granted, an optional expiry and an optional role. Written
//! atomically (`crate::fsutil::replace_file`) so a running server that reads it never sees
//! half a file; servers read it on every request, so a revocation takes effect at once.
//!
//! Token files written before scopes existed have entries without `scopes`: those tokens keep
//! what they could do then (read and write the catalog, every namespace).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// List and load namespaces and tables (GET and HEAD on the catalog).
    #[serde(rename = "catalog:read")]
    CatalogRead,
    /// Create, alter, commit, rename and drop (every other catalog call). Implies nothing else:
    /// give `catalog:read` too for a client that loads what it writes.
    #[serde(rename = "catalog:write")]
    CatalogWrite,
    /// The serving APIs (features, recommendations).
    #[serde(rename = "serve")]
    Serve,
    /// Everything, on every namespace, whatever the token's grants.
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [
        Scope::CatalogRead,
        Scope::CatalogWrite,
        Scope::Serve,
        Scope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::CatalogRead => "catalog:read",
            Scope::CatalogWrite => "catalog:write",
            Scope::Serve => "serve",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| {
                format!("unknown scope {s:?}: use catalog:read, catalog:write, serve or admin")
            })
    }
}

/// The namespace only admin tokens see: the access log, DAG run history, check results.
pub const ADMIN_NAMESPACE: &str = "audit";

fn legacy_scopes() -> Vec<Scope> {
    vec![Scope::CatalogRead, Scope::CatalogWrite]
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub name: String,
    /// Lowercase hex SHA-256 of the token.
    pub sha256: String,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// What the token may do.
    #[serde(default = "legacy_scopes")]
    pub scopes: Vec<Scope>,
    /// The namespaces (first level) the token may see and touch; empty: every namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// RFC 3339 time after which the token is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// The `[[governance.roles]]` role whose column rules apply; none: every column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

impl Token {
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&Scope::Admin) || self.scopes.contains(&scope)
    }

    /// Whether the token may touch namespace `ns`: an admin token every one; others not
    /// `audit` (the access log and run history are for admins), and, when the token has
    /// namespace grants, only those (by first level).
    pub fn may_use_namespace<S: AsRef<str>>(&self, ns: &[S]) -> bool {
        if self.scopes.contains(&Scope::Admin) {
            return true;
        }
        let Some(first) = ns.first().map(AsRef::as_ref) else {
            return false;
        };
        if first == ADMIN_NAMESPACE {
            return false;
        }
        self.namespaces.is_empty() || self.namespaces.iter().any(|g| g == first)
    }

    /// The expiry, when there is one (an unparsable one counts as already expired).
    pub fn expiry(&self) -> Option<DateTime<Utc>> {
        self.expires_at.as_deref().map(|text| {
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or(DateTime::<Utc>::MIN_UTC)
        })
    }
}

/// What `strata tokens create` asks for.
#[derive(Debug, Clone, Default)]
pub struct NewToken {
    pub scopes: Vec<Scope>,
    pub namespaces: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub role: Option<String>,
}

/// Why a presented token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    Unknown,
    Expired(String),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Unknown => f.write_str("unknown or revoked token"),
            Refused::Expired(name) => write!(f, "token {name:?} has expired"),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    pub tokens: Vec<Token>,
}

/// Lowercase hex SHA-256 of `token`.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh random token: `stk_` and 64 hex digits (two v4 UUIDs' worth of OS randomness).
pub fn new_token() -> String {
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    format!("stk_{}{}", a.simple(), b.simple())
}

impl Tokens {
    /// Reads the file; a missing file has no tokens (and so nothing is authorized).
    pub fn load(path: &Path) -> Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::Internal(format!("corrupt token file {}: {e}", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Tokens::default()),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let body = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::Internal(format!("serializing tokens: {e}")))?;
        crate::fsutil::replace_file(path, &body)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }

    /// Makes a token named `name` and returns it (only its hash is kept). Refuses an empty or
    /// duplicate name, no scopes, or an invalid namespace grant.
    pub fn create(&mut self, name: &str, new: NewToken) -> Result<String> {
        if name.trim().is_empty() {
            return Err(Error::User("a token name must not be empty".to_string()));
        }
        if self.tokens.iter().any(|t| t.name == name) {
            return Err(Error::User(format!(
                "a token named {name:?} already exists (revoke it first)"
            )));
        }
        if new.scopes.is_empty() {
            return Err(Error::User(
                "a token needs at least one scope (catalog:read, catalog:write, serve, admin)"
                    .to_string(),
            ));
        }
        for ns in &new.namespaces {
            crate::names::check_name("namespace grant", ns).map_err(Error::User)?;
        }
        let mut scopes = new.scopes;
        scopes.sort();
        scopes.dedup();
        let token = new_token();
        self.tokens.push(Token {
            name: name.to_string(),
            sha256: hash_token(&token),
            created_at: rfc3339(Utc::now()),
            scopes,
            namespaces: new.namespaces,
            expires_at: new.expires_at.map(rfc3339),
            role: new.role,
        });
        Ok(token)
    }

    /// Removes the token named `name`; `false` when there was none.
    pub fn revoke(&mut self, name: &str) -> bool {
        let before = self.tokens.len();
        self.tokens.retain(|t| t.name != name);
        self.tokens.len() != before
    }

    /// The token `presented` is, comparing SHA-256 hashes in constant time (every stored hash
    /// is compared, whether or not an earlier one matched); refused when unknown or expired at
    /// `now`.
    pub fn verify(
        &self,
        presented: &str,
        now: DateTime<Utc>,
    ) -> std::result::Result<&Token, Refused> {
        let hash = hash_token(presented);
        let mut found = None;
        for t in &self.tokens {
            if bool::from(t.sha256.as_bytes().ct_eq(hash.as_bytes())) {
                found = Some(t);
            }
        }
        let token = found.ok_or(Refused::Unknown)?;
        match token.expiry() {
            Some(at) if at <= now => Err(Refused::Expired(token.name.clone())),
            _ => Ok(token),
        }
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> NewToken {
        NewToken {
            scopes: vec![Scope::CatalogRead, Scope::CatalogWrite],
            ..NewToken::default()
        }
    }

    #[test]
    fn create_verify_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog_tokens.json");
        let now = Utc::now();
        let mut tokens = Tokens::load(&path).unwrap();
        let a = tokens.create("spark", all()).unwrap();
        let b = tokens.create("duckdb", all()).unwrap();
        assert_ne!(a, b);
        assert!(tokens.create("spark", all()).is_err());
        assert!(tokens.create("none", NewToken::default()).is_err());
        tokens.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&a), "the token itself must not be stored");
        let mut back = Tokens::load(&path).unwrap();
        assert_eq!(back.verify(&a, now).unwrap().name, "spark");
        assert_eq!(back.verify(&b, now).unwrap().name, "duckdb");
        assert_eq!(back.verify("stk_wrong", now), Err(Refused::Unknown));
        assert!(back.revoke("spark"));
        assert!(!back.revoke("spark"));
        assert_eq!(back.verify(&a, now), Err(Refused::Unknown));
    }

    #[test]
    fn expiry_scopes_and_grants() {
        let now = Utc::now();
        let mut tokens = Tokens::default();
        let t = tokens
            .create(
                "reader",
                NewToken {
                    scopes: vec![Scope::CatalogRead],
                    namespaces: vec!["ods".into()],
                    expires_at: Some(now + chrono::Duration::seconds(60)),
                    role: Some("analyst".into()),
                },
            )
            .unwrap();
        let tok = tokens.verify(&t, now).unwrap();
        assert!(tok.has(Scope::CatalogRead));
        assert!(!tok.has(Scope::CatalogWrite));
        assert!(!tok.has(Scope::Admin));
        assert!(tok.may_use_namespace(&["ods"]));
        assert!(tok.may_use_namespace(&["ods", "nested"]));
        assert!(!tok.may_use_namespace(&["dws"]));
        assert!(!tok.may_use_namespace::<&str>(&[]));
        assert_eq!(
            tokens.verify(&t, now + chrono::Duration::seconds(61)),
            Err(Refused::Expired("reader".into()))
        );
        let admin = tokens
            .create(
                "root",
                NewToken {
                    scopes: vec![Scope::Admin],
                    namespaces: vec!["ods".into()],
                    ..NewToken::default()
                },
            )
            .unwrap();
        let root = tokens.verify(&admin, now).unwrap();
        assert!(root.has(Scope::CatalogWrite) && root.may_use_namespace(&["dws"]));
        assert!(root.may_use_namespace(&["audit"]));
        assert!(tokens
            .create(
                "bad",
                NewToken {
                    scopes: vec![Scope::CatalogRead],
                    namespaces: vec!["../x".into()],
                    ..NewToken::default()
                }
            )
            .is_err());
    }

    #[test]
    fn token_files_from_before_scopes_keep_read_and_write() {
        let old =
            r#"{"tokens":[{"name":"spark","sha256":"00","created_at":"2026-11-01T00:00:00Z"}]}"#;
        let tokens: Tokens = serde_json::from_str(old).unwrap();
        let t = &tokens.tokens[0];
        assert_eq!(t.scopes, vec![Scope::CatalogRead, Scope::CatalogWrite]);
        assert!(t.namespaces.is_empty() && t.expires_at.is_none() && t.role.is_none());
        assert!(t.may_use_namespace(&["anything"]));
        assert!(!t.may_use_namespace(&["audit"]), "audit is for admins");
    }
}
