//! Who is sending: the write key (HTTP Basic username, or `writeKey` in the body), the app
//! registry it resolves against (reloaded when `<data>/apps.json` changes), and the optional
//! per-app HMAC-SHA256 request signature.
//!
//! Signature scheme, for apps created with a secret:
//! - `X-Strata-Timestamp: <unix seconds>`
//! - `X-Strata-Signature: sha256=<lowercase hex of HMAC-SHA256(secret, "<timestamp>." + body)>`
//!
//! where `<timestamp>` is the header's text exactly as sent and `body` the request body bytes
//! as sent on the wire (still gzip-compressed when `Content-Encoding: gzip`). The timestamp must
//! be within `collector.signature_window` of the server clock.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use axum::http::{header, HeaderMap};
use base64::Engine;
use hmac::{KeyInit, Mac};
use sha2::Sha256;
use strata_core::apps::Apps;
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};

type HmacSha256 = hmac::Hmac<Sha256>;

/// Header carrying the signing time, unix seconds.
pub const TIMESTAMP_HEADER: &str = "x-strata-timestamp";
/// Header carrying `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-strata-signature";

/// How often the registry file is checked for changes, at most.
const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Signs a request body: returns the value for `X-Strata-Signature`
/// (`sha256=` + lowercase hex of HMAC-SHA256(secret, "<timestamp>." + body)).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(secret, timestamp.to_string().as_bytes(), body))
    )
}

fn mac(secret: &str, timestamp: &[u8], body: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this never fails; an empty MAC would never verify.
    let Ok(mut m) = HmacSha256::new_from_slice(secret.as_bytes()) else {
        return Vec::new();
    };
    m.update(timestamp);
    m.update(b".");
    m.update(body);
    m.finalize().into_bytes().to_vec()
}

/// Checks the signature headers of a request from an app with `secret`.
pub fn verify_signature(
    secret: &str,
    headers: &HeaderMap,
    body: &[u8],
    now_secs: i64,
    window: Duration,
) -> Result<()> {
    let unauthorized = |m: &str| Err(Error::Unauthorized(m.to_string()));
    let Some(ts_text) = headers.get(TIMESTAMP_HEADER) else {
        return unauthorized(
            "missing X-Strata-Timestamp header (this app requires signed requests)",
        );
    };
    let Some(sig) = headers.get(SIGNATURE_HEADER) else {
        return unauthorized(
            "missing X-Strata-Signature header (this app requires signed requests)",
        );
    };
    let Some(ts) = ts_text
        .to_str()
        .ok()
        .and_then(|t| t.trim().parse::<i64>().ok())
    else {
        return unauthorized("X-Strata-Timestamp must be unix seconds");
    };
    let window_secs = i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
    if now_secs.abs_diff(ts) > window_secs.unsigned_abs() {
        return unauthorized(
            "stale X-Strata-Timestamp: outside the signature window of the server clock",
        );
    }
    let provided = sig
        .to_str()
        .ok()
        .and_then(|s| s.trim().strip_prefix("sha256="))
        .and_then(|h| hex::decode(h).ok());
    let Some(provided) = provided else {
        return unauthorized("X-Strata-Signature must be sha256=<hex>");
    };
    let expected = mac(secret, ts_text.as_bytes(), body);
    if expected.is_empty() || !bool::from(expected.as_slice().ct_eq(provided.as_slice())) {
        return unauthorized("bad signature");
    }
    Ok(())
}

/// The write key of HTTP Basic auth (the username; the password is ignored).
pub fn basic_write_key(headers: &HeaderMap) -> Result<Option<String>> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || Error::Unauthorized("malformed Authorization header: expected Basic".into());
    let text = value.to_str().map_err(|_| bad())?.trim();
    let Some((scheme, rest)) = text.split_once(' ') else {
        return Err(bad());
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let user = decoded.split_once(':').map_or(decoded.as_str(), |(u, _)| u);
    if user.is_empty() {
        return Ok(None);
    }
    Ok(Some(user.to_string()))
}

/// An app as the request path needs it.
#[derive(Debug)]
pub struct AppEntry {
    pub name: String,
    pub secret: Option<String>,
}

type Registry = HashMap<String, Arc<AppEntry>>;

/// The app registry, reloaded from `<data>/apps.json` when the file changes (checked at most
/// every 2 s, on lookups). A registry that fails to parse on reload is ignored (the previous one
/// stays) and logged.
pub struct AppRegistry {
    path: PathBuf,
    current: RwLock<Arc<Registry>>,
    check: Mutex<ReloadState>,
}

struct ReloadState {
    checked_at: Instant,
    stamp: Option<(SystemTime, u64)>,
}

