//! `strata.toml`: what the user writes. Every field has a default that works on a laptop;
//! every key can be overridden by an environment variable `STRATA_<SECTION>__<KEY>`
//! (e.g. `STRATA_LAKE__FLUSH_INTERVAL=1s`).
//!
//! Validation here is pure (no network, no files opened) so `strata check` can run offline.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
pub use crate::sources::{
    redact_url, MysqlSourceConfig, OnPositionLost, PostgresSourceConfig, ResumeMode, SnapshotMode,
    SourceCommon, SourceConfig, SourceKind,
};

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
    /// Which Iceberg catalog holds the lake's tables: the embedded SQL catalog, or a REST one.
    pub catalog: CatalogConfig,
    /// The Iceberg REST catalog `strata serve` exposes under `/iceberg`.
    pub catalog_server: CatalogServerConfig,
    /// Databases mirrored into the lake by change data capture (`[[sources]]`, empty by default).
    #[serde(deserialize_with = "crate::sources::deserialize_list")]
    pub sources: Vec<SourceConfig>,
    /// Column tags, roles that may see tagged columns, and the access log.
    pub governance: crate::governance::GovernanceConfig,
    /// Which columns identify a person, for erasure (`strata privacy forget`).
    pub privacy: PrivacyConfig,
}

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
    fn validate(&self) -> Result<()> {
        match self.kind {
            CatalogKind::Sql => Ok(()),
            CatalogKind::Rest => {
                let uri = self.uri.trim();
                if uri.is_empty() {
                    return Err(Error::user(
                        "catalog.kind = \"rest\" needs catalog.uri (the catalog's base URI, e.g. \
                         http://HOST:8080/iceberg)",
                    ));
                }
                if !(uri.starts_with("http://") || uri.starts_with("https://")) {
                    return Err(Error::user(format!(
                        "catalog.uri must be an http:// or https:// URL, not {uri:?}"
                    )));
                }
                if self.timeout.is_zero() {
                    return Err(Error::user("catalog.timeout must be positive"));
                }
                Ok(())
            }
        }
    }
}

/// `[catalog_server]`: the Iceberg REST catalog API over the lake's own catalog, served under
/// `/iceberg` on the collector's listener. Every request needs a bearer token made with
/// `strata tokens create`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogServerConfig {
    /// Serve the REST catalog (`false`: `/iceberg` answers 404).
    pub enabled: bool,
    /// Locations outside the warehouse where clients may put tables (a client-chosen
    /// `location`, `write.data.path` or `write.metadata.path`), as local directories,
    /// `file://…` or `s3://bucket/prefix`. Anything outside the warehouse and these is refused
    /// (403). Empty: the warehouse only.
    pub allowed_locations: Vec<String>,
}

impl Default for CatalogServerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            allowed_locations: Vec::new(),
        }
    }
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
    /// What this process runs (default: all of it). Split across processes only with a shared
    /// bus (Kafka): e.g. several `collector` processes and one `sink` process.
    pub roles: Vec<Role>,
}

/// One part of `strata serve`; `[server] roles` picks which a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The HTTP collector (`/v1/*`): validates, enriches and appends events to the bus.
    Collector,
    /// The lake writer: the lake sink (`events` → `ods.ods_event`), the CDC merger
    /// (`cdc.*` → ODS tables) and background compaction.
    Sink,
    /// The database CDC sources (`[[sources]]` → `cdc.*` topics).
    Cdc,
    /// The warehouse DAG on its schedule.
    Warehouse,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Collector, Role::Sink, Role::Cdc, Role::Warehouse];

    pub fn name(self) -> &'static str {
        match self {
            Role::Collector => "collector",
            Role::Sink => "sink",
            Role::Cdc => "cdc",
            Role::Warehouse => "warehouse",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s.trim())
            .ok_or_else(|| format!("unknown role {s:?} (collector, sink, cdc, warehouse)"))
    }
}

