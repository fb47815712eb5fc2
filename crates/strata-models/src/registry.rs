//! The model registry, kept with the lake:
//!
//! - **artifacts**: `<warehouse>/_models/<name>/v<version>/…`, uploaded file by file, then a
//!   `manifest.json` naming them — written last, so a version without one is incomplete and
//!   never served;
//! - **`audit.model_versions`**: one row per trained version (when, on which data snapshots,
//!   how many rows, parameters, validation metrics, the gate's verdict);
//! - **`audit.model_deployments`**: one row per change of what serves (auto-promotion,
//!   promote, rollback, canary), each carrying the whole resulting state, so the current
//!   state is the newest row. `strata serve` polls it and swaps models when it changes.
//!
//! Both tables are plain Iceberg tables: `strata sql` reads them like any other.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Date32Array, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use iceberg::TableIdent;
use serde::{Deserialize, Serialize};
use strata_sql::SqlSession;
use strata_table::{table, Lake};

use crate::error::{Error, Result};

pub const MODEL_VERSIONS: &str = "audit.model_versions";
pub const MODEL_DEPLOYMENTS: &str = "audit.model_deployments";

fn ident(name: &str) -> TableIdent {
    let (ns, t) = name.split_once('.').unwrap_or(("audit", name));
    TableIdent::new(iceberg::NamespaceIdent::new(ns.into()), t.into())
}

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, None)
}

fn versions_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("version", DataType::Int64, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("trained_at", ts(), false),
        Field::new("run_date", DataType::Date32, false),
        Field::new("train_from", DataType::Date32, false),
        Field::new("train_to", DataType::Date32, false),
        Field::new("valid_from", DataType::Date32, false),
        Field::new("valid_to", DataType::Date32, false),
        Field::new("snapshots", DataType::Utf8, false),
        Field::new("train_rows", DataType::Int64, false),
        Field::new("valid_rows", DataType::Int64, false),
        Field::new("params", DataType::Utf8, false),
        Field::new("metrics", DataType::Utf8, false),
        Field::new("gate_metric", DataType::Utf8, false),
        Field::new("gate_value", DataType::Float64, true),
        Field::new("verdict", DataType::Utf8, false),
        Field::new("note", DataType::Utf8, true),
        Field::new("artifact", DataType::Utf8, false),
        Field::new("duration_ms", DataType::Int64, false),
    ]))
}

fn deployments_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("at", ts(), false),
        Field::new("action", DataType::Utf8, false),
        Field::new("promoted_version", DataType::Int64, true),
        Field::new("canary_version", DataType::Int64, true),
        Field::new("canary_percent", DataType::Int32, false),
        Field::new("actor", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, true),
    ]))
}

/// Creates the registry tables if missing.
pub async fn ensure_tables(lake: &Lake) -> Result<()> {
    for (name, schema) in [
        (MODEL_VERSIONS, versions_schema()),
        (MODEL_DEPLOYMENTS, deployments_schema()),
    ] {
        table::create_table(lake, &ident(name), &schema, None, HashMap::new()).await?;
    }
    Ok(())
}

fn days(d: NaiveDate) -> i32 {
    strata_warehouse::audit::days(d)
}

/// Days since 1970-01-01 as a date.
pub fn date(days: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1)
        .unwrap_or_default()
        .checked_add_signed(chrono::Duration::days(i64::from(days)))
        .unwrap_or_default()
}

/// What the gate decided about a freshly trained version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Promoted automatically (first version, or not worse than the promoted one).
    Promoted,
    /// Kept as a candidate: worse than the promoted version by more than the tolerance, or
    /// auto-promotion is off.
    Candidate,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Promoted => "promoted",
            Verdict::Candidate => "candidate",
        }
    }
}

