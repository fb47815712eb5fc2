//! A common table expression read more than once is computed once.
//!
//! DataFusion inlines every CTE reference, so `ads_recall_u2u_cf` — whose `ui` (distinct
//! user/post interactions over 30 days of `dwd_user_action`) feeds `post_users`, `kept` (read
//! twice, as `a` and `b`) and `n` (read twice) — scanned the detail table and ran the same
//! distinct aggregation six times. DuckDB and PostgreSQL materialize such a CTE.
//!
//! [`ShareRepeatedSubplans`] runs last. It fingerprints every subtree of the physical plan
//! (each operator's one-line display, which names its expressions, over its children's
//! fingerprints) and puts a [`SharedExec`] in place of each maximal subtree that occurs more
//! than once, is built on lake scans only (the one leaf whose display says exactly what it
//! reads: table, snapshot, projection, predicate) and does real work (an aggregate, a join
//! or a window). All occurrences share one state: the first partition to run computes every
//! partition of the subtree once, holding the batches under a reservation in the query's
//! memory pool; each occurrence then streams its partition from memory, and the last reader
//! of a partition takes it, so its memory goes with its stream. If the results do not fit
//! the pool, nothing is held: each occurrence computes the subtree itself, as DataFusion
//! would have. A subtree showing a dynamic filter is never shared (the filter belongs to one
//! join).

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::config::ConfigOptions;
use datafusion::common::runtime::SpawnedTask;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::TaskContext;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    displayable, DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties,
    PlanProperties, SendableRecordBatchStream, Statistics,
};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::OnceCell;

use crate::scan::LakeScanExec;

/// Physical optimizer rule: one [`SharedExec`] state per repeated subtree. Runs last.
#[derive(Debug, Default)]
pub struct ShareRepeatedSubplans;

/// The fingerprints of a plan, mirroring its shape. `None`: not shareable, nor is any tree
/// holding it.
struct Prints {
    print: Option<String>,
    worth: bool,
    children: Vec<Prints>,
}

fn fingerprint(plan: &Arc<dyn ExecutionPlan>, counts: &mut HashMap<String, usize>) -> Prints {
    let children: Vec<Prints> = plan
        .children()
        .into_iter()
        .map(|c| fingerprint(c, counts))
        .collect();
    let line = displayable(plan.as_ref()).one_line().to_string();
    let leaf_ok = !children.is_empty() || plan.as_any().is::<LakeScanExec>();
    let print = (leaf_ok && !line.contains("DynamicFilter"))
        .then(|| {
            let mut print = line;
            for child in &children {
                print.push_str("\n(");
                print.push_str(child.print.as_deref()?);
                print.push(')');
            }
            Some(print)
        })
        .flatten();
    let name = plan.name();
    let worth = name.contains("Aggregate")
        || name.contains("Join")
        || name.contains("Window")
        || children.iter().any(|c| c.worth);
    if let Some(p) = &print {
        *counts.entry(p.clone()).or_default() += 1;
    }
    Prints {
        print,
        worth,
        children,
    }
}

impl ShareRepeatedSubplans {
    fn rewrite(
        plan: &Arc<dyn ExecutionPlan>,
        prints: &Prints,
        parent_count: usize,
        counts: &HashMap<String, usize>,
        shared: &mut HashMap<String, Arc<Shared>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let count = prints
            .print
            .as_ref()
            .and_then(|p| counts.get(p))
            .copied()
            .unwrap_or(1);
        let children = plan.children();
        let mut new_children = Vec::with_capacity(children.len());
        let mut changed = false;
        for (child, child_prints) in children.into_iter().zip(&prints.children) {
            let new = Self::rewrite(child, child_prints, count, counts, shared)?;
            changed |= !Arc::ptr_eq(&new, child);
            new_children.push(new);
        }
        let node = if changed {
            plan.clone().with_new_children(new_children)?
        } else {
            plan.clone()
        };
        // Maximal: an occurrence whose parent occurs as often is computed once with it.
        let (Some(print), true) = (
            &prints.print,
            count > 1 && count > parent_count && prints.worth,
        ) else {
            return Ok(node);
        };
        let state = shared
            .entry(print.clone())
            .or_insert_with(|| Arc::new(Shared::new(node.clone())))
            .clone();
        state.add_reader();
        Ok(Arc::new(SharedExec {
            state,
            own: Arc::default(),
        }))
    }
}

