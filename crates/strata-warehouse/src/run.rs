//! Running a project for one date: models in dependency order, independent ones in parallel
//! up to a limit, each with retries and a deadline, checks after each, everything recorded in
//! the audit tables. A failed model or a failed `error` check skips everything downstream.
//! Re-running a date replaces that date's output (materializations are idempotent).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::{DataType, Schema, SchemaRef};
use chrono::{NaiveDate, Utc};
use datafusion::common::Column;
use datafusion::logical_expr::col;
use iceberg::spec::Literal;
use iceberg::TableIdent;
use strata_sql::SqlSession;
use strata_table::table::{self, MergeClause, MergeSpec};
use strata_table::Lake;
use tokio::task::JoinSet;

use crate::audit::{self, DagRunRow, DqRow, ModelRunRow};
use crate::checks::{run_check, CheckResult};
use crate::error::{Error, Result};
use crate::project::{Materialized, Model, Project};
use crate::step::{Step, StepError};

/// How a DAG run is done.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub date: NaiveDate,
    /// `name`, `name+`, `+name`, `tag:t`, comma-separated; `None` = every model.
    pub select: Option<String>,
    /// `manual`, `schedule`, `backfill`.
    pub trigger: String,
    /// Models at once (default: the project's).
    pub parallelism: Option<usize>,
    /// Deadline of the whole run.
    pub deadline: Duration,
    /// First retry waits this long, doubling after.
    pub retry_backoff: Duration,
}

impl RunOptions {
    pub fn new(date: NaiveDate) -> Self {
        RunOptions {
            date,
            select: None,
            trigger: "manual".to_string(),
            parallelism: None,
            deadline: Duration::from_secs(7 * 3600),
            retry_backoff: Duration::from_secs(10),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelStatus {
    Success,
    /// Wrote its table but an `error` check failed.
    CheckFailed,
    Failed,
    /// Not run: an upstream model failed.
    Skipped,
    /// Not finished before the run's deadline.
    DeadlineMissed,
}

impl ModelStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            ModelStatus::Success => "success",
            ModelStatus::CheckFailed => "check_failed",
            ModelStatus::Failed => "failed",
            ModelStatus::Skipped => "skipped",
            ModelStatus::DeadlineMissed => "deadline_missed",
        }
    }
}

#[derive(Clone, Debug)]
pub struct ModelOutcome {
    pub model: String,
    pub status: ModelStatus,
    pub attempts: u32,
    pub rows_written: u64,
    pub elapsed: Duration,
    pub error: Option<String>,
    pub checks: Vec<CheckResult>,
}

#[derive(Clone, Debug)]
pub struct DagRun {
    pub run_id: String,
    pub date: NaiveDate,
    pub status: String,
    pub models: Vec<ModelOutcome>,
    pub elapsed: Duration,
}

impl DagRun {
    pub fn succeeded(&self) -> bool {
        self.status == "success"
    }
}

