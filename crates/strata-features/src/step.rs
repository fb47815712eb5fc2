//! A view's sync as a warehouse DAG step: `features.<view>`, after the model that writes the
//! view's source (the seed's 04:30 sync right after the ADS models). A failed sync is a failed
//! step: retried when a retry can help (the store was down), recorded, alerted on.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::NaiveDate;
use std::path::PathBuf;

use strata_online::{OnlineConfig, OnlineStore};
use strata_table::Lake;
use strata_warehouse::{Project, Step, StepError};

use crate::materialize::{materialize, SyncOptions};
use crate::view::FeatureView;

/// The store a step writes to: open already (inside `strata serve`), or opened when the step
/// runs (so `strata dag plan` needs no reachable Redis).
#[derive(Debug, Clone)]
pub enum StoreRef {
    Open(OnlineStore),
    Config {
        config: OnlineConfig,
        data_dir: PathBuf,
    },
}

impl StoreRef {
    pub async fn get(&self) -> crate::Result<OnlineStore> {
        match self {
            StoreRef::Open(store) => Ok(store.clone()),
            StoreRef::Config { config, data_dir } => Ok(OnlineStore::open(config, data_dir).await?),
        }
    }
}

#[derive(Debug)]
pub struct SyncStep {
    name: String,
    view: FeatureView,
    store: StoreRef,
    options: SyncOptions,
    after: BTreeSet<String>,
}

#[async_trait]
impl Step for SyncStep {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &str {
        "feature_sync"
    }

    fn after(&self) -> &BTreeSet<String> {
        &self.after
    }

    fn describe(&self) -> String {
        format!(
            "sync feature view {} ({}, entity {}) to the online store",
            self.view.name,
            self.view.source.describe(),
            self.view.entity.join(", ")
        )
    }

    async fn run(&self, lake: &Lake, _date: NaiveDate) -> Result<u64, StepError> {
        let failed = |e: crate::Error| StepError {
            message: e.to_string(),
            retryable: e.retryable(),
        };
        let store = self.store.get().await.map_err(failed)?;
        materialize(lake, &store, &self.view, &self.options)
            .await
            .map(|r| r.written)
            .map_err(failed)
    }
}

/// The sync steps of `views` (online ones) in `project`: each after the models that write
/// the tables it reads (or the models its `after` names).
pub fn sync_steps(
    project: &Project,
    views: &[FeatureView],
    store: &StoreRef,
    options: &SyncOptions,
) -> Result<Vec<Arc<dyn Step>>, String> {
    let mut steps: Vec<Arc<dyn Step>> = Vec::new();
    let mut problems = Vec::new();
    // Stream views have no sync: the realtime consumer keeps them current.
    for view in views.iter().filter(|v| v.online && v.stream().is_none()) {
        let after: BTreeSet<String> = match &view.after {
            Some(names) => names.iter().cloned().collect(),
            None => match view.reads() {
                Ok(reads) => project.writers_of(&reads),
                Err(e) => {
                    problems.push(e.to_string());
                    continue;
                }
            },
        };
        steps.push(Arc::new(SyncStep {
            name: format!("features.{}", view.name),
            view: view.clone(),
            store: store.clone(),
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