impl ServerConfig {
    /// Whether this process runs `role`.
    pub fn runs(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 4 * 1024 * 1024,
            trusted_proxies: Vec::new(),
            max_in_flight: 1024,
            roles: Role::ALL.to_vec(),
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
    /// `[collector.pii]`: event fields replaced by a keyed hash (`hmac:<hex>`) before they
    /// reach the bus, for every app and per app; the key lives outside the data directory.
    pub pii: crate::apps::pii::PiiConfig,
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
            pii: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    /// Segment log under `<data>/bus`.
    Embedded,
    /// Any Kafka-protocol broker (Apache Kafka, MSK, Redpanda, tansu) at `bus.brokers`.
    Kafka,
}

/// How the collector encodes events on the bus (ADR 0027). Readers take either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordFormat {
    /// Lengths and bytes: about 60 % of the JSON, read back without a parser.
    Binary,
    /// `{"k":"e","v":{…}}`, for consumers of a Kafka `events` topic outside Strata.
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    /// `embedded` (segment log under `<data>/bus`) or `kafka` (the brokers at `brokers`).
    pub kind: BusKind,
    /// Encoding of the events the collector appends to the `events` topic.
    pub record_format: RecordFormat,
    /// Partitions of the `events` topic (keyed by user id, else anonymous id). With Kafka:
    /// the partition count of the `events` topic when Strata creates it.
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
    /// Kafka: bootstrap brokers, `HOST:PORT,HOST:PORT,…` (required when `kind = "kafka"`).
    pub brokers: String,
    /// Kafka: client id the brokers see in their logs, metrics and quotas.
    pub client_id: String,
    /// Kafka: replication factor of the topics Strata creates; 0 = the broker's
    /// `default.replication.factor`. Existing topics are used as they are.
    pub replication_factor: u16,
    /// Kafka: an append not acknowledged by the brokers within this time fails (→ HTTP 503,
    /// the SDK retries; the collector's dedup drops the copy if the first one did land).
    #[serde(with = "humantime_serde")]
    pub delivery_timeout: Duration,
    /// Kafka: records waiting for the brokers' acknowledgement beyond which producers get
    /// "overloaded" (→ HTTP 503). `max_pending_bytes` bounds their bytes the same way.
    pub max_pending_records: u32,
    /// Kafka: further librdkafka properties (security, SASL, timeouts), e.g.
    /// `"security.protocol" = "SASL_SSL"`. Those Strata's guarantees rest on (bootstrap.servers,
    /// enable.idempotence, acks, group.id, offset handling) cannot be set here.
    pub librdkafka: BTreeMap<String, String>,
}

/// librdkafka properties Strata sets itself: idempotence, acks=all and offset handling are what
/// "acknowledged means on every in-sync replica" and exactly-once rest on.
pub const KAFKA_RESERVED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "client.id",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "max.in.flight.requests.per.connection",
    "max.in.flight",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "queue.buffering.max.messages",
    "queue.buffering.max.kbytes",
    "linger.ms",
    "queue.buffering.max.ms",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
    "auto.offset.reset",
    "isolation.level",
    "transactional.id",
];

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            kind: BusKind::Embedded,
            record_format: RecordFormat::Binary,
            partitions: 4,
            segment_bytes: 128 * 1024 * 1024,
            group_commit_window: Duration::from_millis(2),
            max_pending_bytes: 64 * 1024 * 1024,
            retention: Duration::from_secs(7 * 24 * 3600),
            retention_bytes: 16 * 1024 * 1024 * 1024,
            brokers: String::new(),
            client_id: "strata".to_string(),
            replication_factor: 0,
            delivery_timeout: Duration::from_secs(15),
            max_pending_records: 100_000,
            librdkafka: BTreeMap::new(),
        }
    }
}

