//! `[[sources]] kind = "mongodb"`: what the user writes for MongoDB (or Amazon DocumentDB)
//! collections mirrored through a change stream, and its offline checks (`strata check`).
//!
//! ```toml
//! [[sources]]
//! kind = "mongodb"
//! name = "shop"
//! uri_env = "MONGO_URI"        # the connection string, credentials included, from the env
//! database = "shop"
//! tables = ["orders", "customers"]          # the collections
//! targets = { customers = "ods.ods_mongo_customers" }   # default ods.ods_<collection>
//! on_position_lost = "resnapshot"           # oplog rolled past the resume token
//!
//! [sources.fields.orders]
//! total = { path = "amount.total", type = "double" }
//! placed_at = { type = "timestamp" }        # path defaults to the column name
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use strata_core::error::{Error, Result};

use crate::config::SourceCommon;

/// The type of a declared field's column. The whole document always lands as relaxed
/// Extended JSON in `doc` as well; a value that does not convert is NULL in its column (and
/// counted in `strata_cdc_mongo_field_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// Text: strings and symbols as they are, ObjectIds as hex, numbers and booleans as their
    /// text, dates as RFC 3339, anything else as relaxed Extended JSON.
    String,
    /// 64-bit integer (Iceberg `long`): int32, int64, integral doubles and decimals, numeric
    /// strings.
    Long,
    /// 32-bit integer (Iceberg `int`).
    Int,
    /// 64-bit float (Iceberg `double`): doubles, integers, decimal128, numeric strings.
    Double,
    /// true / false, stored as 1 / 0 in an `int` column.
    Bool,
    /// An instant (Iceberg `timestamptz`): BSON dates, BSON timestamps (seconds), RFC 3339
    /// strings.
    Timestamp,
    /// A calendar day (Iceberg `date`): the UTC day of a BSON date, or `YYYY-MM-DD` text.
    Date,
    /// Bytes (Iceberg `binary`): BSON binary of any subtype.
    Binary,
    /// The value as relaxed Extended JSON text (sub-documents, arrays).
    Json,
}

impl FieldType {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Long => "long",
            FieldType::Int => "int",
            FieldType::Double => "double",
            FieldType::Bool => "bool",
            FieldType::Timestamp => "timestamp",
            FieldType::Date => "date",
            FieldType::Binary => "binary",
            FieldType::Json => "json",
        }
    }
}

/// One declared field: where in the document it is and the type of its column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// Dotted path into the document (`customer.id`; a number segment indexes an array:
    /// `items.0.sku`). Default: the column name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `string`, `long`, `int`, `double`, `bool`, `timestamp`, `date`, `binary` or `json`.
    #[serde(rename = "type")]
    pub kind: FieldType,
}

/// `kind = "mongodb"`: collections of one MongoDB (replica set or sharded cluster, 4.0 or
/// later) or Amazon DocumentDB database, snapshotted in `_id` order, then followed through
/// one database change stream. Each collection lands in `ods.ods_<collection>` (`targets`
/// overrides) keyed by `_id`: the document as relaxed Extended JSON in `doc`, plus the
/// declared fields as typed columns; deletes are applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MongoSourceConfig {
    #[serde(flatten)]
    pub common: SourceCommon,
    /// Environment variable holding the connection string
    /// (`mongodb://user:pass@host:27017/?replicaSet=rs0`), so the secret stays out of
    /// `strata.toml`. Instead of it, `url` may hold a connection string without secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri_env: Option<String>,
    /// The database whose collections (`tables`) are mirrored.
    pub database: String,
    /// Declared fields per collection: `fields.<collection>.<column> = { path = "a.b",
    /// type = "long" }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, BTreeMap<String, FieldSpec>>,
    /// `updateLookup` (default): an update event carries the document as it is when the
    /// event is read (one lookup per update; what DocumentDB supports). `whenAvailable` /
    /// `required`: the post-image the server recorded (MongoDB 6.0+, with
    /// `changeStreamPreAndPostImages` enabled on the collections).
    #[serde(default)]
    pub full_document: FullDocument,
}