impl AppRegistry {
    /// Loads the registry; a corrupt file is an error (a missing one is empty).
    pub fn open(path: &Path) -> Result<Self> {
        let stamp = file_stamp(path);
        let apps = Apps::load(path).map_err(|e| Error::Setup(e.to_string()))?;
        Ok(Self {
            path: path.to_path_buf(),
            current: RwLock::new(Arc::new(index(apps))),
            check: Mutex::new(ReloadState {
                checked_at: Instant::now(),
                stamp,
            }),
        })
    }

    pub fn lookup(&self, write_key: &str) -> Option<Arc<AppEntry>> {
        self.maybe_reload();
        let current = self
            .current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        current.get(write_key).cloned()
    }

    fn maybe_reload(&self) {
        // Only one request does the check; the others go on with the current registry.
        let Ok(mut state) = self.check.try_lock() else {
            return;
        };
        if state.checked_at.elapsed() < RELOAD_CHECK_INTERVAL {
            return;
        }
        state.checked_at = Instant::now();
        let stamp = file_stamp(&self.path);
        if stamp == state.stamp {
            return;
        }
        match Apps::load(&self.path) {
            Ok(apps) => {
                let registry = Arc::new(index(apps));
                tracing::info!(apps = registry.len(), path = %self.path.display(), "app registry reloaded");
                *self
                    .current
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = registry;
                state.stamp = stamp;
            }
            Err(e) => {
                tracing::warn!(error = %e, "app registry not reloaded, keeping the previous one");
            }
        }
    }
}

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn index(apps: Apps) -> Registry {
    apps.apps
        .into_iter()
        .map(|a| {
            (
                a.write_key,
                Arc::new(AppEntry {
                    name: a.name,
                    secret: a.secret.filter(|s| !s.is_empty()),
                }),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(ts: &str, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(TIMESTAMP_HEADER, HeaderValue::from_str(ts).unwrap());
        h.insert(SIGNATURE_HEADER, HeaderValue::from_str(sig).unwrap());
        h
    }

    #[test]
    fn sign_matches_an_independent_implementation() {
        // Python: hmac.new(b"key", b"1700000000.hello", hashlib.sha256).hexdigest()
        let s = sign("key", 1_700_000_000, b"hello");
        assert_eq!(
            s,
            "sha256=4d583a269f4f276a3fa80ff31b5a01879a848096983222a17893d198418939aa"
        );
        assert_ne!(s, sign("key", 1_700_000_001, b"hello"));
        assert_ne!(s, sign("key2", 1_700_000_000, b"hello"));
    }

    #[test]
    fn verify_accepts_good_and_refuses_bad() {
        let w = Duration::from_secs(300);
        let now = 1_700_000_000;
        let sig = sign("s3cret", now, b"{}");
        verify_signature(
            "s3cret",
            &headers(&now.to_string(), &sig),
            b"{}",
            now + 10,
            w,
        )
        .unwrap();
        let e = verify_signature("s3cret", &headers(&now.to_string(), &sig), b"{ }", now, w)
            .unwrap_err();
        assert!(e.to_string().contains("bad signature"), "{e}");
        let e =
            verify_signature("other", &headers(&now.to_string(), &sig), b"{}", now, w).unwrap_err();
        assert!(e.to_string().contains("bad signature"), "{e}");
        let e = verify_signature(
            "s3cret",
            &headers(&now.to_string(), &sig),
            b"{}",
            now + 301,
            w,
        )
        .unwrap_err();
        assert!(e.to_string().contains("stale"), "{e}");
        let e = verify_signature("s3cret", &headers("abc", &sig), b"{}", now, w).unwrap_err();
        assert!(e.to_string().contains("unix seconds"), "{e}");
        let e = verify_signature("s3cret", &HeaderMap::new(), b"{}", now, w).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        let e = verify_signature("s3cret", &headers(&now.to_string(), "zz"), b"{}", now, w)
            .unwrap_err();
        assert!(e.to_string().contains("sha256="), "{e}");
    }

    #[test]
    fn basic_auth_username_is_the_key() {
        let mut h = HeaderMap::new();
        assert_eq!(basic_write_key(&h).unwrap(), None);
        // base64("wk1:")
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic d2sxOg=="),
        );
        assert_eq!(basic_write_key(&h).unwrap().as_deref(), Some("wk1"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert!(basic_write_key(&h).is_err());
    }

    #[test]
    fn registry_reloads_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("apps.json");
        let reg = AppRegistry::open(&path).unwrap();
        assert!(reg.lookup("wk").is_none());
        let mut apps = Apps::default();
        apps.add(strata_core::apps::App {
            name: "web".into(),
            write_key: "wk".into(),
            secret: None,
            created_at: "2026-01-01T00:00:00Z".into(),
        })
        .unwrap();
        apps.save(&path).unwrap();
        // Force the next lookup to check the file.
        reg.check.lock().unwrap().checked_at = Instant::now() - RELOAD_CHECK_INTERVAL * 2;
        assert_eq!(reg.lookup("wk").unwrap().name, "web");
    }
}
