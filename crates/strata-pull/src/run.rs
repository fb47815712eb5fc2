//! Running a pull: each window fetched page by page, turned into rows and written as one
//! partition overwrite; its outcome recorded in the state file. A window that fails — after
//! its requests' retries — writes nothing and is remembered for a later try.
//!
//! [`Runner::run_windows`] is `strata pulls run` (one window or a backfill range);
//! [`Runner::run_due`] is one pass of the scheduler in `strata serve`: failed windows whose
//! retry time came, then every window due since the cursor (missed windows caught up).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use strata_table::Lake;

use crate::error::{Error, Result};
use crate::http::Fetcher;
use crate::page::fetch_window;
use crate::pull::Pull;
use crate::rows::{self, BadValues};
use crate::state::{self, Lock, PullState, RunStatus, WindowRun};
use crate::table::{ensure_table, write_window};
use crate::template::EnvLookup;
use crate::window::{Window, MAX_WINDOWS};

/// Runs pulls against one lake and data directory.
#[derive(Clone)]
pub struct Runner {
    lake: Lake,
    data_dir: PathBuf,
    client: reqwest::Client,
    env: Arc<EnvLookup>,
}

impl Runner {
    /// Environment variables from the process environment.
    pub fn new(lake: Lake, data_dir: &Path) -> Result<Runner> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("strata-pull/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::External(format!("building the HTTP client: {e}")))?;
        Ok(Runner {
            lake,
            data_dir: data_dir.to_path_buf(),
            client,
            env: Arc::new(|name: &str| std::env::var(name).ok()),
        })
    }

