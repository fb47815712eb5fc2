//! A warehouse project: `models/<layer>/<name>.sql`, one SELECT per model, an optional TOML
//! header (`/* … */` at the top of the file, or `<name>.toml` beside it), and an optional
//! `strata_project.toml` at the root. Loading checks everything before anything runs: SQL
//! syntax (with line and column), run-date parameters, tables nothing produces, and
//! dependency cycles.
//!
//! Dependencies are the tables a model reads, found in its SQL; nothing is wired by hand.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::NaiveDate;
use datafusion::sql::sqlparser::ast::{
    visit_relations, visit_relations_mut, Ident, ObjectName, ObjectNamePart, Query, Statement,
    Visit, Visitor,
};
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use serde::Deserialize;
use strata_sql::TimeTravelDialect;

use crate::checks::Check;
use crate::error::{Error, Result};

/// Namespaces models may live in.
pub const LAYERS: [&str; 4] = ["ods", "dwd", "dws", "ads"];

/// How a model's rows land in its table.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Materialized {
    /// Rebuild the whole table on every run.
    #[default]
    Table,
    /// Replace the run date's partition (`date_column` = the run date).
    Incremental,
    /// Upsert on `unique_key`.
    Merge,
}

/// A model's header.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    #[serde(default)]
    pub materialized: Materialized,
    /// Partition spec as SQL: `"dt"`, `"dt, bucket(16, user_id)"`.
    pub partition_by: Option<String>,
    /// The DATE column an incremental model's rows carry the run date in.
    #[serde(default = "default_date_column")]
    pub date_column: String,
    /// Key columns of a `merge` model.
    #[serde(default)]
    pub unique_key: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub description: String,
    /// Attempts after the first failure (default: the project's).
    pub retries: Option<u32>,
    /// Per-model deadline (default: the project's).
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub checks: Vec<Check>,
}

fn default_date_column() -> String {
    "dt".to_string()
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            materialized: Materialized::Table,
            partition_by: None,
            date_column: default_date_column(),
            unique_key: Vec::new(),
            tags: Vec::new(),
            description: String::new(),
            retries: None,
            timeout: None,
            checks: Vec::new(),
        }
    }
}

/// `strata_project.toml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub name: String,
    /// Tables the project reads that no model produces and that may not exist yet (e.g. ODS
    /// tables CDC creates). Existing lake tables need not be listed.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Models run at once.
    #[serde(default = "default_parallelism")]
    pub parallelism: usize,
    #[serde(default = "default_retries")]
    pub retries: u32,
    #[serde(default = "default_model_timeout", with = "humantime_serde")]
    pub model_timeout: Duration,
}

