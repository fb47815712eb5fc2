//! Strata's warehouse: a folder of SQL models (`<layer>/<name>.sql`, one SELECT each) turned
//! into Iceberg tables layer by layer (ODS → DWD → DWS → ADS), run as a DAG for a date, with
//! data-quality checks and run history in the lake.
//!
//! - `project.rs`: loading and checking a project; dependencies inferred from the SQL; order
//! - `checks.rs`: the data-quality checks
//! - `run.rs`: materializing models and running the DAG (parallel, retries, deadlines)
//! - `step.rs`: DAG tasks that are not SQL models (feature syncs, training), run in order
//! - `backfill.rs`: a date range, resumable
//! - `audit.rs`: `audit.dag_runs`, `audit.model_runs`, `audit.dq_results`
//! - `schedule.rs`, `alert.rs`: the cron schedule inside `strata serve`, the input sentinel,
//!   webhook alerts and the daily summary

pub mod alert;
pub mod audit;
pub mod backfill;
pub mod checks;
pub mod config;
mod error;
pub mod project;
mod repeats;
pub mod run;
pub mod schedule;
pub mod step;

pub use error::{Error, Result};
pub use project::{Materialized, Model, ModelConfig, Project};
pub use run::{run, DagRun, ModelOutcome, ModelStatus, RunOptions};
pub use step::{Step, StepError, StepSource};