/// Runs the selected models of `project` for `opts.date`.
pub async fn run(lake: &Lake, project: &Project, opts: &RunOptions) -> Result<DagRun> {
    let started_at = Utc::now();
    let started = Instant::now();
    let run_id = format!(
        "{}-{}",
        opts.date,
        &uuid::Uuid::now_v7().simple().to_string()[..12]
    );
    audit::ensure_tables(lake).await?;
    let selected_models = project.select(opts.select.as_deref())?;
    let steps = project.selected_steps(&selected_models);
    let selected: Vec<Node<'_>> = selected_models
        .iter()
        .map(|m| Node::Model(m))
        .chain(steps.iter().map(|s| Node::Step(s.clone())))
        .collect();
    let names: HashSet<String> = selected.iter().map(|n| n.name().to_string()).collect();
    let session = Arc::new(SqlSession::new(lake).await?);
    let parallelism = opts
        .parallelism
        .unwrap_or(project.settings.parallelism)
        .max(1);
    tracing::info!(%run_id, date = %opts.date, models = selected_models.len(), steps = steps.len(), parallelism, "dag run started");

    let mut outcomes: HashMap<String, ModelOutcome> = HashMap::new();
    let mut running: JoinSet<(String, ModelOutcome)> = JoinSet::new();
    let mut in_flight: HashSet<String> = HashSet::new();
    let deadline = started + opts.deadline;
    loop {
        // Skip nodes whose upstream (within the selection) did not succeed.
        for m in &selected {
            if outcomes.contains_key(m.name()) || in_flight.contains(m.name()) {
                continue;
            }
            let failed_up = m.upstream().iter().find(|u| {
                names.contains(*u)
                    && outcomes
                        .get(*u)
                        .is_some_and(|o| o.status != ModelStatus::Success)
            });
            if let Some(up) = failed_up {
                outcomes.insert(
                    m.name().to_string(),
                    skipped(m.name(), format!("upstream model {up} did not succeed")),
                );
            }
        }
        // Start what is ready.
        for m in &selected {
            if running.len() >= parallelism {
                break;
            }
            if outcomes.contains_key(m.name()) || in_flight.contains(m.name()) {
                continue;
            }
            let ready = m
                .upstream()
                .iter()
                .all(|u| !names.contains(u) || outcomes.contains_key(u));
            if !ready {
                continue;
            }
            in_flight.insert(m.name().to_string());
            let lake = lake.clone();
            let opts = opts.clone();
            let run_id = run_id.clone();
            match m {
                Node::Model(model) => {
                    let model = (*model).clone();
                    let session = session.clone();
                    let retries = model.config.retries.unwrap_or(project.settings.retries);
                    let timeout = model
                        .config
                        .timeout
                        .unwrap_or(project.settings.model_timeout);
                    running.spawn(async move {
                        let outcome =
                            run_model(&lake, &session, &model, &opts, &run_id, retries, timeout)
                                .await;
                        (model.name.clone(), outcome)
                    });
                }
                Node::Step(step) => {
                    let step = step.clone();
                    let retries = project.settings.retries;
                    let timeout = project.settings.model_timeout;
                    running.spawn(async move {
                        let outcome =
                            run_step(&lake, step.as_ref(), &opts, &run_id, retries, timeout).await;
                        (step.name().to_string(), outcome)
                    });
                }
            }
        }
        if running.is_empty() {
            break;
        }
        let now = Instant::now();
        let next = if now >= deadline {
            None
        } else {
            tokio::time::timeout(deadline - now, running.join_next())
                .await
                .ok()
                .flatten()
        };
        match next {
            Some(Ok((name, outcome))) => {
                in_flight.remove(&name);
                tracing::info!(%run_id, model = %name, status = outcome.status.as_str(), rows = outcome.rows_written, "model finished");
                outcomes.insert(name, outcome);
            }
            Some(Err(e)) => return Err(Error::Run(format!("a model task failed: {e}"))),
            None => {
                // Deadline: stop what runs, mark the rest.
                running.abort_all();
                for name in in_flight.drain() {
                    outcomes.insert(
                        name.clone(),
                        ModelOutcome {
                            model: name,
                            status: ModelStatus::DeadlineMissed,
                            attempts: 1,
                            rows_written: 0,
                            elapsed: started.elapsed(),
                            error: Some(format!(
                                "the run's deadline ({}) passed",
                                humantime::format_duration(opts.deadline)
                            )),
                            checks: Vec::new(),
                        },
                    );
                }
                for m in &selected {
                    outcomes
                        .entry(m.name().to_string())
                        .or_insert_with(|| skipped(m.name(), "the run's deadline passed".into()));
                }
                break;
            }
        }
    }
    let models: Vec<ModelOutcome> = selected
        .iter()
        .filter_map(|m| outcomes.remove(m.name()))
        .collect();
    let ok = models
        .iter()
        .filter(|m| m.status == ModelStatus::Success)
        .count();
    let skipped_n = models
        .iter()
        .filter(|m| m.status == ModelStatus::Skipped)
        .count();
    let failed = models.len() - ok - skipped_n;
    let status = if failed == 0 && skipped_n == 0 {
        "success"
    } else if models
        .iter()
        .any(|m| m.status == ModelStatus::DeadlineMissed)
    {
        "deadline_missed"
    } else {
        "failed"
    };
    let error = models
        .iter()
        .find(|m| m.status != ModelStatus::Success && m.status != ModelStatus::Skipped)
        .map(|m| {
            format!(
                "{}: {}",
                m.model,
                m.error
                    .clone()
                    .unwrap_or_else(|| m.status.as_str().to_string())
            )
        });
    audit::record_dag_run(
        lake,
        &DagRunRow {
            run_id: run_id.clone(),
            run_date: opts.date,
            trigger: opts.trigger.clone(),
            selection: opts.select.clone().unwrap_or_default(),
            started_at,
            ended_at: Utc::now(),
            status: status.to_string(),
            ok: ok as i32,
            failed: failed as i32,
            skipped: skipped_n as i32,
            error,
        },
    )
    .await?;
    tracing::info!(%run_id, status, ok, failed, skipped = skipped_n, "dag run finished");
    Ok(DagRun {
        run_id,
        date: opts.date,
        status: status.to_string(),
        models,
        elapsed: started.elapsed(),
    })
}

