//! `[[sources]]`: the databases mirrored into the lake by change data capture. Each entry is
//! one kind of connector, tagged by `kind` (`kind = "mysql"`, `kind = "postgres"`,
//! `kind = "elasticsearch"`), with the settings every kind shares ([`SourceCommon`], flattened
//! into the entry) and its own ([`MysqlSourceConfig`], [`PostgresSourceConfig`],
//! [`EsSourceConfig`], the last in `elasticsearch/config.rs`).
//!
//! A key that is not a setting of the entry's kind is an error naming the entry, its kind and
//! the key (`sources[0] (postgres): unknown field "server_id"`). serde's
//! `deny_unknown_fields` cannot be combined with `#[serde(flatten)]`, so the keys are checked
//! here against [`SourceCommon::KEYS`] and each kind's `KEYS` (a test keeps the lists equal to
//! the structs' fields).
//!
//! Parsed as the `sources` list of `strata.toml` (the root config lives in the `strata`
//! binary, which also checks that names and targets are unique across sources).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use strata_core::error::{Error, Result};
pub use strata_core::redact::redact_url;

pub use crate::elasticsearch::config::{EsSourceConfig, FieldType, Paging};
pub use crate::mongodb::config::MongoSourceConfig;

/// The kind of database a CDC source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// MariaDB or MySQL: snapshot by primary key, then the row binlog.
    Mysql,
    /// PostgreSQL logical replication (pgoutput): a slot and a publication, a key-ordered
    /// snapshot, then the slot's changes.
    Postgres,
    /// Elasticsearch or OpenSearch: a full export of one index (point in time or scroll),
    /// then increments by a timestamp field.
    Elasticsearch,
    /// MongoDB or Amazon DocumentDB: collections snapshotted in `_id` order, then a database
    /// change stream (resume tokens).
    Mongodb,
}

impl SourceKind {
    /// The `kind = "…"` text.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Mysql => "mysql",
            SourceKind::Postgres => "postgres",
            SourceKind::Elasticsearch => "elasticsearch",
            SourceKind::Mongodb => "mongodb",
        }
    }

    /// Every kind, in the order messages list them.
    pub const ALL: [SourceKind; 4] = [
        SourceKind::Mysql,
        SourceKind::Postgres,
        SourceKind::Elasticsearch,
        SourceKind::Mongodb,
    ];
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a source's tables are first loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotMode {
    /// Load the existing rows (chunked by primary key), then stream from the position taken
    /// at the start of the snapshot.
    Initial,
    /// No snapshot: stream changes from the current end of the binlog.
    Never,
}

/// What a source does when the server no longer holds its position (binlog purged, slot
/// dropped or invalidated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnPositionLost {
    /// Stop with an error that says so (`strata cdc status` shows it).
    #[default]
    Fail,
    /// Re-snapshot every table from the current end of the stream: each ODS table is emptied
    /// and loaded again, then streaming goes on.
    Resnapshot,
}

/// How a MariaDB/MySQL source resumes its binlog stream after a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResumeMode {
    /// By GTID when the server has GTIDs (MariaDB: always; MySQL: `gtid_mode = ON`) and the
    /// saved position has one, else by binlog file and position.
    #[default]
    Auto,
    /// Always by GTID: the source fails with a clear error when the server has no GTIDs. A
    /// GTID position holds on every server of the replication topology, so the source can be
    /// pointed at a promoted replica after a failover.
    Gtid,
    /// Always by binlog file and position (which exist on one server only).
    Position,
}

/// One `[[sources]]` entry: a database whose tables are mirrored into `ods.ods_<table>`.
/// The shared settings are reached through [`SourceConfig::common`] (or by deref:
/// `source.name`, `source.tables`, `source.target(t)`), so callers need not match on the kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SourceConfig {
    /// `kind = "mysql"`: MariaDB or MySQL.
    Mysql(MysqlSourceConfig),
    /// `kind = "postgres"`: PostgreSQL.
    Postgres(PostgresSourceConfig),
    /// `kind = "elasticsearch"`: an Elasticsearch or OpenSearch index.
    Elasticsearch(EsSourceConfig),
    /// `kind = "mongodb"`: MongoDB or DocumentDB collections.
    Mongodb(MongoSourceConfig),
}

