//! Lake scans that read on every core and tell the planner how big they are.
//!
//! iceberg-datafusion's `IcebergTableScan` is one partition: every Parquet page of a table is
//! decoded by the one task that polls it, at the Parquet reader's default 1,024 rows a batch,
//! and it reports no statistics, so DataFusion keeps every hash join's left input as its build
//! side. [`LakeScans`] replaces each of them with a [`LakeScanExec`] that
//! - plans the snapshot's files once, cuts files bigger than a fair share into byte ranges
//!   (a row group belongs to the range holding its midpoint, so every row is read exactly
//!   once) and deals the pieces out to `target_partitions` partitions, largest first;
//! - reads at the session's batch size;
//! - reports the snapshot's `total-records` and `total-files-size` as inexact estimates, so
//!   join selection builds on the smaller side (`dwd_user_action`, events LEFT JOIN profiles,
//!   used to build its hash table on the day's events — and a hash join's build side cannot
//!   spill).

use std::any::Any;
use std::cmp::Reverse;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::config::ConfigOptions;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream, Statistics,
};
use futures::{StreamExt, TryStreamExt};
use iceberg::arrow::ArrowReaderBuilder;
use iceberg::expr::Predicate;
use iceberg::scan::FileScanTask;
use iceberg::table::Table;
use iceberg_datafusion::physical_plan::IcebergTableScan;
use tokio::sync::OnceCell;

/// No piece is cut smaller than this: below it, a second footer read costs more than the
/// parallelism gains.
const MIN_SPLIT_BYTES: u64 = 8 << 20;

/// Files each partition has in flight: one decoding while the next one's footer is fetched.
const FILES_IN_FLIGHT: usize = 2;

/// Physical optimizer rule: a [`LakeScanExec`] for every Iceberg scan. Runs first, before
/// join selection reads the statistics and before distribution is enforced.
#[derive(Debug)]
pub struct LakeScans {
    /// No piece is cut smaller than this.
    pub min_split_bytes: u64,
}

impl Default for LakeScans {
    fn default() -> Self {
        LakeScans {
            min_split_bytes: MIN_SPLIT_BYTES,
        }
    }
}

