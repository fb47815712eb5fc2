//! `strata dag …` and `strata dq report`: the warehouse from the command line.

use std::collections::HashSet;

use anyhow::{bail, Context, Result};
use chrono::{NaiveDate, Utc};
use strata_sql::{format_batches, OutputFormat, SqlSession};
use strata_table::Lake;
use strata_warehouse::backfill::backfill;
use strata_warehouse::{run as run_dag, DagRun, ModelStatus, Project, RunOptions};

use super::load_config;
use crate::cli::{DagCommand, DqCommand, ProjectArg};

pub async fn run(command: DagCommand) -> Result<()> {
    match command {
        DagCommand::Plan { project } => {
            let (_, lake, project) = open(&project).await?;
            print_plan(&project);
            // Feature views are checked against the lake before anything runs.
            let views = strata_features::load_views(&project.root)?;
            let produced = project.models.iter().map(|m| m.table()).collect();
            let (problems, notes) =
                strata_features::materialize::check_views(&lake, &views, &produced).await;
            for n in &notes {
                println!("     note: {n}");
            }
            if let Some(report) = crate::config::report(&problems) {
                bail!(report);
            }
            Ok(())
        }
        DagCommand::Compile {
            project,
            date,
            select,
            format,
        } => {
            let (_, _, project) = open(&project).await?;
            let date = date.unwrap_or_else(yesterday);
            for m in project.select(select.as_deref())? {
                let sql = m.render(date)?;
                if format == "json" {
                    let line = serde_json::json!({
                        "model": m.name,
                        "table": m.table(),
                        "materialized": format!("{:?}", m.config.materialized).to_lowercase(),
                        "reads": m.reads,
                        "sql": sql,
                    });
                    println!("{line}");
                } else {
                    println!("-- {} ({})\n{};\n", m.table(), date, sql.trim_end());
                }
            }
            Ok(())
        }
        DagCommand::Run {
            project,
            date,
            select,
            parallelism,
        } => {
            let (config, lake, project) = open(&project).await?;
            let mut opts = RunOptions::new(date.unwrap_or_else(yesterday));
            opts.select = select;
            opts.parallelism = parallelism;
            opts.deadline = config.warehouse.deadline;
            opts.retry_backoff = config.warehouse.retry_backoff;
            let r = run_dag(&lake, &project, &opts).await?;
            print_run(&r);
            if !r.succeeded() {
                bail!("run {} {}", r.run_id, r.status);
            }
            Ok(())
        }
        DagCommand::Backfill {
            project,
            from,
            to,
            select,
            parallelism,
        } => {
            let (config, lake, project) = open(&project).await?;
            let mut opts = RunOptions::new(from);
            opts.select = select;
            opts.parallelism = parallelism;
            opts.deadline = config.warehouse.deadline;
            opts.retry_backoff = config.warehouse.retry_backoff;
            let b = backfill(&lake, &project, from, to, &opts).await?;
            for d in &b.skipped {
                println!("{d}: done by an earlier backfill, skipped");
            }
            for r in &b.runs {
                print_run(r);
            }
            if let Some(failed) = b.runs.iter().find(|r| !r.succeeded()) {
                bail!(
                    "backfill stopped at {} (run {} {}); fix it and run the same command again to resume",
                    failed.date,
                    failed.run_id,
                    failed.status
                );
            }
            Ok(())
        }
        DagCommand::Status { config } => {
            query(
                &config.config,
                "SELECT model, CAST(run_date AS VARCHAR) AS run_date, status, attempt, rows_written, \
                 CAST(ended_at AS VARCHAR) AS ended_at, error FROM audit.model_runs \
                 QUALIFY row_number() OVER (PARTITION BY model ORDER BY ended_at DESC) = 1 ORDER BY model",
            )
            .await
        }
        DagCommand::Runs { config, limit } => {
            query(
                &config.config,
                &format!(
                    "SELECT run_id, CAST(run_date AS VARCHAR) AS run_date, trigger, status, models_ok, \
                     models_failed, models_skipped, CAST(started_at AS VARCHAR) AS started_at, \
                     CAST(ended_at - started_at AS VARCHAR) AS took, error FROM audit.dag_runs \
                     ORDER BY started_at DESC LIMIT {limit}"
                ),
            )
            .await
        }
        DagCommand::Logs { config, run_id } => {
            let id = run_id.replace('\'', "''");
            query(
                &config.config,
                &format!(
                    "SELECT model, attempt, status, rows_written, CAST(ended_at - started_at AS VARCHAR) AS took, error \
                     FROM audit.model_runs WHERE run_id = '{id}' ORDER BY started_at, attempt"
                ),
            )
            .await?;
            query(
                &config.config,
                &format!(
                    "SELECT model, check_name, severity, status, observed, expected FROM audit.dq_results \
                     WHERE run_id = '{id}' ORDER BY model, check_name"
                ),
            )
            .await
        }
    }
}

pub async fn dq(command: DqCommand) -> Result<()> {
    match command {
        DqCommand::Report { config, date } => {
            let filter = date
                .map(|d| format!("WHERE run_date = DATE '{d}'"))
                .unwrap_or_default();
            query(
                &config.config,
                &format!(
                    "SELECT CAST(run_date AS VARCHAR) AS run_date, model, check_name, severity, status, observed, expected, run_id \
                     FROM audit.dq_results {filter} \
                     QUALIFY row_number() OVER (PARTITION BY run_date, model, check_name ORDER BY checked_at DESC) = 1 \
                     ORDER BY CASE status WHEN 'pass' THEN 1 ELSE 0 END, run_date DESC, model, check_name"
                ),
            )
            .await
        }
    }
}

