//! The sections of `strata.toml` the table engine reads: `[lake]` (where table files go, the
//! sink's flush thresholds, compaction, S3), `[catalog]` (the SQL or REST catalog) and
//! `[privacy]` (the key columns erasure searches). Each section's `validate()` is pure, so
//! `strata check` runs offline; the root config (in the `strata` binary) collects every
//! section's problems into one report.
//!
//! [`LakeOptions`] is what [`Lake::open`](crate::Lake::open) takes: the data directory and the
//! two sections it needs, with the paths resolved against the data directory.

pub mod s3;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_core::error::Result;

/// The kind of Iceberg catalog the lake's tables live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatalogKind {
    /// The embedded Iceberg SQL catalog: a SQLite file in the data directory (`lake.catalog`).
    #[default]
    Sql,
    /// An Iceberg REST catalog at `catalog.uri`: another `strata serve` (`/iceberg`), Polaris,
    /// Lakekeeper, Gravitino, Nessie, Unity, ...
    Rest,
}

/// `[catalog]`: where the lake's table pointers live. Table files are still read and written
/// through `[lake]`'s storage (a directory, or S3), which must be where the catalog's tables are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// `sql` (default) or `rest`.
    pub kind: CatalogKind,
    /// REST: the catalog's base URI, the part before `/v1/...`, e.g.
    /// `http://10.0.0.5:8080/iceberg` for another `strata serve`.
    pub uri: String,
    /// REST: sent as `Authorization: Bearer <token>`; empty: no token.
    pub token: String,
    /// REST: the warehouse asked for in `GET /v1/config?warehouse=...` (catalogs that serve
    /// several); empty: the catalog's default.
    pub warehouse: String,
    /// REST: how long one request may take before it fails (and is retried).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            kind: CatalogKind::Sql,
            uri: String::new(),
            token: String::new(),
            warehouse: String::new(),
            timeout: Duration::from_secs(30),
        }
    }
}

impl CatalogConfig {
    /// The section's problem, if any (empty: valid).
    pub fn validate(&self) -> Result<(), Vec<String>> {
        self.check().map_err(|e| vec![e])
    }

