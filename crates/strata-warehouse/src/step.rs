//! Steps: DAG tasks that are not SQL models — a feature view's sync to the online store, a
//! model training run. A step runs after the models it names, with the project's retries and
//! timeout; its outcome is a [`crate::ModelOutcome`] recorded in `audit.model_runs` like a
//! model's, so a failed step is a failed DAG run with the usual alerts.
//!
//! Crates above the warehouse implement [`Step`] (the warehouse knows nothing of features or
//! training) and attach their steps to a loaded project ([`crate::Project::attach_steps`]).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::NaiveDate;
use strata_table::Lake;

/// Why a step failed, and whether trying again can help (a store that was down: yes; a view
/// whose columns are gone: no).
#[derive(Debug, Clone)]
pub struct StepError {
    pub message: String,
    pub retryable: bool,
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

#[async_trait]
pub trait Step: Send + Sync + fmt::Debug {
    /// Unique among the project's models and steps, e.g. `features.user_features`.
    fn name(&self) -> &str;
    /// What kind of step it is, for plans and run history (e.g. `feature_sync`).
    fn kind(&self) -> &str;
    /// The models (by name) it runs after.
    fn after(&self) -> &BTreeSet<String>;
    /// One line for `strata dag plan`.
    fn describe(&self) -> String;
    /// Runs the step for `date`; the rows it wrote.
    async fn run(&self, lake: &Lake, date: NaiveDate) -> Result<u64, StepError>;
}

/// Steps for a loaded project (given to the scheduler inside `strata serve`, which reloads the
/// project before each run).
pub type StepSource =
    Arc<dyn Fn(&crate::Project) -> Result<Vec<Arc<dyn Step>>, String> + Send + Sync>;
