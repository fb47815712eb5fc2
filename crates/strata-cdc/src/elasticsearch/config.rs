//! `[[sources]] kind = "elasticsearch"`: what the user writes for an Elasticsearch (or
//! OpenSearch) index exported to the lake, and its offline checks (`strata check`).
//!
//! ```toml
//! [[sources]]
//! kind = "elasticsearch"
//! name = "search"
//! url = "http://127.0.0.1:9200"
//! tables = ["products"]               # one entry: the topic and default target name
//! index = "products-*"                # optional: index, alias or pattern (default: the entry)
//! timestamp_field = "updated_at"      # a `date` field: increments follow it
//! fields = { sku = "string", price = "double", "stock.count" = "long" }
//! username_env = "ES_USER"            # or api_key_env = "ES_API_KEY"
//! password_env = "ES_PASSWORD"
//! poll_interval = "30s"
//! overlap = "2m"
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_core::error::{Error, Result};

use crate::config::SourceCommon;

/// The type of a declared field's column. The whole document always lands as JSON text in
/// `_source` as well; a value that does not convert is NULL in its column (and counted in
/// `strata_cdc_es_field_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// Text (numbers and booleans as their JSON text; objects and arrays as JSON).
    String,
    /// 64-bit integer (Iceberg `long`); integral floats and numeric strings convert.
    Long,
    /// 32-bit integer (Iceberg `int`).
    Integer,
    /// 64-bit float (Iceberg `double`).
    Double,
    /// 32-bit float (Iceberg `float`).
    Float,
    /// true / false, stored as 1 / 0 in an `int` column.
    Boolean,
    /// An instant (Iceberg `timestamptz`): ISO-8601 text (no zone: UTC) or epoch
    /// milliseconds, as Elasticsearch's `date` type takes them.
    Timestamp,
    /// A calendar day (Iceberg `date`): `YYYY-MM-DD`, or the day of a timestamp.
    Date,
    /// The value as JSON text (objects, arrays).
    Json,
}

impl FieldType {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Long => "long",
            FieldType::Integer => "integer",
            FieldType::Double => "double",
            FieldType::Float => "float",
            FieldType::Boolean => "boolean",
            FieldType::Timestamp => "timestamp",
            FieldType::Date => "date",
            FieldType::Json => "json",
        }
    }
}

/// How the full export (and each increment) pages through the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Paging {
    /// A point in time + `search_after` on Elasticsearch 7.10 and later; scroll on
    /// OpenSearch, older servers, or when opening a point in time fails.
    #[default]
    Auto,
    /// Always a point in time + `search_after` (an error where the server has none).
    Pit,
    /// Always the scroll API.
    Scroll,
}

/// `kind = "elasticsearch"`: one Elasticsearch or OpenSearch index (or alias or pattern),
/// exported in full once, then incrementally by its timestamp field. Lands in
/// `ods.ods_es_<table>` (`targets` overrides) keyed by `_id`, latest version wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EsSourceConfig {
    #[serde(flatten)]
    pub common: SourceCommon,
    /// Index, alias or pattern to read (`logs-*`, `a,b`). Default: the one entry of `tables`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// The `date` field increments follow (e.g. `updated_at`, `@timestamp`): each reads the
    /// documents stamped at or after the watermark minus `overlap`. Documents without it are
    /// exported by the full export only. It lands as a `timestamp` column unless declared.
    pub timestamp_field: String,
    /// Declared fields → typed columns, by dotted path into the document (`user.id`; column
    /// `user_id`, a leading `@` dropped): `string`, `long`, `integer`, `double`, `float`,
    /// `boolean`, `timestamp`, `date` or `json`.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldType>,
    /// Environment variable holding the basic-auth user (with `password_env`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_env: Option<String>,
    /// Environment variable holding the basic-auth password (with `username_env`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// Environment variable holding an API key (`Authorization: ApiKey …`, the encoded form
    /// Elasticsearch returns), instead of a user and password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// How often an increment runs after the previous one ended.
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How far before the watermark each increment reads again, for documents made visible
    /// late (refresh interval, clock skew, slow writers). Re-read documents whose version the
    /// bus already holds are not written again.
    #[serde(default = "default_overlap", with = "humantime_serde")]
    pub overlap: Duration,
    /// `auto` (default), `pit` or `scroll`: how pages are read.
    #[serde(default)]
    pub paging: Paging,
    /// How long the server keeps a point in time or scroll between two pages.
    #[serde(default = "default_keep_alive", with = "humantime_serde")]
    pub keep_alive: Duration,
    /// Longest wait for one HTTP request (a page of `snapshot_chunk_rows` documents).
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
}