/// One trained version, as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct VersionRow {
    pub name: String,
    pub version: i64,
    pub kind: String,
    pub trained_at: DateTime<Utc>,
    pub run_date: NaiveDate,
    pub train_from: NaiveDate,
    pub train_to: NaiveDate,
    pub valid_from: NaiveDate,
    pub valid_to: NaiveDate,
    /// `{"ads.ads_sample_ctr": snapshot id, …}` of the tables read.
    pub snapshots: BTreeMap<String, i64>,
    pub train_rows: i64,
    pub valid_rows: i64,
    pub params: serde_json::Value,
    pub metrics: BTreeMap<String, f64>,
    pub gate_metric: String,
    pub gate_value: Option<f64>,
    pub verdict: String,
    pub note: Option<String>,
    pub artifact: String,
    pub duration_ms: i64,
}

/// What serves a model now: the newest `audit.model_deployments` row.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Deployment {
    pub promoted: Option<i64>,
    /// A version serving `canary_percent` % of users (by a stable hash of the user).
    pub canary: Option<i64>,
    pub canary_percent: i32,
    pub at: Option<DateTime<Utc>>,
}

/// One change of what serves.
#[derive(Debug, Clone, Serialize)]
pub struct DeploymentRow {
    pub name: String,
    pub at: DateTime<Utc>,
    pub action: String,
    pub promoted: Option<i64>,
    pub canary: Option<i64>,
    pub canary_percent: i32,
    pub actor: String,
    pub reason: Option<String>,
}

fn strings<'a>(v: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(v))
}

fn batch(schema: SchemaRef, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    RecordBatch::try_new(schema, columns)
        .map_err(|e| Error::Internal(format!("registry rows: {e}")))
}

pub async fn record_version(lake: &Lake, r: &VersionRow) -> Result<()> {
    let json = |v: &dyn erased::Json| v.json();
    let d = |x: NaiveDate| -> ArrayRef { Arc::new(Date32Array::from(vec![days(x)])) };
    let b = batch(
        versions_schema(),
        vec![
            strings([r.name.as_str()].into_iter()),
            Arc::new(Int64Array::from(vec![r.version])),
            strings([r.kind.as_str()].into_iter()),
            Arc::new(TimestampMicrosecondArray::from(vec![r
                .trained_at
                .timestamp_micros()])),
            d(r.run_date),
            d(r.train_from),
            d(r.train_to),
            d(r.valid_from),
            d(r.valid_to),
            strings([json(&r.snapshots).as_str()].into_iter()),
            Arc::new(Int64Array::from(vec![r.train_rows])),
            Arc::new(Int64Array::from(vec![r.valid_rows])),
            strings([json(&r.params).as_str()].into_iter()),
            strings([json(&r.metrics).as_str()].into_iter()),
            strings([r.gate_metric.as_str()].into_iter()),
            Arc::new(Float64Array::from(vec![r.gate_value])),
            strings([r.verdict.as_str()].into_iter()),
            Arc::new(StringArray::from(vec![r.note.as_deref()])),
            strings([r.artifact.as_str()].into_iter()),
            Arc::new(Int64Array::from(vec![r.duration_ms])),
        ],
    )?;
    table::append(lake, &ident(MODEL_VERSIONS), vec![b]).await?;
    Ok(())
}

mod erased {
    pub trait Json {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> String {
            serde_json::to_string(self).unwrap_or_else(|_| "null".to_string())
        }
    }
}

pub async fn record_deployment(lake: &Lake, r: &DeploymentRow) -> Result<()> {
    let b = batch(
        deployments_schema(),
        vec![
            strings([r.name.as_str()].into_iter()),
            Arc::new(TimestampMicrosecondArray::from(vec![r
                .at
                .timestamp_micros()])),
            strings([r.action.as_str()].into_iter()),
            Arc::new(Int64Array::from(vec![r.promoted])),
            Arc::new(Int64Array::from(vec![r.canary])),
            Arc::new(Int32Array::from(vec![r.canary_percent])),
            strings([r.actor.as_str()].into_iter()),
            Arc::new(StringArray::from(vec![r.reason.as_deref()])),
        ],
    )?;
    table::append(lake, &ident(MODEL_DEPLOYMENTS), vec![b]).await?;
    Ok(())
}

fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> Result<&'a T> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| Error::Internal(format!("registry table lacks column {name}")))
}

fn opt_i64(a: &Int64Array, i: usize) -> Option<i64> {
    (!a.is_null(i)).then(|| a.value(i))
}

/// Every version of `name`, oldest first.
pub async fn versions(lake: &Lake, name: &str) -> Result<Vec<VersionRow>> {
    ensure_tables(lake).await?;
    let session = SqlSession::new(lake).await?;
    let sql = format!(
        "SELECT * FROM {MODEL_VERSIONS} WHERE name = '{}' ORDER BY version",
        quote(name)
    );
    let (_, batches) = session.query(&sql).await?;
    let mut out = Vec::new();
    for b in &batches {
        let s = |n| col::<StringArray>(b, n);
        let (names, kinds, snaps, params, metrics, gm, verdict, note, artifact) = (
            s("name")?,
            s("kind")?,
            s("snapshots")?,
            s("params")?,
            s("metrics")?,
            s("gate_metric")?,
            s("verdict")?,
            s("note")?,
            s("artifact")?,
        );
        let i = |n| col::<Int64Array>(b, n);
        let (version, train_rows, valid_rows, duration) = (
            i("version")?,
            i("train_rows")?,
            i("valid_rows")?,
            i("duration_ms")?,
        );
        let dd = |n| col::<Date32Array>(b, n);
        let (run_date, tf, tt, vf, vt) = (
            dd("run_date")?,
            dd("train_from")?,
            dd("train_to")?,
            dd("valid_from")?,
            dd("valid_to")?,
        );
        let trained = col::<TimestampMicrosecondArray>(b, "trained_at")?;
        let gv = col::<Float64Array>(b, "gate_value")?;
        for r in 0..b.num_rows() {
            out.push(VersionRow {
                name: names.value(r).to_string(),
                version: version.value(r),
                kind: kinds.value(r).to_string(),
                trained_at: DateTime::from_timestamp_micros(trained.value(r)).unwrap_or_default(),
                run_date: date(run_date.value(r)),
                train_from: date(tf.value(r)),
                train_to: date(tt.value(r)),
                valid_from: date(vf.value(r)),
                valid_to: date(vt.value(r)),
                snapshots: serde_json::from_str(snaps.value(r)).unwrap_or_default(),
                train_rows: train_rows.value(r),
                valid_rows: valid_rows.value(r),
                params: serde_json::from_str(params.value(r)).unwrap_or_default(),
                metrics: serde_json::from_str(metrics.value(r)).unwrap_or_default(),
                gate_metric: gm.value(r).to_string(),
                gate_value: (!gv.is_null(r)).then(|| gv.value(r)),
                verdict: verdict.value(r).to_string(),
                note: (!note.is_null(r)).then(|| note.value(r).to_string()),
                artifact: artifact.value(r).to_string(),
                duration_ms: duration.value(r),
            });
        }
    }
    Ok(out)
}

/// Every model name with at least one version.
pub async fn model_names(lake: &Lake) -> Result<Vec<String>> {
    ensure_tables(lake).await?;
    let session = SqlSession::new(lake).await?;
    let (_, batches) = session
        .query(&format!(
            "SELECT DISTINCT name FROM {MODEL_VERSIONS} ORDER BY name"
        ))
        .await?;
    let mut out = Vec::new();
    for b in &batches {
        let names = col::<StringArray>(b, "name")?;
        out.extend((0..b.num_rows()).map(|r| names.value(r).to_string()));
    }
    Ok(out)
}

