//! The warehouse inside `strata serve`: on the configured cron schedule, wait for the run
//! date's inputs (the sentinel), run the DAG with its deadline, alert on failures, missed
//! deadlines and failed checks, and send a daily summary.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::config::WarehouseConfig;
use arrow::array::{Array, TimestampMicrosecondArray};
use chrono::{DateTime, NaiveDate, Utc};
use iceberg::TableIdent;
use strata_bus::Log;
use strata_core::cron::Cron;
use strata_sql::SqlSession;
use strata_table::Lake;
use tokio::sync::watch;

use crate::alert::Alerter;
use crate::error::{Error, Result};
use crate::project::Project;
use crate::run::{run, DagRun, ModelStatus, RunOptions};
use crate::step::StepSource;

/// The CDC-fed ODS tables a run waits on: each must trail its bus topic by at most
/// `warehouse.sentinel_cdc_max_lag` before the DAG starts.
#[derive(Clone)]
pub struct CdcInputs {
    pub log: Arc<dyn Log>,
    /// (topic, ODS table)
    pub tables: Vec<(String, TableIdent)>,
}

/// Runs until `shutdown` turns true. Returns at once when no project or schedule is set.
pub async fn scheduler(
    lake: Lake,
    config: WarehouseConfig,
    cdc: Option<CdcInputs>,
    steps: Option<StepSource>,
    mut shutdown: watch::Receiver<bool>,
) {
    if config.project.as_os_str().is_empty() || config.schedule.trim().is_empty() {
        return;
    }
    let cron = match Cron::parse(&config.schedule) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "warehouse.schedule is invalid; the scheduler is off");
            return;
        }
    };
    let alerter = Alerter::new(&config.alert_webhook);
    tracing::info!(schedule = %config.schedule, project = %config.project.display(), "warehouse scheduler started");
    loop {
        let now = Utc::now();
        let Some(next) = cron.next_after(now) else {
            return;
        };
        let wait = (next - now).to_std().unwrap_or(Duration::ZERO);
        tracing::info!(next = %next, "next warehouse run");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        let date = (next - chrono::Duration::days(i64::from(config.lag_days))).date_naive();
        let run_once = scheduled_run(&lake, &config, cdc.as_ref(), steps.as_ref(), &alerter, date);
        tokio::select! {
            _ = run_once => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One scheduled run for `date`: sentinel, DAG, alerts, summary.
pub async fn scheduled_run(
    lake: &Lake,
    config: &WarehouseConfig,
    cdc: Option<&CdcInputs>,
    steps: Option<&StepSource>,
    alerter: &Alerter,
    date: NaiveDate,
) -> Option<DagRun> {
    let ready_at = date
        .succ_opt()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .unwrap_or_else(Utc::now)
        + chrono::Duration::from_std(config.sentinel_lateness).unwrap_or_default();
    let inputs = Inputs {
        ready_at,
        cdc,
        cdc_max_lag: config.sentinel_cdc_max_lag,
    };
    if let Err(waited) = sentinel(lake, &inputs, config.sentinel_timeout).await {
        alerter
            .send(&format!(
                ":warning: warehouse run for {date}: inputs not complete after waiting {}: {waited}; running anyway",
                humantime::format_duration(config.sentinel_timeout)
            ))
            .await;
    }
    let loaded = load_project(lake, config).await.and_then(|mut p| {
        if let Some(steps) = steps {
            let steps = steps(&p).map_err(Error::Plan)?;
            p.attach_steps(steps)?;
        }
        Ok(p)
    });
    let project = match loaded {
        Ok(p) => p,
        Err(e) => {
            alerter
                .send(&format!(":x: warehouse run for {date} did not start: {e}"))
                .await;
            return None;
        }
    };
    let mut opts = RunOptions::new(date);
    opts.trigger = "schedule".to_string();
    opts.deadline = config.deadline;
    opts.retry_backoff = config.retry_backoff;
    match run(lake, &project, &opts).await {
        Ok(r) => {
            alerter.send(&summary(&r)).await;
            Some(r)
        }
        Err(e) => {
            alerter
                .send(&format!(":x: warehouse run for {date} failed: {e}"))
                .await;
            None
        }
    }
}

async fn load_project(lake: &Lake, config: &WarehouseConfig) -> Result<Project> {
    let existing: HashSet<String> = strata_sql::list_tables(lake.catalog().as_ref())
        .await?
        .into_iter()
        .collect();
    Project::load(&config.project, &existing)
}

/// What a run waits for.
pub struct Inputs<'a> {
    /// Events received at or after this are in the lake (so everything received before is).
    pub ready_at: DateTime<Utc>,
    /// CDC-fed ODS tables, each within `cdc_max_lag` of its topic.
    pub cdc: Option<&'a CdcInputs>,
    pub cdc_max_lag: Duration,
}

/// Waits until the inputs are complete, checking every 30 s (sooner when the timeout is
/// shorter), for at most `timeout`. `Err` says what was still missing.
pub async fn sentinel(
    lake: &Lake,
    inputs: &Inputs<'_>,
    timeout: Duration,
) -> std::result::Result<(), String> {
    let started = std::time::Instant::now();
    loop {
        let missing = missing_inputs(lake, inputs).await;
        if missing.is_empty() {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            return Err(missing.join("; "));
        }
        let left = timeout.saturating_sub(started.elapsed());
        tokio::time::sleep(left.min(Duration::from_secs(30))).await;
    }
}

/// Each input that is not complete yet, with what was seen.
async fn missing_inputs(lake: &Lake, inputs: &Inputs<'_>) -> Vec<String> {
    let mut missing = Vec::new();
    match latest_received(lake, inputs.ready_at.date_naive()).await {
        Ok(Some(t)) if t >= inputs.ready_at => {}
        Ok(Some(t)) => missing.push(format!(
            "events up to {} not in the lake (latest received {t})",
            inputs.ready_at
        )),
        Ok(None) => missing.push(format!(
            "events up to {} not in the lake (none received)",
            inputs.ready_at
        )),
        Err(e) => missing.push(format!("event watermark unreadable: {e}")),
    }
    let Some(cdc) = inputs.cdc else {
        return missing;
    };
    let now = Utc::now().timestamp_micros();
    for (topic, table) in &cdc.tables {
        match strata_cdc::merge::cdc_lag(lake, &cdc.log, topic, table).await {
            Ok(l) => match l.lag(now) {
                Some(lag) if lag <= inputs.cdc_max_lag => {}
                Some(lag) => missing.push(format!(
                    "{table} trails {topic} by {} ({} records pending, bound {})",
                    humantime::format_duration(Duration::from_secs(lag.as_secs())),
                    l.pending(),
                    humantime::format_duration(inputs.cdc_max_lag)
                )),
                None => missing.push(format!(
                    "{table} has {} records of {topic} pending and no change among the first of them",
                    l.pending()
                )),
            },
            Err(e) => missing.push(format!("CDC lag of {table} unreadable: {e}")),
        }
    }
    missing
}

/// The newest `server_ts` in `ods.ods_event` among events dated `from` or later.
async fn latest_received(lake: &Lake, from: NaiveDate) -> Result<Option<DateTime<Utc>>> {
    let session = SqlSession::new(lake).await?;
    let day_before = from.pred_opt().unwrap_or(from);
    let batches = session
        .run(&format!(
            "SELECT max(server_ts) FROM ods.ods_event WHERE dt >= DATE '{day_before}'"
        ))
        .await?;
    let Some(b) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(None);
    };
    let col = arrow::compute::cast(
        b.column(0),
        &arrow::datatypes::DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
    )
    .map_err(|e| Error::Run(format!("reading the event watermark: {e}")))?;
    let ts = col
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .ok_or_else(|| Error::Run("event watermark is not a timestamp".to_string()))?;
    if ts.is_null(0) {
        return Ok(None);
    }
    Ok(DateTime::from_timestamp_micros(ts.value(0)))
}

/// The daily summary: status per model, failures and failed checks spelled out.
pub fn summary(r: &DagRun) -> String {
    let icon = match r.status.as_str() {
        "success" => ":white_check_mark:",
        "deadline_missed" => ":alarm_clock:",
        _ => ":x:",
    };
    let ok = r
        .models
        .iter()
        .filter(|m| m.status == ModelStatus::Success)
        .count();
    let mut text = format!(
        "{icon} warehouse run {} for {}: {} — {ok}/{} models ok in {}",
        r.run_id,
        r.date,
        r.status,
        r.models.len(),
        humantime::format_duration(Duration::from_secs(r.elapsed.as_secs()))
    );
    for m in r.models.iter().filter(|m| m.status != ModelStatus::Success) {
        text.push_str(&format!(
            "\n• {} {}: {}",
            m.model,
            m.status.as_str(),
            m.error.as_deref().unwrap_or("")
        ));
    }
    for m in &r.models {
        for c in m.checks.iter().filter(|c| c.status != "pass") {
            text.push_str(&format!(
                "\n• check {} on {} ({}) {}: observed {}, expected {}",
                c.name,
                m.model,
                c.severity.as_str(),
                c.status,
                c.observed,
                c.expected
            ));
        }
    }
    text
}