    fn check(&self) -> Result<(), String> {
        match self.kind {
            CatalogKind::Sql => Ok(()),
            CatalogKind::Rest => {
                let uri = self.uri.trim();
                if uri.is_empty() {
                    return Err(String::from(
                        "catalog.kind = \"rest\" needs catalog.uri (the catalog's base URI, e.g. \
                         http://HOST:8080/iceberg)",
                    ));
                }
                if !(uri.starts_with("http://") || uri.starts_with("https://")) {
                    return Err(format!(
                        "catalog.uri must be an http:// or https:// URL, not {uri:?}"
                    ));
                }
                if self.timeout.is_zero() {
                    return Err(String::from("catalog.timeout must be positive"));
                }
                Ok(())
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// Where table files go: a directory (relative to the data directory) or
    /// `s3://bucket/prefix` (the `s3_*` keys below; ADR 0014). The catalog stays local.
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
    /// The lake sink drops an event whose `(app, messageId)` it already wrote to
    /// `ods.ods_event` within this window, judged by when the collectors took the events: an
    /// SDK retry that reached another collector than the first attempt lands once (ADR 0048).
    /// The same default as `collector.dedup_window`; keep it at least as long. `0s`: off.
    #[serde(with = "humantime_serde")]
    pub dedup_window: Duration,
    /// Most message ids the lake sink remembers for that (bounds memory, about 70 bytes each; the
    /// oldest are forgotten first). Its start reads back up to twice this many bus records. 0: off.
    pub dedup_capacity: usize,
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
    /// The same background pass expires snapshots older than this (time travel reaches back
    /// this far), with the files only they reference; table property
    /// `history.expire.max-snapshot-age-ms` overrides. A table committing every second keeps
    /// its metadata small only with a bound like this.
    #[serde(with = "humantime_serde")]
    pub snapshot_max_age: Duration,
    /// ... but keeps at least this many snapshots (`history.expire.min-snapshots-to-keep`).
    pub snapshot_min_keep: usize,
    /// Memory all SQL queries of one process may hold, in bytes (warehouse models, `strata
    /// sql`, MERGE). Sorts, joins and aggregations past it spill to `spill_dir`; 0 = half of the
    /// machine's memory.
    pub query_memory_limit: u64,
    /// Where queries spill, relative to the data directory.
    pub spill_dir: PathBuf,
    /// S3-compatible server, e.g. `http://127.0.0.1:9000`. Empty: `AWS_ENDPOINT_URL`, else
    /// AWS. Plain http only to a loopback host unless `s3_allow_http`.
    pub s3_endpoint: String,
    /// Empty: `AWS_REGION`, else `AWS_DEFAULT_REGION`, else `us-east-1`.
    pub s3_region: String,
    /// Empty: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, else the
    /// web-identity or instance credentials.
    pub s3_access_key_id: String,
    pub s3_secret_access_key: String,
    pub s3_session_token: String,
    /// `true`: path-style requests (`endpoint/bucket/key`), which most S3-compatible servers
    /// need; `false`: virtual-hosted (`bucket.endpoint/key`), AWS's default; `"auto"` (the
    /// default): path style for an endpoint that is an IP address or `localhost`, else
    /// virtual-hosted. `false` with an IP endpoint is a configuration error.
    pub s3_path_style: s3::PathStyle,
    /// Allow plain http to an endpoint that is not on loopback (a trusted network only).
    pub s3_allow_http: bool,
    /// Files up to this size are uploaded in one PUT, larger ones as multipart uploads of parts
    /// this big (5 MiB to 5 GiB).
    pub s3_part_size: u64,
    /// Retries of a failed S3 request, with exponential backoff (100 ms doubling to 15 s) ...
    pub s3_max_retries: u32,
    /// ... for at most this long. A write still failing then fails the flush; the lake sink
    /// retries it with its own backoff until S3 answers again.
    #[serde(with = "humantime_serde")]
    pub s3_retry_timeout: Duration,
}

impl Default for LakeConfig {
    fn default() -> Self {
        Self {
            warehouse: PathBuf::from("lake"),
            catalog: PathBuf::from("catalog.db"),
            catalog_name: "strata".to_string(),
            flush_interval: Duration::from_secs(10),
            flush_max_rows: 500_000,
            flush_max_bytes: 64 * 1024 * 1024,
            dedup_window: Duration::from_secs(24 * 3600),
            dedup_capacity: 2_000_000,
            compaction: true,
            compaction_interval: Duration::from_secs(600),
            compaction_target_file_size: 128 * 1024 * 1024,
            compaction_min_input_files: 5,
            compaction_min_files: 20,
            compaction_small_file_ratio: 0.3,
            compaction_delete_file_ratio: 0.1,
            snapshot_max_age: Duration::from_secs(3600),
            snapshot_min_keep: 1,
            query_memory_limit: 0,
            spill_dir: PathBuf::from("tmp/spill"),
            s3_endpoint: String::new(),
            s3_region: String::new(),
            s3_access_key_id: String::new(),
            s3_secret_access_key: String::new(),
            s3_session_token: String::new(),
            s3_path_style: s3::PathStyle::Auto,
            s3_allow_http: false,
            s3_part_size: 16 * 1024 * 1024,
            s3_max_retries: 10,
            s3_retry_timeout: Duration::from_secs(60),
        }
    }
}

impl LakeConfig {
    /// Every problem of the section, one message each: the S3 settings (merged with the AWS
    /// variables, no network) and the sink and compaction thresholds.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if s3::is_remote(&self.warehouse.to_string_lossy()) {
            if let Err(e) = s3::S3Settings::resolve(self, &|k| std::env::var(k).ok()) {
                problems.push(e.to_string());
            }
        }
        let mut bad = |ok: bool, msg: &str| {
            if !ok {
                problems.push(msg.to_string());
            }
        };
        bad(
            !self.flush_interval.is_zero(),
            "lake.flush_interval must be positive",
        );
        bad(
            self.flush_max_rows != 0,
            "lake.flush_max_rows must be positive",
        );
        bad(
            !self.compaction_interval.is_zero(),
            "lake.compaction_interval must be positive",
        );
        bad(
            self.compaction_target_file_size >= 1024 * 1024,
            "lake.compaction_target_file_size must be at least 1 MiB",
        );
        bad(
            self.compaction_min_input_files >= 2,
            "lake.compaction_min_input_files must be at least 2",
        );
        let ratio = |r: f64| r > 0.0 && r <= 1.0;
        bad(
            ratio(self.compaction_small_file_ratio),
            "lake.compaction_small_file_ratio must be in (0, 1]",
        );
        bad(
            !(self.compaction_delete_file_ratio.is_nan()
                || self.compaction_delete_file_ratio <= 0.0),
            "lake.compaction_delete_file_ratio must be positive",
        );
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// What [`Lake::open`](crate::Lake::open) needs: the data directory (absolute once the config
/// is loaded) and the `[lake]` and `[catalog]` sections. Relative paths in `[lake]` are taken
/// relative to `data_dir`.
#[derive(Debug, Clone, PartialEq)]
pub struct LakeOptions {
    /// `[data] dir`.
    pub data_dir: PathBuf,
    /// `[lake]`.
    pub lake: LakeConfig,
    /// `[catalog]`.
    pub catalog: CatalogConfig,
}

impl LakeOptions {
    /// The default sections over `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            lake: LakeConfig::default(),
            catalog: CatalogConfig::default(),
        }
    }

    /// The S3 settings when `lake.warehouse` is `s3://…` (merged with the AWS variables), `None`
    /// for a local warehouse.
    pub fn lake_s3(&self) -> Result<Option<s3::S3Settings>> {
        if !s3::is_remote(&self.lake.warehouse.to_string_lossy()) {
            return Ok(None);
        }
        s3::S3Settings::resolve(&self.lake, &|k| std::env::var(k).ok()).map(Some)
    }

    /// The lake's warehouse directory (absolute once loaded); meaningless for an S3 lake.
    pub fn warehouse_dir(&self) -> PathBuf {
        self.in_data_dir(&self.lake.warehouse)
    }

    /// The warehouse as the catalog writes table locations under it: `s3://…` as configured,
    /// else the absolute local directory.
    pub fn warehouse_location(&self) -> String {
        let configured = self.lake.warehouse.to_string_lossy();
        if s3::is_remote(&configured) {
            configured.into_owned()
        } else {
            let dir = self.warehouse_dir();
            std::path::absolute(&dir)
                .unwrap_or(dir)
                .to_string_lossy()
                .into_owned()
        }
    }

    /// `path` as given when absolute, else relative to the data directory.
    fn in_data_dir(&self, path: &Path) -> PathBuf {
        if path.is_relative() {
            self.data_dir.join(path)
        } else {
            path.to_path_buf()
        }
    }

    /// Where SQL queries spill.
    pub fn spill_dir(&self) -> PathBuf {
        self.in_data_dir(&self.lake.spill_dir)
    }

    /// `lake.query_memory_limit` resolved: 0 means half of the machine's memory (from
    /// /proc/meminfo; 4 GiB where that cannot be read).
    pub fn query_memory_bytes(&self) -> u64 {
        if self.lake.query_memory_limit > 0 {
            return self.lake.query_memory_limit;
        }
        let total = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map(|kib| kib * 1024)
            .unwrap_or(8 << 30);
        total / 2
    }

    /// The SQLite file of the SQL catalog.
    pub fn catalog_path(&self) -> PathBuf {
        self.in_data_dir(&self.lake.catalog)
    }
}

/// `[privacy]`: how `strata privacy forget USER_ID…` finds a person's rows in the lake. Every
/// table that has one of the user key columns is searched; a row is erased when any of its key
/// columns equals one of the ids given (exact equality: strings as given, integer columns
/// for ids that are integers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// Columns that hold a user's identity in any table (those a table lacks are ignored).
    pub user_columns: Vec<String>,
    /// Per-table key columns, `"namespace.table" = ["col", …]`, replacing `user_columns` for
    /// that table (list every column to search). An empty list leaves the table out.
    pub tables: BTreeMap<String, Vec<String>>,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        let cols = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // The reference project (the simulated social app, `models/social/`): tables whose
        // person columns are not called user_id.
        let tables = [
            ("ods.ods_posts", cols(&["author_id"])),
            ("ods.ods_follows", cols(&["follower_id", "followee_id"])),
            ("ods.ods_messages", cols(&["sender_id", "recipient_id"])),
            ("dwd.dwd_post", cols(&["author_id"])),
            (
                "dwd.dwd_user_relation",
                cols(&["follower_id", "followee_id"]),
            ),
            ("dws.dws_pair_interaction", cols(&["user_id", "author_id"])),
            ("dws.dws_post_daily", cols(&["author_id"])),
            ("ads.ads_post_features", cols(&["author_id"])),
            (
                "ads.ads_recall_u2u_cf",
                cols(&["user_id", "similar_user_id"]),
            ),
            ("ads.ads_sample_follow", cols(&["user_id", "candidate_id"])),
            ("ads.ads_sample_ctr", cols(&["user_id", "author_id"])),
        ]
        .into_iter()
        .map(|(t, c)| (t.to_string(), c))
        .collect();
        Self {
            user_columns: cols(&["user_id", "anonymous_id", "previous_id"]),
            tables,
        }
    }
}

impl PrivacyConfig {
    /// The key columns to search in `table` (`namespace.table`).
    pub fn columns_for(&self, table: &str) -> &[String] {
        self.tables.get(table).unwrap_or(&self.user_columns)
    }

    /// Every problem of the section, one message each.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        let check_columns = |problems: &mut Vec<String>, what: &str, columns: &[String]| {
            let mut seen = std::collections::BTreeSet::new();
            for c in columns {
                if c.trim().is_empty() || c.chars().any(|ch| ch.is_control() || ch == '.') {
                    problems.push(format!("{what}: {c:?} is not a column name"));
                } else if !seen.insert(c) {
                    problems.push(format!("{what}: {c:?} is listed twice"));
                }
            }
        };
        check_columns(&mut problems, "privacy.user_columns", &self.user_columns);
        for (table, columns) in &self.tables {
            let parts: Vec<&str> = table.split('.').collect();
            if parts.len() < 2 || parts.iter().any(|p| p.trim().is_empty()) {
                problems.push(format!("privacy.tables: {table:?} must be namespace.table"));
            }
            check_columns(&mut problems, &format!("privacy.tables.{table:?}"), columns);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}
