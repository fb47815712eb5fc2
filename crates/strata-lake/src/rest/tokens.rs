//! Bearer tokens of the REST catalog: `<data>/catalog_tokens.json`, one entry per token with
//! its name and the SHA-256 of the token (the token itself is printed once by
//! `strata tokens create` and never stored). Written atomically (`strata_core::fsutil::replace_file`) so a
//! running server that reads it never sees half a file.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub name: String,
    /// Lowercase hex SHA-256 of the token.
    pub sha256: String,
    /// RFC 3339 creation time.
    pub created_at: String,
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
        strata_core::fsutil::replace_file(path, &body)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }

    /// Makes a token named `name` and returns it (only its hash is kept). Refuses an empty or
    /// duplicate name.
    pub fn create(&mut self, name: &str) -> Result<String> {
        if name.trim().is_empty() {
            return Err(Error::Invalid("a token name must not be empty".to_string()));
        }
        if self.tokens.iter().any(|t| t.name == name) {
            return Err(Error::Invalid(format!(
                "a token named {name:?} already exists (revoke it first)"
            )));
        }
        let token = new_token();
        self.tokens.push(Token {
            name: name.to_string(),
            sha256: hash_token(&token),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        });
        Ok(token)
    }

    /// Removes the token named `name`; `false` when there was none.
    pub fn revoke(&mut self, name: &str) -> bool {
        let before = self.tokens.len();
        self.tokens.retain(|t| t.name != name);
        self.tokens.len() != before
    }

    /// The name of the token `presented` is, comparing SHA-256 hashes in constant time (every
    /// stored hash is compared, whether or not an earlier one matched).
    pub fn verify(&self, presented: &str) -> Option<&str> {
        let hash = hash_token(presented);
        let mut found = None;
        for t in &self.tokens {
            if bool::from(t.sha256.as_bytes().ct_eq(hash.as_bytes())) {
                found = Some(t.name.as_str());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_verify_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog_tokens.json");
        let mut tokens = Tokens::load(&path).unwrap();
        let a = tokens.create("spark").unwrap();
        let b = tokens.create("duckdb").unwrap();
        assert_ne!(a, b);
        assert!(tokens.create("spark").is_err());
        tokens.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&a), "the token itself must not be stored");
        let mut back = Tokens::load(&path).unwrap();
        assert_eq!(back.verify(&a), Some("spark"));
        assert_eq!(back.verify(&b), Some("duckdb"));
        assert_eq!(back.verify("stk_wrong"), None);
        assert!(back.revoke("spark"));
        assert!(!back.revoke("spark"));
        assert_eq!(back.verify(&a), None);
    }
}
