//! PII hashing per app (`[collector.pii]`): which fields of an app's events are personal data,
//! and the key they are hashed with before they reach the bus (ADR 0029).
//!
//! A hashed value is `hmac:` followed by the lowercase hex of HMAC-SHA256(key, value), where
//! `value` is the string as sent (JSON escapes undone), or a number's JSON text, or `true` /
//! `false`. The same value under the same key always gives the same hash, so joins across events
//! and tables still work; another key gives unrelated hashes.
//!
//! The key never lives in the data directory (a copy of the data must not carry the means to
//! re-identify it): it is the content of `collector.pii.key_file` (an absolute path outside the
//! data directory) or of the `STRATA_PII_KEY` variable, at least [`KEY_MIN_BYTES`] bytes.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::{Error, Result};

/// What every hashed value starts with.
pub const HASH_PREFIX: &str = "hmac:";
/// Environment variable holding the key when `collector.pii.key_file` is not set.
pub const KEY_ENV: &str = "STRATA_PII_KEY";
/// Shortest key accepted, in bytes (HMAC-SHA256's block-level security wants 32).
pub const KEY_MIN_BYTES: usize = 32;
/// Top-level event fields a path may name alone.
pub const ID_FIELDS: [&str; 4] = ["userId", "anonymousId", "previousId", "groupId"];
/// Top-level JSON objects a path may descend into.
pub const JSON_ROOTS: [&str; 3] = ["traits", "properties", "context"];
/// Most segments in a path.
const MAX_SEGMENTS: usize = 16;
/// Longest segment, in bytes.
const MAX_SEGMENT_BYTES: usize = 128;

/// `[collector.pii]`: fields of incoming events replaced by a keyed hash before the event is
/// appended to the bus, so raw values never reach the bus or the lake.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PiiConfig {
    /// Absolute path of the file holding the hashing key (its bytes, trailing whitespace
    /// ignored; at least 32 bytes, e.g. `openssl rand -hex 32`). Must be outside the data
    /// directory. Unset: the key is the value of the `STRATA_PII_KEY` environment variable.
    pub key_file: Option<PathBuf>,
    /// Paths hashed in the events of every app, e.g. `traits.email`, `context.traits.email`,
    /// `properties.phone_number`, `userId`. A path is `traits`, `properties` or `context`
    /// followed by dot-separated object keys (any depth), or one of `userId`, `anonymousId`,
    /// `previousId`, `groupId`. A path naming an object or array hashes every value inside it.
    pub paths: Vec<String>,
    /// Further paths for one app, by app name (`strata apps list` shows what applies to each),
    /// e.g. `shop = ["properties.phone_number"]`.
    pub apps: BTreeMap<String, Vec<String>>,
}

impl PiiConfig {
    /// Whether any app has a path to hash.
    pub fn is_enabled(&self) -> bool {
        !self.paths.is_empty() || self.apps.values().any(|p| !p.is_empty())
    }

    /// The paths that apply to `app`: the global ones, then its own (without repeats).
    pub fn paths_for(&self, app: &str) -> Result<Vec<PiiPath>> {
        let own = self.apps.get(app).map(Vec::as_slice).unwrap_or_default();
        let mut out: Vec<PiiPath> = Vec::new();
        for text in self.paths.iter().chain(own) {
            let path = PiiPath::parse(text)
                .map_err(|e| Error::user(format!("collector.pii: path {text:?}: {e}")))?;
            if !out.contains(&path) {
                out.push(path);
            }
        }
        Ok(out)
    }

    /// Offline checks (what `strata check` and `strata serve` run): every path well-formed,
    /// and, when any path is set or `key_file` is, a usable key outside `data_dir`. Every
    /// problem is reported, not only the first.
    pub fn validate(&self, data_dir: &Path) -> Result<()> {
        self.validate_with(data_dir, &|k| std::env::var(k).ok())
    }