/// Every deployment change of `name`, oldest first.
pub async fn deployments(lake: &Lake, name: &str) -> Result<Vec<DeploymentRow>> {
    ensure_tables(lake).await?;
    let session = SqlSession::new(lake).await?;
    let sql = format!(
        "SELECT * FROM {MODEL_DEPLOYMENTS} WHERE name = '{}' ORDER BY at",
        quote(name)
    );
    let (_, batches) = session.query(&sql).await?;
    let mut out = Vec::new();
    for b in &batches {
        let names = col::<StringArray>(b, "name")?;
        let at = col::<TimestampMicrosecondArray>(b, "at")?;
        let action = col::<StringArray>(b, "action")?;
        let promoted = col::<Int64Array>(b, "promoted_version")?;
        let canary = col::<Int64Array>(b, "canary_version")?;
        let pct = col::<Int32Array>(b, "canary_percent")?;
        let actor = col::<StringArray>(b, "actor")?;
        let reason = col::<StringArray>(b, "reason")?;
        for r in 0..b.num_rows() {
            out.push(DeploymentRow {
                name: names.value(r).to_string(),
                at: DateTime::from_timestamp_micros(at.value(r)).unwrap_or_default(),
                action: action.value(r).to_string(),
                promoted: opt_i64(promoted, r),
                canary: opt_i64(canary, r),
                canary_percent: pct.value(r),
                actor: actor.value(r).to_string(),
                reason: (!reason.is_null(r)).then(|| reason.value(r).to_string()),
            });
        }
    }
    Ok(out)
}

/// The current state of `name`: its newest deployment row.
pub fn current(history: &[DeploymentRow]) -> Deployment {
    history
        .last()
        .map(|r| Deployment {
            promoted: r.promoted,
            canary: r.canary,
            canary_percent: r.canary_percent,
            at: Some(r.at),
        })
        .unwrap_or_default()
}

/// Model names are letters, digits, `_` and `-` (checked when files load); this keeps a
/// name typed on the command line from breaking out of the quoted literal.
fn quote(name: &str) -> String {
    name.replace('\'', "''")
}

/// The lake location of a version's artifacts.
/// Holds the lake's lock for numbering `name`'s versions until dropped: a `strata models
/// train` and the DAG's training of the same model on one machine take turns between reading
/// the highest version and recording theirs, so both cannot claim one number (and write one
/// artifact directory). The lock is a file under the lake's local lock directory; processes
/// on other machines sharing an S3 lake are not covered (run training from one scheduler).
pub async fn lock_versions(lake: &Lake, name: &str) -> Result<std::fs::File> {
    let path = lake.lock_dir().join(format!(".strata-model-{name}.lock"));
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        file.lock()
            .map_err(|e| Error::io(format!("locking {}", path.display()), e))?;
        Ok(file)
    })
    .await
    .map_err(|e| Error::Internal(format!("version lock task: {e}")))?
}

pub fn artifact_location(lake: &Lake, name: &str, version: i64) -> String {
    format!(
        "{}/_models/{name}/v{version}",
        lake.warehouse().trim_end_matches('/')
    )
}

/// The manifest written last: the files of a complete version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub version: i64,
    pub kind: String,
    pub files: Vec<String>,
}

