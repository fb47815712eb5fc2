//! Row-count estimates for Iceberg scans, so DataFusion's join selection can tell a dimension
//! from a fact table.
//!
//! iceberg-datafusion's `IcebergTableScan` reports no statistics, and without them DataFusion
//! keeps every hash join's left input as its build side. `dwd_user_action` (events LEFT JOIN
//! profiles) then built its hash table on the day's events: 7.2M rows and over a GB at 100k
//! users, growing with the event volume, where the 100k profiles would do — and a hash join's
//! build side cannot spill. [`ScanStatistics`] wraps each scan in a [`StatsExec`] that
//! reports the snapshot's `total-records` (and `total-files-size`) as inexact estimates; the
//! filters above the scan scale them down as they do for any source.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
    SendableRecordBatchStream, Statistics,
};
use iceberg_datafusion::physical_plan::IcebergTableScan;

/// Physical optimizer rule: a [`StatsExec`] over every Iceberg scan. Runs first, before join
/// selection reads the statistics.
#[derive(Debug, Default)]
pub struct ScanStatistics;

impl PhysicalOptimizerRule for ScanStatistics {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(scan) = node.as_any().downcast_ref::<IcebergTableScan>() else {
                return Ok(Transformed::no(node));
            };
            let table = scan.table().metadata();
            let snapshot = match scan.snapshot_id() {
                Some(id) => table.snapshot_by_id(id),
                None => table.current_snapshot(),
            };
            let summary = |key: &str| {
                snapshot
                    .and_then(|s| s.summary().additional_properties.get(key))
                    .and_then(|v| v.parse::<usize>().ok())
            };
            let rows = match snapshot {
                None => Some(0),
                Some(_) => summary("total-records"),
            };
            let Some(rows) = rows else {
                return Ok(Transformed::no(node));
            };
            let mut stats = Statistics::new_unknown(&node.schema());
            stats.num_rows = Precision::Inexact(rows);
            if let Some(bytes) = summary("total-files-size") {
                stats.total_byte_size = Precision::Inexact(bytes);
            }
            Ok(Transformed::yes(Arc::new(StatsExec { input: node, stats })))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "ScanStatistics"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Its input, reporting estimated statistics for it.
#[derive(Debug)]
pub struct StatsExec {
    input: Arc<dyn ExecutionPlan>,
    stats: Statistics,
}

impl DisplayAs for StatsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "StatsExec: rows={}", self.stats.num_rows)
    }
}

impl ExecutionPlan for StatsExec {
    fn name(&self) -> &str {
        "StatsExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
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
        Ok(Arc::new(StatsExec {
            input: children.swap_remove(0),
            stats: self.stats.clone(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }

    fn partition_statistics(&self, partition: Option<usize>) -> Result<Statistics> {
        // The estimate is for the whole scan: per partition only when there is one.
        match partition {
            Some(_) if self.input.output_partitioning().partition_count() > 1 => {
                Ok(Statistics::new_unknown(&self.schema()))
            }
            _ => Ok(self.stats.clone()),
        }
    }
}