    /// Reads `${env:NAME}` values from `env` instead (tests).
    pub fn with_env(mut self, env: Arc<EnvLookup>) -> Runner {
        self.env = env;
        self
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    fn fetcher(&self, pull: &Pull) -> Fetcher {
        Fetcher::new(
            pull.name(),
            self.client.clone(),
            pull.retry_policy(),
            pull.config.rate_limit,
            pull.config.timeout,
        )
    }

    /// Pulls `windows` in order (`strata pulls run`), recording each in the state file;
    /// `done` hears each outcome as it comes. A failed window does not stop the others.
    /// [`Error::Busy`] when another process runs the pull now.
    pub async fn run_windows(
        &self,
        pull: &Pull,
        windows: &[Window],
        mut done: impl FnMut(&WindowRun),
    ) -> Result<Vec<WindowRun>> {
        let lock = Lock::try_acquire(&self.data_dir, pull.name())?;
        let mut fetcher = self.fetcher(pull);
        let mut runs = Vec::with_capacity(windows.len());
        for window in windows {
            let run = self.run_window(pull, *window, &mut fetcher, &lock).await;
            let mut st = state::load(&self.data_dir, pull.name())?;
            st.record(run.clone());
            state::save(&self.data_dir, pull.name(), &st)?;
            done(&run);
            runs.push(run);
        }
        Ok(runs)
    }

    /// One scheduler pass at `now`: failed windows due for another try, then the windows due
    /// from the cursor on (at most [`MAX_WINDOWS`]). Returns what ran.
    pub async fn run_due(&self, pull: &Pull, now: DateTime<Utc>) -> Result<Vec<WindowRun>> {
        let lock = Lock::try_acquire(&self.data_dir, pull.name())?;
        let mut st = state::load(&self.data_dir, pull.name())?;
        let mut fetcher = self.fetcher(pull);
        let mut runs = Vec::new();
        let retry_after = chrono::Duration::from_std(pull.config.retry_failed_after)
            .unwrap_or(chrono::Duration::MAX);
        let retries: Vec<Window> = st
            .failed
            .iter()
            .filter(|f| {
                f.last_try
                    .checked_add_signed(retry_after)
                    .is_some_and(|t| t <= now)
            })
            .map(|f| f.window)
            .collect();
        for window in retries {
            let run = self.run_window(pull, window, &mut fetcher, &lock).await;
            st.record(run.clone());
            state::save(&self.data_dir, pull.name(), &st)?;
            runs.push(run);
        }
        let Some(cursor) = cursor(pull, &st, now) else {
            return Ok(runs);
        };
        for window in pull.schedule.due_from(cursor, now, MAX_WINDOWS) {
            let run = self.run_window(pull, window, &mut fetcher, &lock).await;
            st.record(run.clone());
            st.next_start = Some(window.end);
            state::save(&self.data_dir, pull.name(), &st)?;
            runs.push(run);
        }
        Ok(runs)
    }

    /// Fetches, converts and writes one window. Never fails: a failure is the run's status.
    async fn run_window(
        &self,
        pull: &Pull,
        window: Window,
        fetcher: &mut Fetcher,
        _lock: &Lock,
    ) -> WindowRun {
        let started_at = Utc::now();
        let clock = Instant::now();
        fetcher.stats = Default::default();
        let mut bad = BadValues::default();
        let mut pages = 0;
        let result = self
            .fetch_and_write(pull, &window, fetcher, &mut bad, &mut pages, started_at)
            .await;
        let stats = fetcher.stats;
        let seconds = clock.elapsed().as_secs_f64();
        let (status, rows, snapshot_id, error, fault) = match result {
            Ok((rows, snapshot)) => (RunStatus::Ok, rows, snapshot, None, None),
            Err(e) => (
                RunStatus::Failed,
                0,
                None,
                Some(e.to_string()),
                Some(e.fault().as_str().to_string()),
            ),
        };
        let label = match status {
            RunStatus::Ok => "ok",
            RunStatus::Failed => "failed",
        };
        metrics::counter!("strata_pulls_windows_total", "pull" => pull.name().to_string(), "status" => label).increment(1);
        metrics::histogram!("strata_pulls_window_duration_seconds", "pull" => pull.name().to_string()).record(seconds);
        match &error {
            None => {
                metrics::counter!("strata_pulls_rows_total", "pull" => pull.name().to_string())
                    .increment(rows);
                tracing::info!(pull = %pull.name(), window = %window, rows, pages, requests = stats.requests, retries = stats.retries, table = %pull.table, "window pulled");
            }
            Some(e) => {
                tracing::warn!(pull = %pull.name(), window = %window, requests = stats.requests, retries = stats.retries, error = %e, "window failed; nothing written")
            }
        }
        if bad.count > 0 {
            tracing::warn!(pull = %pull.name(), window = %window, values = bad.count, example = bad.example.as_deref().unwrap_or_default(), "field values that did not convert are NULL");
        }
        WindowRun {
            window,
            status,
            rows,
            pages,
            requests: stats.requests,
            retries: stats.retries,
            bad_values: bad.count,
            bad_example: bad.example,
            error,
            fault,
            started_at,
            finished_at: Utc::now(),
            snapshot_id,
        }
    }

    async fn fetch_and_write(
        &self,
        pull: &Pull,
        window: &Window,
        fetcher: &mut Fetcher,
        bad: &mut BadValues,
        pages: &mut u64,
        pulled_at: DateTime<Utc>,
    ) -> Result<(u64, Option<i64>)> {
        let fetched = fetch_window(pull, window, fetcher, self.env.as_ref()).await?;
        *pages = fetched.len() as u64;
        let schema = rows::schema(&pull.fields);
        let mut batches = Vec::new();
        let mut count = 0;
        for records in fetched.iter().filter(|r| !r.is_empty()) {
            count += records.len() as u64;
            batches.push(rows::batch(
                &schema,
                &pull.fields,
                window,
                pulled_at,
                records,
                bad,
            )?);
        }
        drop(fetched);
        ensure_table(&self.lake, pull).await?;
        let outcome = write_window(&self.lake, pull, window, batches).await?;
        Ok((count, outcome.snapshot_id))
    }
}

/// Where the scheduler goes on from: its saved cursor, else the configured `start`, else the
/// latest window due at `now` (a new pull starts with the latest window, not history).
pub fn cursor(pull: &Pull, st: &PullState, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    st.next_start
        .or(pull.start)
        .or_else(|| pull.schedule.last_due(now).map(|w| w.start))
}

/// When the scheduler runs something next for this pull: the next window's due time or a
/// failed window's retry time, whichever is first (maybe already past when `strata serve`
/// is not running).
pub fn next_due(pull: &Pull, st: &PullState, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let retry_after =
        chrono::Duration::from_std(pull.config.retry_failed_after).unwrap_or(chrono::Duration::MAX);
    let retry = st
        .failed
        .iter()
        .filter_map(|f| f.last_try.checked_add_signed(retry_after))
        .min();
    let next = cursor(pull, st, now)
        .and_then(|c| pull.schedule.boundary_at_or_after(c))
        .and_then(|start| pull.schedule.window_from(start))
        .map(|w| pull.schedule.due_at(&w));
    match (retry, next) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The windows `strata pulls run NAME [--start T] [--end T]` means: with neither, the latest
/// window due now; with both, the whole windows in `[start, end)`; with `--start` alone, up
/// to the latest window due now.
pub fn windows_for(
    pull: &Pull,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Vec<Window>> {
    let schedule = &pull.schedule;
    let windows = match (start, end) {
        (None, None) => schedule.last_due(now).into_iter().collect(),
        (None, Some(_)) => {
            return Err(Error::Config(
                "--end needs --start (the range is [start, end))".to_string(),
            ))
        }
        (Some(s), e) => {
            let end = match e {
                Some(e) => e,
                None => schedule.last_due(now).map(|w| w.end).unwrap_or(s),
            };
            if end <= s {
                return Err(Error::Config(format!(
                    "the range [{}, {}) is empty",
                    s.to_rfc3339(),
                    end.to_rfc3339()
                )));
            }
            schedule.windows_between(s, end).map_err(Error::Config)?
        }
    };
    if windows.is_empty() {
        let hint = start
            .and_then(|s| schedule.window_containing(s))
            .map(|w| format!(" (the window around the start is {w})"))
            .unwrap_or_default();
        return Err(Error::Config(format!(
            "no whole window of pull {}'s schedule {:?} in that range{hint}",
            pull.name(),
            pull.config.schedule
        )));
    }
    Ok(windows)
}