fn default_poll_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_overlap() -> Duration {
    Duration::from_secs(120)
}
fn default_keep_alive() -> Duration {
    Duration::from_secs(120)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(60)
}

/// Columns every Elasticsearch ODS table has besides the declared fields.
pub const ID_COLUMN: &str = "_id";
pub const INDEX_COLUMN: &str = "_index";
pub const VERSION_COLUMN: &str = "_version";
pub const SEQ_NO_COLUMN: &str = "_seq_no";
pub const PRIMARY_TERM_COLUMN: &str = "_primary_term";
pub const SOURCE_COLUMN: &str = "_source";

/// Names a declared field's column may not take: the document's metadata columns and the
/// ODS merger's.
const RESERVED: &[&str] = &[
    ID_COLUMN,
    INDEX_COLUMN,
    VERSION_COLUMN,
    SEQ_NO_COLUMN,
    PRIMARY_TERM_COLUMN,
    SOURCE_COLUMN,
    "_op",
    "_source_pos",
    "_commit_ts",
    "_ingest_ts",
];

/// The largest page Elasticsearch answers by default (`index.max_result_window`).
pub const MAX_PAGE: usize = 10_000;

/// The column a document path lands in: `.` → `_`, a leading `@` dropped
/// (`@timestamp` → `timestamp`, `user.id` → `user_id`).
pub fn column_name(path: &str) -> String {
    path.trim_start_matches('@').replace('.', "_")
}

fn path_ok(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 200
        && path.split('.').all(|seg| {
            !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '@'))
        })
}

fn env_name_ok(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// What an index expression may hold: Elasticsearch's index-name characters plus `*` and `,`
/// for patterns and lists (no whitespace, `/`, `\`, `?`, `"`, `<`, `>`, `|`, `#`, `:`).
fn index_ok(index: &str) -> bool {
    !index.is_empty()
        && index.len() <= 255
        && index.split(',').all(|part| {
            !part.is_empty()
                && !part.starts_with(['_', '+'])
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '*'))
        })
}

