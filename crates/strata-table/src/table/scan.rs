//! A DataFusion table over a snapshot's live rows with their location (`_file`, `_pos`),
//! streamed file by file, with data files pruned by the query's filters against the files'
//! partition values and column bounds. Row-level writes plan on it, so a `DELETE … WHERE
//! dt = …` reads one partition and a MERGE holds only its source in memory.

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, UInt64Array};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::catalog::Session;
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_optimizer::pruning::PruningPredicate;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use futures::StreamExt;
use iceberg::spec::{Datum, PrimitiveLiteral, PrimitiveType};
use iceberg::table::Table;

use crate::error::Result;
use crate::table::files::{LiveFile, TableFiles};
use crate::table::read::{located_schema, position_deletes, read_located};

/// Streams of one table's live rows, located.
#[derive(Debug)]
pub struct LocatedTable {
    table: Table,
    files: Vec<LiveFile>,
    deletes: Arc<HashMap<String, HashSet<i64>>>,
    schema: SchemaRef,
}

impl LocatedTable {
    pub async fn new(table: &Table, files: &TableFiles) -> Result<LocatedTable> {
        Ok(LocatedTable {
            table: table.clone(),
            files: files.data_files().cloned().collect(),
            deletes: Arc::new(position_deletes(table, files).await?),
            schema: located_schema(table)?,
        })
    }

    /// The data files `filters` may match (all of them when nothing can be pruned).
    fn prune(&self, state: &dyn Session, filters: &[Expr]) -> DFResult<Vec<LiveFile>> {
        let Some(predicate) = conjunction(filters.iter().cloned()) else {
            return Ok(self.files.clone());
        };
        let df_schema = DFSchema::try_from(self.schema.as_ref().clone())?;
        let physical = state.create_physical_expr(predicate, &df_schema)?;
        let pruning = PruningPredicate::try_new(physical, self.schema.clone())?;
        let stats = FileStats {
            table: &self.table,
            files: &self.files,
        };
        let keep = pruning.prune(&stats)?;
        Ok(self
            .files
            .iter()
            .zip(keep)
            .filter(|(_, k)| *k)
            .map(|(f, _)| f.clone())
            .collect())
    }
}

#[async_trait]
impl TableProvider for LocatedTable {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DFResult<Vec<TableProviderFilterPushDown>> {
        // Used to skip files; DataFusion still filters the rows.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let files = self.prune(state, filters)?;
        // Only the columns the query uses are read: the data columns it projects, plus
        // `_file` / `_pos` (which the reader always produces), then cut to the projection.
        let (read_schema, output) = match projection {
            None => (self.schema.clone(), None),
            Some(p) => {
                let n = self.schema.fields().len() - 2;
                let mut read: Vec<usize> = p.iter().copied().filter(|i| *i < n).collect();
                read.sort_unstable();
                read.dedup();
                read.extend([n, n + 1]);
                let output: Vec<usize> = p
                    .iter()
                    .map(|i| read.iter().position(|r| r == i).unwrap_or_default())
                    .collect();
                (Arc::new(self.schema.project(&read)?), Some(output))
            }
        };
        let output_schema = match &output {
            Some(o) => Arc::new(read_schema.project(o)?),
            None => read_schema.clone(),
        };
        let lanes = state.config().target_partitions().max(1);
        let mut groups: Vec<Vec<LiveFile>> = vec![Vec::new(); lanes.min(files.len()).max(1)];
        let n = groups.len();
        for (i, f) in files.into_iter().enumerate() {
            groups[i % n].push(f);
        }
        let partitions: Vec<Arc<dyn PartitionStream>> = groups
            .into_iter()
            .map(|files| {
                Arc::new(FileGroup {
                    table: self.table.clone(),
                    files,
                    deletes: self.deletes.clone(),
                    read_schema: read_schema.clone(),
                    output: output.clone(),
                    schema: output_schema.clone(),
                }) as Arc<dyn PartitionStream>
            })
            .collect();
        StreamingTable::try_new(output_schema, partitions)?
            .scan(state, None, &[], limit)
            .await
    }
}

/// Some data files, read one after the other: the columns of `read_schema`, then cut to
/// `output` (indices into it; None: all).
#[derive(Debug)]
struct FileGroup {
    table: Table,
    files: Vec<LiveFile>,
    deletes: Arc<HashMap<String, HashSet<i64>>>,
    read_schema: SchemaRef,
    output: Option<Vec<usize>>,
    schema: SchemaRef,
}

impl PartitionStream for FileGroup {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let table = self.table.clone();
        let deletes = self.deletes.clone();
        let schema = self.read_schema.clone();
        let output = self.output.clone();
        let files = self.files.clone();
        let stream = futures::stream::iter(files)
            .then(move |file| {
                let table = table.clone();
                let deletes = deletes.clone();
                let schema = schema.clone();
                let output = output.clone();
                async move {
                    let batches = read_located(&table, &file, deletes.get(file.path()), &schema)
                        .await
                        .map_err(|e| DataFusionError::External(Box::new(e)))?;
                    match output {
                        None => Ok(batches),
                        Some(o) => batches
                            .iter()
                            .map(|b| b.project(&o).map_err(DataFusionError::from))
                            .collect(),
                    }
                }
            })
            .flat_map(|r: DFResult<Vec<_>>| match r {
                Ok(batches) => futures::stream::iter(batches.into_iter().map(Ok)).boxed(),
                Err(e) => futures::stream::once(async { Err(e) }).boxed(),
            });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

/// Per-file statistics for pruning: partition values and column bounds, by field id.
struct FileStats<'a> {
    table: &'a Table,
    files: &'a [LiveFile],
}

