//! `[online]`: where the online store lives.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which store holds online features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnlineKind {
    /// LMDB files under the data directory (`<data>/online`): no server, several processes
    /// may read and write it at once, memory bounded by the OS page cache.
    #[default]
    Embedded,
    /// A Redis server (`url`).
    Redis,
}

/// `[online]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OnlineConfig {
    /// `embedded` (default) or `redis`.
    pub kind: OnlineKind,
    /// Redis URL for `kind = "redis"`: `redis://[user:password@]host:port[/db]`
    /// (`rediss://` for TLS). When the URL has no password, it comes from the environment
    /// variable `STRATA_ONLINE_PASSWORD` if set, so it need not be written in the config.
    pub url: Option<String>,
    /// Prefix of every Redis key, so several deployments can share one Redis.
    pub prefix: String,
    /// Directory of the embedded store (default: `<data>/online`).
    pub path: Option<PathBuf>,
    /// The most the embedded store's file may grow to, in GiB (LMDB's map size: address
    /// space, not memory; the file grows as data is written).
    pub max_size_gib: u64,
    /// A call to the store that takes longer fails (HTTP 503) instead of waiting: a server
    /// answers quickly when Redis is down or slow.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Entities written per batch by a sync: one transaction on the embedded store, one
    /// pipeline on Redis. Bounds a sync's memory together with the lake's read batches.
    pub batch_rows: usize,
}

impl Default for OnlineConfig {
    fn default() -> Self {
        OnlineConfig {
            kind: OnlineKind::Embedded,
            url: None,
            prefix: "strata".to_string(),
            path: None,
            max_size_gib: 256,
            timeout: Duration::from_millis(1000),
            batch_rows: 2000,
        }
    }
}

impl OnlineConfig {
    /// Pure checks (no connection), every problem one per line.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        match self.kind {
            OnlineKind::Redis => match &self.url {
                None => {
                    problems.push("online.url is required with online.kind = \"redis\"".to_string())
                }
                Some(url) if !(url.starts_with("redis://") || url.starts_with("rediss://")) => {
                    problems.push(format!(
                        "online.url must start with redis:// or rediss:// (got {})",
                        strata_core::redact::redact_url(url)
                    ))
                }
                Some(_) => {}
            },
            OnlineKind::Embedded => {
                if self.url.is_some() {
                    problems
                        .push("online.url is only used with online.kind = \"redis\"".to_string());
                }
            }
        }
        if self.prefix.is_empty() || self.prefix.contains(char::is_whitespace) {
            problems.push("online.prefix must be non-empty, without spaces".to_string());
        }
        if self.timeout.is_zero() {
            problems.push("online.timeout must be positive".to_string());
        }
        if !(1..=100_000).contains(&self.batch_rows) {
            problems.push("online.batch_rows must be between 1 and 100000".to_string());
        }
        if !(1..=1 << 20).contains(&self.max_size_gib) {
            problems.push("online.max_size_gib must be between 1 and 1048576".to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }

    /// The embedded store's directory for data directory `data_dir`.
    pub fn embedded_path(&self, data_dir: &Path) -> PathBuf {
        self.path.clone().unwrap_or_else(|| data_dir.join("online"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_problems_are_all_reported() {
        assert!(OnlineConfig::default().validate().is_ok());
        let bad = OnlineConfig {
            kind: OnlineKind::Redis,
            timeout: Duration::ZERO,
            batch_rows: 0,
            ..OnlineConfig::default()
        };
        let problems = bad.validate().unwrap_err();
        assert_eq!(problems.lines().count(), 3, "{problems}");
        let bad_url = OnlineConfig {
            kind: OnlineKind::Redis,
            url: Some("http://user:secret@host".into()),
            ..OnlineConfig::default()
        };
        let problem = bad_url.validate().unwrap_err();
        assert!(!problem.contains("secret"), "{problem}");
    }
}