/// Uploads every file under `dir` (recursively) to `location`, then `manifest.json`.
pub async fn upload(lake: &Lake, dir: &Path, location: &str, manifest: &Manifest) -> Result<()> {
    let io = lake.file_io();
    let mut files = Vec::new();
    collect_files(dir, dir, &mut files)?;
    for rel in &files {
        let bytes = std::fs::read(dir.join(rel))
            .map_err(|e| Error::io(format!("reading {}", dir.join(rel).display()), e))?;
        io.new_output(format!("{location}/{rel}"))
            .map_err(|e| Error::io(format!("writing {location}/{rel}"), e))?
            .write(Bytes::from(bytes))
            .await
            .map_err(|e| Error::io(format!("writing {location}/{rel}"), e))?;
    }
    let manifest = Manifest {
        files,
        ..manifest.clone()
    };
    let body = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| Error::Internal(format!("manifest: {e}")))?;
    io.new_output(format!("{location}/manifest.json"))
        .map_err(|e| Error::io(format!("writing {location}/manifest.json"), e))?
        .write(Bytes::from(body))
        .await
        .map_err(|e| Error::io(format!("writing {location}/manifest.json"), e))?;
    Ok(())
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            collect_files(root, &p, out)?;
        } else if let Ok(rel) = p.strip_prefix(root) {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

/// Downloads a complete version into `cache/<name>/v<version>` (once: a finished copy is
/// reused) and returns that directory. A version without a manifest is refused.
pub async fn download(
    lake: &Lake,
    name: &str,
    version: i64,
    cache: &Path,
) -> Result<std::path::PathBuf> {
    let target = cache.join(name).join(format!("v{version}"));
    if target.join("manifest.json").is_file() {
        return Ok(target);
    }
    let location = artifact_location(lake, name, version);
    let io = lake.file_io();
    let manifest_bytes = io
        .new_input(format!("{location}/manifest.json"))
        .map_err(|e| Error::io(format!("reading {location}/manifest.json"), e))?
        .read()
        .await
        .map_err(|e| {
            Error::Registry(format!(
                "model {name} version {version} has no complete artifacts at {location} ({e})"
            ))
        })?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| Error::Registry(format!("{location}/manifest.json: {e}")))?;
    let parent = cache.join(name);
    std::fs::create_dir_all(&parent)
        .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(&parent)
        .map_err(|e| Error::io(format!("creating a directory in {}", parent.display()), e))?;
    for rel in &manifest.files {
        if rel.split('/').any(|p| p == ".." || p.is_empty()) {
            return Err(Error::Registry(format!(
                "{location}/manifest.json names a file outside the version: {rel}"
            )));
        }
        let bytes = io
            .new_input(format!("{location}/{rel}"))
            .map_err(|e| Error::io(format!("reading {location}/{rel}"), e))?
            .read()
            .await
            .map_err(|e| Error::io(format!("reading {location}/{rel}"), e))?;
        let path = tmp.path().join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        std::fs::write(&path, &bytes)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    }
    std::fs::write(tmp.path().join("manifest.json"), &manifest_bytes)
        .map_err(|e| Error::io("writing the manifest", e))?;
    let tmp = tmp.keep();
    match std::fs::rename(&tmp, &target) {
        Ok(()) => Ok(target),
        // Another process finished the same download first.
        Err(_) if target.join("manifest.json").is_file() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(target)
        }
        Err(e) => Err(Error::io(format!("moving into {}", target.display()), e)),
    }
}

/// The next version number of `name`.
pub fn next_version(existing: &[VersionRow]) -> i64 {
    existing.iter().map(|v| v.version).max().unwrap_or(0) + 1
}

/// The gate: may a version with `value` replace the promoted one (with `current`)?
/// `Ok(reason)` to promote, `Err(reason)` to keep it a candidate.
pub fn gate(
    metric: &str,
    higher_is_better: bool,
    value: Option<f64>,
    current: Option<(i64, Option<f64>)>,
    tolerance: f64,
) -> std::result::Result<String, String> {
    let Some(value) = value.filter(|v| v.is_finite()) else {
        return Err(format!("its validation {metric} could not be computed"));
    };
    let Some((cur_version, cur_value)) = current else {
        return Ok(format!(
            "first promoted version ({metric} {value:.4} on validation)"
        ));
    };
    let Some(cur_value) = cur_value.filter(|v| v.is_finite()) else {
        return Ok(format!(
            "version {cur_version} has no {metric} to compare with; {metric} {value:.4}"
        ));
    };
    let worse_by = if higher_is_better {
        cur_value - value
    } else {
        value - cur_value
    };
    if worse_by > tolerance {
        Err(format!(
            "validation {metric} {value:.4} is worse than promoted version {cur_version}'s \
             {cur_value:.4} by {worse_by:.4}, more than the tolerance {tolerance}"
        ))
    } else {
        Ok(format!(
            "validation {metric} {value:.4} vs promoted version {cur_version}'s {cur_value:.4} \
             (tolerance {tolerance})"
        ))
    }
}

