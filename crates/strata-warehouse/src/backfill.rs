//! `strata dag backfill --from D1 --to D2`: one DAG run per date, oldest first, skipping dates
//! a previous backfill of the same selection already finished — so an interrupted backfill
//! picks up where it stopped. It stops at the first date that fails (later dates often read
//! earlier ones).

use std::collections::HashSet;

use arrow::array::{Array, Date32Array};
use chrono::NaiveDate;
use strata_sql::SqlSession;
use strata_table::Lake;

use crate::audit::{self, DAG_RUNS};
use crate::error::{Error, Result};
use crate::project::Project;
use crate::run::{run, DagRun, RunOptions};

/// What a backfill did.
#[derive(Debug, Default)]
pub struct Backfill {
    pub runs: Vec<DagRun>,
    /// Dates an earlier backfill had finished.
    pub skipped: Vec<NaiveDate>,
}

pub async fn backfill(
    lake: &Lake,
    project: &Project,
    from: NaiveDate,
    to: NaiveDate,
    base: &RunOptions,
) -> Result<Backfill> {
    if to < from {
        return Err(Error::Plan(format!("--to {to} is before --from {from}")));
    }
    audit::ensure_tables(lake).await?;
    let done = finished_dates(lake, base.select.as_deref().unwrap_or("")).await?;
    let mut out = Backfill::default();
    let mut date = from;
    while date <= to {
        if done.contains(&date) {
            out.skipped.push(date);
        } else {
            let mut opts = base.clone();
            opts.date = date;
            opts.trigger = "backfill".to_string();
            let r = run(lake, project, &opts).await?;
            let ok = r.succeeded();
            out.runs.push(r);
            if !ok {
                break;
            }
        }
        date = match date.succ_opt() {
            Some(d) => d,
            None => break,
        };
    }
    Ok(out)
}

/// Dates with a successful backfill run of `selection`.
async fn finished_dates(lake: &Lake, selection: &str) -> Result<HashSet<NaiveDate>> {
    let session = SqlSession::new(lake).await?;
    let sql = format!(
        "SELECT DISTINCT run_date FROM {DAG_RUNS} WHERE status = 'success' AND trigger = 'backfill' AND selection = '{}'",
        selection.replace('\'', "''")
    );
    let batches = session.run(&sql).await?;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    let mut out = HashSet::new();
    for b in &batches {
        if let Some(days) = b.column(0).as_any().downcast_ref::<Date32Array>() {
            for i in 0..days.len() {
                if !days.is_null(i) {
                    out.insert(epoch + chrono::Duration::days(days.value(i) as i64));
                }
            }
        }
    }
    Ok(out)
}
