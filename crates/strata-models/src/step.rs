//! Training as a warehouse DAG step: `models.<name>`, after the models that write the tables
//! it reads (the seed's 05:00 training right after the 04:00 samples). A failed training is a
//! failed step: recorded, alerted on; a version kept back by the gate is not a failure (it is
//! recorded as a candidate and alerted on).

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::NaiveDate;
use strata_table::Lake;
use strata_warehouse::{Project, Step, StepError};

use crate::spec::ModelSpec;
use crate::train::{train, TrainOptions};

#[derive(Debug)]
pub struct TrainStep {
    name: String,
    spec: ModelSpec,
    options: TrainOptions,
    after: BTreeSet<String>,
}

#[async_trait]
impl Step for TrainStep {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &str {
        "model_training"
    }

    fn after(&self) -> &BTreeSet<String> {
        &self.after
    }

    fn describe(&self) -> String {
        format!(
            "train model {} ({}, from {}) and promote it if validation allows",
            self.spec.name,
            self.spec.kind.as_str(),
            self.spec.source.describe()
        )
    }

    async fn run(&self, lake: &Lake, date: NaiveDate) -> Result<u64, StepError> {
        let options = TrainOptions {
            date: Some(date),
            ..self.options.clone()
        };
        let name = self.spec.name.clone();
        let progress: crate::train::ProgressFn =
            Arc::new(move |line: &str| tracing::info!(model = %name, "{line}"));
        match train(lake, &self.spec, &options, progress).await {
            Ok(outcome) => {
                tracing::info!(
                    model = %outcome.name,
                    version = outcome.version,
                    verdict = outcome.verdict.as_str(),
                    reason = %outcome.reason,
                    "model trained"
                );
                Ok(outcome.train_rows)
            }
            Err(crate::Error::NotEnoughData(why)) => {
                tracing::warn!(model = %self.spec.name, %date, reason = %why, "model not trained: not enough data yet");
                Ok(0)
            }
            Err(e) => Err(StepError {
                message: e.to_string(),
                retryable: e.retryable(),
            }),
        }
    }
}

/// The training steps of `models` in `project`: each after the models that write the tables
/// it reads (or those its `after` names).
pub fn train_steps(
    project: &Project,
    models: &[ModelSpec],
    options: &TrainOptions,
) -> Result<Vec<Arc<dyn Step>>, String> {
    let mut steps: Vec<Arc<dyn Step>> = Vec::new();
    let mut problems = Vec::new();
    for spec in models {
        let after: BTreeSet<String> = match &spec.after {
            Some(names) => names.iter().cloned().collect(),
            None => match spec.reads() {
                Ok(reads) => project.writers_of(&reads),
                Err(e) => {
                    problems.push(format!("{}: {e}", spec.file));
                    continue;
                }
            },
        };
        steps.push(Arc::new(TrainStep {
            name: format!("models.{}", spec.name),
            spec: spec.clone(),
            options: options.clone(),
            after,
        }));
    }
    if problems.is_empty() {
        Ok(steps)
    } else {
        Err(problems.join("\n"))
    }
}