/// A node of the run: a SQL model or a step.
enum Node<'a> {
    Model(&'a Model),
    Step(Arc<dyn Step>),
}

impl Node<'_> {
    fn name(&self) -> &str {
        match self {
            Node::Model(m) => &m.name,
            Node::Step(s) => s.name(),
        }
    }

    fn upstream(&self) -> &std::collections::BTreeSet<String> {
        match self {
            Node::Model(m) => &m.upstream,
            Node::Step(s) => s.after(),
        }
    }
}

/// One step with retries (retryable failures only, with the run's backoff) and its audit rows.
async fn run_step(
    lake: &Lake,
    step: &dyn Step,
    opts: &RunOptions,
    run_id: &str,
    retries: u32,
    timeout: Duration,
) -> ModelOutcome {
    let started = Instant::now();
    let (result, attempt, runs) = with_retries(
        step.name(),
        "step",
        opts,
        run_id,
        retries,
        timeout,
        |e: &StepError| e.retryable,
        |message| StepError {
            message,
            retryable: true,
        },
        || step.run(lake, opts.date),
    )
    .await;
    if let Err(e) = audit::record_model_runs(lake, &runs).await {
        tracing::error!(step = %step.name(), error = %e, "recording step runs failed");
    }
    let (status, rows_written, error) = match result {
        Ok(rows) => (ModelStatus::Success, rows, None),
        Err(e) => (ModelStatus::Failed, 0, Some(e.message)),
    };
    ModelOutcome {
        model: step.name().to_string(),
        status,
        attempts: attempt,
        rows_written,
        elapsed: started.elapsed(),
        error,
        checks: Vec::new(),
    }
}

fn skipped(name: &str, why: String) -> ModelOutcome {
    ModelOutcome {
        model: name.to_string(),
        status: ModelStatus::Skipped,
        attempts: 0,
        rows_written: 0,
        elapsed: Duration::ZERO,
        error: Some(why),
        checks: Vec::new(),
    }
}

/// One model with retries, its checks, and its audit rows.
async fn run_model(
    lake: &Lake,
    session: &SqlSession,
    model: &Model,
    opts: &RunOptions,
    run_id: &str,
    retries: u32,
    timeout: Duration,
) -> ModelOutcome {
    let started = Instant::now();
    let (result, attempts, mut runs) = with_retries(
        &model.name,
        "model",
        opts,
        run_id,
        retries,
        timeout,
        retryable,
        Error::Run,
        || materialize(lake, session, model, opts.date),
    )
    .await;
    let mut outcome = ModelOutcome {
        model: model.name.clone(),
        status: ModelStatus::Failed,
        attempts,
        rows_written: 0,
        elapsed: Duration::ZERO,
        error: None,
        checks: Vec::new(),
    };
    match result {
        Ok(rows) => {
            outcome.rows_written = rows;
            outcome.status = ModelStatus::Success;
            for check in &model.config.checks {
                let r = run_check(session, model, check, opts.date).await;
                if r.status != "pass" {
                    tracing::warn!(model = %model.name, check = %r.name, status = r.status, observed = %r.observed, expected = %r.expected, severity = r.severity.as_str(), "check did not pass");
                }
                outcome.checks.push(r);
            }
            if let Some(blocking) = outcome.checks.iter().find(|c| c.blocks()) {
                outcome.status = ModelStatus::CheckFailed;
                outcome.error = Some(format!(
                    "check {} {}: observed {}, expected {}",
                    blocking.name, blocking.status, blocking.observed, blocking.expected
                ));
            }
        }
        Err(e) => outcome.error = Some(e.to_string()),
    }
    outcome.elapsed = started.elapsed();
    let now = Utc::now();
    let dq: Vec<DqRow> = outcome
        .checks
        .iter()
        .map(|c| DqRow {
            run_id: run_id.to_string(),
            model: model.name.clone(),
            run_date: opts.date,
            check_name: c.name.clone(),
            check_type: c.kind.clone(),
            severity: c.severity.as_str().to_string(),
            status: c.status.to_string(),
            observed: c.observed.clone(),
            expected: c.expected.clone(),
            checked_at: now,
        })
        .collect();
    if let Some(last) = runs.last_mut() {
        last.status = outcome.status.as_str().to_string();
        if outcome.status == ModelStatus::CheckFailed {
            last.error = outcome.error.clone();
        }
    }
    if let Err(e) = audit::record_model_runs(lake, &runs).await {
        tracing::error!(model = %model.name, error = %e, "recording model runs failed");
    }
    if let Err(e) = audit::record_dq(lake, &dq).await {
        tracing::error!(model = %model.name, error = %e, "recording check results failed");
    }
    outcome
}