/// The settings of every kind of source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceCommon {
    /// Name of the source: bus topics are `cdc.<name>.<table>`. Letters, digits and `_`.
    pub name: String,
    /// Connection URL, e.g. `mysql://cdc:secret@127.0.0.1:3306/app` or
    /// `postgres://cdc:secret@127.0.0.1:5432/app` (the path is the database). MySQL: the user
    /// needs SELECT, REPLICATION SLAVE and REPLICATION CLIENT (BINLOG MONITOR). PostgreSQL: a
    /// role with REPLICATION and SELECT on the tables (and CREATE on the database to create
    /// the publication), on a server with `wal_level = logical`. Elasticsearch:
    /// `http(s)://host:9200` (credentials go in environment variables, see [`EsSourceConfig`]).
    pub url: String,
    /// Tables of that database to mirror. PostgreSQL: `schema.table`, or a bare name for
    /// schema `public` (topic `cdc.<source>.<entry>`, default target `ods.ods_<entry>` with
    /// `.` as `_`). Elasticsearch: one name, the index read unless `index` says otherwise
    /// (default target `ods.ods_es_<entry>`).
    pub tables: Vec<String>,
    /// Target table per source table, e.g. `{ users = "ods.ods_app_users" }`. Default:
    /// `ods.ods_<table>`.
    #[serde(default)]
    pub targets: BTreeMap<String, String>,
    /// `initial` (default) or `never`.
    #[serde(default = "default_snapshot_mode")]
    pub snapshot: SnapshotMode,
    /// Rows per snapshot chunk (one `SELECT … ORDER BY pk LIMIT n` each).
    #[serde(default = "default_snapshot_chunk_rows")]
    pub snapshot_chunk_rows: usize,
    /// The ODS merger commits applied changes at least this often.
    #[serde(default = "default_commit_interval", with = "humantime_serde")]
    pub commit_interval: Duration,
    /// Also append every raw change to `<target>_changelog`.
    #[serde(default)]
    pub keep_changelog: bool,
    /// `fail` (default) or `resnapshot`: what to do when the server no longer holds the
    /// source's position.
    #[serde(default)]
    pub on_position_lost: OnPositionLost,
}

/// `kind = "mysql"`: MariaDB or MySQL, read from the row binlog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MysqlSourceConfig {
    #[serde(flatten)]
    pub common: SourceCommon,
    /// Server id the binlog client registers with (unique among the server's replicas).
    #[serde(default = "default_server_id")]
    pub server_id: u32,
    /// How streaming resumes after a restart: `auto` (default: by GTID when the server has
    /// GTIDs, else by binlog file:position), `gtid` or `position`. Resuming by GTID survives a
    /// failover to a replica (point `url` at it and restart).
    #[serde(default)]
    pub resume: ResumeMode,
}

/// `kind = "postgres"`: PostgreSQL, read from a logical replication slot (pgoutput).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostgresSourceConfig {
    #[serde(flatten)]
    pub common: SourceCommon,
    /// The logical replication slot (created if missing). Default `strata_<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// The publication the slot decodes (created for the tables if missing). Default
    /// `strata_<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publication: Option<String>,
}

fn default_snapshot_mode() -> SnapshotMode {
    SnapshotMode::Initial
}
fn default_snapshot_chunk_rows() -> usize {
    10_000
}
fn default_commit_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_server_id() -> u32 {
    4_000_001
}

