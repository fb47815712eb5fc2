//! The first K rows of each window partition, without sorting all of them.
//!
//! `ROW_NUMBER() OVER (PARTITION BY p ORDER BY o) … QUALIFY rn <= K` (top-K per key: recall
//! pools, latest N per user) plans in DataFusion 53 as a filter over a window over a full sort
//! of the input by `(p, o)`. `ads_recall_u2u_cf` sorts every co-interaction pair of the day that
//! way to keep 20 per user; at 1M users that sort was most of the model's time (a third of its
//! CPU in the sort comparator alone).
//!
//! [`PartitionedTopK`] replaces that sort with a [`PartitionedTopKExec`]: one bounded heap of
//! the K best rows per partition key, fed a batch at a time, the rows that enter a heap copied
//! out of their batch (so memory follows what is kept, not what was read), and at the end the
//! kept rows sorted by the sort's own ordering. The window and the filter above it stay as they
//! were and see, per key, exactly the rows they would have numbered 1..K. The rule applies only
//! when every window function there is `row_number` (any other would see fewer rows) and the
//! filter bounds one of them with `<=`, `<` or `=` against a constant.

use std::any::Any;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{interleave_record_batch, take_record_batch};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::row::{RowConverter, SortField};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{HashMap, ScalarValue};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
use datafusion::physical_expr::utils::split_conjunction;
use datafusion::physical_expr::window::{StandardWindowExpr, WindowExpr};
use datafusion::physical_expr::{LexOrdering, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::windows::{BoundedWindowAggExec, WindowUDFExpr};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
    SendableRecordBatchStream,
};
use futures::{StreamExt, TryStreamExt};

/// Physical optimizer rule: a [`PartitionedTopKExec`] instead of the sort under a
/// `row_number` window whose result is filtered to the first K rows.
#[derive(Debug, Default)]
pub struct PartitionedTopK;

