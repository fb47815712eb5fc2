//! Compacts the batches a hash join buffers on its build side.
//!
//! DataFusion's hash aggregate emits its result as zero-copy slices of one large batch, and a
//! hash join charges every buffered build-side batch its *whole* underlying buffers
//! (`get_record_batch_memory_size` deduplicates buffers only within one batch). A build side of
//! n slices over S bytes is charged n × S, and since the build side cannot spill the query dies
//! with "resources exhausted" while holding a fraction of the pool: `ads_sample_ctr` (3.8M
//! impressions grouped by user and post, joined on the same keys) was charged 10.6 GB for a few
//! hundred MB. Upstream tracks this as apache/datafusion#22526.
//!
//! [`CompactJoinBuildSide`] puts a [`CompactExec`] under the build side of every hash join (and
//! the buffered side of nested-loop and cross joins). It passes batches through unchanged
//! unless a column holds far more buffer than its rows use, and copies only those columns into
//! buffers of their own, so what the pool is charged is what the batch keeps alive.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use arrow::array::{make_array, Array, ArrayRef, AsArray, MutableArrayData, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::CardinalityEffect;
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterDescription, FilterPushdownPhase, FilterPushdownPropagation,
};
use datafusion::physical_plan::joins::{CrossJoinExec, HashJoinExec, NestedLoopJoinExec};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
    SendableRecordBatchStream, Statistics,
};
use futures::StreamExt;

/// A column is copied when its buffers exceed what its rows need by this factor…
const WASTE_FACTOR: usize = 2;
/// …and by at least this many bytes (small batches are not worth a copy).
const MIN_WASTE_BYTES: usize = 1 << 20;

/// Physical optimizer rule: a [`CompactExec`] under each join's buffered side.
#[derive(Debug, Default)]
pub struct CompactJoinBuildSide;