impl SourceCommon {
    /// The keys of [`SourceCommon`] (besides `kind`).
    pub const KEYS: &'static [&'static str] = &[
        "name",
        "url",
        "tables",
        "targets",
        "snapshot",
        "snapshot_chunk_rows",
        "commit_interval",
        "keep_changelog",
        "on_position_lost",
    ];

    /// The bus topic carrying the changes of `table`.
    pub fn topic(&self, table: &str) -> String {
        strata_core::cdc::topic(&self.name, table)
    }

    /// `(namespace, name)` of the ODS table `table` lands in.
    pub fn target(&self, table: &str) -> (String, String) {
        match self.targets.get(table) {
            Some(t) => match t.split_once('.') {
                Some((ns, name)) => (ns.to_string(), name.to_string()),
                None => ("ods".to_string(), t.clone()),
            },
            None => (
                "ods".to_string(),
                format!("ods_{}", table.replace('.', "_")),
            ),
        }
    }

    fn bad<T>(&self, msg: String) -> Result<T> {
        Err(Error::user(format!("sources.{}: {msg}", self.name)))
    }

    /// The source's name: 1-64 letters, digits or `_`.
    pub(crate) fn check_name(&self) -> Result<()> {
        if !ident_ok(&self.name) {
            return Err(Error::user(format!(
                "sources: name {:?} must be 1-64 letters, digits or _",
                self.name
            )));
        }
        Ok(())
    }

    /// The checks of the shared settings: the name, a URL with one of `schemes` naming a
    /// host and a database, then (after `between`, the kind's own checks) the tables.
    fn validate(
        &self,
        schemes: &[&str],
        between: impl FnOnce() -> Result<()>,
        table_ok: impl Fn(&str) -> bool,
        table_rule: &str,
    ) -> Result<()> {
        self.check_name()?;
        let scheme = schemes
            .first()
            .and_then(|s| s.strip_suffix("://"))
            .unwrap_or_default();
        let Some(rest) = schemes.iter().find_map(|p| self.url.strip_prefix(p)) else {
            return self.bad(format!(
                "url must start with {scheme}:// (got {:?})",
                redact_url(&self.url)
            ));
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let host = authority.rsplit('@').next().unwrap_or("");
        if host.is_empty() {
            return self.bad("url has no host".to_string());
        }
        let db = path.split('?').next().unwrap_or("");
        if db.is_empty() {
            return self.bad(format!(
                "url {} names no database ({scheme}://user:pass@host:port/DATABASE)",
                redact_url(&self.url)
            ));
        }
        between()?;
        self.check_tables(table_ok, table_rule)
    }

    /// The table list (non-empty, each entry by `table_ok`, none twice), the targets' keys,
    /// and the commit interval and chunk size.
    pub(crate) fn check_tables(
        &self,
        table_ok: impl Fn(&str) -> bool,
        table_rule: &str,
    ) -> Result<()> {
        if self.tables.is_empty() {
            return self.bad("tables is empty".to_string());
        }
        let mut seen = std::collections::BTreeSet::new();
        for t in &self.tables {
            if !table_ok(t) {
                return self.bad(format!("table name {t:?} must be {table_rule}"));
            }
            if !seen.insert(t) {
                return self.bad(format!("table {t} is listed twice"));
            }
        }
        for k in self.targets.keys() {
            if !self.tables.contains(k) {
                return self.bad(format!("targets names {k}, which is not in tables"));
            }
        }
        if self.commit_interval.is_zero() {
            return self.bad("commit_interval must be positive".to_string());
        }
        if self.snapshot_chunk_rows == 0 {
            return self.bad("snapshot_chunk_rows must be positive".to_string());
        }
        Ok(())
    }
}

/// 1-64 ASCII letters, digits or `_`.
fn ident_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl MysqlSourceConfig {
    /// The keys only this kind has.
    pub const KEYS: &'static [&'static str] = &["server_id", "resume"];

    /// Pure checks: names, URL shape, table list. No connection is made.
    pub fn validate(&self) -> Result<()> {
        self.common
            .validate(&["mysql://"], || Ok(()), ident_ok, "letters, digits or _")
    }
}

impl PostgresSourceConfig {
    /// The keys only this kind has.
    pub const KEYS: &'static [&'static str] = &["slot", "publication"];

    /// The replication slot name (`slot`, default `strata_<name>`).
    pub fn slot_name(&self) -> String {
        self.slot
            .clone()
            .unwrap_or_else(|| format!("strata_{}", self.common.name.to_lowercase()))
    }

    /// The publication name (`publication`, default `strata_<name>`).
    pub fn publication_name(&self) -> String {
        self.publication
            .clone()
            .unwrap_or_else(|| format!("strata_{}", self.common.name.to_lowercase()))
    }

    /// Pure checks: names, URL shape, slot and publication names, table list. No connection
    /// is made.
    pub fn validate(&self) -> Result<()> {
        let names = || {
            // Slot names: lowercase letters, digits and _ (the server's rule).
            let slot = self.slot_name();
            if slot.is_empty()
                || slot.len() > 63
                || !slot
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                return self.common.bad(format!(
                    "slot {slot:?} must be 1-63 lowercase letters, digits or _"
                ));
            }
            if !ident_ok(&self.publication_name()) {
                return self.common.bad(format!(
                    "publication {:?} must be 1-64 letters, digits or _",
                    self.publication_name()
                ));
            }
            Ok(())
        };
        let table_ok = |t: &str| {
            ident_ok(t)
                || t.split_once('.')
                    .is_some_and(|(schema, table)| ident_ok(schema) && ident_ok(table))
        };
        self.common.validate(
            &["postgres://", "postgresql://"],
            names,
            table_ok,
            "letters, digits or _, optionally as schema.table",
        )
    }
}