impl PhysicalOptimizerRule for ShareRepeatedSubplans {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut counts = HashMap::new();
        let prints = fingerprint(&plan, &mut counts);
        if counts.values().all(|&n| n < 2) {
            return Ok(plan);
        }
        let mut shared = HashMap::new();
        Self::rewrite(&plan, &prints, 1, &counts, &mut shared)
    }

    fn name(&self) -> &str {
        "ShareRepeatedSubplans"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// One repeated subtree and, once computed, its batches.
struct Shared {
    input: Arc<dyn ExecutionPlan>,
    /// Occurrences of the subtree in the plan.
    readers: Mutex<usize>,
    filled: OnceCell<Filled>,
}

enum Filled {
    /// Per partition: the batches, how many readers have yet to take them, and the
    /// reservation holding their bytes.
    Held(Mutex<Vec<Part>>),
    /// The results did not fit the pool: every occurrence computes them itself.
    TooBig,
}

struct Part {
    batches: Vec<RecordBatch>,
    left: usize,
    reservation: MemoryReservation,
}

impl Shared {
    fn new(input: Arc<dyn ExecutionPlan>) -> Self {
        Shared {
            input,
            readers: Mutex::new(0),
            filled: OnceCell::new(),
        }
    }

    fn add_reader(&self) {
        *self.readers.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    }

    fn partitions(&self) -> usize {
        self.input.output_partitioning().partition_count()
    }

    /// Every partition of the input, computed concurrently, each batch reserved.
    async fn fill(&self, context: Arc<TaskContext>) -> Result<Filled> {
        let readers = *self.readers.lock().unwrap_or_else(|e| e.into_inner());
        let consumer = MemoryConsumer::new(format!("SharedExec({})", self.input.name()))
            .register(context.memory_pool());
        let mut tasks = Vec::with_capacity(self.partitions());
        for p in 0..self.partitions() {
            let stream = self.input.execute(p, context.clone())?;
            let reservation = consumer.new_empty();
            tasks.push(SpawnedTask::spawn(async move {
                let batches: Vec<RecordBatch> = stream
                    .and_then(|b| {
                        let grown = reservation.try_grow(b.get_array_memory_size());
                        futures::future::ready(grown.map(|()| b))
                    })
                    .try_collect()
                    .await?;
                Ok::<_, DataFusionError>(Part {
                    batches,
                    left: readers,
                    reservation,
                })
            }));
        }
        let mut parts = Vec::with_capacity(tasks.len());
        for task in tasks {
            let joined = task
                .join_unwind()
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            match joined {
                Ok(part) => parts.push(part),
                Err(DataFusionError::ResourcesExhausted(_)) => return Ok(Filled::TooBig),
                Err(e) => return Err(e),
            }
        }
        Ok(Filled::Held(Mutex::new(parts)))
    }

    /// Partition `p` for one reader: from memory, or `None` when the results did not fit
    /// (or the plan runs a second time) and the reader must compute them itself.
    async fn read(
        self: Arc<Self>,
        p: usize,
        context: Arc<TaskContext>,
    ) -> Result<Option<SendableRecordBatchStream>> {
        let filled = self
            .filled
            .get_or_try_init(|| self.fill(context.clone()))
            .await?;
        let taken = match filled {
            Filled::TooBig => None,
            Filled::Held(parts) => {
                let mut parts = parts.lock().unwrap_or_else(|e| e.into_inner());
                match parts.get_mut(p) {
                    Some(part) if part.left > 0 => {
                        part.left -= 1;
                        if part.left == 0 {
                            let reservation = part.reservation.new_empty();
                            let reservation = std::mem::replace(&mut part.reservation, reservation);
                            Some((std::mem::take(&mut part.batches), Some(reservation)))
                        } else {
                            Some((part.batches.clone(), None))
                        }
                    }
                    _ => None,
                }
            }
        };
        let Some((batches, reservation)) = taken else {
            return Ok(None);
        };
        let stream = futures::stream::iter(batches.into_iter().map(Ok)).map(move |b| {
            // The last reader's share of the reservation lives as long as its stream.
            let _ = &reservation;
            b
        });
        Ok(Some(Box::pin(RecordBatchStreamAdapter::new(
            self.input.schema(),
            stream,
        ))))
    }
}

/// One occurrence of a shared subtree.
pub struct SharedExec {
    state: Arc<Shared>,
    /// This occurrence's own instance of the subtree, made when it has to compute it itself
    /// (operators such as `RepartitionExec` run once per instance).
    own: Arc<std::sync::OnceLock<Arc<dyn ExecutionPlan>>>,
}

impl SharedExec {
    fn own_input(&self) -> Result<Arc<dyn ExecutionPlan>> {
        if let Some(plan) = self.own.get() {
            return Ok(plan.clone());
        }
        let fresh = reset_plan_states(self.state.input.clone())?;
        Ok(self.own.get_or_init(|| fresh).clone())
    }
}

impl fmt::Debug for SharedExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedExec")
            .field("input", &self.state.input.name())
            .finish_non_exhaustive()
    }
}

impl DisplayAs for SharedExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let readers = *self.state.readers.lock().unwrap_or_else(|e| e.into_inner());
        write!(f, "SharedExec: readers={readers}")
    }
}

impl ExecutionPlan for SharedExec {
    fn name(&self) -> &str {
        "SharedExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.state.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.state.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = children.swap_remove(0);
        if Arc::ptr_eq(&input, &self.state.input) {
            return Ok(self);
        }
        // A changed input is no longer the shared one: this occurrence stands alone.
        Ok(input)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let state = self.state.clone();
        let own = SharedExec {
            state: self.state.clone(),
            own: self.own.clone(),
        };
        let read = async move {
            match state.read(partition, context.clone()).await? {
                Some(stream) => Ok(stream),
                None => own.own_input()?.execute(partition, context),
            }
        };
        let stream = futures::stream::once(read).try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            stream,
        )))
    }

    fn partition_statistics(&self, partition: Option<usize>) -> Result<Statistics> {
        self.state.input.partition_statistics(partition)
    }
}
