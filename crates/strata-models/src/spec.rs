//! Model files: `models/<project>/ml/<name>.toml`, beside the warehouse's SQL models.
//!
//! ```toml
//! description = "CTR ranker for the feed"
//! kind = "gbdt"                       # or "two_tower"
//! source = "ads.ads_sample_ctr"       # or query = "SELECT …" (any lake table or SQL)
//! label = "label"
//! exclude = ["user_id", "post_id", "author_id", "sample_ts", "feature_dt"]
//! categorical = []                    # feature columns taken as categories
//!
//! [split]                             # by the day column: validation strictly later
//! column = "dt"
//! train_days = 7
//! valid_days = 1
//!
//! [params]                            # the trainer's hyper-parameters
//! objective = "binary"
//! num_trees = 200
//!
//! [promote]
//! tolerance = 0.005                   # promoted unless its metric is worse by more
//! ```
//!
//! A `two_tower` model names its towers instead of a label: `[user]` (the entity column, the
//! online feature view the user tower reads at serving time, its numeric and categorical
//! columns), `[item]` (id and columns) and `[items]` (the catalogue every item embedding is
//! computed for, with the payload fields kNN filters use). See `docs/models.md`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// The directory of a project's model files.
pub fn models_dir(project_root: &Path) -> PathBuf {
    project_root.join("ml")
}

/// What a model is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Gradient-boosted trees (`strata-gbdt`): binary classification or lambdarank.
    Gbdt,
    /// Two-tower retrieval (`strata-twotower`) with an ANN index of its item embeddings.
    TwoTower,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Gbdt => "gbdt",
            Kind::TwoTower => "two_tower",
        }
    }
}

/// The time split: training rows are the `train_days` days before the validation window,
/// which is the `valid_days` days ending at the run date — so validation is strictly later.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Split {
    /// The DATE (or date-like string) column the split is on.
    pub column: String,
    /// Days of training data before the validation window.
    pub train_days: u32,
    /// Days of validation data, ending at the run date.
    pub valid_days: u32,
}

impl Default for Split {
    fn default() -> Self {
        Split {
            column: "dt".to_string(),
            train_days: 7,
            valid_days: 1,
        }
    }
}

/// When a trained version is promoted without a person.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Promote {
    /// Promote automatically when the gate passes (false: every version stays a candidate
    /// until `strata models promote`).
    pub auto: bool,
    /// The validation metric the gate compares (default: `auc` for binary, `ndcg@10` for
    /// lambdarank, `recall@100` for two-tower).
    pub metric: Option<String>,
    /// How much worse than the promoted version's metric a new version may be and still be
    /// promoted (absolute).
    pub tolerance: f64,
}

impl Default for Promote {
    fn default() -> Self {
        Promote {
            auto: true,
            metric: None,
            tolerance: 0.005,
        }
    }
}

/// One tower's inputs (two-tower models).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tower {
    /// The entity column (`user_id`, `post_id`).
    pub id: String,
    /// User tower: the online feature view the numeric columns are read from when a request
    /// names only a user (they must be features of that view).
    #[serde(default)]
    pub view: Option<String>,
    /// Numeric input columns.
    #[serde(default)]
    pub numeric: Vec<String>,
    /// Categorical input columns (integers or strings, hashed into embedding buckets). The
    /// id column may be one of them (an id embedding). A name, or
    /// `{ name = "post_id", buckets = 200000, dim = 32 }`.
    #[serde(default)]
    pub categorical: Vec<CategoricalInput>,
}

/// A categorical tower input: a column name (default buckets and width) or a table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum CategoricalInput {
    Name(String),
    Full {
        name: String,
        #[serde(default = "default_buckets")]
        buckets: usize,
        #[serde(default = "default_embedding_dim")]
        dim: usize,
        /// User tower: embed through the item tower's table of this categorical (same
        /// `buckets` and `dim`), e.g. followed authors in the item's `author_id` space.
        #[serde(default)]
        share: Option<String>,
        /// Mean-pool with the neighbouring inputs of the same pool name (a bag spread over
        /// columns such as `followed_1` .. `followed_12`; NULLs are left out).
        #[serde(default)]
        pool: Option<String>,
        /// Append the embedding (the pool's mean) to the tower's output instead of feeding
        /// the MLP; both towers need direct slots of the same widths in the same order.
        #[serde(default)]
        direct: bool,
    },
}

fn default_buckets() -> usize {
    100_000
}

fn default_embedding_dim() -> usize {
    16
}