impl SourceConfig {
    pub fn kind(&self) -> SourceKind {
        match self {
            SourceConfig::Mysql(_) => SourceKind::Mysql,
            SourceConfig::Postgres(_) => SourceKind::Postgres,
            SourceConfig::Elasticsearch(_) => SourceKind::Elasticsearch,
            SourceConfig::Mongodb(_) => SourceKind::Mongodb,
        }
    }

    /// The settings every kind has.
    pub fn common(&self) -> &SourceCommon {
        match self {
            SourceConfig::Mysql(c) => &c.common,
            SourceConfig::Postgres(c) => &c.common,
            SourceConfig::Elasticsearch(c) => &c.common,
            SourceConfig::Mongodb(c) => &c.common,
        }
    }

    pub fn common_mut(&mut self) -> &mut SourceCommon {
        match self {
            SourceConfig::Mysql(c) => &mut c.common,
            SourceConfig::Postgres(c) => &mut c.common,
            SourceConfig::Elasticsearch(c) => &mut c.common,
            SourceConfig::Mongodb(c) => &mut c.common,
        }
    }

    /// The MySQL settings, when this is a MySQL source.
    pub fn as_mysql(&self) -> Option<&MysqlSourceConfig> {
        match self {
            SourceConfig::Mysql(c) => Some(c),
            _ => None,
        }
    }

    /// The PostgreSQL settings, when this is a PostgreSQL source.
    pub fn as_postgres(&self) -> Option<&PostgresSourceConfig> {
        match self {
            SourceConfig::Postgres(c) => Some(c),
            _ => None,
        }
    }

    /// The Elasticsearch settings, when this is an Elasticsearch source.
    pub fn as_elasticsearch(&self) -> Option<&EsSourceConfig> {
        match self {
            SourceConfig::Elasticsearch(c) => Some(c),
            _ => None,
        }
    }

    /// Pure checks of the entry, per its kind. No connection is made.
    pub fn validate(&self) -> Result<()> {
        match self {
            SourceConfig::Mysql(c) => c.validate(),
            SourceConfig::Postgres(c) => c.validate(),
            SourceConfig::Elasticsearch(c) => c.validate(),
            SourceConfig::Mongodb(c) => c.validate(),
        }
    }

    /// The keys an entry of `kind` may have (besides `kind`).
    fn keys(kind: SourceKind) -> &'static [&'static str] {
        match kind {
            SourceKind::Mysql => MysqlSourceConfig::KEYS,
            SourceKind::Postgres => PostgresSourceConfig::KEYS,
            SourceKind::Elasticsearch => EsSourceConfig::KEYS,
            SourceKind::Mongodb => MongoSourceConfig::KEYS,
        }
    }

    /// Reads one entry from its keys; errors name the entry (`at`, e.g. `sources[0]`), its
    /// kind and the key at fault.
    fn from_map(at: &str, mut map: serde_json::Map<String, serde_json::Value>) -> Result<Self> {
        let err = |msg: String| Error::user(msg);
        let kind = match map.remove("kind") {
            None => {
                return Err(err(format!(
                    "{at}: missing field \"kind\" (mysql, postgres, elasticsearch or mongodb)"
                )))
            }
            Some(v) => SourceKind::deserialize(&v).map_err(|_| {
                err(format!(
                    "{at}: unknown kind {v}, expected \"mysql\", \"postgres\", \"elasticsearch\" or \"mongodb\""
                ))
            })?,
        };
        for key in map.keys() {
            if SourceCommon::KEYS.contains(&key.as_str())
                || Self::keys(kind).contains(&key.as_str())
            {
                continue;
            }
            let mut msg = format!("{at} ({kind}): unknown field {key:?}");
            let other = SourceKind::ALL
                .into_iter()
                .find(|k| *k != kind && Self::keys(*k).contains(&key.as_str()));
            if let Some(other) = other {
                msg.push_str(&format!(": {key} is for kind = \"{other}\" only"));
                if key == "resume" {
                    msg.push_str(" (PostgreSQL resumes from its replication slot)");
                }
            }
            return Err(err(msg));
        }
        let value = serde_json::Value::Object(map);
        let parsed = match kind {
            SourceKind::Mysql => serde_json::from_value(value).map(SourceConfig::Mysql),
            SourceKind::Postgres => serde_json::from_value(value).map(SourceConfig::Postgres),
            SourceKind::Elasticsearch => serde_json::from_value::<EsSourceConfig>(value)
                .map(|c| SourceConfig::Elasticsearch(c.with_default_targets())),
            SourceKind::Mongodb => MongoSourceConfig::from_value(value).map(SourceConfig::Mongodb),
        };
        parsed.map_err(|e| err(format!("{at} ({kind}): {e}")))
    }
}