impl FileStats<'_> {
    fn field(&self, column: &Column) -> Option<(i32, PrimitiveType)> {
        let field = self
            .table
            .metadata()
            .current_schema()
            .field_by_name(&column.name)?;
        let ty = field.field_type.as_primitive_type()?.clone();
        Some((field.id, ty))
    }

    fn bounds(&self, column: &Column, upper: bool) -> Option<ArrayRef> {
        let (id, ty) = self.field(column)?;
        let values: Vec<ScalarValue> = self
            .files
            .iter()
            .map(|f| {
                let map = if upper {
                    f.file.upper_bounds()
                } else {
                    f.file.lower_bounds()
                };
                map.get(&id)
                    .and_then(|d| scalar(d, &ty))
                    .unwrap_or_else(|| null_of(&ty))
            })
            .collect();
        ScalarValue::iter_to_array(values).ok()
    }
}

impl PruningStatistics for FileStats<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.bounds(column, false)
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.bounds(column, true)
    }

    fn num_containers(&self) -> usize {
        self.files.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        let (id, _) = self.field(column)?;
        let counts: Vec<Option<u64>> = self
            .files
            .iter()
            .map(|f| f.file.null_value_counts().get(&id).copied())
            .collect();
        Some(Arc::new(UInt64Array::from(counts)))
    }

    fn row_counts(&self, _column: &Column) -> Option<ArrayRef> {
        let counts: Vec<u64> = self.files.iter().map(|f| f.file.record_count()).collect();
        Some(Arc::new(UInt64Array::from(counts)))
    }

    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

fn null_of(ty: &PrimitiveType) -> ScalarValue {
    match ty {
        PrimitiveType::Boolean => ScalarValue::Boolean(None),
        PrimitiveType::Int => ScalarValue::Int32(None),
        PrimitiveType::Long => ScalarValue::Int64(None),
        PrimitiveType::Float => ScalarValue::Float32(None),
        PrimitiveType::Double => ScalarValue::Float64(None),
        PrimitiveType::Date => ScalarValue::Date32(None),
        PrimitiveType::Timestamp => ScalarValue::TimestampMicrosecond(None, None),
        PrimitiveType::Timestamptz => {
            ScalarValue::TimestampMicrosecond(None, Some("+00:00".into()))
        }
        PrimitiveType::String => ScalarValue::Utf8(None),
        PrimitiveType::Decimal { precision, scale } => {
            ScalarValue::Decimal128(None, *precision as u8, *scale as i8)
        }
        _ => ScalarValue::Null,
    }
}

/// A bound as a DataFusion scalar of the column's Arrow type (`None`: not comparable here).
fn scalar(d: &Datum, ty: &PrimitiveType) -> Option<ScalarValue> {
    Some(match (ty, d.literal()) {
        (PrimitiveType::Boolean, PrimitiveLiteral::Boolean(v)) => ScalarValue::Boolean(Some(*v)),
        (PrimitiveType::Int, PrimitiveLiteral::Int(v)) => ScalarValue::Int32(Some(*v)),
        (PrimitiveType::Long, PrimitiveLiteral::Long(v)) => ScalarValue::Int64(Some(*v)),
        (PrimitiveType::Long, PrimitiveLiteral::Int(v)) => ScalarValue::Int64(Some(*v as i64)),
        (PrimitiveType::Float, PrimitiveLiteral::Float(v)) => ScalarValue::Float32(Some(v.0)),
        (PrimitiveType::Double, PrimitiveLiteral::Double(v)) => ScalarValue::Float64(Some(v.0)),
        (PrimitiveType::Double, PrimitiveLiteral::Float(v)) => {
            ScalarValue::Float64(Some(v.0 as f64))
        }
        (PrimitiveType::Date, PrimitiveLiteral::Int(v)) => ScalarValue::Date32(Some(*v)),
        (PrimitiveType::Timestamp, PrimitiveLiteral::Long(v)) => {
            ScalarValue::TimestampMicrosecond(Some(*v), None)
        }
        (PrimitiveType::Timestamptz, PrimitiveLiteral::Long(v)) => {
            ScalarValue::TimestampMicrosecond(Some(*v), Some("+00:00".into()))
        }
        // Writers truncate long string bounds; a truncated lower bound stays a lower bound
        // and writers round a truncated upper bound up, so both remain valid for pruning.
        (PrimitiveType::String, PrimitiveLiteral::String(v)) => ScalarValue::Utf8(Some(v.clone())),
        (PrimitiveType::Decimal { precision, scale }, PrimitiveLiteral::Int128(v)) => {
            ScalarValue::Decimal128(Some(*v), *precision as u8, *scale as i8)
        }
        _ => return None,
    })
}
