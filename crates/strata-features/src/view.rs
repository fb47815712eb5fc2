//! Feature views: `features/<name>.toml` beside a project's models. A view names an entity
//! (its key columns), a source (a lake table or a SQL query), the features (every column, a
//! list, or every column but an exclusion list), the column that says how fresh a row is, a
//! TTL, and whether it is served online.
//!
//! ```toml
//! description = "Per-user features of the last 1, 7 and 30 days"
//! entity = ["user_id"]
//! source = "ads.ads_user_features"     # or: query = "SELECT …"
//! exclude = ["dt"]                     # or: features = ["ctr_7d", …]; neither: every column
//! timestamp = "dt"
//! ttl = "3d"
//! online = true
//! ```
//!
//! Loading ([`load_views`]) checks each file on its own; [`resolve`] checks a view against the
//! lake (the source exists, the columns exist, their types can be served) and gives the
//! served schema.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use arrow::datatypes::{DataType, Field, SchemaRef};
use serde::Deserialize;
use strata_online::meta::Column;
use strata_online::FeatureType;

use crate::error::{Error, Result};
use crate::stream::StreamSpec;

/// What a view file says.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewFile {
    /// `batch` (default: synced from the lake) or `stream` (windowed aggregates over the
    /// event stream, kept current by the `realtime` consumer; see `stream.rs`).
    pub kind: Option<String>,
    /// Stream views: the event field the entity's value comes from (default: the entity).
    pub key: Option<String>,
    /// Stream views: `string` (default) or `int64` keys.
    pub key_type: Option<String>,
    /// Stream views: how late (by event time, behind the newest event of its partition) an
    /// event may arrive and still count; later ones are counted as dropped.
    #[serde(default, with = "humantime_serde")]
    pub allowed_lateness: Option<Duration>,
    /// Stream views: the aggregates, one served feature each.
    #[serde(default)]
    pub aggregates: Vec<crate::stream::AggregateFile>,
    /// The view's name (default: the file name without `.toml`); feature references are
    /// `<view>:<feature>`.
    pub name: Option<String>,
    #[serde(default)]
    pub description: String,
    /// The key columns: one (`"user_id"`) or several (`["user_id", "post_id"]`).
    pub entity: OneOrMany,
    /// A lake table, `namespace.table`. Give this or `query`.
    pub source: Option<String>,
    /// A SQL query over the lake (e.g. aggregating a recall table into one list per user).
    /// Always synced in full; give `source` for incremental syncs.
    pub query: Option<String>,
    /// The features: these columns. Neither this nor `exclude`: every column but the entity
    /// and timestamp columns.
    pub features: Option<Vec<String>>,
    /// Every column but these (and the entity and timestamp columns).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// The column saying how fresh a row is (TIMESTAMP or DATE). A DATE `d` describes the day
    /// up to its end: its rows count as of `d + 1` 00:00 UTC. Without one, rows count as of
    /// the lake snapshot they were read from.
    pub timestamp: Option<String>,
    /// Rows older than this (by the timestamp) are not served: lookups answer
    /// `OUTSIDE_MAX_AGE`. None: rows never expire.
    #[serde(default, with = "humantime_serde")]
    pub ttl: Option<Duration>,
    /// Whether the view is synced to the online store and served.
    #[serde(default = "yes")]
    pub online: bool,
    /// The model the sync runs after in the DAG (default: the model that writes `source`, or
    /// the models that write the tables `query` reads).
    pub after: Option<Vec<String>>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// Where a view's rows come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Table {
        namespace: String,
        table: String,
    },
    Query(String),
    /// A stream view: aggregates over the event stream.
    Stream(Box<StreamSpec>),
}

impl Source {
    pub fn describe(&self) -> String {
        match self {
            Source::Table { namespace, table } => format!("{namespace}.{table}"),
            Source::Query(_) => "query".to_string(),
            Source::Stream(_) => "stream of events".to_string(),
        }
    }
}

/// Which columns are features.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    All,
    Only(Vec<String>),
    AllBut(Vec<String>),
}