/// Runs `task` (a model's materialization or a step) until it succeeds, fails in a way
/// `retryable` says a retry cannot help, or has had `retries` retries (the first after
/// `opts.retry_backoff`, doubling); each attempt bounded by `timeout` (`timed_out` makes its
/// error) and described by a `ModelRunRow`. The result, the attempts made, and the rows.
#[allow(clippy::too_many_arguments)]
async fn with_retries<E, Fut>(
    name: &str,
    kind: &str,
    opts: &RunOptions,
    run_id: &str,
    retries: u32,
    timeout: Duration,
    retryable: impl Fn(&E) -> bool,
    timed_out: impl Fn(String) -> E,
    task: impl Fn() -> Fut,
) -> (std::result::Result<u64, E>, u32, Vec<ModelRunRow>)
where
    E: std::fmt::Display,
    Fut: std::future::Future<Output = std::result::Result<u64, E>>,
{
    let mut attempt = 0;
    let mut runs = Vec::new();
    loop {
        attempt += 1;
        let begun = Utc::now();
        let result = match tokio::time::timeout(timeout, task()).await {
            Ok(r) => r,
            Err(_) => Err(timed_out(format!(
                "{kind} deadline ({}) passed",
                humantime::format_duration(timeout)
            ))),
        };
        runs.push(ModelRunRow {
            run_id: run_id.to_string(),
            model: name.to_string(),
            run_date: opts.date,
            attempt: attempt as i32,
            started_at: begun,
            ended_at: Utc::now(),
            status: if result.is_ok() { "success" } else { "failed" }.to_string(),
            rows_written: *result.as_ref().unwrap_or(&0) as i64,
            error: result.as_ref().err().map(|e| e.to_string()),
        });
        match result {
            Err(e) if attempt <= retries && retryable(&e) => {
                let wait = opts.retry_backoff * 2u32.saturating_pow(attempt - 1);
                tracing::warn!(%kind, %name, attempt, error = %e, "{kind} failed, retrying in {wait:?}");
                tokio::time::sleep(wait).await;
            }
            other => return (other, attempt, runs),
        }
    }
}

/// Errors in the model itself (bad SQL, wrong columns) do not get better by retrying.
fn retryable(e: &Error) -> bool {
    match e {
        Error::Lake(l) => l.retryable() || matches!(l, strata_table::Error::Execution(_)),
        Error::Run(_) | Error::Io { .. } => true,
        Error::Project { .. } | Error::Plan(_) => false,
    }
}

fn table_ident(model: &Model) -> Result<TableIdent> {
    TableIdent::from_strs([model.layer.as_str(), model.name.as_str()])
        .map_err(|e| Error::Run(format!("table name of {}: {e}", model.name)))
}

/// The (name, type) list a table stores for `schema`, for comparing a model's output with its
/// existing table.
fn stored_columns(schema: &Schema) -> Vec<(String, DataType)> {
    schema
        .fields()
        .iter()
        .map(|f| {
            (
                f.name().clone(),
                strata_table::table::create::lake_type(f.data_type()),
            )
        })
        .collect()
}