impl CategoricalInput {
    pub fn name(&self) -> &str {
        match self {
            CategoricalInput::Name(n) | CategoricalInput::Full { name: n, .. } => n,
        }
    }

    pub fn buckets_and_dim(&self) -> (usize, usize) {
        match self {
            CategoricalInput::Name(_) => (default_buckets(), default_embedding_dim()),
            CategoricalInput::Full { buckets, dim, .. } => (*buckets, *dim),
        }
    }

    /// The trainer's declaration of this input.
    pub fn to_twotower(&self) -> strata_twotower::Categorical {
        let (buckets, dim) = self.buckets_and_dim();
        let mut c = strata_twotower::Categorical::new(self.name(), buckets, dim);
        if let CategoricalInput::Full {
            share,
            pool,
            direct,
            ..
        } = self
        {
            c.share.clone_from(share);
            c.pool.clone_from(pool);
            c.direct = *direct;
        }
        c
    }
}

/// The catalogue a two-tower model embeds: every item to recall from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Items {
    /// A lake table, or `query`.
    #[serde(default)]
    pub source: Option<String>,
    /// SQL giving one row per item.
    #[serde(default)]
    pub query: Option<String>,
    /// A timestamp column filters can use (`created_after`).
    #[serde(default)]
    pub created_at: Option<String>,
    /// Columns kept as payload for filters (`{"author_id": …}`); integers or strings.
    #[serde(default)]
    pub payload: Vec<String>,
}

/// ANN index settings (two-tower models).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexSettings {
    /// Graph degree.
    pub m: usize,
    /// Candidates kept while building.
    pub ef_construction: usize,
    /// Candidates kept while searching (raised to k when k is larger).
    pub ef_search: usize,
}

impl Default for IndexSettings {
    fn default() -> Self {
        IndexSettings {
            m: 16,
            ef_construction: 200,
            ef_search: 128,
        }
    }
}

/// A model file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelFile {
    #[serde(default)]
    description: String,
    kind: Kind,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    features: Option<Vec<String>>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    categorical: Vec<String>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    split: Split,
    #[serde(default)]
    after: Option<Vec<String>>,
    #[serde(default)]
    params: toml::Table,
    #[serde(default)]
    promote: Promote,
    #[serde(default)]
    user: Option<Tower>,
    #[serde(default)]
    item: Option<Tower>,
    #[serde(default)]
    items: Option<Items>,
    #[serde(default)]
    index: IndexSettings,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    online: toml::Table,
}

/// Where training rows come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Table(String),
    Query(String),
}

impl Source {
    /// The SQL that yields the rows.
    pub fn sql(&self) -> String {
        match self {
            Source::Table(t) => format!("SELECT * FROM {t}"),
            Source::Query(q) => q.trim().trim_end_matches(';').to_string(),
        }
    }

    /// The lake tables it reads (`namespace.table`).
    pub fn reads(&self) -> Result<BTreeSet<String>> {
        match self {
            Source::Table(t) => Ok([t.clone()].into()),
            Source::Query(q) => strata_features::view::tables_in_query(q).map_err(Error::Plan),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Source::Table(t) => t.clone(),
            Source::Query(_) => "a query".to_string(),
        }
    }
}

/// Which columns are features.
#[derive(Debug, Clone, PartialEq)]
pub enum Features {
    /// Every column but the label, the split column, the group and `exclude`.
    AllBut(Vec<String>),
    Only(Vec<String>),
}

/// A two-tower model's declaration.
#[derive(Debug, Clone, PartialEq)]
pub struct TwoTowerSpec {
    pub user: Tower,
    pub item: Tower,
    pub items: Items,
    pub items_source: Source,
    pub index: IndexSettings,
}

/// A loaded, checked model file.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// The file's stem.
    pub name: String,
    /// The file, relative to the project.
    pub file: String,
    pub description: String,
    pub kind: Kind,
    pub source: Source,
    /// GBDT: the label column.
    pub label: Option<String>,
    pub features: Features,
    pub categorical: Vec<String>,
    /// GBDT lambdarank: the column rows are grouped by (one query per value and day).
    pub group: Option<String>,
    pub split: Split,
    /// Runs after these warehouse models (default: those writing the tables it reads).
    pub after: Option<Vec<String>>,
    /// The trainer's hyper-parameters, parsed by the trainer.
    pub params: toml::Table,
    pub promote: Promote,
    pub two_tower: Option<TwoTowerSpec>,
    /// Seed of every random choice in training.
    pub seed: u64,
    /// GBDT served online (the feed's ranker): where each input comes from at request time
    /// (`[online]`: feature → `"view.column"` or a constant). An input not named is missing.
    pub online: BTreeMap<String, OnlineInput>,
}