/// The shared settings, so callers read `source.name`, `source.tables`, `source.target(t)`
/// whatever the kind.
impl std::ops::Deref for SourceConfig {
    type Target = SourceCommon;
    fn deref(&self) -> &SourceCommon {
        self.common()
    }
}

impl std::ops::DerefMut for SourceConfig {
    fn deref_mut(&mut self) -> &mut SourceCommon {
        self.common_mut()
    }
}

/// Each kind's config reads its shared settings directly too (`config.name`).
macro_rules! deref_common {
    ($($t:ty),*) => {$(
        impl std::ops::Deref for $t {
            type Target = SourceCommon;
            fn deref(&self) -> &SourceCommon {
                &self.common
            }
        }
    )*};
}
deref_common!(MysqlSourceConfig, PostgresSourceConfig, EsSourceConfig);
deref_common!(MongoSourceConfig);

impl<'de> Deserialize<'de> for SourceConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let map = serde_json::Map::deserialize(d)?;
        SourceConfig::from_map("source", map).map_err(serde::de::Error::custom)
    }
}

/// Deserializes the `[[sources]]` list; errors name the entry by its index.
pub fn deserialize_list<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<SourceConfig>, D::Error> {
    let entries = Vec::<serde_json::Map<String, serde_json::Value>>::deserialize(d)?;
    entries
        .into_iter()
        .enumerate()
        .map(|(i, map)| SourceConfig::from_map(&format!("sources[{i}]"), map))
        .collect::<Result<Vec<_>>>()
        .map_err(serde::de::Error::custom)
}

/// One `[[sources]]` entry parsed and validated, as the connectors' config tests read it.
#[cfg(test)]
pub(crate) fn parse_entry(text: &str) -> Result<SourceConfig> {
    let s: SourceConfig =
        toml::from_str(text).map_err(|e| Error::user(format!("invalid config: {e}")))?;
    s.validate()?;
    Ok(s)
}