impl PhysicalOptimizerRule for CompactJoinBuildSide {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let any = node.as_any();
            let buffered = any.is::<HashJoinExec>()
                || any.is::<NestedLoopJoinExec>()
                || any.is::<CrossJoinExec>();
            let children = node.children();
            if !buffered || children.len() != 2 || children[0].as_any().is::<CompactExec>() {
                return Ok(Transformed::no(node));
            }
            let left: Arc<dyn ExecutionPlan> = Arc::new(CompactExec::new(children[0].clone()));
            let right = children[1].clone();
            Ok(Transformed::yes(node.with_new_children(vec![left, right])?))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "CompactJoinBuildSide"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Passes batches through, copying columns that are small slices of large buffers.
#[derive(Debug)]
pub struct CompactExec {
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl CompactExec {
    pub fn new(input: Arc<dyn ExecutionPlan>) -> CompactExec {
        let properties = Arc::new(PlanProperties::new(
            input.equivalence_properties().clone(),
            input.output_partitioning().clone(),
            input.pipeline_behavior(),
            input.boundedness(),
        ));
        CompactExec {
            input,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

impl DisplayAs for CompactExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "CompactExec")
    }
}

impl ExecutionPlan for CompactExec {
    fn name(&self) -> &str {
        "CompactExec"
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
        Ok(Arc::new(CompactExec::new(children.swap_remove(0))))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let schema: SchemaRef = self.input.schema();
        let metrics = BaselineMetrics::new(&self.metrics, partition);
        let input = self.input.execute(partition, context)?;
        let stream = input.map(move |batch| {
            let timer = metrics.elapsed_compute().timer();
            let out = batch.and_then(|b| compact(b).map_err(DataFusionError::from));
            timer.done();
            if let Ok(b) = &out {
                metrics.record_output(b.num_rows());
            }
            out
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn partition_statistics(&self, partition: Option<usize>) -> Result<Statistics> {
        self.input.partition_statistics(partition)
    }

    fn cardinality_effect(&self) -> CardinalityEffect {
        CardinalityEffect::Equal
    }

    fn gather_filters_for_pushdown(
        &self,
        _phase: FilterPushdownPhase,
        parent_filters: Vec<Arc<dyn PhysicalExpr>>,
        _config: &ConfigOptions,
    ) -> Result<FilterDescription> {
        FilterDescription::from_children(parent_filters, &self.children())
    }

    fn handle_child_pushdown_result(
        &self,
        _phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        _config: &ConfigOptions,
    ) -> Result<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        Ok(FilterPushdownPropagation::if_all(child_pushdown_result))
    }
}

/// `batch` with every wasteful column copied into buffers of its own.
pub fn compact(batch: RecordBatch) -> Result<RecordBatch, arrow::error::ArrowError> {
    if !batch.columns().iter().any(|c| wasteful(c.as_ref())) {
        return Ok(batch);
    }
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| {
            if wasteful(c.as_ref()) {
                copy(c)
            } else {
                c.clone()
            }
        })
        .collect();
    RecordBatch::try_new(batch.schema(), columns)
}

/// Bytes the array's rows need if it owned exactly its data, when that can be told.
fn needed_bytes(array: &dyn Array) -> Option<usize> {
    match array.data_type() {
        DataType::Utf8View => {
            let a = array.as_string_view();
            Some(a.len() * 16 + a.total_buffer_bytes_used() + a.len().div_ceil(8))
        }
        DataType::BinaryView => {
            let a = array.as_binary_view();
            Some(a.len() * 16 + a.total_buffer_bytes_used() + a.len().div_ceil(8))
        }
        _ => array.to_data().get_slice_memory_size().ok(),
    }
}

fn wasteful(array: &dyn Array) -> bool {
    let held = array.get_buffer_memory_size();
    needed_bytes(array).is_some_and(|needed| {
        held > needed.saturating_mul(WASTE_FACTOR) && held - needed > MIN_WASTE_BYTES
    })
}

fn copy(array: &ArrayRef) -> ArrayRef {
    match array.data_type() {
        DataType::Utf8View => Arc::new(array.as_string_view().gc()),
        DataType::BinaryView => Arc::new(array.as_binary_view().gc()),
        _ => {
            let data = array.to_data();
            let mut copy = MutableArrayData::new(vec![&data], false, data.len());
            copy.extend(0, 0, data.len());
            make_array(copy.freeze())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray, StringViewArray};

    fn held(batch: &RecordBatch) -> usize {
        datafusion::common::utils::memory::get_record_batch_memory_size(batch)
    }

    #[test]
    fn slices_of_a_large_batch_are_charged_their_own_size_after_compaction() {
        let n = 1_000_000;
        let ids = Int64Array::from_iter_values(0..n as i64);
        let names = StringArray::from_iter_values((0..n).map(|i| format!("user-{i:08}")));
        let views = StringViewArray::from_iter_values((0..n).map(|i| format!("post-name-{i:012}")));
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("id", DataType::Int64, false),
            arrow::datatypes::Field::new("name", DataType::Utf8, false),
            arrow::datatypes::Field::new("view", DataType::Utf8View, false),
        ]));
        let big = RecordBatch::try_new(
            schema,
            vec![Arc::new(ids), Arc::new(names), Arc::new(views)],
        )
        .unwrap();
        let slice = big.slice(10_000, 8192);
        assert!(
            held(&slice) >= held(&big) / 2,
            "a slice is charged the parent"
        );

        let compacted = compact(slice.clone()).unwrap();
        assert_eq!(compacted, slice, "same rows and values");
        assert!(
            held(&compacted) * 50 < held(&big),
            "charged {} of the parent's {}",
            held(&compacted),
            held(&big)
        );
        let whole = compact(big.clone()).unwrap();
        assert!(
            whole.column(0).to_data().buffers()[0].as_ptr()
                == big.column(0).to_data().buffers()[0].as_ptr(),
            "a batch that owns its buffers passes through uncopied"
        );
    }
}
