//! `strata.toml`: what the user writes. Every field has a default that works on a laptop;
//! every key can be overridden by an environment variable `STRATA_<SECTION>__<KEY>`
//! (e.g. `STRATA_LAKE__FLUSH_INTERVAL=1s`).
//!
//! Each section is owned by the crate that reads it (ADR 0035): `[bus]` by strata-bus,
//! `[server]` and `[collector]` by strata-collect, `[lake]`, `[catalog]` and `[privacy]` by
//! strata-table, `[catalog_server]` by strata-rest, `[[sources]]` by strata-cdc, `[warehouse]`
//! by strata-warehouse, `[[pulls]]` by strata-pull, `[data]` and `[governance]` by
//! strata-core. This root loads the file,
//! applies the environment, resolves paths, calls every section's `validate()` and adds the
//! checks that span sections; [`Config::validate_all`] returns every problem at once.
//!
//! Validation is pure (no network, no files opened) so `strata check` can run offline.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use strata_bus::config::{BusConfig, BusKind};
use strata_cdc::config::SourceConfig;
use strata_collect::config::{CollectorConfig, CollectorOptions, Role, ServerConfig};
use strata_core::config::DataConfig;
use strata_core::error::{Error, Result};
use strata_core::governance::GovernanceConfig;
use strata_core::names::LocationPolicy;
use strata_online::OnlineConfig;
use strata_rest::config::CatalogServerConfig;
use strata_table::config::s3::S3Settings;
use strata_table::config::{CatalogConfig, LakeConfig, LakeOptions, PrivacyConfig};
use strata_warehouse::config::WarehouseConfig;

/// The commented default config written by `strata init`. A test checks that it parses to
/// exactly `Config::default()`, so the two cannot drift apart.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

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
    #[serde(deserialize_with = "strata_cdc::config::deserialize_list")]
    pub sources: Vec<SourceConfig>,
    /// Column tags, roles that may see tagged columns, and the access log.
    pub governance: GovernanceConfig,
    /// Which columns identify a person, for erasure (`strata privacy forget`).
    pub privacy: PrivacyConfig,
    /// The online feature store: embedded (LMDB under the data directory) or Redis.
    pub online: OnlineConfig,
    /// The feed API (`GET /v1/feed`): models, candidate sources, filters, re-ranking.
    pub feed: strata_feed::FeedConfig,
    /// A/B experiments over feeds (`[[experiments]]`, none by default).
    pub experiments: Vec<strata_feed::ExperimentConfig>,
    /// Abuse rules evaluated on live events (`[[risk.rules]]`, none by default): decisions in
    /// `ods.ods_risk_decision`, blocks enforced by every collector.
    pub risk: strata_stream::risk::RiskConfig,
    /// Third-party HTTP APIs pulled on a schedule, window by window, into lake tables
    /// (`[[pulls]]`, none by default; `strata pulls`, docs/pulls.md).
    pub pulls: Vec<strata_pull::PullConfig>,
}

/// Problems as one message: a single problem as it is, several one per line after their count.
/// `None` when there are none.
pub fn report(problems: &[String]) -> Option<String> {
    match problems {
        [] => None,
        [one] => Some(one.clone()),
        many => Some(format!("{} problems:\n{}", many.len(), many.join("\n"))),
    }
}

impl Config {
    /// Loads `path` (which may be absent) and then `STRATA_<SECTION>__<KEY>` environment
    /// overrides, resolves relative paths against the config file's directory and validates.
    pub fn load(path: &Path) -> Result<Self> {
        let config = Self::load_unchecked(path)?;
        config.validate()?;
        Ok(config)
    }

    /// [`Config::load`] without [`Config::validate`]: a file that parses, for `strata check`,
    /// which adds its own checks and reports every problem together.
    pub fn load_unchecked(path: &Path) -> Result<Self> {
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
        Ok(config)
    }