/// A loaded view (checked on its own, not yet against the lake).
#[derive(Debug, Clone)]
pub struct FeatureView {
    pub name: String,
    /// The file it came from, for messages.
    pub file: String,
    pub description: String,
    pub entity: Vec<String>,
    pub source: Source,
    pub selection: Selection,
    pub timestamp: Option<String>,
    pub ttl: Option<Duration>,
    pub online: bool,
    pub after: Option<Vec<String>>,
}

/// A view checked against the lake: the columns it reads and serves.
#[derive(Debug, Clone)]
pub struct ResolvedView {
    pub view: FeatureView,
    /// The entity columns with their lake types.
    pub entity: Vec<Field>,
    /// The timestamp column's lake type.
    pub timestamp: Option<Field>,
    /// The served features, in order, with their lake fields.
    pub features: Vec<(Column, Field)>,
}

impl ResolvedView {
    pub fn columns(&self) -> Vec<Column> {
        self.features.iter().map(|(c, _)| c.clone()).collect()
    }

    /// The lake columns a sync reads: entity, timestamp, features.
    pub fn read_columns(&self) -> Vec<String> {
        let mut out: Vec<String> = self.entity.iter().map(|f| f.name().clone()).collect();
        if let Some(ts) = &self.timestamp {
            out.push(ts.name().clone());
        }
        out.extend(self.features.iter().map(|(c, _)| c.name.clone()));
        out
    }
}

/// The directory of a project's views.
pub fn views_dir(project_root: &Path) -> PathBuf {
    project_root.join("features")
}