impl BusConfig {
    /// The Kafka keys, checked offline (librdkafka itself checks property names and values
    /// when `strata check` or `serve` builds the client configuration).
    fn validate_kafka(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::user(msg));
        if self.kind != BusKind::Kafka {
            return Ok(());
        }
        let brokers: Vec<&str> = self
            .brokers
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .collect();
        if brokers.is_empty() {
            return bad(
                "bus.brokers must list the Kafka brokers (HOST:PORT,...) when bus.kind = \"kafka\""
                    .into(),
            );
        }
        for b in brokers {
            let port = b.rsplit_once(':').and_then(|(host, port)| {
                (!host.is_empty() && !host.contains('/'))
                    .then(|| port.parse::<u16>().ok())
                    .flatten()
            });
            if port.is_none_or(|p| p == 0) {
                return bad(format!("bus.brokers: {b:?} is not HOST:PORT"));
            }
        }
        if self.client_id.trim().is_empty() {
            return bad("bus.client_id must not be empty".into());
        }
        if self.delivery_timeout < Duration::from_secs(1) {
            return bad("bus.delivery_timeout must be at least 1s".into());
        }
        if self.max_pending_records == 0 || self.max_pending_records > 10_000_000 {
            return bad("bus.max_pending_records must be between 1 and 10000000".into());
        }
        if self.max_pending_bytes < 1024 || self.max_pending_bytes > (i32::MAX as u64) * 1024 {
            return bad("bus.max_pending_bytes must be between 1 KiB and 2 TiB with Kafka".into());
        }
        for key in self.librdkafka.keys() {
            if KAFKA_RESERVED_PROPERTIES.contains(&key.as_str()) {
                return bad(format!(
                    "bus.librdkafka.{key:?} is set by Strata (use bus.brokers, bus.client_id, \
                     bus.delivery_timeout, bus.max_pending_*; idempotence, acks and offsets \
                     are fixed for exactly-once)"
                ));
            }
        }
        Ok(())
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
    pub s3_path_style: crate::s3::PathStyle,
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
            s3_path_style: crate::s3::PathStyle::Auto,
            s3_allow_http: false,
            s3_part_size: 16 * 1024 * 1024,
            s3_max_retries: 10,
            s3_retry_timeout: Duration::from_secs(60),
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
    /// ... and until every CDC-fed ODS table trails its bus topic by at most this (the age
    /// of its oldest change not applied yet) ...
    #[serde(with = "humantime_serde")]
    pub sentinel_cdc_max_lag: Duration,
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
            sentinel_cdc_max_lag: Duration::from_secs(300),
            sentinel_timeout: Duration::from_secs(2 * 3600),
            alert_webhook: String::new(),
        }
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

    /// Every problem at once, in one message.
    fn validate(&self) -> Result<()> {
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
            Err(Error::user(problems.join("; ")))
        }
    }
}

#[cfg(test)]
mod privacy_tests {
    use super::*;

    #[test]
    fn privacy_overrides_replace_the_default_columns() {
        let c = Config::from_toml(
            "[privacy]\nuser_columns = [\"uid\"]\n[privacy.tables]\n\"ods.ods_users\" = [\"id\"]\n",
        )
        .unwrap();
        assert_eq!(c.privacy.columns_for("ods.ods_users"), ["id".to_string()]);
        assert_eq!(c.privacy.columns_for("ods.ods_event"), ["uid".to_string()]);
    }