/// The error [`parse_entry`] gives for `text` (a test fails when there is none).
#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test helper: no error fails the test")]
pub(crate) fn entry_error(text: &str) -> String {
    parse_entry(text).unwrap_err().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `sources` list of a `strata.toml`, each entry validated.
    #[derive(Debug)]
    struct Config {
        sources: Vec<SourceConfig>,
    }

    impl Config {
        fn from_toml(text: &str) -> Result<Config> {
            #[derive(Deserialize)]
            struct Root {
                #[serde(deserialize_with = "deserialize_list")]
                sources: Vec<SourceConfig>,
            }
            let root: Root =
                toml::from_str(text).map_err(|e| Error::user(format!("invalid config: {e}")))?;
            for s in &root.sources {
                s.validate()?;
            }
            Ok(Config {
                sources: root.sources,
            })
        }
    }

    const MYSQL: &str = "[[sources]]\nname = \"app\"\nkind = \"mysql\"\nurl = \"mysql://u@h/db\"\ntables = [\"users\"]\n";
    const PG: &str = "[[sources]]\nname = \"pg\"\nkind = \"postgres\"\nurl = \"postgres://u@h/db\"\ntables = [\"users\"]\ntargets = { users = \"ods.pg_users\" }\n";

    #[test]
    fn an_unknown_key_names_the_entry_its_kind_and_the_key() {
        let err = Config::from_toml(&format!("{PG}server_id = 7\n")).unwrap_err();
        assert!(
            err.to_string()
                .contains("sources[0] (postgres): unknown field \"server_id\": server_id is for kind = \"mysql\" only"),
            "{err}"
        );
        let two = format!("{MYSQL}{PG}slot = \"s\"\n");
        // The second entry is the PostgreSQL one: slot is its own.
        Config::from_toml(&two).unwrap();
        let err = Config::from_toml(&format!("{PG}{MYSQL}slot = \"s\"\n")).unwrap_err();
        assert!(
            err.to_string().contains(
                "sources[1] (mysql): unknown field \"slot\": slot is for kind = \"postgres\" only"
            ),
            "{err}"
        );
        let err = Config::from_toml(&format!("{MYSQL}colour = \"red\"\n")).unwrap_err();
        assert!(
            err.to_string()
                .contains("sources[0] (mysql): unknown field \"colour\""),
            "{err}"
        );
        let err = Config::from_toml(&MYSQL.replace("\"mysql\"", "\"oracle\"")).unwrap_err();
        assert!(
            err.to_string()
                .contains("sources[0]: unknown kind \"oracle\""),
            "{err}"
        );
        let err = Config::from_toml(&MYSQL.replace("kind = \"mysql\"\n", "")).unwrap_err();
        assert!(
            err.to_string()
                .contains("sources[0]: missing field \"kind\""),
            "{err}"
        );
        let err = Config::from_toml(&format!("{MYSQL}server_id = \"x\"\n")).unwrap_err();
        assert!(
            err.to_string().contains("sources[0] (mysql): invalid type"),
            "{err}"
        );
    }

    #[test]
    fn each_kind_holds_only_its_own_settings_with_the_old_defaults() {
        let c = Config::from_toml(&format!("{MYSQL}{PG}")).unwrap();
        let SourceConfig::Mysql(m) = &c.sources[0] else {
            panic!("{:?}", c.sources[0])
        };
        assert_eq!((m.server_id, m.resume), (4_000_001, ResumeMode::Auto));
        assert_eq!(m.common.snapshot, SnapshotMode::Initial);
        assert_eq!(m.common.snapshot_chunk_rows, 10_000);
        assert_eq!(m.common.commit_interval, Duration::from_secs(1));
        assert_eq!(m.common.on_position_lost, OnPositionLost::Fail);
        assert!(!m.common.keep_changelog && m.common.targets.is_empty());
        let p = c.sources[1].as_postgres().unwrap();
        assert_eq!(
            (p.slot.as_deref(), p.slot_name().as_str()),
            (None, "strata_pg")
        );
        // Shared settings without matching on the kind.
        let names: Vec<&str> = c.sources.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["app", "pg"]);
        assert_eq!(c.sources[1].kind(), SourceKind::Postgres);
    }

    #[test]
    fn the_key_lists_are_the_structs_fields() {
        let common = SourceCommon {
            name: "a".into(),
            url: "u".into(),
            tables: vec![],
            targets: BTreeMap::new(),
            snapshot: SnapshotMode::Initial,
            snapshot_chunk_rows: 1,
            commit_interval: Duration::from_secs(1),
            keep_changelog: false,
            on_position_lost: OnPositionLost::Fail,
        };
        let keys = |v: serde_json::Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        let sorted = |lists: &[&[&str]]| {
            let mut k: Vec<String> = lists.concat().iter().map(|s| s.to_string()).collect();
            k.sort();
            k
        };
        let mysql = SourceConfig::Mysql(MysqlSourceConfig {
            common: common.clone(),
            server_id: 1,
            resume: ResumeMode::Auto,
        });
        let pg = SourceConfig::Postgres(PostgresSourceConfig {
            common: common.clone(),
            slot: Some("s".into()),
            publication: Some("p".into()),
        });
        let es = SourceConfig::Elasticsearch(EsSourceConfig {
            common,
            index: Some("i-*".into()),
            timestamp_field: "ts".into(),
            fields: BTreeMap::from([("a".to_string(), FieldType::Long)]),
            username_env: Some("U".into()),
            password_env: Some("P".into()),
            api_key_env: Some("K".into()),
            poll_interval: Duration::from_secs(1),
            overlap: Duration::from_secs(1),
            paging: Paging::Scroll,
            keep_alive: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
        });
        let kind: &[&str] = &["kind"];
        assert_eq!(
            keys(serde_json::to_value(&mysql).unwrap()),
            sorted(&[kind, SourceCommon::KEYS, MysqlSourceConfig::KEYS])
        );
        assert_eq!(
            keys(serde_json::to_value(&pg).unwrap()),
            sorted(&[kind, SourceCommon::KEYS, PostgresSourceConfig::KEYS])
        );
        assert_eq!(
            keys(serde_json::to_value(&es).unwrap()),
            sorted(&[kind, SourceCommon::KEYS, EsSourceConfig::KEYS])
        );
        // What is written reads back the same (`strata check` prints it).
        for s in [mysql, pg, es] {
            let text = serde_json::to_string(&s).unwrap();
            assert_eq!(serde_json::from_str::<SourceConfig>(&text).unwrap(), s);
        }
    }
}