/// Where an update event's full document comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FullDocument {
    #[default]
    UpdateLookup,
    WhenAvailable,
    Required,
}

impl FullDocument {
    pub fn as_str(self) -> &'static str {
        match self {
            FullDocument::UpdateLookup => "updateLookup",
            FullDocument::WhenAvailable => "whenAvailable",
            FullDocument::Required => "required",
        }
    }
}

/// The key column and the document column every MongoDB ODS table has.
pub const ID_COLUMN: &str = "_id";
pub const DOC_COLUMN: &str = "doc";

/// Names a declared field's column may not take.
const RESERVED: &[&str] = &[
    ID_COLUMN,
    DOC_COLUMN,
    "_op",
    "_source_pos",
    "_commit_ts",
    "_ingest_ts",
];

fn column_ok(c: &str) -> bool {
    !c.is_empty()
        && c.len() <= 64
        && !c.starts_with(|ch: char| ch.is_ascii_digit())
        && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

fn path_ok(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 200
        && path.split('.').all(|seg| {
            !seg.is_empty()
                && !seg.starts_with('$')
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        })
}

fn env_name_ok(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A collection name we mirror: letters, digits, `_`, `-` and inner `.`, not a system
/// collection.
fn collection_ok(c: &str) -> bool {
    !c.is_empty()
        && c.len() <= 120
        && !c.starts_with(['.', '-'])
        && !c.ends_with('.')
        && !c.starts_with("system.")
        && c.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.'))
}

fn database_ok(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 63
        && d.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-'))
}

impl MongoSourceConfig {
    /// The keys only this kind has.
    pub const KEYS: &'static [&'static str] = &["uri_env", "database", "fields", "full_document"];

    /// Reads an entry's keys (`kind` removed): `url` may be left out when `uri_env` names the
    /// connection string (it is then empty).
    pub fn from_value(mut value: serde_json::Value) -> serde_json::Result<Self> {
        if let Some(map) = value.as_object_mut() {
            map.entry("url")
                .or_insert_with(|| serde_json::Value::String(String::new()));
        }
        serde_json::from_value(value)
    }

    /// The declared fields of `collection`: (column, path, type), by column.
    pub fn fields_of(&self, collection: &str) -> Vec<(String, String, FieldType)> {
        self.fields
            .get(collection)
            .map(|f| {
                f.iter()
                    .map(|(column, spec)| {
                        let path = spec.path.clone().unwrap_or_else(|| column.clone());
                        (column.clone(), path, spec.kind)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The connection string: `uri_env`'s value, else `url`.
    pub fn connection_string(&self) -> Result<String> {
        match &self.uri_env {
            Some(name) => match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
                _ => self.bad(format!(
                    "environment variable {name} is not set (uri_env: it holds the connection string)"
                )),
            },
            None => Ok(self.common.url.clone()),
        }
    }

    fn bad<T>(&self, msg: String) -> Result<T> {
        Err(Error::user(format!("sources.{}: {msg}", self.common.name)))
    }

    /// Checks of the entry: name, where the connection string comes from (the variable
    /// `uri_env` names must be set and hold a `mongodb://` string; it is not printed), the
    /// database, the collections, the declared fields. No connection is made.
    pub fn validate(&self) -> Result<()> {
        let c = &self.common;
        c.check_name()?;
        match (&self.uri_env, c.url.is_empty()) {
            (None, true) => {
                return self.bad(
                    "no connection string: set uri_env = \"MONGO_URI\" (an environment variable \
                     holding mongodb://user:pass@host:27017/?replicaSet=rs0) or url"
                        .to_string(),
                )
            }
            (Some(_), false) => {
                return self.bad(
                    "set uri_env or url, not both (uri_env keeps the credentials out of the config)"
                        .to_string(),
                )
            }
            (Some(name), true) if !env_name_ok(name) => {
                return self.bad(format!(
                    "uri_env {name:?} must name an environment variable (letters, digits, _), not hold the connection string"
                ))
            }
            _ => {}
        }
        let uri = self.connection_string()?;
        if uri.starts_with("mongodb+srv://") {
            return self.bad(
                "mongodb+srv:// connection strings need a DNS SRV lookup, which this build \
                 does not do: list the hosts (mongodb://h1:27017,h2:27017/?replicaSet=…)"
                    .to_string(),
            );
        }
        let Some(rest) = uri.strip_prefix("mongodb://") else {
            let shown = if self.uri_env.is_some() {
                format!(
                    "the value of {}",
                    self.uri_env.as_deref().unwrap_or_default()
                )
            } else {
                format!("{:?}", crate::config::redact_url(&uri))
            };
            return self.bad(format!("{shown} must start with mongodb://"));
        };
        let hosts = rest.split(['/', '?']).next().unwrap_or("");
        if hosts.rsplit('@').next().unwrap_or("").is_empty() {
            return self.bad("the connection string names no host".to_string());
        }
        if !database_ok(&self.database) {
            return self.bad(format!(
                "database {:?} must be 1-63 letters, digits, _ or -",
                self.database
            ));
        }
        c.check_tables(
            collection_ok,
            "a collection name (letters, digits, _, - and inner .; not system.*)",
        )?;
        for (collection, fields) in &self.fields {
            if !c.tables.contains(collection) {
                return self.bad(format!(
                    "fields names collection {collection}, which is not in tables"
                ));
            }
            for (column, spec) in fields {
                if !column_ok(column) {
                    return self.bad(format!(
                        "fields.{collection}: column {column:?} must be 1-64 letters, digits or _ (not starting with a digit)"
                    ));
                }
                if RESERVED.contains(&column.as_str()) {
                    return self.bad(format!(
                        "fields.{collection}: column {column:?} is reserved ({})",
                        RESERVED.join(", ")
                    ));
                }
                let path = spec.path.as_deref().unwrap_or(column);
                if !path_ok(path) {
                    return self.bad(format!(
                        "fields.{collection}.{column}: path {path:?} must be a dotted field path (letters, digits, _, -)"
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{entry_error as err, parse_entry as parse, SourceConfig};

    // Tests read environment variables set by no one else: each uses its own name.
    const MONGO: &str = "name = \"shop\"\nkind = \"mongodb\"\nurl = \"mongodb://127.0.0.1:27017/?replicaSet=rs0\"\ndatabase = \"shop\"\ntables = [\"orders\", \"customers\"]\n";

    #[test]
    fn a_minimal_entry_takes_the_defaults_and_reads_back() {
        let s = parse(MONGO).unwrap();
        let SourceConfig::Mongodb(m) = &s else {
            panic!("{s:?}")
        };
        assert_eq!(s.target("orders"), ("ods".into(), "ods_orders".into()));
        assert_eq!(m.full_document, FullDocument::UpdateLookup);
        assert!(m.fields_of("orders").is_empty());
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<SourceConfig>(&text).unwrap(), s);
        let with_fields = parse(&format!(
            "{MONGO}[fields.orders]\ntotal = {{ path = \"amount.total\", type = \"double\" }}\nplaced_at = {{ type = \"timestamp\" }}\n"
        ))
        .unwrap();
        let SourceConfig::Mongodb(m) = &with_fields else {
            panic!()
        };
        assert_eq!(
            m.fields_of("orders"),
            [
                (
                    "placed_at".to_string(),
                    "placed_at".to_string(),
                    FieldType::Timestamp
                ),
                (
                    "total".to_string(),
                    "amount.total".to_string(),
                    FieldType::Double
                )
            ]
        );
        let text = serde_json::to_string(&with_fields).unwrap();
        assert_eq!(
            serde_json::from_str::<SourceConfig>(&text).unwrap(),
            with_fields
        );
    }

    #[test]
    fn the_connection_string_comes_from_the_environment() {
        let no_url = MONGO.replace("url = \"mongodb://127.0.0.1:27017/?replicaSet=rs0\"\n", "");
        let e = err(&no_url);
        assert!(e.contains("set uri_env = \"MONGO_URI\""), "{e}");
        let e = err(&format!(
            "{no_url}uri_env = \"STRATA_TEST_MONGO_UNSET_1\"\n"
        ));
        assert!(
            e.contains("environment variable STRATA_TEST_MONGO_UNSET_1 is not set"),
            "{e}"
        );
        let e = err(&format!("{no_url}uri_env = \"mongodb://u:p@h\"\n"));
        assert!(e.contains("must name an environment variable"), "{e}");
        let e = err(&format!("{MONGO}uri_env = \"X\"\n"));
        assert!(e.contains("not both"), "{e}");
        // The variable names are used by this test only.
        std::env::set_var("STRATA_TEST_MONGO_CFG_OK", "mongodb://u:secret@h:27017/");
        std::env::set_var("STRATA_TEST_MONGO_CFG_HTTP", "http://u:secret@h:27017/");
        let s = parse(&format!("{no_url}uri_env = \"STRATA_TEST_MONGO_CFG_OK\"\n")).unwrap();
        let SourceConfig::Mongodb(m) = &s else {
            panic!()
        };
        assert_eq!(
            m.connection_string().unwrap(),
            "mongodb://u:secret@h:27017/"
        );
        // The printed config names the variable, never its value.
        let text = serde_json::to_string(&s).unwrap();
        assert!(!text.contains("secret"), "{text}");
        assert_eq!(serde_json::from_str::<SourceConfig>(&text).unwrap(), s);
        let e = err(&format!(
            "{no_url}uri_env = \"STRATA_TEST_MONGO_CFG_HTTP\"\n"
        ));
        assert!(
            e.contains("the value of STRATA_TEST_MONGO_CFG_HTTP must start with mongodb://"),
            "{e}"
        );
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "url = \"mongodb://127.0.0.1:27017/?replicaSet=rs0\"",
                "url = \"mongodb+srv://u:pw@cluster.example.net/\"",
                "mongodb+srv://",
            ),
            (
                "url = \"mongodb://127.0.0.1:27017/?replicaSet=rs0\"",
                "url = \"postgres://u:pw@h/db\"",
                "must start with mongodb://",
            ),
            (
                "url = \"mongodb://127.0.0.1:27017/?replicaSet=rs0\"",
                "url = \"mongodb://u:pw@/x\"",
                "names no host",
            ),
            (
                "tables = [\"orders\", \"customers\"]",
                "tables = []",
                "tables is empty",
            ),
            (
                "tables = [\"orders\", \"customers\"]",
                "tables = [\"system.users\"]",
                "must be a collection name",
            ),
            (
                "database = \"shop\"",
                "database = \"a b\"",
                "database \"a b\"",
            ),
        ];
        for (from, to, want) in cases {
            let e = err(&MONGO.replace(from, to));
            assert!(e.contains(want), "{to}: {e}");
            assert!(!e.contains("pw@"), "{e}");
        }
        let extra: &[(&str, &str)] = &[
            (
                "[fields.orders]\nx = { type = \"decimal\" }",
                "unknown variant `decimal`",
            ),
            (
                "[fields.orders]\nx = { typ = \"long\" }",
                "unknown field `typ`",
            ),
            ("[fields.orders]\nx = \"long\"", "invalid type"),
            ("[fields.orders]\ndoc = { type = \"json\" }", "reserved"),
            (
                "[fields.orders]\n\"a-b\" = { type = \"long\" }",
                "column \"a-b\"",
            ),
            (
                "[fields.orders]\nx = { path = \"a..b\", type = \"long\" }",
                "path \"a..b\"",
            ),
            (
                "[fields.orders]\nx = { path = \"$where\", type = \"long\" }",
                "path \"$where\"",
            ),
            (
                "[fields.users]\nx = { type = \"long\" }",
                "collection users",
            ),
            ("full_document = \"always\"", "unknown variant `always`"),
            ("slot = \"s\"", "slot is for kind = \"postgres\" only"),
        ];
        for (line, want) in extra {
            let e = err(&format!("{MONGO}{line}\n"));
            assert!(e.contains(want), "{line}: {e}");
        }
        let e = err(&MONGO.replace("database = \"shop\"\n", ""));
        assert!(e.contains("missing field `database`"), "{e}");
    }
}