impl PhysicalOptimizerRule for LakeScans {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let partitions = config.execution.target_partitions.max(1);
        let batch_size = config.execution.batch_size.max(1);
        plan.transform_up(|node| {
            let Some(scan) = node.as_any().downcast_ref::<IcebergTableScan>() else {
                return Ok(Transformed::no(node));
            };
            let split = Split {
                partitions,
                min_bytes: self.min_split_bytes,
            };
            let exec = LakeScanExec::new(scan, node.schema(), split, batch_size);
            Ok(Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "LakeScans"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// One snapshot of one Iceberg table, read by `partitions` partitions.
pub struct LakeScanExec {
    source: Arc<ScanSource>,
    limit: Option<usize>,
    batch_size: usize,
    stats: Statistics,
    properties: Arc<PlanProperties>,
}

/// What to read, and the pieces of each partition once the first partition has planned them.
struct ScanSource {
    table: Table,
    snapshot_id: Option<i64>,
    projection: Option<Vec<String>>,
    predicate: Option<Predicate>,
    split: Split,
    pieces: OnceCell<Vec<Vec<FileScanTask>>>,
}

impl fmt::Debug for LakeScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LakeScanExec")
            .field("table", self.source.table.identifier())
            .field("snapshot_id", &self.source.snapshot_id)
            .finish_non_exhaustive()
    }
}

impl LakeScanExec {
    fn new(scan: &IcebergTableScan, schema: SchemaRef, split: Split, batch_size: usize) -> Self {
        let metadata = scan.table().metadata();
        let snapshot = match scan.snapshot_id() {
            Some(id) => metadata.snapshot_by_id(id),
            None => metadata.current_snapshot(),
        };
        let summary = |key: &str| {
            snapshot
                .and_then(|s| s.summary().additional_properties.get(key))
                .and_then(|v| v.parse::<usize>().ok())
        };
        let mut stats = Statistics::new_unknown(&schema);
        match snapshot {
            None => stats.num_rows = Precision::Exact(0),
            Some(_) => {
                if let Some(rows) = summary("total-records") {
                    stats.num_rows = Precision::Inexact(rows);
                }
                if let Some(bytes) = summary("total-files-size") {
                    stats.total_byte_size = Precision::Inexact(bytes);
                }
            }
        }
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(split.partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        let source = ScanSource {
            table: scan.table().clone(),
            snapshot_id: scan.snapshot_id(),
            projection: scan.projection().map(<[String]>::to_vec),
            predicate: scan.predicates().cloned(),
            split,
            pieces: OnceCell::new(),
        };
        LakeScanExec {
            source: Arc::new(source),
            limit: scan.limit(),
            batch_size,
            stats,
            properties,
        }
    }
}

impl ScanSource {
    /// The snapshot's file tasks (pruned by the pushed-down predicate), dealt out.
    async fn plan(&self) -> iceberg::Result<Vec<Vec<FileScanTask>>> {
        let mut builder = match self.snapshot_id {
            Some(id) => self.table.scan().snapshot_id(id),
            None => self.table.scan(),
        };
        builder = match &self.projection {
            Some(columns) => builder.select(columns.iter()),
            None => builder.select_all(),
        };
        if let Some(predicate) = &self.predicate {
            builder = builder.with_filter(predicate.clone());
        }
        let tasks: Vec<FileScanTask> = builder.build()?.plan_files().await?.try_collect().await?;
        Ok(deal(tasks, self.split))
    }

    /// One partition's batches.
    async fn read(
        self: Arc<Self>,
        partition: usize,
        batch_size: usize,
    ) -> Result<impl futures::Stream<Item = Result<RecordBatch>>> {
        let pieces = self
            .pieces
            .get_or_try_init(|| self.plan())
            .await
            .map_err(external)?;
        let mine = pieces.get(partition).cloned().unwrap_or_default();
        let reader = ArrowReaderBuilder::new(
            self.table.file_io().clone(),
            iceberg::Runtime::try_current().map_err(external)?,
        )
        .with_batch_size(batch_size)
        .with_data_file_concurrency_limit(FILES_IN_FLIGHT)
        .build();
        let tasks = futures::stream::iter(mine.into_iter().map(Ok)).boxed();
        Ok(reader
            .read(tasks)
            .map_err(external)?
            .stream()
            .map_err(external))
    }
}

/// How a scan is cut up.
#[derive(Debug, Clone, Copy)]
struct Split {
    partitions: usize,
    min_bytes: u64,
}

/// Cuts the tasks into pieces of about a fair share each (never below `split.min_bytes`) and
/// gives each piece, largest first, to the partition with the fewest bytes so far.
fn deal(tasks: Vec<FileScanTask>, split: Split) -> Vec<Vec<FileScanTask>> {
    let partitions = split.partitions.max(1);
    let total: u64 = tasks.iter().map(|t| t.length).sum();
    let share = (total / partitions as u64).max(split.min_bytes.max(1));
    let mut pieces = Vec::with_capacity(tasks.len());
    for task in tasks {
        let cuts = task.length.div_ceil(share);
        if cuts <= 1 {
            pieces.push(task);
            continue;
        }
        for i in 0..cuts {
            let from = task.start + task.length * i / cuts;
            let to = task.start + task.length * (i + 1) / cuts;
            let mut piece = task.clone();
            piece.start = from;
            piece.length = to - from;
            // The file's record count no longer describes the piece.
            piece.record_count = None;
            pieces.push(piece);
        }
    }
    pieces.sort_by_key(|p| Reverse(p.length));
    let mut dealt: Vec<(u64, Vec<FileScanTask>)> = vec![(0, Vec::new()); partitions];
    for piece in pieces {
        // `partitions` is at least 1 (clamped above), so there is always a partition to take it.
        let Some((bytes, list)) = dealt.iter_mut().min_by_key(|(bytes, _)| *bytes) else {
            break;
        };
        *bytes += piece.length;
        list.push(piece);
    }
    dealt.into_iter().map(|(_, list)| list).collect()
}

fn external(e: iceberg::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

impl DisplayAs for LakeScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let metadata = self.source.table.metadata();
        let snapshot = self
            .source
            .snapshot_id
            .or_else(|| metadata.current_snapshot().map(|s| s.snapshot_id()));
        write!(
            f,
            "LakeScanExec: table={}, snapshot={}, partitions={}, rows={}",
            self.source.table.identifier(),
            snapshot.map_or_else(|| "none".to_string(), |id| id.to_string()),
            self.source.split.partitions,
            self.stats.num_rows
        )?;
        if let Some(columns) = &self.source.projection {
            write!(f, ", projection=[{}]", columns.join(","))?;
        }
        if let Some(predicate) = &self.source.predicate {
            write!(f, ", predicate=[{predicate}]")?;
        }
        if let Some(limit) = self.limit {
            write!(f, ", limit={limit}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for LakeScanExec {
    fn name(&self) -> &str {
        "LakeScanExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let read = self.source.clone().read(partition, self.batch_size);
        let stream = futures::stream::once(read).try_flatten();
        let stream = match self.limit {
            None => stream.boxed(),
            Some(limit) => {
                let mut left = limit;
                stream
                    .try_filter_map(move |batch| {
                        let out = match left {
                            0 => None,
                            n if batch.num_rows() <= n => {
                                left -= batch.num_rows();
                                Some(batch)
                            }
                            n => {
                                left = 0;
                                Some(batch.slice(0, n))
                            }
                        };
                        futures::future::ready(Ok(out))
                    })
                    .boxed()
            }
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            stream,
        )))
    }

    fn partition_statistics(&self, partition: Option<usize>) -> Result<Statistics> {
        // The estimate is for the whole scan.
        match partition {
            Some(_) if self.source.split.partitions > 1 => {
                Ok(Statistics::new_unknown(&self.schema()))
            }
            _ => Ok(self.stats.clone()),
        }
    }
}