/// Runs the model's SELECT for `date` and lands the rows; returns rows written.
pub async fn materialize(
    lake: &Lake,
    session: &SqlSession,
    model: &Model,
    date: NaiveDate,
) -> Result<u64> {
    let sql = model.render(date)?;
    // Rows stream into the table's data files as the query yields them (a day of
    // `dwd_user_action` is tens of millions of rows); only MERGE collects its source.
    let (schema, rows) = session.query_stream(&sql).await?;
    let ident = table_ident(model)?;
    let catalog = lake.catalog();
    let exists = catalog
        .table_exists(&ident)
        .await
        .map_err(|e| Error::Run(format!("looking up {ident}: {e}")))?;
    if exists {
        let table = lake.load_table(&ident).await?;
        let current = strata_table::table::read::table_arrow_schema(&table)?;
        let (have, want) = (stored_columns(&current), stored_columns(&schema));
        if want.len() > have.len() && want.starts_with(&have) {
            // New columns after the old ones (dbt's `append_new_columns`): the table gains
            // them, optional, and the partitions written before read them as NULL.
            let added = strata_table::table::evolve::add_columns(
                lake,
                &ident,
                &schema.fields()[have.len()..],
            )
            .await?;
            tracing::info!(model = %model.file, table = %ident, columns = ?added, "added the query's new columns to the table");
        } else if have != want {
            if model.config.materialized == Materialized::Table {
                // A full rebuild may change shape: start the table over.
                catalog
                    .drop_table(&ident)
                    .await
                    .map_err(|e| Error::Run(format!("dropping {ident} to rebuild it: {e}")))?;
                create(lake, session, model, &ident, &schema).await?;
            } else {
                return Err(Error::Run(format!(
                    "{}: the query's columns {:?} differ from table {ident}'s {:?} (new columns are added when they come after the existing ones; a removed, renamed, retyped or reordered column is not): ALTER TABLE it (or drop it to rebuild)",
                    model.file,
                    names(&schema),
                    names(&current)
                )));
            }
        }
    } else {
        create(lake, session, model, &ident, &schema).await?;
    }
    let outcome = match model.config.materialized {
        Materialized::Table => table::replace_all_stream(lake, &ident, rows).await?,
        Materialized::Incremental => {
            table::overwrite_partition_stream(
                lake,
                &ident,
                &model.config.date_column,
                Literal::date(audit::days(date)),
                rows,
            )
            .await?
        }
        Materialized::Merge => {
            let rows = datafusion::physical_plan::common::collect(rows)
                .await
                .map_err(|e| Error::Run(format!("{}: {e}", model.file)))?;
            if rows.iter().all(|b| b.num_rows() == 0) {
                return Ok(0);
            }
            let ctx = session.context();
            let source = ctx
                .read_batches(rows)
                .map_err(|e| Error::Run(format!("{}: {e}", model.file)))?;
            let t = |c: &str| col(Column::new(Some("t"), c));
            let s = |c: &str| col(Column::new(Some("s"), c));
            let on = model
                .config
                .unique_key
                .iter()
                .map(|k| t(k).eq(s(k)))
                .reduce(|a, b| a.and(b))
                .ok_or_else(|| Error::Run(format!("{}: merge needs unique_key", model.file)))?;
            let spec = MergeSpec {
                target_alias: "t".to_string(),
                source_alias: "s".to_string(),
                on,
                clauses: vec![
                    MergeClause::Update {
                        condition: None,
                        assignments: None,
                    },
                    MergeClause::Insert {
                        condition: None,
                        values: None,
                    },
                ],
            };
            table::merge(lake, ctx, &ident, source, spec).await?
        }
    };
    Ok(outcome.inserted + outcome.updated)
}

fn names(schema: &Schema) -> Vec<String> {
    schema.fields().iter().map(|f| f.name().clone()).collect()
}

async fn create(
    lake: &Lake,
    session: &SqlSession,
    model: &Model,
    ident: &TableIdent,
    schema: &SchemaRef,
) -> Result<()> {
    let mut props = HashMap::new();
    props.insert("strata.model".to_string(), model.file.clone());
    table::create_table(
        lake,
        ident,
        schema,
        model.config.partition_by.as_deref(),
        props,
    )
    .await?;
    session.refresh().await?;
    Ok(())
}