fn yesterday() -> NaiveDate {
    (Utc::now() - chrono::Duration::days(1)).date_naive()
}

pub(super) async fn open(arg: &ProjectArg) -> Result<(crate::config::Config, Lake, Project)> {
    let config = load_config(&arg.config.config)?;
    let dir = match &arg.project {
        Some(p) => p.clone(),
        None if config.warehouse.project.as_os_str().is_empty() => {
            bail!(
                "no warehouse project: pass --project DIR or set warehouse.project in strata.toml"
            )
        }
        None => config.warehouse.project.clone(),
    };
    let lake = Lake::open(&config.lake_options()).await?;
    let existing: HashSet<String> = strata_sql::list_tables(lake.catalog().as_ref())
        .await?
        .into_iter()
        .collect();
    let mut project = Project::load(&dir, &existing)
        .with_context(|| format!("warehouse project {}", dir.display()))?;
    attach_feature_steps(&config, &mut project, true)?;
    Ok((config, lake, project))
}

/// The project's feature views become sync steps after their source models, and its models
/// training steps after theirs.
pub(super) fn attach_feature_steps(
    config: &crate::config::Config,
    project: &mut Project,
    with_models: bool,
) -> Result<()> {
    let views = strata_features::load_views(&project.root)
        .with_context(|| format!("feature views of {}", project.root.display()))?;
    let store = strata_features::StoreRef::Config {
        config: config.online.clone(),
        data_dir: config.data.dir.clone(),
    };
    let options = strata_features::SyncOptions {
        batch_rows: config.online.batch_rows,
        full: false,
    };
    let mut steps = strata_features::sync_steps(project, &views, &store, &options)
        .map_err(anyhow::Error::msg)?;
    if with_models {
        steps.extend(model_steps(config, project).map_err(anyhow::Error::msg)?);
    }
    project.attach_steps(steps)?;
    Ok(())
}

/// The project's models (`<project>/ml/*.toml`) as training steps after their sample models.
pub(super) fn model_steps(
    config: &crate::config::Config,
    project: &Project,
) -> std::result::Result<Vec<std::sync::Arc<dyn strata_warehouse::Step>>, String> {
    let models = strata_models::load_models(&project.root).map_err(|e| e.to_string())?;
    let options = strata_models::TrainOptions {
        actor: "dag".to_string(),
        alert_webhook: config.warehouse.alert_webhook.clone(),
        ..strata_models::TrainOptions::default()
    };
    strata_models::step::train_steps(project, &models, &options)
}

fn print_plan(project: &Project) {
    println!(
        "{} models in run order ({}):",
        project.models.len(),
        project.root.display()
    );
    for (i, m) in project.models.iter().enumerate() {
        let reads: Vec<&str> = m.reads.iter().map(String::as_str).collect();
        println!(
            "{:>3}. {:<32} {:<12} reads {}",
            i + 1,
            m.table(),
            format!("{:?}", m.config.materialized).to_lowercase(),
            reads.join(", ")
        );
        if !m.config.checks.is_empty() {
            let checks: Vec<String> = m.config.checks.iter().map(|c| c.label()).collect();
            println!("     checks: {}", checks.join(", "));
        }
    }
    if !project.steps.is_empty() {
        println!("{} steps after their models:", project.steps.len());
        for s in &project.steps {
            let after: Vec<&str> = s.after().iter().map(String::as_str).collect();
            println!(
                "     {:<32} {:<12} after {}: {}",
                s.name(),
                s.kind(),
                if after.is_empty() {
                    "-".to_string()
                } else {
                    after.join(", ")
                },
                s.describe()
            );
        }
    }
}

fn print_run(r: &DagRun) {
    println!(
        "run {} for {}: {} in {:.1}s",
        r.run_id,
        r.date,
        r.status,
        r.elapsed.as_secs_f64()
    );
    for m in &r.models {
        let checks = m.checks.iter().filter(|c| c.status == "pass").count();
        let mut line = format!(
            "  {:<28} {:<15} {:>10} rows {:>7.1}s  checks {}/{}",
            m.model,
            m.status.as_str(),
            m.rows_written,
            m.elapsed.as_secs_f64(),
            checks,
            m.checks.len()
        );
        if m.attempts > 1 {
            line.push_str(&format!("  attempts {}", m.attempts));
        }
        println!("{line}");
        if m.status != ModelStatus::Success {
            if let Some(e) = &m.error {
                println!("      {e}");
            }
        }
        for c in m.checks.iter().filter(|c| c.status != "pass") {
            println!(
                "      check {} ({}) {}: observed {}, expected {}",
                c.name,
                c.severity.as_str(),
                c.status,
                c.observed,
                c.expected
            );
        }
    }
}

async fn query(config: &std::path::Path, sql: &str) -> Result<()> {
    let config = load_config(config)?;
    let lake = Lake::open(&config.lake_options()).await?;
    let session = SqlSession::new(&lake).await?;
    match session.run(sql).await {
        Ok(batches) => {
            print!("{}", format_batches(&batches, OutputFormat::Table)?);
            Ok(())
        }
        Err(strata_table::Error::Sql(m)) if m.contains("audit.") && m.contains("not found") => {
            println!("no warehouse runs yet");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