    #[test]
    fn privacy_problems_are_reported_together() {
        let err = Config::from_toml(
            "[privacy]\nuser_columns = [\"a\", \"a\", \"\"]\n[privacy.tables]\nbare = [\"x.y\"]\n",
        )
        .unwrap_err()
        .to_string();
        for part in [
            "listed twice",
            "\"\" is not a column",
            "must be namespace.table",
            "\"x.y\"",
        ] {
            assert!(err.contains(part), "{part}: {err}");
        }
        let err = Config::from_toml("[privacy]\nuser_colums = []\n").unwrap_err();
        assert!(err.to_string().contains("user_colums"), "{err}");
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
        self.bus.validate_kafka()?;
        if self.server.max_body_bytes < 1024 {
            return bad("server.max_body_bytes must be at least 1024");
        }
        if self.collector.max_event_bytes > self.server.max_body_bytes {
            return bad("collector.max_event_bytes cannot exceed server.max_body_bytes");
        }
        self.collector.pii.validate(&self.data.dir)?;
        self.lake_s3()?;
        self.catalog.validate()?;
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
        if self.server.roles.is_empty() {
            return bad(
                "server.roles is empty: name at least one of collector, sink, cdc, warehouse",
            );
        }
        if self.bus.kind == BusKind::Embedded && !Role::ALL.iter().all(|r| self.server.runs(*r)) {
            return bad(
                "server.roles: the embedded bus lives inside one process, so that process runs \
                 every role; to split roles across processes use a shared bus ([bus] kind = \"kafka\")",
            );
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
        for location in &self.catalog_server.allowed_locations {
            if let Err(e) = crate::names::LocationPolicy::new(location, &[]) {
                return Err(Error::user(format!(
                    "catalog_server.allowed_locations: {location:?}: {e}"
                )));
            }
        }
        self.governance.validate().map_err(Error::user)?;
        let mut names = std::collections::BTreeSet::new();
        let mut targets = std::collections::BTreeMap::new();
        for source in &self.sources {
            source.validate()?;
            if !names.insert(source.name.as_str()) {
                return Err(Error::user(format!(
                    "sources: two sources are named {:?}",
                    source.name
                )));
            }
            for table in &source.tables {
                let target = source.target(table);
                if let Some(other) = targets.insert(target.clone(), (&source.name, table)) {
                    return Err(Error::user(format!(
                        "sources: {}.{} and {}.{} both land in {}.{}",
                        other.0, other.1, source.name, table, target.0, target.1
                    )));
                }
            }
        }
        self.privacy.validate()?;
        Ok(())
    }

    /// `<data>/bus`
    pub fn bus_dir(&self) -> PathBuf {
        self.data.dir.join("bus")
    }

    /// The S3 settings when `lake.warehouse` is `s3://…` (merged with the AWS variables), `None`
    /// for a local warehouse.
    pub fn lake_s3(&self) -> Result<Option<crate::s3::S3Settings>> {
        if !crate::s3::is_remote(&self.lake.warehouse.to_string_lossy()) {
            return Ok(None);
        }
        crate::s3::S3Settings::resolve(&self.lake, &|k| std::env::var(k).ok()).map(Some)
    }

    /// The lake's warehouse directory (absolute once loaded); meaningless for an S3 lake.
    pub fn warehouse_dir(&self) -> PathBuf {
        self.in_data_dir(&self.lake.warehouse)
    }

    /// The warehouse as the catalog writes table locations under it: `s3://…` as configured,
    /// else the absolute local directory.
    pub fn warehouse_location(&self) -> String {
        let configured = self.lake.warehouse.to_string_lossy();
        if crate::s3::is_remote(&configured) {
            configured.into_owned()
        } else {
            let dir = self.warehouse_dir();
            std::path::absolute(&dir)
                .unwrap_or(dir)
                .to_string_lossy()
                .into_owned()
        }
    }

    /// Where tables may be placed: the warehouse and `catalog_server.allowed_locations`.
    pub fn location_policy(&self) -> Result<crate::names::LocationPolicy> {
        crate::names::LocationPolicy::new(
            &self.warehouse_location(),
            &self.catalog_server.allowed_locations,
        )
        .map_err(|e| Error::user(format!("catalog_server.allowed_locations: {e}")))
    }

    /// `path` as given when absolute, else relative to the data directory.
    fn in_data_dir(&self, path: &Path) -> PathBuf {
        if path.is_relative() {
            self.data.dir.join(path)
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

    /// `<data>/apps.json`, the registry of apps and their write keys.
    pub fn apps_path(&self) -> PathBuf {
        self.data.dir.join("apps.json")
    }

    /// `<data>/mask.key`, the key of the `hash` column mask (made on first use).
    pub fn mask_key_path(&self) -> PathBuf {
        self.data.dir.join("mask.key")
    }

    /// `<data>/catalog_tokens.json`, the REST catalog's bearer tokens (SHA-256 hashes only).
    pub fn catalog_tokens_path(&self) -> PathBuf {
        self.data.dir.join("catalog_tokens.json")
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
    #[allow(clippy::result_large_err)] // figment's Jail closure signature
    fn s3_lake_keys_from_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strata.toml");
        std::fs::write(&path, "[lake]\nwarehouse = \"s3://env-bucket/wh\"\n").unwrap();
        figment::Jail::expect_with(|jail| {
            jail.set_env("STRATA_LAKE__S3_ENDPOINT", "http://10.9.8.7:9000");
            let err = Config::load(&path).unwrap_err().to_string();
            assert!(err.contains("not loopback"), "{err}");
            jail.set_env("STRATA_LAKE__S3_ALLOW_HTTP", "true");
            jail.set_env("AWS_REGION", "eu-central-1");
            jail.set_env("AWS_ACCESS_KEY_ID", "AKIAJAIL");
            jail.set_env("AWS_SECRET_ACCESS_KEY", "jailsecret");
            let c = Config::load(&path).unwrap();
            let s3 = c.lake_s3().unwrap().unwrap();
            assert_eq!(s3.bucket, "env-bucket");
            assert_eq!(s3.endpoint.as_deref(), Some("http://10.9.8.7:9000"));
            assert_eq!(s3.region, "eu-central-1");
            assert_eq!(s3.access_key_id.as_deref(), Some("AKIAJAIL"));
            // A local warehouse has no S3 settings.
            std::fs::write(&path, "[lake]\nwarehouse = \"lake\"\n").unwrap();
            assert!(Config::load(&path).unwrap().lake_s3().unwrap().is_none());
            Ok(())
        });
    }

    #[test]
    fn sources_parse_and_validate() {
        let c = Config::from_toml(
            "[[sources]]\nname = \"app\"\nkind = \"mysql\"\nurl = \"mysql://cdc:secret@127.0.0.1:13306/app\"\ntables = [\"users\", \"posts\"]\ntargets = { posts = \"ods.ods_app_posts\" }\ncommit_interval = \"2s\"\nkeep_changelog = true\n",
        )
        .unwrap();
        let s = &c.sources[0];
        assert_eq!(s.kind(), SourceKind::Mysql);
        assert_eq!(s.snapshot, SnapshotMode::Initial);
        assert_eq!(s.commit_interval, Duration::from_secs(2));
        assert_eq!(s.target("users"), ("ods".into(), "ods_users".into()));
        assert_eq!(s.target("posts"), ("ods".into(), "ods_app_posts".into()));
        assert_eq!(s.topic("users"), "cdc.app.users");

        let base = "[[sources]]\nname = \"app\"\nkind = \"mysql\"\ntables = [\"users\"]\n";
        let err = Config::from_toml(&format!("{base}url = \"postgres://x@h/db\"\n")).unwrap_err();
        assert!(err.to_string().contains("mysql://"), "{err}");
        let err = Config::from_toml(&format!("{base}url = \"mysql://u:pw@h:1\"\n")).unwrap_err();
        assert!(err.to_string().contains("names no database"), "{err}");
        assert!(!err.to_string().contains("pw"), "{err}");
        let err =
            Config::from_toml(&format!("{base}url = \"mysql://u@h/db\"\nbogus = 1\n")).unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }

    #[test]
    fn the_resume_mode_is_checked_offline() {
        let base = "[[sources]]\nname = \"app\"\nkind = \"mysql\"\nurl = \"mysql://u@h/db\"\ntables = [\"users\"]\n";
        let c = Config::from_toml(base).unwrap();
        assert_eq!(c.sources[0].as_mysql().unwrap().resume, ResumeMode::Auto);
        for (text, mode) in [
            ("auto", ResumeMode::Auto),
            ("gtid", ResumeMode::Gtid),
            ("position", ResumeMode::Position),
        ] {
            let c = Config::from_toml(&format!("{base}resume = \"{text}\"\n")).unwrap();
            assert_eq!(c.sources[0].as_mysql().unwrap().resume, mode);
        }
        let err = Config::from_toml(&format!("{base}resume = \"gtids\"\n")).unwrap_err();
        assert!(err.to_string().contains("gtids"), "{err}");
        let pg = "[[sources]]\nname = \"a\"\nkind = \"postgres\"\nurl = \"postgres://h/db\"\ntables = [\"t\"]\n";
        let err = Config::from_toml(&format!("{pg}resume = \"gtid\"\n")).unwrap_err();
        assert!(err.to_string().contains("resume is for kind"), "{err}");
    }

    #[test]
    fn postgres_sources_validate_offline() {
        let c = Config::from_toml(
            "[[sources]]\nname = \"Pg\"\nkind = \"postgres\"\nurl = \"postgres://cdc:pw@127.0.0.1:15432/app\"\ntables = [\"users\", \"sales.orders\"]\n",
        )
        .unwrap();
        let s = &c.sources[0];
        assert_eq!(s.kind(), SourceKind::Postgres);
        let s = s.as_postgres().unwrap();
        assert_eq!(s.slot_name(), "strata_pg");
        assert_eq!(s.publication_name(), "strata_pg");
        assert_eq!(s.topic("sales.orders"), "cdc.Pg.sales.orders");
        assert_eq!(
            s.target("sales.orders"),
            ("ods".into(), "ods_sales_orders".into())
        );
        let base = "[[sources]]\nname = \"a\"\nkind = \"postgres\"\ntables = [\"t\"]\n";
        let err = Config::from_toml(&format!("{base}url = \"mysql://h/db\"\n")).unwrap_err();
        assert!(err.to_string().contains("postgres://"), "{err}");
        let err = Config::from_toml(&format!("{base}url = \"postgres://u:pw@h:1\"\n")).unwrap_err();
        assert!(err.to_string().contains("names no database"), "{err}");
        assert!(!err.to_string().contains("pw"), "{err}");
        let err = Config::from_toml(&format!(
            "{base}url = \"postgresql://h/db\"\nslot = \"Bad-Slot\"\n"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("slot"), "{err}");
        let ok = Config::from_toml(&format!(
            "{base}url = \"postgresql://h/db\"\nslot = \"s1\"\npublication = \"p1\"\n"
        ))
        .unwrap();
        assert_eq!(ok.sources[0].as_postgres().unwrap().slot_name(), "s1");
        let err = Config::from_toml(
            "[[sources]]\nname = \"a\"\nkind = \"mysql\"\nurl = \"mysql://h/db\"\ntables = [\"s.t\"]\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("table name"), "{err}");
    }

    #[test]
    fn roles_split_only_over_kafka() {
        let all = Config::from_toml("").unwrap();
        assert!(Role::ALL.iter().all(|r| all.server.runs(*r)));
        let c = Config::from_toml(
            "[server]\nroles = [\"collector\"]\n[bus]\nkind = \"kafka\"\nbrokers = \"h:1\"\n",
        )
        .unwrap();
        assert!(c.server.runs(Role::Collector) && !c.server.runs(Role::Sink));
        let err = Config::from_toml("[server]\nroles = [\"collector\", \"sink\"]\n").unwrap_err();
        assert!(err.to_string().contains("embedded bus"), "{err}");
        let err =
            Config::from_toml("[server]\nroles = []\n[bus]\nkind = \"kafka\"\nbrokers = \"h:1\"\n")
                .unwrap_err();
        assert!(err.to_string().contains("server.roles is empty"), "{err}");
        let err = Config::from_toml("[server]\nroles = [\"writer\"]\n").unwrap_err();
        assert!(err.to_string().contains("collector"), "{err}");
        assert_eq!("cdc".parse::<Role>(), Ok(Role::Cdc));
        assert!("all".parse::<Role>().is_err());
    }

    #[test]
    fn kafka_bus_parses_and_validates() {
        let c = Config::from_toml(
            "[bus]\nkind = \"kafka\"\nbrokers = \"10.0.0.1:9092, kafka-2.internal:9093\"\nreplication_factor = 3\ndelivery_timeout = \"30s\"\n[bus.librdkafka]\n\"security.protocol\" = \"SASL_SSL\"\n",
        )
        .unwrap();
        assert_eq!(c.bus.kind, BusKind::Kafka);
        assert_eq!(c.bus.replication_factor, 3);
        assert_eq!(c.bus.delivery_timeout, Duration::from_secs(30));
        assert_eq!(c.bus.librdkafka["security.protocol"], "SASL_SSL");

        let err = Config::from_toml("[bus]\nkind = \"kafka\"\n").unwrap_err();
        assert!(err.to_string().contains("bus.brokers"), "{err}");
        let err =
            Config::from_toml("[bus]\nkind = \"kafka\"\nbrokers = \"localhost\"\n").unwrap_err();
        assert!(err.to_string().contains("HOST:PORT"), "{err}");
        let err = Config::from_toml(
            "[bus]\nkind = \"kafka\"\nbrokers = \"h:1\"\n[bus.librdkafka]\nacks = \"1\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("set by Strata"), "{err}");
        let err = Config::from_toml("[bus]\nkind = \"kafka\"\nbrokers = \"h:1\"\nbroker = \"x\"\n")
            .unwrap_err();
        assert!(err.to_string().contains("broker"), "{err}");
        // The embedded bus ignores the Kafka keys.
        assert!(Config::from_toml("[bus]\nbrokers = \"\"\n").is_ok());
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail closure signature
    fn kafka_brokers_from_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strata.toml");
        std::fs::write(&path, "[bus]\nkind = \"kafka\"\n").unwrap();
        figment::Jail::expect_with(|jail| {
            jail.set_env("STRATA_BUS__BROKERS", "127.0.0.1:19092");
            let c = Config::load(&path).unwrap();
            assert_eq!(c.bus.brokers, "127.0.0.1:19092");
            Ok(())
        });
    }

    #[test]
    fn invalid_values_name_the_key() {
        let err = Config::from_toml("[bus]\npartitions = 0\n").unwrap_err();
        assert!(err.to_string().contains("bus.partitions"), "{err}");
    }
}