fn default_parallelism() -> usize {
    2
}
fn default_retries() -> u32 {
    2
}
fn default_model_timeout() -> Duration {
    Duration::from_secs(2 * 3600)
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            name: String::new(),
            sources: Vec::new(),
            parallelism: default_parallelism(),
            retries: default_retries(),
            model_timeout: default_model_timeout(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Model {
    /// File name without `.sql`; unique in the project.
    pub name: String,
    /// Directory = namespace of its table.
    pub layer: String,
    /// Path relative to the project root, for messages.
    pub file: String,
    /// The SQL as written (header included).
    pub sql: String,
    pub config: ModelConfig,
    /// Every table the SQL reads, as `namespace.table`.
    pub reads: BTreeSet<String>,
    /// Tables its checks read besides its own: they must be built before the checks run.
    pub check_reads: BTreeSet<String>,
    /// The models it depends on (by name).
    pub upstream: BTreeSet<String>,
    /// Bare table names that refer to models of other layers (`dwd_click` → `dwd.dwd_click`),
    /// qualified when the SQL is rendered.
    pub qualify: BTreeMap<String, String>,
}

impl Model {
    /// The table the model writes: `<layer>.<name>`.
    pub fn table(&self) -> String {
        format!("{}.{}", self.layer, self.name)
    }

    /// The model's SQL for `date`: parameters substituted, bare model names qualified.
    pub fn render(&self, date: NaiveDate) -> Result<String> {
        let sql = render(&self.sql, date).map_err(|m| Error::project(&self.file, m))?;
        if self.qualify.is_empty() {
            return Ok(sql);
        }
        let mut statements = Parser::parse_sql(&TimeTravelDialect, &sql)
            .map_err(|e| Error::project(&self.file, format!("SQL error: {e}")))?;
        let _ = visit_relations_mut(&mut statements, |name: &mut ObjectName| {
            if let [ObjectNamePart::Identifier(i)] = name.0.as_slice() {
                if let Some(full) = self.qualify.get(&i.value.to_lowercase()) {
                    *name = ObjectName::from(full.split('.').map(Ident::new).collect::<Vec<_>>());
                }
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
        Ok(statements
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(";\n"))
    }
}

#[derive(Clone, Debug)]
pub struct Project {
    pub root: PathBuf,
    pub settings: Settings,
    /// In dependency order: every model after the models it reads.
    pub models: Vec<Model>,
    /// Tasks that are not SQL models (feature syncs, training), each after the models it
    /// names ([`Project::attach_steps`]).
    pub steps: Vec<std::sync::Arc<dyn crate::step::Step>>,
}

/// Run-date parameters a model may use.
pub const PARAMETERS: [(&str, &str); 6] = [
    ("$run_date", "the run date, a DATE"),
    ("$prev_date", "the day before the run date, a DATE"),
    ("$run_date_end", "the day after the run date, a DATE"),
    (
        "$run_start",
        "midnight UTC starting the run date, a TIMESTAMP",
    ),
    ("$run_end", "midnight UTC ending the run date, a TIMESTAMP"),
    ("$run_date_str", "the run date as 'YYYY-MM-DD' text"),
];

/// Substitutes the run-date parameters (token by token: literals and comments untouched).
pub fn render(sql: &str, date: NaiveDate) -> std::result::Result<String, String> {
    let tokens = Tokenizer::new(&TimeTravelDialect, sql)
        .tokenize()
        .map_err(|e| e.to_string())?;
    let next = date.succ_opt().unwrap_or(date);
    let prev = date.pred_opt().unwrap_or(date);
    let mut out = String::with_capacity(sql.len() + 32);
    for token in tokens {
        match &token {
            Token::Placeholder(p) => {
                let value = match p.as_str() {
                    "$run_date" => format!("DATE '{date}'"),
                    "$run_date_end" => format!("DATE '{next}'"),
                    "$prev_date" => format!("DATE '{prev}'"),
                    "$run_start" => format!("TIMESTAMP '{date} 00:00:00'"),
                    "$run_end" => format!("TIMESTAMP '{next} 00:00:00'"),
                    "$run_date_str" => format!("'{date}'"),
                    other => {
                        let known: Vec<&str> = PARAMETERS.iter().map(|(n, _)| *n).collect();
                        return Err(format!(
                            "unknown parameter {other}; the run-date parameters are {}",
                            known.join(", ")
                        ));
                    }
                };
                out.push_str(&value);
            }
            t => out.push_str(&t.to_string()),
        }
    }
    Ok(out)
}

impl Project {
    /// The names of the project's models that write any of `tables` (`namespace.table`): what
    /// a step reading them runs after.
    pub fn writers_of(&self, tables: &BTreeSet<String>) -> BTreeSet<String> {
        self.models
            .iter()
            .filter(|m| tables.contains(&m.table()))
            .map(|m| m.name.clone())
            .collect()
    }

    /// Loads and checks the project at `root`. `existing` = tables already in the lake
    /// (`namespace.table`). Every problem found is reported, one per line.
    pub fn load(root: &Path, existing: &HashSet<String>) -> Result<Project> {
        let settings_path = root.join("strata_project.toml");
        let settings: Settings = if settings_path.exists() {
            let text = std::fs::read_to_string(&settings_path)
                .map_err(|e| Error::io(format!("reading {}", settings_path.display()), e))?;
            toml::from_str(&text)
                .map_err(|e| Error::project("strata_project.toml", e.to_string()))?
        } else {
            Settings::default()
        };
        let models_dir = if root.join("models").is_dir() {
            root.join("models")
        } else {
            root.to_path_buf()
        };
        let mut problems: Vec<String> = Vec::new();
        let mut models: Vec<Model> = Vec::new();
        let mut layers: Vec<PathBuf> = std::fs::read_dir(&models_dir)
            .map_err(|e| Error::io(format!("reading {}", models_dir.display()), e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        layers.sort();
        for layer_dir in layers {
            let layer = file_name(&layer_dir);
            if !LAYERS.contains(&layer.as_str()) {
                continue;
            }
            let mut files: Vec<PathBuf> = std::fs::read_dir(&layer_dir)
                .map_err(|e| Error::io(format!("reading {}", layer_dir.display()), e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "sql"))
                .collect();
            files.sort();
            for path in files {
                let rel = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                match load_model(&path, &rel, &layer) {
                    Ok(m) => models.push(m),
                    Err(e) => problems.push(e.to_string()),
                }
            }
        }
        if models.is_empty() && problems.is_empty() {
            return Err(Error::Plan(format!(
                "no models under {} (expected <layer>/<name>.sql with layer one of {})",
                models_dir.display(),
                LAYERS.join(", ")
            )));
        }
        // Names are unique; resolve what each model reads.
        let mut by_name: HashMap<String, usize> = HashMap::new();
        for (i, m) in models.iter().enumerate() {
            if let Some(&j) = by_name.get(&m.name) {
                problems.push(format!(
                    "{}: model name {} is also used by {}",
                    m.file, m.name, models[j].file
                ));
            } else {
                by_name.insert(m.name.clone(), i);
            }
        }
        let produced: HashMap<String, String> =
            models.iter().map(|m| (m.table(), m.name.clone())).collect();
        let layer_of: HashMap<String, String> = models
            .iter()
            .map(|m| (m.name.clone(), m.layer.clone()))
            .collect();
        let sources: HashSet<String> = settings.sources.iter().map(|s| s.to_lowercase()).collect();
        for m in &mut models {
            let mut reads = BTreeSet::new();
            for raw in std::mem::take(&mut m.reads) {
                // Bare names: a model of that name, else the ods namespace (as in strata sql).
                let table = if raw.contains('.') {
                    raw
                } else if let Some(layer) = layer_of.get(&raw) {
                    let full = format!("{layer}.{raw}");
                    m.qualify.insert(raw.clone(), full.clone());
                    full
                } else {
                    format!("ods.{raw}")
                };
                reads.insert(table);
            }
            for table in &reads {
                if *table == m.table() {
                    continue; // reads its own previous output (cumulative models)
                }
                if let Some(up) = produced.get(table) {
                    m.upstream.insert(up.clone());
                } else if !existing.contains(table) && !sources.contains(table) {
                    problems.push(format!(
                        "{}: reads {table}, which no model produces and the lake does not have (list it under sources in strata_project.toml if something else will create it)",
                        m.file
                    ));
                }
            }
            m.reads = reads;
            for table in std::mem::take(&mut m.check_reads) {
                let table = if table.contains('.') {
                    table
                } else if let Some(layer) = layer_of.get(&table) {
                    format!("{layer}.{table}")
                } else {
                    format!("ods.{table}")
                };
                if table == m.table() {
                    continue;
                }
                if let Some(up) = produced.get(&table) {
                    m.upstream.insert(up.clone());
                } else if !existing.contains(&table) && !sources.contains(&table) {
                    problems.push(format!(
                        "{}: a check reads {table}, which no model produces and the lake does not have",
                        m.file
                    ));
                }
                m.check_reads.insert(table);
            }
            check_config(m, &mut problems);
        }
        if !problems.is_empty() {
            return Err(Error::Plan(problems.join("\n")));
        }
        let models = order(models)?;
        Ok(Project {
            root: root.to_path_buf(),
            settings,
            models,
            steps: Vec::new(),
        })
    }

    /// Adds steps to the project: each must have a name no model or other step has, and run
    /// after models the project has. Every problem is reported.
    pub fn attach_steps(
        &mut self,
        steps: Vec<std::sync::Arc<dyn crate::step::Step>>,
    ) -> Result<()> {
        let mut problems = Vec::new();
        let mut names: HashSet<String> = self.models.iter().map(|m| m.name.clone()).collect();
        names.extend(self.steps.iter().map(|s| s.name().to_string()));
        for step in &steps {
            if !names.insert(step.name().to_string()) {
                problems.push(format!("step {}: the name is taken", step.name()));
            }
            for after in step.after() {
                if self.model(after).is_none() {
                    problems.push(format!(
                        "step {} runs after model {after}, which the project does not have",
                        step.name()
                    ));
                }
            }
        }
        if !problems.is_empty() {
            return Err(Error::Plan(problems.join("\n")));
        }
        self.steps.extend(steps);
        Ok(())
    }

    /// The steps that run with a selection of models: those whose models are all selected.
    pub fn selected_steps(&self, models: &[&Model]) -> Vec<std::sync::Arc<dyn crate::step::Step>> {
        let chosen: HashSet<&str> = models.iter().map(|m| m.name.as_str()).collect();
        self.steps
            .iter()
            .filter(|s| s.after().iter().all(|a| chosen.contains(a.as_str())))
            .cloned()
            .collect()
    }

    pub fn model(&self, name: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.name == name)
    }

    /// Models a selection names, in dependency order. Terms, comma-separated: `name`,
    /// `name+` (and everything downstream), `+name` (and everything upstream), `tag:t`.
    pub fn select(&self, selection: Option<&str>) -> Result<Vec<&Model>> {
        let Some(selection) = selection.filter(|s| !s.trim().is_empty()) else {
            return Ok(self.models.iter().collect());
        };
        let mut chosen: HashSet<String> = HashSet::new();
        for term in selection
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            if let Some(tag) = term.strip_prefix("tag:") {
                let tagged: Vec<_> = self
                    .models
                    .iter()
                    .filter(|m| m.config.tags.iter().any(|t| t == tag))
                    .map(|m| m.name.clone())
                    .collect();
                if tagged.is_empty() {
                    return Err(Error::Plan(format!("no model has tag {tag}")));
                }
                chosen.extend(tagged);
                continue;
            }
            let down = term.ends_with('+');
            let up = term.starts_with('+');
            let name = term.trim_matches('+');
            if self.model(name).is_none() {
                return Err(Error::Plan(format!("no model named {name}")));
            }
            chosen.insert(name.to_string());
            if down {
                chosen.extend(self.downstream(name));
            }
            if up {
                chosen.extend(self.upstream_closure(name));
            }
        }
        Ok(self
            .models
            .iter()
            .filter(|m| chosen.contains(&m.name))
            .collect())
    }

    /// Every model that (transitively) reads `name`.
    pub fn downstream(&self, name: &str) -> HashSet<String> {
        let mut out = HashSet::new();
        let mut frontier = vec![name.to_string()];
        while let Some(n) = frontier.pop() {
            for m in &self.models {
                if m.upstream.contains(&n) && out.insert(m.name.clone()) {
                    frontier.push(m.name.clone());
                }
            }
        }
        out
    }

    fn upstream_closure(&self, name: &str) -> HashSet<String> {
        let mut out = HashSet::new();
        let mut frontier = vec![name.to_string()];
        while let Some(n) = frontier.pop() {
            if let Some(m) = self.model(&n) {
                for u in &m.upstream {
                    if out.insert(u.clone()) {
                        frontier.push(u.clone());
                    }
                }
            }
        }
        out
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default()
}

fn load_model(path: &Path, rel: &str, layer: &str) -> Result<Model> {
    let sql = std::fs::read_to_string(path).map_err(|e| Error::io(format!("reading {rel}"), e))?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let config = model_config(path, rel, &sql)?;
    // Parse the SQL as it will run (a fixed date for the parameters).
    let rendered = render(
        &sql,
        NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or_default(),
    )
    .map_err(|m| Error::project(rel, m))?;
    let statements = Parser::parse_sql(&TimeTravelDialect, &rendered).map_err(|e| {
        let mut message = format!("SQL error: {e}");
        if !message.contains("Line:") {
            message.push_str(&format!(" (at the end, line {})", rendered.lines().count()));
        }
        Error::project(rel, message)
    })?;
    let [statement] = statements.as_slice() else {
        return Err(Error::project(
            rel,
            format!(
                "a model is one SELECT; found {} statements",
                statements.len()
            ),
        ));
    };
    let Statement::Query(query) = statement else {
        return Err(Error::project(
            rel,
            "a model is one SELECT (or WITH … SELECT); DDL and DML are the runner's job",
        ));
    };
    let check_reads = check_tables(rel, &config)?;
    Ok(Model {
        name,
        layer: layer.to_string(),
        file: rel.to_string(),
        sql,
        config,
        reads: tables_read(query),
        check_reads,
        upstream: BTreeSet::new(),
        qualify: BTreeMap::new(),
    })
}

/// Tables the checks' own queries read.
fn check_tables(rel: &str, config: &ModelConfig) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for check in &config.checks {
        for sql in check.queries() {
            let rendered = render(sql, NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or_default())
                .map_err(|m| Error::project(rel, format!("check {}: {m}", check.label())))?;
            let statements = Parser::parse_sql(&TimeTravelDialect, &rendered).map_err(|e| {
                Error::project(rel, format!("check {}: SQL error: {e}", check.label()))
            })?;
            for statement in &statements {
                if let Statement::Query(q) = statement {
                    out.extend(tables_read(q));
                }
            }
        }
    }
    Ok(out)
}

/// The header: a leading `/* … */` block of TOML, or `<name>.toml` beside the file.
fn model_config(path: &Path, rel: &str, sql: &str) -> Result<ModelConfig> {
    let side = path.with_extension("toml");
    let trimmed = sql.trim_start();
    let header = if let Some(rest) = trimmed.strip_prefix("/*") {
        let end = rest
            .find("*/")
            .ok_or_else(|| Error::project(rel, "the header comment /* … */ is not closed"))?;
        Some(rest[..end].to_string())
    } else {
        None
    };
    match (header, side.exists()) {
        (Some(_), true) => Err(Error::project(
            rel,
            format!("has both a header and {}; keep one", file_name(&side)),
        )),
        (Some(text), false) => {
            toml::from_str(&text).map_err(|e| Error::project(rel, format!("header: {e}")))
        }
        (None, true) => {
            let text = std::fs::read_to_string(&side)
                .map_err(|e| Error::io(format!("reading {}", side.display()), e))?;
            toml::from_str(&text).map_err(|e| Error::project(file_name(&side), e.to_string()))
        }
        (None, false) => Ok(ModelConfig::default()),
    }
}

fn check_config(m: &Model, problems: &mut Vec<String>) {
    match m.config.materialized {
        Materialized::Incremental => {
            let partitioned = m
                .config
                .partition_by
                .as_deref()
                .is_some_and(|p| p.split(',').any(|f| f.trim() == m.config.date_column));
            if !partitioned {
                problems.push(format!(
                    "{}: incremental models are partitioned by their date column: add partition_by = \"{}\"",
                    m.file, m.config.date_column
                ));
            }
        }
        Materialized::Merge if m.config.unique_key.is_empty() => problems.push(format!(
            "{}: merge models need unique_key = [\"col\", …]",
            m.file
        )),
        _ => {}
    }
    for c in &m.config.checks {
        if let Err(e) = c.validate() {
            problems.push(format!("{}: check {}: {e}", m.file, c.label()));
        }
    }
}

/// Tables a query reads: every relation except the names its CTEs define.
fn tables_read(query: &Query) -> BTreeSet<String> {
    struct Ctes(HashSet<String>);
    impl Visitor for Ctes {
        type Break = ();
        fn pre_visit_query(&mut self, q: &Query) -> std::ops::ControlFlow<()> {
            if let Some(with) = &q.with {
                for cte in &with.cte_tables {
                    self.0.insert(cte.alias.name.value.to_lowercase());
                }
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut ctes = Ctes(HashSet::new());
    let _ = query.visit(&mut ctes);
    let mut out = BTreeSet::new();
    let _ = visit_relations(query, |name: &ObjectName| {
        // `FROM point_in_time(…)` is a table function, not a table: what it reads is in its
        // arguments, added below.
        if strata_sql::point_in_time::is_point_in_time(name) {
            return std::ops::ControlFlow::<()>::Continue(());
        }
        if let Some(t) = table_name(name, &ctes.0) {
            out.insert(t);
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    for source in strata_sql::point_in_time::sources_read(query) {
        match source {
            strata_sql::point_in_time::CallSource::Table(name) => {
                if let Some(t) = table_name(&name, &HashSet::new()) {
                    out.insert(t);
                }
            }
            strata_sql::point_in_time::CallSource::Query(text) => {
                if let Ok(statements) = Parser::parse_sql(&TimeTravelDialect, &text) {
                    for statement in statements {
                        if let Statement::Query(q) = statement {
                            out.extend(tables_read(&q));
                        }
                    }
                }
            }
        }
    }
    out
}

/// `namespace.table` (or a bare name) of a relation; `None` for a CTE's name.
fn table_name(name: &ObjectName, ctes: &HashSet<String>) -> Option<String> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) if i.quote_style.is_some() => i.value.clone(),
            ObjectNamePart::Identifier(i) => i.value.to_lowercase(),
            other => other.to_string(),
        })
        .collect();
    match parts.as_slice() {
        [t] if ctes.contains(t) => None,
        [t] => Some(t.clone()),
        [ns, t] => Some(format!("{ns}.{t}")),
        [_, ns, t] => Some(format!("{ns}.{t}")),
        _ => None,
    }
}

/// Dependency order (Kahn); a cycle is an error that lists it.
fn order(models: Vec<Model>) -> Result<Vec<Model>> {
    let mut remaining: BTreeMap<String, Model> =
        models.into_iter().map(|m| (m.name.clone(), m)).collect();
    let mut done: HashSet<String> = HashSet::new();
    let mut out = Vec::with_capacity(remaining.len());
    loop {
        let ready: Vec<String> = remaining
            .values()
            .filter(|m| m.upstream.iter().all(|u| done.contains(u)))
            .map(|m| m.name.clone())
            .collect();
        if ready.is_empty() {
            break;
        }
        for name in ready {
            if let Some(m) = remaining.remove(&name) {
                done.insert(name);
                out.push(m);
            }
        }
    }
    if remaining.is_empty() {
        return Ok(out);
    }
    // Walk upstream edges among the rest until a model repeats: that is a cycle.
    let start = remaining.keys().next().cloned().unwrap_or_default();
    let mut path = vec![start.clone()];
    let mut seen: HashMap<String, usize> = HashMap::from([(start.clone(), 0)]);
    let mut current = start;
    loop {
        let next = remaining
            .get(&current)
            .and_then(|m| m.upstream.iter().find(|u| remaining.contains_key(*u)))
            .cloned();
        let Some(next) = next else { break };
        if let Some(&at) = seen.get(&next) {
            let mut cycle: Vec<String> = path[at..].to_vec();
            cycle.reverse();
            cycle.push(cycle[0].clone());
            let files: Vec<String> = cycle[..cycle.len() - 1]
                .iter()
                .filter_map(|n| remaining.get(n).map(|m| m.file.clone()))
                .collect();
            return Err(Error::Plan(format!(
                "dependency cycle: {} ({})",
                cycle.join(" → "),
                files.join(", ")
            )));
        }
        seen.insert(next.clone(), path.len());
        path.push(next.clone());
        current = next;
    }
    Err(Error::Plan(format!(
        "models cannot be ordered: {}",
        remaining.keys().cloned().collect::<Vec<_>>().join(", ")
    )))
}
