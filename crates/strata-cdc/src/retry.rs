//! The loop every source runs: one attempt (connect, snapshot, stream) after another, with
//! bounded exponential backoff after retryable failures, each failure saved as the source's
//! `last_error` (shown by `strata cdc status`), until shutdown or a failure no retry can help.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use tokio::sync::watch;

use crate::error::{Error, Result};

const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Runs `attempt` (given its own handle on `shutdown`) until it returns Ok, shutdown turns
/// true, or it fails with an error that is not retryable (returned).
pub(crate) async fn run_with_backoff<F, Fut>(
    source: &str,
    state_path: &Path,
    mut shutdown: watch::Receiver<bool>,
    mut attempt: F,
) -> Result<()>
where
    F: FnMut(watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut delay = FIRST_BACKOFF;
    loop {
        match attempt(shutdown.clone()).await {
            Ok(()) => return Ok(()),
            Err(e) if e.retryable() => {
                tracing::warn!(source, error = %e, retry_in = ?delay, "cdc source failed, retrying");
                record_error(state_path, &e);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
                delay = (delay * 2).min(MAX_BACKOFF);
            }
            Err(e) => {
                record_error(state_path, &e);
                return Err(e);
            }
        }
    }
}

fn record_error(state_path: &Path, e: &Error) {
    let _ = crate::state::record_error(state_path, &e.to_string());
}