impl PhysicalOptimizerRule for PartitionedTopK {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| match replacement(&node)? {
            Some(rewritten) => Ok(Transformed::yes(rewritten)),
            None => Ok(Transformed::no(node)),
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "PartitionedTopK"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `node` with its sort replaced by the top-K node, when it is `Filter(rn <= K) →
/// [Projection] → BoundedWindowAgg(row_number…) → Sort(partition keys, order)`.
fn replacement(node: &Arc<dyn ExecutionPlan>) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(topk) = top_k_for(node) else {
        return Ok(None);
    };
    // The filter's input: the window, or a projection over it.
    let input = node.children()[0];
    let window = match input.as_any().downcast_ref::<ProjectionExec>() {
        Some(p) => p.input(),
        None => input,
    };
    let mut rebuilt = window.clone().with_new_children(vec![topk])?;
    if !Arc::ptr_eq(window, input) {
        rebuilt = input.clone().with_new_children(vec![rebuilt])?;
    }
    node.clone().with_new_children(vec![rebuilt]).map(Some)
}

/// The node that replaces the sort under `node` (see [`replacement`]).
fn top_k_for(node: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>> {
    let filter = node.as_any().downcast_ref::<FilterExec>()?;
    let projection = filter.input().as_any().downcast_ref::<ProjectionExec>();
    let below = match projection {
        Some(p) => p.input(),
        None => filter.input(),
    };
    let window = below.as_any().downcast_ref::<BoundedWindowAggExec>()?;
    let sort = window.input().as_any().downcast_ref::<SortExec>()?;
    if sort.fetch().is_some()
        || !(sort.preserve_partitioning()
            || sort.input().output_partitioning().partition_count() == 1)
    {
        return None;
    }
    let k = row_number_bound(filter.predicate(), projection, window)?;
    let partition_by = window.window_expr().first()?.partition_by().to_vec();
    let ordering = sort.expr().clone();
    // Grouping by the partition keys is only right when the sort starts with them.
    if partition_by.is_empty()
        || ordering.len() < partition_by.len()
        || !ordering
            .iter()
            .take(partition_by.len())
            .all(|s| partition_by.iter().any(|p| p.as_ref() == s.expr.as_ref()))
    {
        return None;
    }
    Some(Arc::new(PartitionedTopKExec {
        input: sort.input().clone(),
        ordering,
        partition_by,
        k,
        properties: sort.properties().clone(),
        metrics: ExecutionPlanMetricsSet::new(),
    }))
}

/// K when every window function of `window` is `row_number` and `predicate` (over the
/// projection's output when there is one) bounds one of them to at most K.
fn row_number_bound(
    predicate: &Arc<dyn PhysicalExpr>,
    projection: Option<&ProjectionExec>,
    window: &BoundedWindowAggExec,
) -> Option<usize> {
    let exprs = window.window_expr();
    if exprs.is_empty() || !exprs.iter().all(is_row_number) {
        return None;
    }
    let first = window.input().schema().fields().len();
    let numbers = first..first + exprs.len();
    let is_number = |index: usize| match projection {
        None => numbers.contains(&index),
        Some(p) => p.expr().get(index).is_some_and(|e| {
            e.expr
                .as_any()
                .downcast_ref::<Column>()
                .is_some_and(|c| numbers.contains(&c.index()))
        }),
    };
    split_conjunction(predicate)
        .into_iter()
        .filter_map(|c| bound(c, &is_number))
        .min()
}

fn is_row_number(expr: &Arc<dyn WindowExpr>) -> bool {
    expr.as_any()
        .downcast_ref::<StandardWindowExpr>()
        .and_then(|s| {
            s.get_standard_func_expr()
                .as_any()
                .downcast_ref::<WindowUDFExpr>()
        })
        .is_some_and(|u| u.fun().name() == "row_number")
}

/// `rn <= K`, `rn < K + 1`, `rn = K` (or mirrored) on a row-number column: K.
fn bound(expr: &Arc<dyn PhysicalExpr>, is_number: &dyn Fn(usize) -> bool) -> Option<usize> {
    let b = expr.as_any().downcast_ref::<BinaryExpr>()?;
    let column = |e: &Arc<dyn PhysicalExpr>| {
        e.as_any()
            .downcast_ref::<Column>()
            .is_some_and(|c| is_number(c.index()))
    };
    let constant = |e: &Arc<dyn PhysicalExpr>| {
        let v = e.as_any().downcast_ref::<Literal>()?.value();
        match v.cast_to(&DataType::Int64).ok()? {
            ScalarValue::Int64(Some(n)) => Some(n),
            _ => None,
        }
    };
    let (op, n) = if column(b.left()) {
        (*b.op(), constant(b.right())?)
    } else if column(b.right()) {
        (b.op().swap()?, constant(b.left())?)
    } else {
        return None;
    };
    let k = match op {
        Operator::LtEq | Operator::Eq => n,
        Operator::Lt => n - 1,
        _ => return None,
    };
    usize::try_from(k).ok().filter(|k| *k >= 1)
}

/// Per partition key the first `k` rows by `ordering` (which starts with the keys), output
/// sorted by `ordering` — what the replaced sort produced, minus rows numbered above `k`.
#[derive(Debug)]
pub struct PartitionedTopKExec {
    input: Arc<dyn ExecutionPlan>,
    ordering: LexOrdering,
    partition_by: Vec<Arc<dyn PhysicalExpr>>,
    k: usize,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl DisplayAs for PartitionedTopKExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let keys: Vec<String> = self.partition_by.iter().map(|e| e.to_string()).collect();
        write!(
            f,
            "PartitionedTopKExec: k={}, partition_by=[{}], expr=[{}]",
            self.k,
            keys.join(", "),
            self.ordering
        )
    }
}

impl ExecutionPlan for PartitionedTopKExec {
    fn name(&self) -> &str {
        "PartitionedTopKExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(PartitionedTopKExec {
            input: children.swap_remove(0),
            ordering: self.ordering.clone(),
            partition_by: self.partition_by.clone(),
            k: self.k,
            properties: self.properties.clone(),
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let schema = self.schema();
        let input = self.input.execute(partition, context.clone())?;
        let reservation = MemoryConsumer::new(format!("PartitionedTopKExec[{partition}]"))
            .register(context.memory_pool());
        let state = TopK::new(
            &schema,
            &self.ordering,
            &self.partition_by,
            self.k,
            reservation,
            context.session_config().batch_size(),
            BaselineMetrics::new(&self.metrics, partition),
        )?;
        let out = futures::stream::once(state.run(input))
            .map_ok(|batches| futures::stream::iter(batches.into_iter().map(Ok)))
            .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, out)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// What a key's map slot and empty heap take besides the key bytes.
const GROUP_OVERHEAD: usize = std::mem::size_of::<BinaryHeap<Kept>>() + 24;

/// A kept row: its sort key (row format, compares like the ordering) and where it is stored.
struct Kept {
    key: Box<[u8]>,
    batch: u32,
    row: u32,
}

impl PartialEq for Kept {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for Kept {}

impl PartialOrd for Kept {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Kept {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key)
    }
}

/// One partition's state: a max-heap of at most `k` rows per key, and the rows they refer to.
struct TopK {
    ordering: Vec<Arc<dyn PhysicalExpr>>,
    partition_by: Vec<Arc<dyn PhysicalExpr>>,
    keys: RowConverter,
    groups_of: RowConverter,
    k: usize,
    groups: HashMap<Box<[u8]>, BinaryHeap<Kept>>,
    /// Rows that entered a heap, copied out of their input batch; some since evicted.
    stored: Vec<RecordBatch>,
    stored_rows: usize,
    stored_bytes: usize,
    /// Rows in the heaps, and the bytes their entries take.
    live: usize,
    heap_bytes: usize,
    reservation: MemoryReservation,
    batch_size: usize,
    metrics: BaselineMetrics,
}

impl TopK {
    fn new(
        schema: &SchemaRef,
        ordering: &LexOrdering,
        partition_by: &[Arc<dyn PhysicalExpr>],
        k: usize,
        reservation: MemoryReservation,
        batch_size: usize,
        metrics: BaselineMetrics,
    ) -> Result<TopK> {
        let sort_fields = ordering
            .iter()
            .map(|s| {
                Ok(SortField::new_with_options(
                    s.expr.data_type(schema)?,
                    s.options,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let group_fields = partition_by
            .iter()
            .map(|e| Ok(SortField::new(e.data_type(schema)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(TopK {
            ordering: ordering.iter().map(|s| s.expr.clone()).collect(),
            partition_by: partition_by.to_vec(),
            keys: RowConverter::new(sort_fields)?,
            groups_of: RowConverter::new(group_fields)?,
            k,
            groups: HashMap::default(),
            stored: Vec::new(),
            stored_rows: 0,
            stored_bytes: 0,
            live: 0,
            heap_bytes: 0,
            reservation,
            batch_size: batch_size.max(1),
            metrics,
        })
    }

    async fn run(mut self, mut input: SendableRecordBatchStream) -> Result<Vec<RecordBatch>> {
        let compute = self.metrics.elapsed_compute().clone();
        while let Some(batch) = input.next().await {
            let batch = batch?;
            let timer = compute.timer();
            self.push(&batch)?;
            timer.done();
        }
        let timer = compute.timer();
        let out = self.finish()?;
        timer.done();
        Ok(out)
    }

    fn push(&mut self, batch: &RecordBatch) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let keys = self
            .keys
            .convert_columns(&evaluate(&self.ordering, batch)?)?;
        let groups = self
            .groups_of
            .convert_columns(&evaluate(&self.partition_by, batch)?)?;
        let store = u32::try_from(self.stored.len())
            .map_err(|_| DataFusionError::Internal("too many stored batches".to_string()))?;
        let mut taken: Vec<u32> = Vec::new();
        for row in 0..n {
            let key = keys.row(row);
            let group = groups.row(row);
            let heap_bytes = &mut self.heap_bytes;
            let heap = self.groups.entry_ref(group.as_ref()).or_insert_with(|| {
                *heap_bytes += group.as_ref().len() + GROUP_OVERHEAD;
                BinaryHeap::new()
            });
            if heap.len() >= self.k {
                let worst = heap.peek().map(|w| &w.key[..]);
                if worst.is_some_and(|w| key.as_ref() >= w) {
                    continue;
                }
                if let Some(evicted) = heap.pop() {
                    self.live -= 1;
                    self.heap_bytes -= evicted.key.len() + std::mem::size_of::<Kept>();
                }
            }
            self.heap_bytes += key.as_ref().len() + std::mem::size_of::<Kept>();
            heap.push(Kept {
                key: key.as_ref().into(),
                batch: store,
                row: taken.len() as u32,
            });
            self.live += 1;
            taken.push(row as u32);
        }
        if !taken.is_empty() {
            let kept = take_record_batch(batch, &UInt32Array::from(taken))?;
            self.stored_rows += kept.num_rows();
            self.stored_bytes += kept.get_array_memory_size();
            self.stored.push(kept);
        }
        // Evicted rows stay in their stored batch until the dead ones outnumber the live.
        if self.stored_rows > 2 * self.live && self.stored_rows > self.batch_size {
            self.compact()?;
        }
        self.reservation
            .try_resize(self.stored_bytes + self.heap_bytes)
            .map_err(|e| {
                e.context("PartitionedTopKExec holds the first K rows of every key in memory")
            })
    }

    /// Copies the live rows into one batch and points the heaps at it.
    fn compact(&mut self) -> Result<()> {
        let mut indices = Vec::with_capacity(self.live);
        for heap in self.groups.values_mut() {
            let entries = std::mem::take(heap).into_vec();
            let mut rebuilt = Vec::with_capacity(entries.len());
            for mut e in entries {
                indices.push((e.batch as usize, e.row as usize));
                e.batch = 0;
                e.row = (indices.len() - 1) as u32;
                rebuilt.push(e);
            }
            *heap = BinaryHeap::from(rebuilt);
        }
        let refs: Vec<&RecordBatch> = self.stored.iter().collect();
        let one = interleave_record_batch(&refs, &indices)?;
        self.stored_rows = one.num_rows();
        self.stored_bytes = one.get_array_memory_size();
        self.stored = vec![one];
        Ok(())
    }

    /// Every kept row, sorted by the ordering (partition keys first), in batches.
    fn finish(mut self) -> Result<Vec<RecordBatch>> {
        let mut all: Vec<Kept> = std::mem::take(&mut self.groups)
            .into_values()
            .flat_map(BinaryHeap::into_vec)
            .collect();
        all.sort_unstable();
        let refs: Vec<&RecordBatch> = self.stored.iter().collect();
        let mut out = Vec::with_capacity(all.len().div_ceil(self.batch_size));
        for chunk in all.chunks(self.batch_size) {
            let indices: Vec<(usize, usize)> = chunk
                .iter()
                .map(|e| (e.batch as usize, e.row as usize))
                .collect();
            let batch = interleave_record_batch(&refs, &indices)?;
            self.metrics.record_output(batch.num_rows());
            out.push(batch);
        }
        Ok(out)
    }
}

fn evaluate(exprs: &[Arc<dyn PhysicalExpr>], batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
    exprs
        .iter()
        .map(|e| e.evaluate(batch)?.into_array(batch.num_rows()))
        .collect()
}