    /// Parses a config from TOML text alone (no env, no path resolution), validated.
    #[cfg(test)]
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
        if let Some(path) = self.online.path.as_mut().filter(|p| p.is_relative()) {
            *path = base.join(&*path);
        }
    }

    /// Pure checks of values that parse but make no sense: every problem of every section, in
    /// one error (one line each; a count first when there are several).
    pub fn validate(&self) -> Result<()> {
        match report(&self.validate_all()) {
            None => Ok(()),
            Some(text) => Err(Error::user(text)),
        }
    }

    /// Every problem, one message each naming its section and key: each section's own
    /// `validate()`, then the checks that span sections.
    pub fn validate_all(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut section = |result: std::result::Result<(), Vec<String>>| {
            if let Err(found) = result {
                problems.extend(found);
            }
        };
        section(self.bus.validate());
        section(self.server.validate());
        section(self.collector.validate(&self.data.dir));
        section(self.lake.validate());
        section(self.catalog.validate());
        section(self.warehouse.validate());
        section(self.catalog_server.validate());
        section(self.governance.validate().map_err(|e| vec![e]));
        for source in &self.sources {
            section(source.validate().map_err(|e| vec![e.to_string()]));
        }
        section(self.privacy.validate());
        section(
            self.online
                .validate()
                .map_err(|e| e.lines().map(str::to_string).collect()),
        );
        section(self.risk.validate());
        problems.extend(strata_pull::validate_list(&self.pulls));
        problems.extend(self.feed.problems(&self.experiments));
        problems.extend(self.cross_section_problems());
        problems
    }

    /// What no one section can judge alone.
    fn cross_section_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.collector.max_event_bytes > self.server.max_body_bytes {
            problems
                .push("collector.max_event_bytes cannot exceed server.max_body_bytes".to_string());
        }
        if self.bus.kind == BusKind::Embedded
            && !self.server.roles.is_empty()
            && !Role::ALL.iter().all(|r| self.server.runs(*r))
        {
            problems.push(
                "server.roles: the embedded bus lives inside one process, so that process runs \
                 every role; to split roles across processes use a shared bus ([bus] kind = \"kafka\")"
                    .to_string(),
            );
        }
        let mut names = std::collections::BTreeSet::new();
        let mut targets = std::collections::BTreeMap::new();
        for source in &self.sources {
            if !names.insert(source.name.as_str()) {
                problems.push(format!("sources: two sources are named {:?}", source.name));
            }
            for table in &source.tables {
                let target = source.target(table);
                if let Some(other) = targets.insert(target.clone(), (&source.name, table)) {
                    problems.push(format!(
                        "sources: {}.{} and {}.{} both land in {}.{}",
                        other.0, other.1, source.name, table, target.0, target.1
                    ));
                }
            }
        }
        for pull in &self.pulls {
            let Ok(table) = pull.table_ident() else {
                continue;
            };
            let key = (table.namespace().join("."), table.name().to_string());
            if let Some((source, source_table)) = targets.get(&key) {
                problems.push(format!(
                    "pulls.{} and sources {source}.{source_table} both write {}.{} (a pull and a CDC table)",
                    pull.name, key.0, key.1
                ));
            }
        }
        problems
    }

    /// What [`strata_table::Lake::open`] takes: the data directory, `[lake]` and `[catalog]`.
    pub fn lake_options(&self) -> LakeOptions {
        LakeOptions {
            data_dir: self.data.dir.clone(),
            lake: self.lake.clone(),
            catalog: self.catalog.clone(),
        }
    }

    /// What [`strata_collect::Collector::new`] takes.
    pub fn collector_options(&self) -> CollectorOptions {
        CollectorOptions {
            data_dir: self.data.dir.clone(),
            server: self.server.clone(),
            collector: self.collector.clone(),
            partitions: self.bus.partitions,
            record_format: self.bus.record_format,
        }
    }

    /// `<data>/bus`
    pub fn bus_dir(&self) -> PathBuf {
        self.data.dir.join("bus")
    }

    /// The S3 settings when `lake.warehouse` is `s3://…` (merged with the AWS variables), `None`
    /// for a local warehouse.
    pub fn lake_s3(&self) -> Result<Option<S3Settings>> {
        self.lake_options().lake_s3()
    }

    /// Where tables may be placed: the warehouse and `catalog_server.allowed_locations`.
    pub fn location_policy(&self) -> Result<LocationPolicy> {
        self.catalog_server
            .location_policy(&self.lake_options().warehouse_location())
    }

    /// `<data>/apps.json`, the registry of apps and their write keys.
    pub fn apps_path(&self) -> PathBuf {
        strata_core::apps::registry_path(&self.data.dir)
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
#[path = "config_tests.rs"]
mod tests;