/// Where a served GBDT input comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum OnlineInput {
    /// A column of an online feature view, keyed by the view's entity (the user or the item).
    Column { view: String, column: String },
    /// The same value for every request (e.g. 0 where training rows had `COALESCE(x, 0)` and
    /// no online view carries `x`).
    Constant(f64),
}

impl ModelSpec {
    /// Parses one model file; `name` is its stem.
    pub fn parse(name: &str, file: &str, text: &str) -> Result<ModelSpec> {
        let bad = |m: String| Error::spec(file, m);
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(bad(format!(
                "the model name {name:?} (the file's stem) must be letters, digits, _ or -"
            )));
        }
        let f: ModelFile = toml::from_str(text).map_err(|e| bad(e.message().to_string()))?;
        let source = match (f.source, f.query) {
            (Some(s), None) => {
                if s.split('.').count() != 2 {
                    return Err(bad(format!(
                        "source {s:?} must be namespace.table (e.g. ads.ads_sample_ctr)"
                    )));
                }
                Source::Table(s)
            }
            (None, Some(q)) if !q.trim().is_empty() => Source::Query(q),
            (Some(_), Some(_)) => return Err(bad("give source or query, not both".into())),
            _ => return Err(bad("give source (a lake table) or query (SQL)".into())),
        };
        if f.split.train_days == 0 || f.split.valid_days == 0 {
            return Err(bad(
                "split.train_days and split.valid_days must be at least 1".into(),
            ));
        }
        if !(0.0..=1.0).contains(&f.promote.tolerance) {
            return Err(bad(format!(
                "promote.tolerance {} must be between 0 and 1",
                f.promote.tolerance
            )));
        }
        let features = match f.features {
            Some(list) => {
                if !f.exclude.is_empty() {
                    return Err(bad("give features or exclude, not both".into()));
                }
                if list.is_empty() {
                    return Err(bad("features is empty".into()));
                }
                Features::Only(list)
            }
            None => Features::AllBut(f.exclude),
        };
        let mut online = BTreeMap::new();
        for (feature, v) in &f.online {
            let input = match v {
                toml::Value::String(s) => match s.split_once('.') {
                    Some((view, column))
                        if !view.is_empty() && !column.is_empty() && !column.contains('.') =>
                    {
                        OnlineInput::Column {
                            view: view.to_string(),
                            column: column.to_string(),
                        }
                    }
                    _ => {
                        return Err(bad(format!(
                            "online.{feature} = {s:?}: give \"view.column\" or a number"
                        )))
                    }
                },
                toml::Value::Integer(i) => OnlineInput::Constant(*i as f64),
                toml::Value::Float(x) => OnlineInput::Constant(*x),
                other => {
                    return Err(bad(format!(
                        "online.{feature} = {other}: give \"view.column\" or a number"
                    )))
                }
            };
            online.insert(feature.clone(), input);
        }
        if !online.is_empty() && f.kind != Kind::Gbdt {
            return Err(bad(
                "[online] maps a GBDT model's inputs; a two-tower model reads [user].view".into(),
            ));
        }
        let two_tower = match f.kind {
            Kind::Gbdt => {
                if f.user.is_some() || f.item.is_some() || f.items.is_some() {
                    return Err(bad(
                        "[user], [item] and [items] are for kind = \"two_tower\" only".into(),
                    ));
                }
                if f.label.is_none() {
                    return Err(bad(
                        "a gbdt model needs label (the column to predict)".into()
                    ));
                }
                None
            }
            Kind::TwoTower => {
                let (Some(user), Some(item), Some(items)) = (f.user, f.item, f.items) else {
                    return Err(bad(
                        "a two_tower model needs [user], [item] and [items] tables".into(),
                    ));
                };
                if f.label.is_some() || f.group.is_some() {
                    return Err(bad(
                        "a two_tower model trains on positive pairs: label and group are for gbdt"
                            .into(),
                    ));
                }
                if user.numeric.is_empty() && user.categorical.is_empty() {
                    return Err(bad("[user] needs numeric or categorical columns".into()));
                }
                if item.numeric.is_empty() && item.categorical.is_empty() {
                    return Err(bad("[item] needs numeric or categorical columns".into()));
                }
                if item.view.is_some() {
                    return Err(bad(
                        "[item] has no view: item embeddings are computed from [items]".into(),
                    ));
                }
                let items_source = match (&items.source, &items.query) {
                    (Some(s), None) => Source::Table(s.clone()),
                    (None, Some(q)) => Source::Query(q.clone()),
                    _ => {
                        return Err(bad(
                            "[items] needs source (a lake table) or query (SQL), one of them"
                                .into(),
                        ))
                    }
                };
                if f.index.m < 2 || f.index.ef_construction == 0 || f.index.ef_search == 0 {
                    return Err(bad(
                        "index.m must be at least 2, ef_construction and ef_search at least 1"
                            .into(),
                    ));
                }
                Some(TwoTowerSpec {
                    user,
                    item,
                    items,
                    items_source,
                    index: f.index,
                })
            }
        };
        let spec = ModelSpec {
            name: name.to_string(),
            file: file.to_string(),
            description: f.description,
            kind: f.kind,
            source,
            label: f.label,
            features,
            categorical: f.categorical,
            group: f.group,
            split: f.split,
            after: f.after,
            params: f.params,
            promote: f.promote,
            two_tower,
            seed: f.seed.unwrap_or(42),
            online,
        };
        crate::train::check_params(&spec).map_err(|e| bad(e.to_string()))?;
        Ok(spec)
    }

    /// Every lake table the model reads (training rows and, for two-tower, the catalogue).
    pub fn reads(&self) -> Result<BTreeSet<String>> {
        let mut reads = self.source.reads()?;
        if let Some(tt) = &self.two_tower {
            reads.extend(tt.items_source.reads()?);
        }
        Ok(reads)
    }

    /// The validation metric promotion compares, and whether larger is better.
    pub fn gate_metric(&self) -> (String, bool) {
        if let Some(m) = &self.promote.metric {
            let higher = !matches!(m.as_str(), "logloss");
            return (m.clone(), higher);
        }
        match self.kind {
            Kind::TwoTower => ("recall@100".to_string(), true),
            Kind::Gbdt => {
                let objective = self
                    .params
                    .get("objective")
                    .and_then(|v| v.as_str())
                    .unwrap_or("binary");
                if objective == "lambdarank" {
                    ("ndcg@10".to_string(), true)
                } else {
                    ("auc".to_string(), true)
                }
            }
        }
    }
}

