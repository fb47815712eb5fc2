//! The panic guard of `strata serve`.
//!
//! Every long-running task of `serve` (the lake sink, compaction, the warehouse scheduler, the
//! CDC sources and merger) runs under [`supervise`]: a panic inside it — Strata's code or a
//! dependency's — is caught at the task boundary, logged with the task's name and the panic
//! message, counted in `strata_serve_task_panics_total{task}`, and the task is started again
//! after a bounded backoff. A task that panics [`MAX_CONSECUTIVE_PANICS`] times in a row gives
//! up with [`Panicked`], and `serve` then stops in order with that reason. Restarting is safe
//! because each task keeps its progress where a crash would leave it (the sink's and merger's
//! positions in the tables' snapshots, a source's position file), exactly as after `kill -9`.
//!
//! HTTP handlers get [`catch_handler_panics`]: a panicking request is answered 500 with a short
//! JSON body, logged with its method and path, and counted under `task="http"`.
//!
//! Debug builds only (`cfg(debug_assertions)`, which `cargo build --release` turns off):
//! `STRATA_TEST_PANIC=task[:always],…` makes a task panic when it starts (once, or every time
//! with `:always`), and with `http` in the list a request carrying the header
//! `x-strata-test-panic` panics in its handler. Release builds contain neither the variable
//! lookup nor the panics; the tests in `crates/strata/tests/panic_guard.rs` use it.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use tokio::sync::watch;

/// Panics in a row (each run shorter than [`HEALTHY_RUN`]) after which a task gives up.
pub const MAX_CONSECUTIVE_PANICS: u32 = 5;
/// Wait before the first restart; doubles per consecutive panic...
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// ... up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A run that lasted this long before panicking starts the count afresh.
const HEALTHY_RUN: Duration = Duration::from_secs(300);

/// A task that kept panicking: why `serve` stops.
#[derive(Debug, thiserror::Error)]
#[error("task {task} panicked {count} times in a row; last panic: {message}")]
pub struct Panicked {
    pub task: &'static str,
    pub count: u32,
    pub message: String,
}

/// Runs the future `start` makes until it returns, starting it again (after a backoff) each
/// time it panics. During the backoff a shutdown restarts it at once, so a sink that panicked
/// still drains the bus when `serve` stops.
pub async fn supervise<T, F, Fut>(
    task: &'static str,
    mut shutdown: watch::Receiver<bool>,
    mut start: F,
) -> Result<T, Panicked>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let mut consecutive = 0u32;
    loop {
        let started = Instant::now();
        let run = AssertUnwindSafe(async {
            fault::at_start(task);
            start().await
        })
        .catch_unwind()
        .await;
        let panic = match run {
            Ok(value) => return Ok(value),
            Err(panic) => panic_message(&*panic),
        };
        metrics::counter!("strata_serve_task_panics_total", "task" => task).increment(1);
        if started.elapsed() >= HEALTHY_RUN {
            consecutive = 0;
        }
        consecutive += 1;
        if consecutive >= MAX_CONSECUTIVE_PANICS {
            tracing::error!(task, panic = %panic, panics = consecutive, "task panicked again; giving up, the server stops");
            return Err(Panicked {
                task,
                count: consecutive,
                message: panic,
            });
        }
        let wait = FIRST_BACKOFF
            .saturating_mul(1 << (consecutive - 1).min(16))
            .min(MAX_BACKOFF);
        tracing::error!(task, panic = %panic, panics = consecutive, restart_in = ?wait, "task panicked; restarting it");
        if !*shutdown.borrow() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|stop| *stop) => {}
            }
        }
    }
}

/// Axum middleware: a handler that panics answers 500 instead of dropping the connection.
pub async fn catch_handler_panics(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let run = AssertUnwindSafe(async move {
        fault::at_request(&req);
        next.run(req).await
    })
    .catch_unwind()
    .await;
    match run {
        Ok(response) => response,
        Err(panic) => {
            metrics::counter!("strata_serve_task_panics_total", "task" => "http").increment(1);
            tracing::error!(task = "http", %method, %path, panic = %panic_message(&*panic), "request handler panicked");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(serde_json::json!({
                    "error": "internal server error",
                    "code": "internal",
                    "message": "internal server error",
                })),
            )
                .into_response()
        }
    }
}

/// The text of a panic payload.
fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Injected panics for tests; debug builds only (see the module docs).
#[cfg(debug_assertions)]
mod fault {
    use std::collections::HashSet;
    use std::sync::Mutex;

    const VAR: &str = "STRATA_TEST_PANIC";

    /// `(task, always)` pairs named by the variable.
    fn requested() -> Vec<(String, bool)> {
        std::env::var(VAR)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| match t.strip_suffix(":always") {
                Some(name) => (name.to_string(), true),
                None => (t.to_string(), false),
            })
            .collect()
    }

    #[allow(
        clippy::panic,
        reason = "fault injection for tests (debug builds, opt-in): a real panic is what is tested"
    )]
    pub fn at_start(task: &str) {
        static FIRED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
        let Some(always) = requested()
            .into_iter()
            .find(|(t, _)| t == task)
            .map(|(_, a)| a)
        else {
            return;
        };
        let first = FIRED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashSet::new)
            .insert(task.to_string());
        if always || first {
            panic!("injected panic in task {task} (STRATA_TEST_PANIC)");
        }
    }

    /// Panics when the request carries `x-strata-test-panic` and `http` is requested.
    #[allow(
        clippy::panic,
        reason = "fault injection for tests (debug builds, opt-in): a real panic is what is tested"
    )]
    pub fn at_request(req: &axum::extract::Request) {
        if req.headers().contains_key("x-strata-test-panic")
            && requested().iter().any(|(t, _)| t == "http")
        {
            panic!("injected handler panic (STRATA_TEST_PANIC)");
        }
    }
}

#[cfg(not(debug_assertions))]
mod fault {
    pub fn at_start(_task: &str) {}

    pub fn at_request(_req: &axum::extract::Request) {}
}