/// Loads every `features/*.toml` of the project at `project_root` (none: an empty list).
/// Every problem is reported, one per line.
pub fn load_views(project_root: &Path) -> Result<Vec<FeatureView>> {
    let mut views = Vec::new();
    let mut problems = Vec::new();
    let mut names = HashSet::new();
    for (path, rel) in toml_files(&views_dir(project_root), project_root)? {
        match load_view(&path, &rel) {
            Ok(v) => {
                if !names.insert(v.name.clone()) {
                    problems.push(format!("{rel}: another view is also named {}", v.name));
                }
                views.push(v);
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    if problems.is_empty() {
        Ok(views)
    } else {
        Err(Error::Plan(problems.join("\n")))
    }
}

/// The `*.toml` files directly in `dir` (none when it does not exist), in name order, each with
/// its path relative to `project_root` for messages.
pub fn toml_files(dir: &Path, project_root: &Path) -> Result<Vec<(PathBuf, String)>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    Ok(files
        .into_iter()
        .map(|path| {
            let rel = path
                .strip_prefix(project_root)
                .unwrap_or(&path)
                .display()
                .to_string();
            (path, rel)
        })
        .collect())
}

fn load_view(path: &Path, rel: &str) -> Result<FeatureView> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let file: ViewFile = toml::from_str(&text).map_err(|e| Error::view(rel, e.to_string()))?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    FeatureView::from_file(file, &stem, rel)
}

impl FeatureView {
    /// Checks a parsed file on its own; every problem in one error naming the file.
    pub fn from_file(file: ViewFile, default_name: &str, rel: &str) -> Result<FeatureView> {
        let mut problems = Vec::new();
        let name = file
            .name
            .clone()
            .unwrap_or_else(|| default_name.to_string());
        if let Err(e) = strata_core::names::check_name("view name", &name) {
            problems.push(e);
        }
        let entity = file.entity.to_vec();
        if entity.is_empty() {
            problems.push("entity names no column".to_string());
        }
        let stream = match file.kind.as_deref().unwrap_or("batch") {
            "batch" => {
                if file.key.is_some()
                    || file.key_type.is_some()
                    || file.allowed_lateness.is_some()
                    || !file.aggregates.is_empty()
                {
                    problems.push(
                        "key, key_type, allowed_lateness and aggregates belong to kind = \"stream\" views"
                            .to_string(),
                    );
                }
                false
            }
            "stream" => true,
            other => {
                problems.push(format!("kind {other:?} is not batch or stream"));
                false
            }
        };
        let source = if stream {
            if file.source.is_some() || file.query.is_some() {
                problems
                    .push("a stream view reads the event stream: no source or query".to_string());
            }
            if file.features.is_some() || !file.exclude.is_empty() || file.timestamp.is_some() {
                problems.push(
                    "a stream view's features are its aggregates: no features, exclude or timestamp"
                        .to_string(),
                );
            }
            if file.after.is_some() {
                problems.push("a stream view is not a DAG step: no after".to_string());
            }
            StreamSpec::from_parts(
                &entity,
                file.key.as_deref(),
                file.key_type.as_deref(),
                file.allowed_lateness,
                &file.aggregates,
                &mut problems,
            )
            .map(|spec| Source::Stream(Box::new(spec)))
        } else {
            match (&file.source, &file.query) {
                (Some(_), Some(_)) => {
                    problems.push("give source or query, not both".to_string());
                    None
                }
                (None, None) => {
                    problems.push("give source (a lake table) or query (SQL)".to_string());
                    None
                }
                (Some(table), None) => match table.split_once('.') {
                    Some((ns, t)) if !ns.is_empty() && !t.is_empty() && !t.contains('.') => {
                        Some(Source::Table {
                            namespace: ns.to_lowercase(),
                            table: t.to_lowercase(),
                        })
                    }
                    _ => {
                        problems.push(format!(
                            "source {table:?} must be namespace.table (e.g. ads.ads_user_features)"
                        ));
                        None
                    }
                },
                (None, Some(q)) if q.trim().is_empty() => {
                    problems.push("query is empty".to_string());
                    None
                }
                (None, Some(q)) => Some(Source::Query(q.clone())),
            }
        };
        let selection = match (&file.features, file.exclude.is_empty()) {
            (Some(_), false) => {
                problems.push("give features or exclude, not both".to_string());
                Selection::All
            }
            (Some(list), true) if list.is_empty() => {
                problems.push("features lists no column".to_string());
                Selection::All
            }
            (Some(list), true) if list.iter().any(|c| c == "*") => {
                if list.len() > 1 {
                    problems.push("features = [\"*\"] takes no other names".to_string());
                }
                Selection::All
            }
            (Some(list), true) => Selection::Only(list.clone()),
            (None, false) => Selection::AllBut(file.exclude.clone()),
            (None, true) => Selection::All,
        };
        if matches!(file.ttl, Some(d) if d.is_zero()) {
            problems.push("ttl must be positive (leave it out for rows that never expire)".into());
        }
        match source {
            Some(source) if problems.is_empty() => Ok(FeatureView {
                name,
                file: rel.to_string(),
                description: file.description,
                entity,
                source,
                selection,
                timestamp: file.timestamp,
                ttl: file.ttl,
                online: file.online,
                after: file.after,
            }),
            _ => Err(Error::view(rel, problems.join("; "))),
        }
    }

    /// The lake tables the view reads (`namespace.table`).
    pub fn reads(&self) -> Result<BTreeSet<String>> {
        match &self.source {
            Source::Table { namespace, table } => Ok([format!("{namespace}.{table}")].into()),
            Source::Query(sql) => tables_in_query(sql).map_err(|m| Error::view(&self.file, m)),
            Source::Stream(_) => Ok([crate::stream::EVENTS_TABLE.to_string()].into()),
        }
    }

    /// The stream definition of a `kind = "stream"` view.
    pub fn stream(&self) -> Option<&StreamSpec> {
        match &self.source {
            Source::Stream(spec) => Some(spec),
            _ => None,
        }
    }

    /// Checks the view against `schema`, the source's columns: every problem, naming them.
    pub fn resolve(&self, schema: &SchemaRef) -> Result<ResolvedView> {
        let mut problems = Vec::new();
        let field = |name: &str| schema.field_with_name(name).ok().cloned();
        let available: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let missing = |what: &str, name: &str| {
            format!(
                "{what} column {name} is not in {} (it has {})",
                self.source.describe(),
                available.join(", ")
            )
        };
        let mut entity = Vec::new();
        for e in &self.entity {
            match field(e) {
                Some(f) if key_kind(f.data_type()).is_some() => entity.push(f),
                Some(f) => problems.push(format!(
                    "entity column {e} is {}, not an integer or text",
                    f.data_type()
                )),
                None => problems.push(missing("entity", e)),
            }
        }
        let timestamp = match &self.timestamp {
            None => None,
            Some(ts) => match field(ts) {
                Some(f)
                    if matches!(
                        f.data_type(),
                        DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _)
                    ) =>
                {
                    Some(f)
                }
                Some(f) => {
                    problems.push(format!(
                        "timestamp column {ts} is {}, not a DATE or TIMESTAMP",
                        f.data_type()
                    ));
                    None
                }
                None => {
                    problems.push(missing("timestamp", ts));
                    None
                }
            },
        };
        let skip: HashSet<&str> = self
            .entity
            .iter()
            .map(String::as_str)
            .chain(self.timestamp.as_deref())
            .collect();
        let names: Vec<String> = match &self.selection {
            Selection::All => available
                .iter()
                .filter(|c| !skip.contains(*c))
                .map(|c| c.to_string())
                .collect(),
            Selection::AllBut(excluded) => {
                for x in excluded {
                    if field(x).is_none() {
                        problems.push(missing("excluded", x));
                    }
                }
                available
                    .iter()
                    .filter(|c| !skip.contains(*c) && !excluded.iter().any(|x| x == *c))
                    .map(|c| c.to_string())
                    .collect()
            }
            Selection::Only(list) => list.clone(),
        };
        let mut features = Vec::new();
        for name in names {
            match field(&name) {
                Some(f) => match feature_type(f.data_type()) {
                    Some(ty) => features.push((Column { name, ty }, f)),
                    None => problems.push(format!(
                        "feature column {name} is {}, which cannot be served (use numbers, text, booleans, dates, timestamps or lists of them)",
                        f.data_type()
                    )),
                },
                None => problems.push(missing("feature", &name)),
            }
        }
        if features.is_empty() && problems.is_empty() {
            problems.push("the view has no feature columns".to_string());
        }
        if problems.is_empty() {
            Ok(ResolvedView {
                view: self.clone(),
                entity,
                timestamp,
                features,
            })
        } else {
            Err(Error::Plan(format!(
                "feature view {} ({}): {}",
                self.name,
                self.file,
                problems.join("; ")
            )))
        }
    }
}

