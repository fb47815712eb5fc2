//! A pull's progress: `<data>/pulls/<name>.json`, replaced atomically (write, fsync, rename).
//! It holds the scheduler's cursor (the first window it has not pulled), the last window run
//! and the last that succeeded, and the windows that failed and have not succeeded since —
//! what `strata pulls status` shows and what `strata serve` retries.
//!
//! The table, not this file, is the truth about data: a window's rows are replaced in one
//! commit, so a crash between the commit and the save only means the window is pulled again
//! (and replaced with the same rows). `<data>/pulls/<name>.lock` is held while a process runs
//! the pull, so `strata serve` and `strata pulls run` never update the file at once.

use std::fs::File;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::window::Window;

/// The file format written now.
pub const FORMAT: u32 = 1;

/// Failed windows remembered (the oldest are forgotten past this, with a warning).
pub const MAX_FAILED: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Ok,
    Failed,
}

/// One window pulled (or tried).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowRun {
    pub window: Window,
    pub status: RunStatus,
    /// Rows the window's partition holds now (0 when it failed: nothing was written).
    pub rows: u64,
    pub pages: u64,
    /// Requests sent, retries included.
    pub requests: u64,
    pub retries: u64,
    /// Declared fields' values that did not convert (NULL in their column).
    #[serde(default)]
    pub bad_values: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bad_example: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `user` or `external` for a failure (whose fault).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// The snapshot that replaced the partition (none when nothing changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<i64>,
}

/// A window that failed and has not succeeded since.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedWindow {
    pub window: Window,
    pub error: String,
    pub failures: u32,
    pub last_try: DateTime<Utc>,
}

/// `<data>/pulls/<name>.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PullState {
    #[serde(default)]
    pub format: u32,
    /// The scheduler's cursor: the start of the first window it has not pulled yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_start: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<WindowRun>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ok: Option<WindowRun>,
    #[serde(default)]
    pub failed: Vec<FailedWindow>,
    #[serde(default)]
    pub windows_ok: u64,
    #[serde(default)]
    pub windows_failed: u64,
}

impl PullState {
    /// Records a window's outcome: the last run, the failed list, the counts.
    pub fn record(&mut self, run: WindowRun) {
        let window = run.window;
        match run.status {
            RunStatus::Ok => {
                self.failed.retain(|f| f.window != window);
                self.windows_ok += 1;
                self.last_ok = Some(run.clone());
            }
            RunStatus::Failed => {
                self.windows_failed += 1;
                let error = run.error.clone().unwrap_or_default();
                match self.failed.iter_mut().find(|f| f.window == window) {
                    Some(f) => {
                        f.failures += 1;
                        f.error = error;
                        f.last_try = run.finished_at;
                    }
                    None => {
                        self.failed.push(FailedWindow {
                            window,
                            error,
                            failures: 1,
                            last_try: run.finished_at,
                        });
                        self.failed.sort_by_key(|f| f.window);
                        if self.failed.len() > MAX_FAILED {
                            let gone = self.failed.remove(0);
                            tracing::warn!(window = %gone.window, "more than {MAX_FAILED} failed windows: the oldest is no longer retried");
                        }
                    }
                }
            }
        }
        self.last = Some(run);
    }
}

/// `<data>/pulls/`
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("pulls")
}

/// `<data>/pulls/<name>.json`
pub fn path(data_dir: &Path, name: &str) -> PathBuf {
    dir(data_dir).join(format!("{name}.json"))
}

/// The pull's state; the empty state when it never ran.
pub fn load(data_dir: &Path, name: &str) -> Result<PullState> {
    let path = path(data_dir, name);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(PullState::default()),
        Err(e) => return Err(Error::state(format!("reading {}", path.display()), e)),
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::state(
            format!("reading {}", path.display()),
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })
}

pub fn save(data_dir: &Path, name: &str, state: &PullState) -> Result<()> {
    let path = path(data_dir, name);
    let dir = dir(data_dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::state(format!("creating {}", dir.display()), e))?;
    let mut state = state.clone();
    state.format = FORMAT;
    let bytes = serde_json::to_vec_pretty(&state)
        .map_err(|e| Error::state("encoding the pull state", std::io::Error::other(e)))?;
    strata_core::fsutil::replace_file(&path, &bytes)
        .map_err(|e| Error::state(format!("writing {}", path.display()), e))
}

/// The pull's lock, held while a process runs it (released on drop).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Takes `<data>/pulls/<name>.lock`, or [`Error::Busy`] when another process holds it.
    pub fn try_acquire(data_dir: &Path, name: &str) -> Result<Lock> {
        let dir = dir(data_dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::state(format!("creating {}", dir.display()), e))?;
        let path = dir.join(format!("{name}.lock"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::state(format!("opening {}", path.display()), e))?;
        match file.try_lock() {
            Ok(()) => Ok(Lock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(Error::Busy(format!(
                "pull {name} is running in another process ({} is locked): wait for it, or stop it",
                path.display()
            ))),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(Error::state(format!("locking {}", path.display()), e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(w: &Window, status: RunStatus, error: Option<&str>) -> WindowRun {
        WindowRun {
            window: *w,
            status,
            rows: 3,
            pages: 1,
            requests: 1,
            retries: 0,
            bad_values: 0,
            bad_example: None,
            error: error.map(str::to_string),
            fault: None,
            started_at: w.end,
            finished_at: w.end,
            snapshot_id: None,
        }
    }

    #[test]
    fn failures_are_kept_until_the_window_succeeds_and_the_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let w1 = Window::parse("2026-12-06T00:00:00Z", "2026-12-06T01:00:00Z").unwrap();
        let w2 = Window::parse("2026-12-06T01:00:00Z", "2026-12-06T02:00:00Z").unwrap();
        let mut s = load(dir.path(), "orders").unwrap();
        assert_eq!(s, PullState::default());
        s.record(run(&w2, RunStatus::Failed, Some("HTTP 500")));
        s.record(run(&w1, RunStatus::Failed, Some("timed out")));
        s.record(run(&w1, RunStatus::Failed, Some("HTTP 503")));
        assert_eq!(s.failed.len(), 2);
        assert_eq!((s.failed[0].window, s.failed[0].failures), (w1, 2));
        assert_eq!(s.failed[0].error, "HTTP 503");
        s.record(run(&w1, RunStatus::Ok, None));
        assert_eq!(s.failed.len(), 1);
        assert_eq!(s.failed[0].window, w2);
        assert_eq!((s.windows_ok, s.windows_failed), (1, 3));
        s.next_start = Some(w2.end);
        save(dir.path(), "orders", &s).unwrap();
        let back = load(dir.path(), "orders").unwrap();
        assert_eq!(back.format, FORMAT);
        assert_eq!(back.failed, s.failed);
        assert_eq!(back.last, s.last);
        assert_eq!(back.next_start, s.next_start);
    }

    #[test]
    fn one_process_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let held = Lock::try_acquire(dir.path(), "orders").unwrap();
        let err = Lock::try_acquire(dir.path(), "orders").unwrap_err();
        assert!(
            err.to_string().contains("running in another process"),
            "{err}"
        );
        drop(held);
        Lock::try_acquire(dir.path(), "orders").unwrap();
    }
}
