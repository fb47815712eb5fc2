//! Run history in the lake: `audit.dag_runs`, `audit.model_runs`, `audit.dq_results`, plain
//! Iceberg tables like the rest (so `strata sql` and other engines read them).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, NaiveDate, Utc};
use iceberg::TableIdent;
use strata_table::{table, Lake};

use crate::error::{Error, Result};

pub const DAG_RUNS: &str = "audit.dag_runs";
pub const MODEL_RUNS: &str = "audit.model_runs";
pub const DQ_RESULTS: &str = "audit.dq_results";

fn ident(name: &str) -> TableIdent {
    let (ns, t) = name.split_once('.').unwrap_or(("audit", name));
    TableIdent::from_strs([ns, t])
        .unwrap_or_else(|_| TableIdent::new(iceberg::NamespaceIdent::new(ns.into()), t.into()))
}

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, None)
}

fn dag_runs_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("run_date", DataType::Date32, false),
        Field::new("trigger", DataType::Utf8, true),
        Field::new("selection", DataType::Utf8, true),
        Field::new("started_at", ts(), false),
        Field::new("ended_at", ts(), false),
        Field::new("status", DataType::Utf8, false),
        Field::new("models_ok", DataType::Int32, false),
        Field::new("models_failed", DataType::Int32, false),
        Field::new("models_skipped", DataType::Int32, false),
        Field::new("error", DataType::Utf8, true),
    ]))
}

fn model_runs_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("run_date", DataType::Date32, false),
        Field::new("attempt", DataType::Int32, false),
        Field::new("started_at", ts(), false),
        Field::new("ended_at", ts(), false),
        Field::new("status", DataType::Utf8, false),
        Field::new("rows_written", DataType::Int64, false),
        Field::new("error", DataType::Utf8, true),
    ]))
}

fn dq_results_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("run_date", DataType::Date32, false),
        Field::new("check_name", DataType::Utf8, false),
        Field::new("check_type", DataType::Utf8, false),
        Field::new("severity", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("observed", DataType::Utf8, true),
        Field::new("expected", DataType::Utf8, true),
        Field::new("checked_at", ts(), false),
    ]))
}

/// Creates the audit tables if missing.
pub async fn ensure_tables(lake: &Lake) -> Result<()> {
    for (name, schema) in [
        (DAG_RUNS, dag_runs_schema()),
        (MODEL_RUNS, model_runs_schema()),
        (DQ_RESULTS, dq_results_schema()),
    ] {
        table::create_table(lake, &ident(name), &schema, None, HashMap::new()).await?;
    }
    Ok(())
}

pub fn days(date: NaiveDate) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    (date - epoch).num_days() as i32
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// One DAG run, as recorded.
#[derive(Clone, Debug)]
pub struct DagRunRow {
    pub run_id: String,
    pub run_date: NaiveDate,
    pub trigger: String,
    pub selection: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub status: String,
    pub ok: i32,
    pub failed: i32,
    pub skipped: i32,
    pub error: Option<String>,
}

/// One attempt of one model.
#[derive(Clone, Debug)]
pub struct ModelRunRow {
    pub run_id: String,
    pub model: String,
    pub run_date: NaiveDate,
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub status: String,
    pub rows_written: i64,
    pub error: Option<String>,
}

#[derive(Clone, Debug)]
pub struct DqRow {
    pub run_id: String,
    pub model: String,
    pub run_date: NaiveDate,
    pub check_name: String,
    pub check_type: String,
    pub severity: String,
    pub status: String,
    pub observed: String,
    pub expected: String,
    pub checked_at: DateTime<Utc>,
}

fn strings<'a>(v: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(v))
}

fn opt_strings<'a>(v: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(StringArray::from_iter(v))
}

fn batch(schema: SchemaRef, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    RecordBatch::try_new(schema, columns).map_err(|e| Error::Run(format!("audit rows: {e}")))
}

pub async fn record_dag_run(lake: &Lake, r: &DagRunRow) -> Result<()> {
    let b = batch(
        dag_runs_schema(),
        vec![
            strings([r.run_id.as_str()].into_iter()),
            Arc::new(Date32Array::from(vec![days(r.run_date)])),
            strings([r.trigger.as_str()].into_iter()),
            strings([r.selection.as_str()].into_iter()),
            Arc::new(TimestampMicrosecondArray::from(vec![micros(r.started_at)])),
            Arc::new(TimestampMicrosecondArray::from(vec![micros(r.ended_at)])),
            strings([r.status.as_str()].into_iter()),
            Arc::new(Int32Array::from(vec![r.ok])),
            Arc::new(Int32Array::from(vec![r.failed])),
            Arc::new(Int32Array::from(vec![r.skipped])),
            opt_strings([r.error.as_deref()].into_iter()),
        ],
    )?;
    table::append(lake, &ident(DAG_RUNS), vec![b]).await?;
    Ok(())
}

pub async fn record_model_runs(lake: &Lake, rows: &[ModelRunRow]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let b = batch(
        model_runs_schema(),
        vec![
            strings(rows.iter().map(|r| r.run_id.as_str())),
            strings(rows.iter().map(|r| r.model.as_str())),
            Arc::new(Date32Array::from_iter_values(
                rows.iter().map(|r| days(r.run_date)),
            )),
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.attempt))),
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                rows.iter().map(|r| micros(r.started_at)),
            )),
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                rows.iter().map(|r| micros(r.ended_at)),
            )),
            strings(rows.iter().map(|r| r.status.as_str())),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.rows_written),
            )),
            opt_strings(rows.iter().map(|r| r.error.as_deref())),
        ],
    )?;
    table::append(lake, &ident(MODEL_RUNS), vec![b]).await?;
    Ok(())
}

pub async fn record_dq(lake: &Lake, rows: &[DqRow]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let b = batch(
        dq_results_schema(),
        vec![
            strings(rows.iter().map(|r| r.run_id.as_str())),
            strings(rows.iter().map(|r| r.model.as_str())),
            Arc::new(Date32Array::from_iter_values(
                rows.iter().map(|r| days(r.run_date)),
            )),
            strings(rows.iter().map(|r| r.check_name.as_str())),
            strings(rows.iter().map(|r| r.check_type.as_str())),
            strings(rows.iter().map(|r| r.severity.as_str())),
            strings(rows.iter().map(|r| r.status.as_str())),
            strings(rows.iter().map(|r| r.observed.as_str())),
            strings(rows.iter().map(|r| r.expected.as_str())),
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                rows.iter().map(|r| micros(r.checked_at)),
            )),
        ],
    )?;
    table::append(lake, &ident(DQ_RESULTS), vec![b]).await?;
    Ok(())
}