/// How an entity column's values are written in keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Integer,
    Text,
}

pub fn key_kind(t: &DataType) -> Option<KeyKind> {
    match t {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => Some(KeyKind::Integer),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(KeyKind::Text),
        _ => None,
    }
}

/// The served type of a lake column type (`None`: not servable).
pub fn feature_type(t: &DataType) -> Option<FeatureType> {
    Some(match t {
        DataType::Boolean => FeatureType::Bool,
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => FeatureType::Int64,
        DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal128(_, _)
        | DataType::Decimal256(_, _) => FeatureType::Float64,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => FeatureType::String,
        DataType::Timestamp(_, _) => FeatureType::Timestamp,
        DataType::Date32 | DataType::Date64 => FeatureType::Date,
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            match f.data_type() {
                DataType::Float32 => FeatureType::Vector,
                inner => match feature_type(inner)? {
                    FeatureType::Int64 => FeatureType::Int64List,
                    FeatureType::Float64 => FeatureType::Float64List,
                    FeatureType::String => FeatureType::StringList,
                    _ => return None,
                },
            }
        }
        _ => return None,
    })
}

/// The tables a SQL query reads (`namespace.table`, lowercased; bare names are `ods.`).
pub fn tables_in_query(sql: &str) -> std::result::Result<BTreeSet<String>, String> {
    use datafusion::sql::sqlparser::ast::{visit_relations, ObjectName};
    use datafusion::sql::sqlparser::parser::Parser;
    let statements = Parser::parse_sql(&strata_sql::TimeTravelDialect, sql)
        .map_err(|e| format!("query: SQL error: {e}"))?;
    if statements.len() != 1 {
        return Err("query must be one SELECT".to_string());
    }
    let mut out = BTreeSet::new();
    // CTE names are not tables: collected and removed after.
    let mut ctes = HashSet::new();
    if let Some(datafusion::sql::sqlparser::ast::Statement::Query(q)) = statements.first() {
        if let Some(with) = &q.with {
            for cte in &with.cte_tables {
                ctes.insert(cte.alias.name.value.to_lowercase());
            }
        }
    } else {
        return Err("query must be a SELECT".to_string());
    }
    let _ = visit_relations(&statements, |name: &ObjectName| {
        let parts: Vec<String> = name
            .0
            .iter()
            .map(|p| p.to_string().to_lowercase())
            .collect();
        match parts.as_slice() {
            [t] if ctes.contains(t) => {}
            [t] => {
                out.insert(format!("ods.{t}"));
            }
            [.., ns, t] => {
                out.insert(format!("{ns}.{t}"));
            }
            [] => {}
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Schema;
    use std::sync::Arc;

    fn view(text: &str) -> Result<FeatureView> {
        let file: ViewFile =
            toml::from_str(text).map_err(|e| Error::view("v.toml", e.to_string()))?;
        FeatureView::from_file(file, "v", "features/v.toml")
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Int64, false),
            Field::new("ctr_7d", DataType::Float64, true),
            Field::new("clicks_sum_7d", DataType::Int64, true),
            Field::new("dt", DataType::Date32, false),
            Field::new("blob", DataType::Binary, true),
        ]))
    }

    #[test]
    fn every_file_problem_is_named_at_once() {
        let e = view("entity = []\nsource = \"nodot\"\nttl = \"0s\"")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("features/v.toml:"), "{e}");
        assert!(e.contains("entity names no column"), "{e}");
        assert!(e.contains("namespace.table"), "{e}");
        assert!(e.contains("ttl must be positive"), "{e}");
        let e = view("entity = \"user_id\"\nsource = \"a.b\"\nquery = \"SELECT 1\"").unwrap_err();
        assert!(e.to_string().contains("not both"), "{e}");
        let e = view("entity = \"user_id\"\nsource = \"a.b\"\nbogus = 1").unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn resolving_names_missing_and_unservable_columns() {
        let v = view("entity = \"uid\"\nsource = \"ads.t\"\nfeatures = [\"ctr_7d\", \"nope\", \"blob\"]\ntimestamp = \"ctr_7d\"").unwrap();
        let e = v.resolve(&schema()).unwrap_err().to_string();
        assert!(e.contains("entity column uid is not in ads.t"), "{e}");
        assert!(e.contains("feature column nope is not in ads.t"), "{e}");
        assert!(e.contains("blob is Binary"), "{e}");
        assert!(e.contains("timestamp column ctr_7d is Float64"), "{e}");
    }

    #[test]
    fn all_columns_leave_out_the_entity_and_timestamp() {
        let v = view("entity = \"user_id\"\nsource = \"ads.t\"\nexclude = [\"blob\"]\ntimestamp = \"dt\"\nttl = \"2d\"").unwrap();
        let r = v.resolve(&schema()).unwrap();
        let names: Vec<_> = r.columns().into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["ctr_7d", "clicks_sum_7d"]);
        assert_eq!(
            r.read_columns(),
            ["user_id", "dt", "ctr_7d", "clicks_sum_7d"]
        );
    }

    #[test]
    fn query_views_read_the_tables_they_name() {
        let v = view("entity = \"user_id\"\nquery = \"WITH x AS (SELECT * FROM ads.ads_recall_u2u_cf) SELECT user_id FROM x JOIN dws.d ON true\"").unwrap();
        assert_eq!(
            v.reads().unwrap(),
            ["ads.ads_recall_u2u_cf".to_string(), "dws.d".to_string()].into()
        );
    }

    #[test]
    fn list_columns_are_lists_and_float_lists_of_f32_are_vectors() {
        let list = |t: DataType| DataType::List(Arc::new(Field::new("item", t, true)));
        assert_eq!(
            feature_type(&list(DataType::Int64)),
            Some(FeatureType::Int64List)
        );
        assert_eq!(
            feature_type(&list(DataType::Float64)),
            Some(FeatureType::Float64List)
        );
        assert_eq!(
            feature_type(&list(DataType::Float32)),
            Some(FeatureType::Vector)
        );
        assert_eq!(
            feature_type(&list(DataType::Utf8)),
            Some(FeatureType::StringList)
        );
        assert_eq!(feature_type(&DataType::Binary), None);
    }
}