impl EsSourceConfig {
    /// The keys only this kind has.
    pub const KEYS: &'static [&'static str] = &[
        "index",
        "timestamp_field",
        "fields",
        "username_env",
        "password_env",
        "api_key_env",
        "poll_interval",
        "overlap",
        "paging",
        "keep_alive",
        "request_timeout",
    ];

    /// The index expression read: `index`, else the one table entry.
    pub fn index(&self) -> &str {
        match &self.index {
            Some(i) => i,
            None => self
                .common
                .tables
                .first()
                .map(String::as_str)
                .unwrap_or_default(),
        }
    }

    /// The default target of table entry `table`: `ods.ods_es_<table>` (`.` and `-` as `_`).
    pub fn default_target(table: &str) -> String {
        format!("ods.ods_es_{}", table.replace(['.', '-'], "_"))
    }

    /// Writes the default target of each table without one into `targets`, so every reader of
    /// the config (the merger, `strata cdc`, the cross-source checks) sees `ods.ods_es_<table>`.
    pub fn with_default_targets(mut self) -> Self {
        for t in &self.common.tables {
            if !self.common.targets.contains_key(t) {
                self.common
                    .targets
                    .insert(t.clone(), Self::default_target(t));
            }
        }
        self
    }

    /// The column of the timestamp field, and whether it is one of the declared fields.
    pub fn timestamp_column(&self) -> (String, bool) {
        (
            column_name(&self.timestamp_field),
            self.fields.contains_key(&self.timestamp_field),
        )
    }

    fn bad<T>(&self, msg: String) -> Result<T> {
        Err(Error::user(format!("sources.{}: {msg}", self.common.name)))
    }

    /// Pure checks: name, URL, the one table, the index, the timestamp field, the declared
    /// fields and their columns, the credential variables' names, durations and page size. No
    /// connection is made and no environment variable is read.
    pub fn validate(&self) -> Result<()> {
        let c = &self.common;
        c.check_name()?;
        let rest = ["http://", "https://"]
            .iter()
            .find_map(|p| c.url.strip_prefix(p));
        let Some(rest) = rest else {
            return self.bad(format!(
                "url must start with http:// or https:// (got {:?})",
                crate::config::redact_url(&c.url)
            ));
        };
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        if authority.contains('@') {
            return self.bad(
                "url must not hold credentials: name environment variables in username_env and \
                 password_env (or api_key_env)"
                    .to_string(),
            );
        }
        if authority.is_empty() {
            return self.bad("url has no host".to_string());
        }
        if rest.contains(['?', '#']) {
            return self.bad("url must not have a query or fragment".to_string());
        }
        if c.tables.len() != 1 {
            return self.bad(format!(
                "an elasticsearch source reads one index (or alias or pattern): list one name \
                 in tables (got {}); add another [[sources]] entry for another index",
                c.tables.len()
            ));
        }
        let table_ok = |t: &str| {
            !t.is_empty()
                && t.len() <= 200
                && !t.starts_with(['-', '.', '_'])
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        };
        c.check_tables(
            table_ok,
            "letters, digits, _, - or . (set index = \"logs-*\" to read a pattern)",
        )?;
        if !index_ok(self.index()) {
            return self.bad(format!(
                "index {:?} must be index names or patterns (letters, digits, _, -, ., *), comma-separated, none starting with _ or +",
                self.index()
            ));
        }
        if !path_ok(&self.timestamp_field) {
            return self.bad(format!(
                "timestamp_field {:?} must be a dotted field path (letters, digits, _, -, @)",
                self.timestamp_field
            ));
        }
        let mut columns: BTreeMap<String, &str> = BTreeMap::new();
        let (ts_column, declared) = self.timestamp_column();
        if !declared {
            columns.insert(ts_column, &self.timestamp_field);
        } else if self.fields.get(&self.timestamp_field) != Some(&FieldType::Timestamp) {
            return self.bad(format!(
                "fields.{} is the timestamp_field: declare it as \"timestamp\" (or leave it out)",
                self.timestamp_field
            ));
        }
        for path in self.fields.keys() {
            if !path_ok(path) {
                return self.bad(format!(
                    "fields: {path:?} must be a dotted field path (letters, digits, _, -, @)"
                ));
            }
            let column = column_name(path);
            if column.is_empty() || RESERVED.contains(&column.as_str()) {
                return self.bad(format!(
                    "fields: {path:?} would land in column {column:?}, which is reserved ({})",
                    RESERVED.join(", ")
                ));
            }
            if let Some(other) = columns.insert(column.clone(), path) {
                return self.bad(format!(
                    "fields: {other:?} and {path:?} would both land in column {column:?}"
                ));
            }
        }
        match (&self.username_env, &self.password_env, &self.api_key_env) {
            (Some(_), None, _) | (None, Some(_), _) => {
                return self.bad("username_env and password_env go together".to_string())
            }
            (Some(_), Some(_), Some(_)) => {
                return self.bad(
                    "use either username_env/password_env or api_key_env, not both".to_string(),
                )
            }
            _ => {}
        }
        for (key, name) in [
            ("username_env", &self.username_env),
            ("password_env", &self.password_env),
            ("api_key_env", &self.api_key_env),
        ] {
            if let Some(name) = name {
                if !env_name_ok(name) {
                    return self.bad(format!(
                        "{key} {name:?} must name an environment variable (letters, digits, _), not hold the secret"
                    ));
                }
            }
        }
        if self.poll_interval.is_zero() {
            return self.bad("poll_interval must be positive".to_string());
        }
        if self.keep_alive < Duration::from_secs(1) {
            return self.bad("keep_alive must be at least 1s".to_string());
        }
        if self.request_timeout.is_zero() {
            return self.bad("request_timeout must be positive".to_string());
        }
        if c.snapshot_chunk_rows > MAX_PAGE {
            return self.bad(format!(
                "snapshot_chunk_rows is the page size: at most {MAX_PAGE} (the server's default max_result_window)"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{entry_error as err, parse_entry as parse, SourceConfig};

    const ES: &str = "name = \"search\"\nkind = \"elasticsearch\"\nurl = \"http://127.0.0.1:9200\"\ntables = [\"products\"]\ntimestamp_field = \"updated_at\"\n";

    #[test]
    fn a_minimal_entry_takes_the_defaults() {
        let s = parse(ES).unwrap();
        let SourceConfig::Elasticsearch(e) = &s else {
            panic!("{s:?}")
        };
        assert_eq!(e.index(), "products");
        assert_eq!(
            s.target("products"),
            ("ods".into(), "ods_es_products".into())
        );
        assert_eq!(e.poll_interval, Duration::from_secs(30));
        assert_eq!(e.overlap, Duration::from_secs(120));
        assert_eq!(e.paging, Paging::Auto);
        assert_eq!(e.timestamp_column(), ("updated_at".to_string(), false));
        // The default target is written into targets: printed configs read back the same.
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<SourceConfig>(&text).unwrap(), s);
        let dotted = parse(&ES.replace("[\"products\"]", "[\"logs-2026.12\"]")).unwrap();
        assert_eq!(
            dotted.target("logs-2026.12"),
            ("ods".into(), "ods_es_logs_2026_12".into())
        );
        let own = parse(&format!(
            "{ES}index = \"products-*,archive\"\ntargets = {{ products = \"raw.products\" }}\n"
        ))
        .unwrap();
        assert_eq!(own.target("products"), ("raw".into(), "products".into()));
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        let cases: &[(&str, &str)] = &[
            (
                "url = \"http://127.0.0.1:9200\"",
                "url = \"es://h\"|url must start with http:// or https://",
            ),
            (
                "url = \"http://127.0.0.1:9200\"",
                "url = \"http://u:pw@h:9200\"|must not hold credentials",
            ),
            (
                "tables = [\"products\"]",
                "tables = [\"a\", \"b\"]|reads one index",
            ),
            (
                "tables = [\"products\"]",
                "tables = [\"logs-*\"]|must be letters, digits",
            ),
            ("tables = [\"products\"]", "tables = []|reads one index"),
            (
                "timestamp_field = \"updated_at\"",
                "timestamp_field = \"a b\"|timestamp_field \"a b\"",
            ),
        ];
        for (from, to) in cases {
            let (to, want) = to.split_once('|').unwrap();
            let e = err(&ES.replace(from, to));
            assert!(e.contains(want), "{to}: {e}");
            assert!(!e.contains("pw@"), "{e}");
        }
        let extra: &[(&str, &str)] = &[
            ("index = \"a b\"", "index \"a b\""),
            ("index = \"_all\"", "index \"_all\""),
            ("fields = { _id = \"string\" }", "reserved"),
            (
                "fields = { \"a.b\" = \"long\", a_b = \"string\" }",
                "both land in column \"a_b\"",
            ),
            (
                "fields = { updated_at = \"string\" }",
                "declare it as \"timestamp\"",
            ),
            ("fields = { x = \"decimal\" }", "unknown variant `decimal`"),
            ("username_env = \"U\"", "go together"),
            (
                "username_env = \"U\"\npassword_env = \"P\"\napi_key_env = \"K\"",
                "not both",
            ),
            (
                "api_key_env = \"abc def\"",
                "must name an environment variable",
            ),
            ("poll_interval = \"0s\"", "poll_interval must be positive"),
            ("snapshot_chunk_rows = 20000", "at most 10000"),
            ("server_id = 3", "server_id is for kind = \"mysql\" only"),
            ("paging = \"cursor\"", "unknown variant `cursor`"),
        ];
        for (line, want) in extra {
            let e = err(&format!("{ES}{line}\n"));
            assert!(e.contains(want), "{line}: {e}");
        }
        // Declaring the timestamp field as a timestamp is fine; so is an API key alone.
        parse(&format!(
            "{ES}fields = {{ updated_at = \"timestamp\", \"@tags\" = \"json\" }}\napi_key_env = \"ES_KEY\"\n"
        ))
        .unwrap();
    }

    #[test]
    fn paths_map_to_columns() {
        assert_eq!(column_name("@timestamp"), "timestamp");
        assert_eq!(column_name("user.id"), "user_id");
        assert!(path_ok("user.id") && path_ok("@timestamp") && !path_ok("a..b"));
        assert!(index_ok("logs-*,archive") && !index_ok("logs/x") && !index_ok(""));
    }
}
