//! The sections of `strata.toml` the collector reads: `[server]` (the HTTP listener, its limits
//! and which roles the process runs) and `[collector]` (validation, enrichment, deduplication,
//! PII hashing). Parsed by the root config in the `strata` binary, which also checks what spans
//! sections (an event no larger than a body, roles split only over a shared bus); each
//! section's `validate()` is pure.
//!
//! [`CollectorOptions`] is what [`Collector::new`](crate::Collector::new) takes.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_bus::config::RecordFormat;

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
    /// The feature-serving API (`/get-online-features`, `/v1/features`) over the online store.
    Features,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Collector,
        Role::Sink,
        Role::Cdc,
        Role::Warehouse,
        Role::Features,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Collector => "collector",
            Role::Sink => "sink",
            Role::Cdc => "cdc",
            Role::Warehouse => "warehouse",
            Role::Features => "features",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s.trim())
            .ok_or_else(|| {
                format!("unknown role {s:?} (collector, sink, cdc, warehouse, features)")
            })
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
    pub pii: strata_core::apps::pii::PiiConfig,
    /// `[collector.schemas]`: what happens to events that break their subject's registered
    /// schema (`reject` or `tag`, per subject), and the default compatibility level checked
    /// when a version is registered (docs/schemas.md).
    pub schemas: strata_schema::SchemasConfig,
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
            schemas: Default::default(),
        }
    }
}

impl ServerConfig {
    /// Every problem of the section, one message each.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if self.max_body_bytes < 1024 {
            problems.push("server.max_body_bytes must be at least 1024".to_string());
        }
        if self.max_in_flight == 0 {
            problems.push("server.max_in_flight must be positive".to_string());
        }
        if self.roles.is_empty() {
            problems.push(
                "server.roles is empty: name at least one of collector, sink, cdc, warehouse, features"
                    .to_string(),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

impl CollectorConfig {
    /// Every problem of the section, one message each; `data_dir` is where a relative PII key
    /// file would live (it must not: the key stays outside the data directory).
    pub fn validate(&self, data_dir: &Path) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if let Err(e) = self.pii.validate(data_dir) {
            problems.push(e.to_string());
        }
        if let Err(found) = self.schemas.validate() {
            problems.extend(found);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// What [`Collector::new`](crate::Collector::new) needs.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectorOptions {
    /// `[data] dir`: the app registry (`apps.json`) and the default PII key live here.
    pub data_dir: PathBuf,
    /// `[server]`.
    pub server: ServerConfig,
    /// `[collector]`.
    pub collector: CollectorConfig,
    /// `bus.partitions`: of the `events` topic, when the collector creates it.
    pub partitions: u32,
    /// `bus.record_format`: how events are encoded on the bus.
    pub record_format: RecordFormat,
}

impl CollectorOptions {
    /// The default sections over `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let bus = strata_bus::config::BusConfig::default();
        Self {
            data_dir: data_dir.into(),
            server: ServerConfig::default(),
            collector: CollectorConfig::default(),
            partitions: bus.partitions,
            record_format: bus.record_format,
        }
    }

    /// `<data>/apps.json`, the registry of apps and their write keys.
    pub fn apps_path(&self) -> PathBuf {
        strata_core::apps::registry_path(&self.data_dir)
    }
}
