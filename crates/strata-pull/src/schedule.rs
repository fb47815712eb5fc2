//! The pulls inside `strata serve`: each pull wakes when its next window is due (or a failed
//! window's retry time comes), runs [`Runner::run_due`] — which also catches up windows
//! missed while the server was down — and sleeps again, until shutdown. A window in progress
//! at shutdown is dropped uncommitted and pulled again at the next start.

use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use crate::error::Error;
use crate::pull::Pull;
use crate::run::{next_due, Runner};
use crate::state;

/// Waits at least this long between passes (a due time already past is not a busy loop).
const MIN_WAIT: Duration = Duration::from_secs(1);
/// After a pass that could not run (the state file, another process holding the pull).
const AFTER_ERROR: Duration = Duration::from_secs(30);
/// When nothing says when to wake.
const IDLE: Duration = Duration::from_secs(3600);

/// Runs every pull's schedule until `shutdown` turns true.
pub async fn scheduler(runner: Runner, pulls: Vec<Pull>, shutdown: watch::Receiver<bool>) {
    if pulls.is_empty() {
        return;
    }
    tracing::info!(pulls = pulls.len(), "pull scheduler started");
    futures::future::join_all(
        pulls
            .iter()
            .map(|pull| pull_loop(&runner, pull, shutdown.clone())),
    )
    .await;
}

async fn pull_loop(runner: &Runner, pull: &Pull, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        let pass = tokio::select! {
            r = runner.run_due(pull, Utc::now()) => r,
            _ = shutdown.changed() => return,
        };
        let wait = match pass {
            Ok(runs) => {
                let failed = runs
                    .iter()
                    .filter(|r| r.status == state::RunStatus::Failed)
                    .count();
                if !runs.is_empty() {
                    tracing::info!(pull = %pull.name(), windows = runs.len(), failed, "pull pass done");
                }
                let now = Utc::now();
                match state::load(runner.data_dir(), pull.name()) {
                    Ok(st) => next_due(pull, &st, now)
                        .map(|t| (t - now).to_std().unwrap_or(Duration::ZERO))
                        .unwrap_or(IDLE)
                        .max(MIN_WAIT),
                    Err(e) => {
                        tracing::warn!(pull = %pull.name(), error = %e, "reading the pull state");
                        AFTER_ERROR
                    }
                }
            }
            Err(Error::Busy(message)) => {
                tracing::info!(pull = %pull.name(), %message, "pull busy elsewhere; trying later");
                AFTER_ERROR
            }
            Err(e) => {
                tracing::warn!(pull = %pull.name(), error = %e, "pull pass failed; trying later");
                AFTER_ERROR
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}