    /// [`PiiConfig::validate`] reading the environment through `env`.
    pub fn validate_with(
        &self,
        data_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<()> {
        let mut problems = Vec::new();
        for (i, text) in self.paths.iter().enumerate() {
            if let Err(e) = PiiPath::parse(text) {
                problems.push(format!("collector.pii.paths[{i}] {text:?}: {e}"));
            }
        }
        for (app, paths) in &self.apps {
            if app.trim().is_empty() {
                problems.push("collector.pii.apps: an app name is empty".to_string());
            }
            for (i, text) in paths.iter().enumerate() {
                if let Err(e) = PiiPath::parse(text) {
                    problems.push(format!("collector.pii.apps.{app}[{i}] {text:?}: {e}"));
                }
            }
        }
        if self.is_enabled() || self.key_file.is_some() {
            if let Err(e) = self.key_with(data_dir, env) {
                problems.push(e.to_string());
            }
        }
        match problems.len() {
            0 => Ok(()),
            1 => Err(Error::user(problems.remove(0))),
            n => Err(Error::user(format!(
                "{n} problems in [collector.pii]:\n  - {}",
                problems.join("\n  - ")
            ))),
        }
    }

    /// The hashing key, for the collector and for erasure by hashed id (`hash` a user id with
    /// it to find the rows). `None` when no path is configured and no key is given.
    pub fn key(&self, data_dir: &Path) -> Result<Option<PiiKey>> {
        self.key_with(data_dir, &|k| std::env::var(k).ok())
    }

    /// [`PiiConfig::key`] reading the environment through `env`.
    pub fn key_with(
        &self,
        data_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<PiiKey>> {
        let from_env = env(KEY_ENV).filter(|v| !v.trim().is_empty());
        let bytes = match (&self.key_file, from_env) {
            (Some(path), Some(_)) => {
                return Err(Error::user(format!(
                    "collector.pii: the key is given twice (key_file {} and {KEY_ENV}); keep one",
                    path.display()
                )))
            }
            (None, None) if self.is_enabled() => {
                return Err(Error::user(format!(
                    "collector.pii: paths are configured but there is no key: set \
                     collector.pii.key_file (outside the data directory) or {KEY_ENV}"
                )))
            }
            (None, None) => return Ok(None),
            (None, Some(value)) => value.into_bytes(),
            (Some(path), None) => read_key_file(path, data_dir)?,
        };
        PiiKey::new(bytes).map(Some)
    }
}

fn read_key_file(path: &Path, data_dir: &Path) -> Result<Vec<u8>> {
    let shown = path.display();
    if !path.is_absolute() {
        return Err(Error::user(format!(
            "collector.pii.key_file must be an absolute path, not {shown}"
        )));
    }
    if is_inside(path, data_dir) {
        return Err(Error::user(format!(
            "collector.pii.key_file {shown} is inside the data directory {}: keep the key \
             elsewhere, so that a copy of the data cannot be re-identified with it",
            data_dir.display()
        )));
    }
    std::fs::read(path).map_err(|e| {
        Error::user(format!(
            "collector.pii.key_file {shown} cannot be read: {e}"
        ))
    })
}

/// Whether `path` is `dir` or below it, lexically (after `.`/`..`) or through symlinks.
fn is_inside(path: &Path, dir: &Path) -> bool {
    let absolute = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir().map_or_else(|_| p.to_path_buf(), |cwd| cwd.join(p))
        }
    };
    if normalize(&absolute(path)).starts_with(normalize(&absolute(dir))) {
        return true;
    }
    match (path.canonicalize(), dir.canonicalize()) {
        (Ok(p), Ok(d)) => p.starts_with(d),
        _ => false,
    }
}

/// `path` with `.` dropped and `..` applied, without touching the disk.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

type HmacSha256 = hmac::Hmac<Sha256>;

/// The secret PII values are hashed with. Its bytes are never printed. Holds the HMAC state
/// after the key (cloned per value: cheaper than keying again).
#[derive(Clone)]
pub struct PiiKey(HmacSha256);

impl fmt::Debug for PiiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PiiKey(<redacted>)")
    }
}

