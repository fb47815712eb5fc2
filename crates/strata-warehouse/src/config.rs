//! `[warehouse]`: the SQL model project and the schedule `strata serve` runs it on. Parsed as a
//! section of `strata.toml` (the root config lives in the `strata` binary); `validate()` is
//! pure.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WarehouseConfig {
    /// The warehouse project folder (`models/<layer>/<name>.sql`), relative to the directory of
    /// `strata.toml`. Empty: no warehouse.
    pub project: PathBuf,
    /// When `strata serve` runs the DAG: a cron expression (minute hour day-of-month month
    /// day-of-week, UTC). Empty: no schedule.
    pub schedule: String,
    /// The scheduled run is for this many days before the day it starts (1 = yesterday).
    pub lag_days: u32,
    /// A DAG run still going after this is stopped and reported.
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
    /// First retry of a failed model waits this long, doubling after.
    #[serde(with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// Before a scheduled run, wait until events up to the end of the run date (plus this
    /// much lateness) are in the lake...
    #[serde(with = "humantime_serde")]
    pub sentinel_lateness: Duration,
    /// ... and until every CDC-fed ODS table trails its bus topic by at most this (the age
    /// of its oldest change not applied yet) ...
    #[serde(with = "humantime_serde")]
    pub sentinel_cdc_max_lag: Duration,
    /// ... but no longer than this; then run anyway and alert.
    #[serde(with = "humantime_serde")]
    pub sentinel_timeout: Duration,
    /// Slack-compatible webhook (`{"text": …}` JSON POST) for failures, missed deadlines,
    /// failed checks and the daily summary. Empty: no alerts.
    pub alert_webhook: String,
}

impl Default for WarehouseConfig {
    fn default() -> Self {
        Self {
            project: PathBuf::new(),
            schedule: "0 2 * * *".to_string(),
            lag_days: 1,
            deadline: Duration::from_secs(7 * 3600),
            retry_backoff: Duration::from_secs(60),
            sentinel_lateness: Duration::from_secs(600),
            sentinel_cdc_max_lag: Duration::from_secs(300),
            sentinel_timeout: Duration::from_secs(2 * 3600),
            alert_webhook: String::new(),
        }
    }
}

impl WarehouseConfig {
    /// Every problem of the section, one message each.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if !self.schedule.trim().is_empty() {
            if let Err(e) = strata_core::cron::Cron::parse(&self.schedule) {
                problems.push(format!("warehouse.schedule: {e}"));
            }
        }
        let hook = &self.alert_webhook;
        if !(hook.is_empty() || hook.starts_with("http://") || hook.starts_with("https://")) {
            problems.push("warehouse.alert_webhook must be an http:// or https:// URL".to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}
