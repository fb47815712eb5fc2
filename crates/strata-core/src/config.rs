//! `strata.toml`: what the user writes. Every field has a default that works on a laptop;
//! every key can be overridden by an environment variable `STRATA_<SECTION>__<KEY>`
//! (e.g. `STRATA_LAKE__FLUSH_INTERVAL=1s`).
//!
//! Validation here is pure (no network, no files opened) so `strata check` can run offline.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The commented default config written by `strata init`. A test checks that it parses to
/// exactly `Config::default()`, so the two cannot drift apart.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// The whole of `strata.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where everything lives: bus segments, lake files, catalog, app registry.
    pub data: DataConfig,
    /// The HTTP collector.
    pub server: ServerConfig,
    /// Validation, enrichment and deduplication of incoming events.
    pub collector: CollectorConfig,
    /// The durable log between the collector and its consumers.
    pub bus: BusConfig,
    /// The Iceberg lake and the sink that fills it.
    pub lake: LakeConfig,
    /// SQL models run as a daily DAG (`strata dag`, and on a schedule inside `strata serve`).
    pub warehouse: WarehouseConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Data directory. A relative path is taken relative to the directory of `strata.toml`.
    pub dir: PathBuf,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("data"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// Largest accepted request body, in bytes, after decompression. Larger → 413.
    pub max_body_bytes: usize,
    /// Peers whose `X-Forwarded-For` header is trusted (exact IPs). Empty: the socket peer is
    /// always the client IP.
    pub trusted_proxies: Vec<IpAddr>,
    /// Requests handled at once; beyond this new requests wait, then get 503.
    pub max_in_flight: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 4 * 1024 * 1024,
            trusted_proxies: Vec::new(),
            max_in_flight: 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorConfig {
    /// Largest single event, in bytes of JSON. Larger events are rejected to the dead-letter table.
    pub max_event_bytes: usize,
    /// A `messageId` seen again within this window is dropped as an SDK retry.
    #[serde(with = "humantime_serde")]
    pub dedup_window: Duration,
    /// Most message ids remembered for deduplication (bounds memory).
    pub dedup_capacity: usize,
    /// Events whose corrected time is older than this are rejected.
    #[serde(with = "humantime_serde")]
    pub max_event_age: Duration,
    /// Events whose corrected time is further than this in the future are rejected.
    #[serde(with = "humantime_serde")]
    pub max_event_future: Duration,
    /// MaxMind-format (GeoLite2 / DB-IP lite) city database for IP → country/region/city.
    /// Empty: no geo enrichment.
    pub geoip_db: Option<PathBuf>,
    /// Signed requests: how far the `X-Strata-Timestamp` may be from the server clock.
    #[serde(with = "humantime_serde")]
    pub signature_window: Duration,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            max_event_bytes: 32 * 1024,
            dedup_window: Duration::from_secs(24 * 3600),
            dedup_capacity: 2_000_000,
            max_event_age: Duration::from_secs(30 * 24 * 3600),
            max_event_future: Duration::from_secs(3600),
            geoip_db: None,
            signature_window: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    /// Segment log under `<data>/bus`.
    Embedded,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    /// `embedded` (the only backend so far; `kafka` comes with the scale-out work).
    pub kind: BusKind,
    /// Partitions of the `events` topic (keyed by user id, else anonymous id).
    pub partitions: u32,
    /// Size at which a segment file is closed and a new one started, in bytes.
    pub segment_bytes: u64,
    /// Group commit: appends arriving within this window share one fsync.
    #[serde(with = "humantime_serde")]
    pub group_commit_window: Duration,
    /// Bytes waiting for fsync beyond which producers get "overloaded" (→ HTTP 503).
    pub max_pending_bytes: u64,
    /// Closed segments older than this are deleted (only once every consumer group is past them).
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Per-partition size beyond which the oldest closed segments are deleted.
    pub retention_bytes: u64,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            kind: BusKind::Embedded,
            partitions: 4,
            segment_bytes: 128 * 1024 * 1024,
            group_commit_window: Duration::from_millis(2),
            max_pending_bytes: 64 * 1024 * 1024,
            retention: Duration::from_secs(7 * 24 * 3600),
            retention_bytes: 16 * 1024 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// Where table files go. A relative path is taken relative to the data directory.
    pub warehouse: PathBuf,
    /// SQLite file of the Iceberg SQL catalog, relative to the data directory.
    pub catalog: PathBuf,
    /// Name of the catalog in the SQL catalog's `catalog_name` column (what pyiceberg calls it).
    pub catalog_name: String,
    /// The lake sink commits at least this often when it holds rows.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// ... or as soon as it holds this many rows.
    pub flush_max_rows: usize,
    /// ... or this many bytes of buffered events.
    pub flush_max_bytes: usize,
    /// `strata serve` compacts tables in the background when their compaction policy says so
    /// (table properties `strata.compaction.*` override the defaults below per table).
    /// false: tables are compacted only by `strata table compact`.
    pub compaction: bool,
    /// How often the background compaction checks every table.
    #[serde(with = "humantime_serde")]
    pub compaction_interval: Duration,
    /// Size compacted data files aim for, in bytes (table property
    /// `write.target-file-size-bytes` overrides).
    pub compaction_target_file_size: u64,
    /// A partition's small files (below 75% of the target size) are compacted once it has
    /// this many (`strata.compaction.min-input-files`).
    pub compaction_min_input_files: usize,
    /// A table is compacted when it has at least this many data files
    /// (`strata.compaction.min-files`) ...
    pub compaction_min_files: usize,
    /// ... and at least this fraction of them are small files in partitions that have enough
    /// to compact (`strata.compaction.small-file-ratio`) ...
    pub compaction_small_file_ratio: f64,
    /// ... or when it has delete files numbering at least this fraction of its data files
    /// (`strata.compaction.delete-file-ratio`).
    pub compaction_delete_file_ratio: f64,
}

impl Default for LakeConfig {
    fn default() -> Self {
        Self {
            warehouse: PathBuf::from("lake"),
            catalog: PathBuf::from("catalog.db"),
            catalog_name: "strata".to_string(),
            flush_interval: Duration::from_secs(10),
            flush_max_rows: 500_000,
            flush_max_bytes: 128 * 1024 * 1024,
            compaction: true,
            compaction_interval: Duration::from_secs(600),
            compaction_target_file_size: 128 * 1024 * 1024,
            compaction_min_input_files: 5,
            compaction_min_files: 20,
            compaction_small_file_ratio: 0.3,
            compaction_delete_file_ratio: 0.1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WarehouseConfig {
    /// The warehouse project folder (`models/<layer>/<name>.sql`), relative to the directory of
    /// `strata.toml`. Empty: no warehouse.
    pub project: PathBuf,
    /// When `strata serve` runs the DAG: a cron expression (minute hour day-of-month month
    /// day-of-week, UTC). Empty: no schedule.
    pub schedule: String,
    /// The scheduled run is for this many days before the day it starts (1 = yesterday).
    pub lag_days: u32,
    /// A DAG run still going after this is stopped and reported.
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
    /// First retry of a failed model waits this long, doubling after.
    #[serde(with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// Before a scheduled run, wait until events up to the end of the run date (plus this
    /// much lateness) are in the lake...
    #[serde(with = "humantime_serde")]
    pub sentinel_lateness: Duration,
    /// ... but no longer than this; then run anyway and alert.
    #[serde(with = "humantime_serde")]
    pub sentinel_timeout: Duration,
    /// Slack-compatible webhook (`{"text": …}` JSON POST) for failures, missed deadlines,
    /// failed checks and the daily summary. Empty: no alerts.
    pub alert_webhook: String,
}

impl Default for WarehouseConfig {
    fn default() -> Self {
        Self {
            project: PathBuf::new(),
            schedule: "0 2 * * *".to_string(),
            lag_days: 1,
            deadline: Duration::from_secs(7 * 3600),
            retry_backoff: Duration::from_secs(60),
            sentinel_lateness: Duration::from_secs(600),
            sentinel_timeout: Duration::from_secs(2 * 3600),
            alert_webhook: String::new(),
        }
    }
}

impl Config {
    /// Loads `path` (which may be absent) and then `STRATA_<SECTION>__<KEY>` environment
    /// overrides, resolves relative paths against the config file's directory and validates.
    pub fn load(path: &Path) -> Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if path.exists() {
            figment = figment.merge(Toml::file(path));
        } else {
            return Err(Error::user(format!(
                "config file {} not found (create one with `strata init DIR`)",
                path.display()
            )));
        }
        let mut config: Config = figment
            // Only `STRATA_<SECTION>__<KEY>` names are config; other STRATA_* variables (test
            // switches, log settings) are not.
            .merge(
                Env::prefixed("STRATA_")
                    .split("__")
                    .filter(|k| k.as_str().contains('.')),
            )
            .extract()
            .map_err(|e| Error::user(format!("invalid config {}: {e}", path.display())))?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        config.resolve_paths(&base);
        config.validate()?;
        Ok(config)
    }

    /// Parses a config from TOML text alone (no env, no path resolution). For tests and `check`.
    pub fn from_toml(text: &str) -> Result<Self> {
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(text))
            .extract()
            .map_err(|e| Error::user(format!("invalid config: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        if self.data.dir.is_relative() {
            self.data.dir = base.join(&self.data.dir);
        }
        if !self.warehouse.project.as_os_str().is_empty() && self.warehouse.project.is_relative() {
            self.warehouse.project = base.join(&self.warehouse.project);
        }
    }

    /// Pure checks of values that parse but make no sense.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: &str| Err(Error::user(msg.to_string()));
        if self.bus.partitions == 0 || self.bus.partitions > 1024 {
            return bad("bus.partitions must be between 1 and 1024");
        }
        if self.bus.segment_bytes < 1024 * 1024 {
            return bad("bus.segment_bytes must be at least 1 MiB");
        }
        if self.server.max_body_bytes < 1024 {
            return bad("server.max_body_bytes must be at least 1024");
        }
        if self.collector.max_event_bytes > self.server.max_body_bytes {
            return bad("collector.max_event_bytes cannot exceed server.max_body_bytes");
        }
        if self.lake.flush_interval.is_zero() {
            return bad("lake.flush_interval must be positive");
        }
        if self.lake.flush_max_rows == 0 {
            return bad("lake.flush_max_rows must be positive");
        }
        if self.lake.compaction_interval.is_zero() {
            return bad("lake.compaction_interval must be positive");
        }
        if self.lake.compaction_target_file_size < 1024 * 1024 {
            return bad("lake.compaction_target_file_size must be at least 1 MiB");
        }
        if self.lake.compaction_min_input_files < 2 {
            return bad("lake.compaction_min_input_files must be at least 2");
        }
        let ratio = |r: f64| r > 0.0 && r <= 1.0;
        if !ratio(self.lake.compaction_small_file_ratio) {
            return bad("lake.compaction_small_file_ratio must be in (0, 1]");
        }
        if self.lake.compaction_delete_file_ratio.is_nan()
            || self.lake.compaction_delete_file_ratio <= 0.0
        {
            return bad("lake.compaction_delete_file_ratio must be positive");
        }
        if self.server.max_in_flight == 0 {
            return bad("server.max_in_flight must be positive");
        }
        if !self.warehouse.schedule.trim().is_empty() {
            if let Err(e) = crate::cron::Cron::parse(&self.warehouse.schedule) {
                return Err(Error::user(format!("warehouse.schedule: {e}")));
            }
        }
        let hook = &self.warehouse.alert_webhook;
        if !(hook.is_empty() || hook.starts_with("http://") || hook.starts_with("https://")) {
            return bad("warehouse.alert_webhook must be an http:// or https:// URL");
        }
        Ok(())
    }

    /// `<data>/bus`
    pub fn bus_dir(&self) -> PathBuf {
        self.data.dir.join("bus")
    }

    /// The lake's warehouse directory (absolute once loaded).
    pub fn warehouse_dir(&self) -> PathBuf {
        if self.lake.warehouse.is_relative() {
            self.data.dir.join(&self.lake.warehouse)
        } else {
            self.lake.warehouse.clone()
        }
    }

    /// The SQLite file of the SQL catalog.
    pub fn catalog_path(&self) -> PathBuf {
        if self.lake.catalog.is_relative() {
            self.data.dir.join(&self.lake.catalog)
        } else {
            self.lake.catalog.clone()
        }
    }

    /// `<data>/apps.json`, the registry of apps and their write keys.
    pub fn apps_path(&self) -> PathBuf {
        self.data.dir.join("apps.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_toml_matches_defaults() {
        let parsed = Config::from_toml(DEFAULT_TOML).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = Config::from_toml("[lake]\nflush_intervall = \"1s\"\n").unwrap_err();
        assert!(err.to_string().contains("flush_intervall"), "{err}");
    }

    #[test]
    fn durations_parse() {
        let c = Config::from_toml("[lake]\nflush_interval = \"250ms\"\n").unwrap();
        assert_eq!(c.lake.flush_interval, Duration::from_millis(250));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail closure signature
    fn env_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strata.toml");
        std::fs::write(&path, "[lake]\nflush_interval = \"5s\"\n").unwrap();
        // A variable name no other test uses, so parallel tests do not see it.
        figment::Jail::expect_with(|jail| {
            jail.set_env("STRATA_LAKE__FLUSH_MAX_ROWS", "77");
            jail.set_env("STRATA_TEST_SOMETHING_ELSE", "1");
            let c = Config::load(&path).unwrap();
            assert_eq!(c.lake.flush_max_rows, 77);
            assert_eq!(c.lake.flush_interval, Duration::from_secs(5));
            assert_eq!(c.data.dir, dir.path().join("data"));
            Ok(())
        });
    }

    #[test]
    fn invalid_values_name_the_key() {
        let err = Config::from_toml("[bus]\npartitions = 0\n").unwrap_err();
        assert!(err.to_string().contains("bus.partitions"), "{err}");
    }
}
