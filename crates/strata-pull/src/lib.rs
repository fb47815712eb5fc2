//! Scheduled HTTP pulls (`[[pulls]]`): third-party APIs fetched window by window into lake
//! tables, each window's partition replaced in one Iceberg commit so a retried or re-run
//! window never duplicates and a failed one writes nothing (ADR 0052, docs/pulls.md).
//!
//! Where things live:
//! - `config.rs`: `[[pulls]]` as the user writes it, checked offline (`strata check`)
//! - `pull.rs`: an entry compiled for running (schedule, templates, paths, table)
//! - `window.rs`: windows from the cron schedule, backfill ranges, times as users write them
//! - `template.rs`: `{start}`/`{end}`/`{ds}` and `${env:NAME}` in URLs and headers
//! - `jsonpath.rs`: the small JSON path for records, next links, cursors and fields
//! - `http.rs`: rate limit, retries with backoff, `Retry-After`, the `Link` header
//! - `page.rs`: one window's pages (next link, cursor, page number)
//! - `rows.rs`: records → Arrow rows (window columns, typed fields, JSON text)
//! - `table.rs`: the table created / given new columns, the window's partition overwrite
//! - `state.rs`: `<data>/pulls/<name>.json` and the per-pull lock
//! - `run.rs`: one window end to end, `strata pulls run`'s windows, the scheduler's pass
//! - `schedule.rs`: the loop `strata serve` runs

pub mod config;
pub mod error;
pub mod http;
pub mod jsonpath;
pub mod page;
pub mod pull;
pub mod rows;
pub mod run;
pub mod schedule;
pub mod state;
pub mod table;
pub mod template;
pub mod window;

pub use config::{validate_list, PullConfig};
pub use error::{Error, Result};
pub use pull::{compile_all, Pull};
pub use run::{next_due, windows_for, Runner};
pub use state::{PullState, RunStatus, WindowRun};
pub use window::{parse_time, Window};