/// Every model file of the project at `project_root` (`ml/*.toml`); all problems at once.
pub fn load_models(project_root: &Path) -> Result<Vec<ModelSpec>> {
    let mut models = Vec::new();
    let mut problems = Vec::new();
    let mut names = HashSet::new();
    for (path, rel) in strata_features::view::toml_files(&models_dir(project_root), project_root)? {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!("{rel}: cannot read: {e}"));
                continue;
            }
        };
        match ModelSpec::parse(&name, &rel, &text) {
            Ok(m) => {
                if !names.insert(m.name.clone()) {
                    problems.push(format!("{rel}: another model is also named {}", m.name));
                }
                models.push(m);
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    if problems.is_empty() {
        Ok(models)
    } else {
        Err(Error::Plan(problems.join("\n")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gbdt_file() {
        let m = ModelSpec::parse(
            "ctr",
            "ml/ctr.toml",
            r#"
kind = "gbdt"
source = "ads.ads_sample_ctr"
label = "label"
exclude = ["user_id"]
[split]
train_days = 3
"#,
        )
        .unwrap();
        assert_eq!(m.kind, Kind::Gbdt);
        assert_eq!(m.split.train_days, 3);
        assert_eq!(m.split.valid_days, 1);
        assert_eq!(m.gate_metric(), ("auc".to_string(), true));
        assert_eq!(m.features, Features::AllBut(vec!["user_id".into()]));
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("kind = \"gbdt\"\nlabel = \"l\"", "give source"),
            (
                "kind = \"gbdt\"\nsource = \"a.b\"\nquery = \"SELECT 1\"\nlabel = \"l\"",
                "not both",
            ),
            ("kind = \"gbdt\"\nsource = \"a.b\"", "needs label"),
            ("kind = \"svm\"\nsource = \"a.b\"", "unknown variant"),
            (
                "kind = \"gbdt\"\nsource = \"a.b\"\nlabel = \"l\"\nlabels = 1",
                "unknown field",
            ),
            ("kind = \"two_tower\"\nsource = \"a.b\"", "needs [user]"),
            (
                "kind = \"gbdt\"\nsource = \"a.b\"\nlabel = \"l\"\n[split]\ntrain_days = 0",
                "at least 1",
            ),
        ];
        for (text, want) in cases {
            let e = ModelSpec::parse("m", "ml/m.toml", text)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(e.starts_with("ml/m.toml"), "{e}");
        }
    }
}