/// Which variant a user gets: the canary when the user's stable bucket (0..100) is below
/// the canary's percent. The same user and model always land in the same bucket.
pub fn bucket(model: &str, user: &str) -> u32 {
    // FNV-1a over "model\0user": stable across processes, platforms and releases.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in model.bytes().chain([0u8]).chain(user.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Fold the high bits in: the low bits of FNV alone are poorly mixed.
    ((h ^ (h >> 32)) % 100) as u32
}

/// The version serving `user`, and whether it is the canary.
pub fn route(d: &Deployment, model: &str, user: &str) -> Option<(i64, bool)> {
    match (d.canary, d.promoted) {
        (Some(c), _) if d.canary_percent > 0 && (bucket(model, user) as i32) < d.canary_percent => {
            Some((c, true))
        }
        (_, Some(p)) => Some((p, false)),
        (Some(c), None) => Some((c, true)),
        (None, None) => None,
    }
}

/// The version a rollback returns to: the one promoted before the current one.
pub fn rollback_target(history: &[DeploymentRow]) -> Option<i64> {
    let current = history.last()?.promoted?;
    history
        .iter()
        .rev()
        .filter_map(|r| r.promoted)
        .find(|&v| v != current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_rules() {
        assert!(gate("auc", true, Some(0.7), None, 0.005).is_ok());
        assert!(gate("auc", true, Some(0.696), Some((1, Some(0.7))), 0.005).is_ok());
        let e = gate("auc", true, Some(0.69), Some((1, Some(0.7))), 0.005).unwrap_err();
        assert!(e.contains("worse than promoted version 1"), "{e}");
        assert!(
            gate("logloss", false, Some(0.5), Some((1, Some(0.49))), 0.005)
                .unwrap_err()
                .contains("worse")
        );
        assert!(gate("logloss", false, Some(0.49), Some((1, Some(0.5))), 0.005).is_ok());
        assert!(gate("auc", true, Some(f64::NAN), None, 0.005).is_err());
    }

    #[test]
    fn canary_buckets_are_stable_and_split_by_percent() {
        let d = Deployment {
            promoted: Some(1),
            canary: Some(2),
            canary_percent: 10,
            at: None,
        };
        let mut canary = 0;
        for u in 0..10_000 {
            let user = u.to_string();
            let first = route(&d, "ctr", &user);
            assert_eq!(first, route(&d, "ctr", &user), "stable per user");
            if first == Some((2, true)) {
                canary += 1;
            }
        }
        // 10 % of 10,000 users, within a few standard deviations (sd = 30).
        assert!(
            (880..=1120).contains(&canary),
            "{canary} users on the canary"
        );
        // Raising the percent keeps everyone already on the canary there.
        let wider = Deployment {
            canary_percent: 30,
            ..d.clone()
        };
        for u in 0..2_000 {
            let user = u.to_string();
            if route(&d, "ctr", &user) == Some((2, true)) {
                assert_eq!(route(&wider, "ctr", &user), Some((2, true)));
            }
        }
    }

    #[test]
    fn rollback_goes_to_the_previously_promoted_version() {
        let row = |p: Option<i64>| DeploymentRow {
            name: "m".into(),
            at: Utc::now(),
            action: "promote".into(),
            promoted: p,
            canary: None,
            canary_percent: 0,
            actor: "t".into(),
            reason: None,
        };
        let h = vec![row(Some(1)), row(Some(2)), row(Some(2)), row(Some(3))];
        assert_eq!(rollback_target(&h), Some(2));
        assert_eq!(rollback_target(&h[..1]), None);
    }
}