impl PiiKey {
    /// A key from its bytes (trailing whitespace, such as a file's last newline, dropped).
    pub fn new(mut bytes: Vec<u8>) -> Result<Self> {
        while bytes.last().is_some_and(u8::is_ascii_whitespace) {
            bytes.pop();
        }
        if bytes.len() < KEY_MIN_BYTES {
            return Err(Error::user(format!(
                "collector.pii: the key is {} bytes; it must be at least {KEY_MIN_BYTES} \
                 (e.g. `openssl rand -hex 32`)",
                bytes.len()
            )));
        }
        // HMAC takes keys of any length: this cannot fail.
        let mac = HmacSha256::new_from_slice(&bytes)
            .map_err(|e| Error::Internal(format!("hmac key: {e}")))?;
        Ok(Self(mac))
    }

    /// `hmac:` + lowercase hex of HMAC-SHA256(key, value): what the collector stores in place
    /// of `value`. Use it to find a person's rows by a hashed id.
    pub fn hash(&self, value: &str) -> String {
        let mut mac = self.0.clone();
        mac.update(value.as_bytes());
        let mut hex = [0u8; 64];
        for (pair, b) in hex.chunks_exact_mut(2).zip(mac.finalize().into_bytes()) {
            pair[0] = HEX[usize::from(b >> 4)];
            pair[1] = HEX[usize::from(b & 0xf)];
        }
        let mut out = String::with_capacity(HASH_PREFIX.len() + hex.len());
        out.push_str(HASH_PREFIX);
        // Hex digits are ASCII: this is never the empty fallback.
        out.push_str(std::str::from_utf8(&hex).unwrap_or_default());
        out
    }

    /// [`PiiKey::hash`], except that a value already in the hashed form is kept as it is, so
    /// hashing twice (a replayed dead letter, an upstream that hashes) changes nothing.
    pub fn hash_once<'a>(&self, value: &'a str) -> std::borrow::Cow<'a, str> {
        if is_hash(value) {
            std::borrow::Cow::Borrowed(value)
        } else {
            std::borrow::Cow::Owned(self.hash(value))
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Whether `value` has the form of a hash: `hmac:` and 64 lowercase hex digits.
pub fn is_hash(value: &str) -> bool {
    value.strip_prefix(HASH_PREFIX).is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// A parsed path: its segments, the first being a JSON root or an id field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PiiPath(Vec<String>);

impl PiiPath {
    /// Parses `traits.email`-style text; the error says which rule it breaks.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        if text.is_empty() {
            return Err("empty path".into());
        }
        let segments: Vec<&str> = text.split('.').collect();
        if segments.len() > MAX_SEGMENTS {
            return Err(format!("more than {MAX_SEGMENTS} segments"));
        }
        for s in &segments {
            if s.is_empty() {
                return Err("empty segment (two dots in a row, or a dot at an end)".into());
            }
            if s.len() > MAX_SEGMENT_BYTES {
                return Err(format!(
                    "a segment is longer than {MAX_SEGMENT_BYTES} bytes"
                ));
            }
            if s.chars().any(char::is_control) {
                return Err("control character in a segment".into());
            }
            if s.trim() != *s {
                return Err(format!("segment {s:?} starts or ends with whitespace"));
            }
        }
        let root = segments[0];
        if ID_FIELDS.contains(&root) {
            if segments.len() > 1 {
                return Err(format!("{root} is a string: nothing below it to name"));
            }
        } else if JSON_ROOTS.contains(&root) {
            if segments.len() < 2 {
                return Err(format!(
                    "name a field inside {root} (e.g. {root}.email), not all of it"
                ));
            }
        } else {
            return Err(format!(
                "must start with one of {} or be one of {}",
                JSON_ROOTS.join(", "),
                ID_FIELDS.join(", ")
            ));
        }
        Ok(Self(segments.into_iter().map(str::to_string).collect()))
    }

    /// The segments, root first.
    pub fn segments(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for PiiPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

#[cfg(test)]
#[path = "pii_tests.rs"]
mod tests;
