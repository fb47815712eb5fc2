//! Training one model for one run date: rows from the lake, split by day (validation strictly
//! later than training), trained in-process, measured on the validation days, stored as a
//! new version in the registry and promoted when the gate allows.
//!
//! - `gbdt`: rows stream into `strata-gbdt`'s binned dataset (one byte per value); the
//!   validation rows are kept raw to score them with the trained model.
//! - `two_tower`: training pairs spill to a temporary file (`strata-twotower` reads it once
//!   per epoch, shuffled), validation pairs are held, the item catalogue is read, then every
//!   item is embedded into the ANN index (`strata-ann`) and the `ml.<model>_item_embeddings`
//!   table.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Float32Builder, Int64Array, ListBuilder, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use strata_table::{table, Lake};

use crate::data::{self, Window};
use crate::error::{Error, Result};
use crate::registry::{self, Manifest, Verdict, VersionRow};
use crate::spec::{CategoricalInput, Features, Kind, ModelSpec, Tower};

/// How a training run is asked for.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// The run date (the last validation day); default: the newest day in the rows.
    pub date: Option<NaiveDate>,
    /// Training threads; 0: one per core. Overrides the model file's `threads`.
    pub threads: Option<usize>,
    /// Who asked (`cli`, `dag`), recorded with an automatic promotion.
    pub actor: String,
    /// Where an alert goes when a version is kept back (empty: logged only).
    pub alert_webhook: String,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            date: None,
            threads: None,
            actor: "cli".to_string(),
            alert_webhook: String::new(),
        }
    }
}

/// Progress lines for a person (the CLI prints them; the DAG logs them).
pub type ProgressFn = Arc<dyn Fn(&str) + Send + Sync>;

/// What a training run produced.
#[derive(Debug, Clone, Serialize)]
pub struct TrainOutcome {
    pub name: String,
    pub version: i64,
    pub verdict: Verdict,
    /// Why it was or was not promoted.
    pub reason: String,
    pub train: String,
    pub valid: String,
    pub train_rows: u64,
    pub valid_rows: u64,
    pub metrics: BTreeMap<String, f64>,
    pub seconds: f64,
}

/// What a trainer hands to the registry.
struct Trained {
    train_rows: u64,
    valid_rows: u64,
    metrics: BTreeMap<String, f64>,
    params: serde_json::Value,
    /// Embeddings to append to `ml.<model>_item_embeddings` (two-tower).
    embeddings: Option<(Vec<u64>, Vec<f32>, usize)>,
}

/// The two-tower trainer's settings: everything of `strata_twotower::TrainConfig` but the
/// towers, which come from `[user]` and `[item]`.
fn two_tower_config(spec: &ModelSpec) -> Result<strata_twotower::TrainConfig> {
    let tt = spec
        .two_tower
        .as_ref()
        .ok_or_else(|| Error::Internal("not a two-tower model".into()))?;
    let tower = |t: &Tower| strata_twotower::TowerSpec {
        numeric: t.numeric.clone(),
        categorical: t
            .categorical
            .iter()
            .map(CategoricalInput::to_twotower)
            .collect(),
    };
    let mut table = spec.params.clone();
    table.insert("user".into(), toml_value(&tower(&tt.user))?);
    table.insert("item".into(), toml_value(&tower(&tt.item))?);
    if !table.contains_key("seed") {
        table.insert("seed".into(), toml::Value::Integer(spec.seed as i64));
    }
    let cfg: strata_twotower::TrainConfig = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| Error::Plan(format!("[params]: {}", e.message())))?;
    cfg.validate()
        .map_err(|e| Error::Plan(format!("[params]: {e}")))?;
    Ok(cfg)
}

fn toml_value<T: Serialize>(v: &T) -> Result<toml::Value> {
    toml::Value::try_from(v).map_err(|e| Error::Internal(format!("tower spec: {e}")))
}

fn gbdt_params(spec: &ModelSpec) -> Result<strata_gbdt::Params> {
    let mut table = spec.params.clone();
    if !table.contains_key("seed") {
        table.insert("seed".into(), toml::Value::Integer(spec.seed as i64));
    }
    let params: strata_gbdt::Params = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| Error::Plan(format!("[params]: {}", e.message())))?;
    params
        .validate()
        .map_err(|e| Error::Plan(format!("[params]: {e}")))?;
    if params.objective == strata_gbdt::Objective::Lambdarank && spec.group.is_none() {
        return Err(Error::Plan(
            "objective lambdarank needs group (the column rows are ranked within, e.g. user_id)"
                .into(),
        ));
    }
    Ok(params)
}

/// Checks a model's `[params]` offline (when its file loads).
pub fn check_params(spec: &ModelSpec) -> Result<()> {
    match spec.kind {
        Kind::Gbdt => gbdt_params(spec).map(|_| ()),
        Kind::TwoTower => two_tower_config(spec).map(|_| ()),
    }
}

/// Trains `spec` for `opts.date`, records the version and promotes it when the gate allows.
pub async fn train(
    lake: &Lake,
    spec: &ModelSpec,
    opts: &TrainOptions,
    progress: ProgressFn,
) -> Result<TrainOutcome> {
    let started = Instant::now();
    let date = match opts.date {
        Some(d) => d,
        None => data::newest_day(lake, &spec.source.sql(), &spec.split.column)
            .await?
            .ok_or_else(|| {
                Error::Plan(format!(
                    "model {}: {} has no rows yet, so there is no day to train on",
                    spec.name,
                    spec.source.describe()
                ))
            })?,
    };
    let (train_w, valid_w) = data::split(date, spec.split.train_days, spec.split.valid_days);
    progress(&format!(
        "{}: training on {train_w}, validating on {valid_w}",
        spec.name
    ));
    let snapshots = snapshots(lake, spec).await?;
    let work = tempfile::Builder::new()
        .prefix("strata-train-")
        .tempdir()
        .map_err(|e| Error::io("creating a training directory", e))?;
    let trained = match spec.kind {
        Kind::Gbdt => {
            train_gbdt(lake, spec, opts, train_w, valid_w, work.path(), &progress).await?
        }
        Kind::TwoTower => {
            train_two_tower(lake, spec, opts, train_w, valid_w, work.path(), &progress).await?
        }
    };

    registry::ensure_tables(lake).await?;
    // Held until the version row is recorded (dropped at the end of this function).
    let _numbering = registry::lock_versions(lake, &spec.name).await?;
    let existing = registry::versions(lake, &spec.name).await?;
    let version = registry::next_version(&existing);
    let location = registry::artifact_location(lake, &spec.name, version);
    let manifest = Manifest {
        name: spec.name.clone(),
        version,
        kind: spec.kind.as_str().to_string(),
        files: Vec::new(),
    };
    registry::upload(lake, work.path(), &location, &manifest).await?;
    if let Some((ids, vectors, dim)) = &trained.embeddings {
        write_embeddings(lake, &spec.name, version, ids, vectors, *dim).await?;
    }

    let history = registry::deployments(lake, &spec.name).await?;
    let deployed = registry::current(&history);
    let (metric, higher) = spec.gate_metric();
    let value = trained.metrics.get(&metric).copied();
    let current = deployed.promoted.map(|v| {
        let value = existing
            .iter()
            .find(|r| r.version == v)
            .and_then(|r| r.gate_value);
        (v, value)
    });
    let (verdict, reason) =
        match registry::gate(&metric, higher, value, current, spec.promote.tolerance) {
            Ok(why) if spec.promote.auto => (Verdict::Promoted, why),
            Ok(why) => (
                Verdict::Candidate,
                format!("{why}; auto-promotion is off (promote with `strata models promote`)"),
            ),
            Err(why) => (Verdict::Candidate, why),
        };
    let row = VersionRow {
        name: spec.name.clone(),
        version,
        kind: spec.kind.as_str().to_string(),
        trained_at: Utc::now(),
        run_date: date,
        train_from: train_w.from,
        train_to: train_w.to,
        valid_from: valid_w.from,
        valid_to: valid_w.to,
        snapshots,
        train_rows: trained.train_rows as i64,
        valid_rows: trained.valid_rows as i64,
        params: trained.params.clone(),
        metrics: trained.metrics.clone(),
        gate_metric: metric.clone(),
        gate_value: value,
        verdict: verdict.as_str().to_string(),
        note: Some(reason.clone()),
        artifact: location,
        duration_ms: started.elapsed().as_millis() as i64,
    };
    registry::record_version(lake, &row).await?;
    match verdict {
        Verdict::Promoted => {
            // A canary of an older version than the new one ends with the promotion.
            let canary = deployed.canary.filter(|&c| c > version);
            registry::record_deployment(
                lake,
                &registry::DeploymentRow {
                    name: spec.name.clone(),
                    at: Utc::now(),
                    action: "auto_promote".to_string(),
                    promoted: Some(version),
                    canary,
                    canary_percent: if canary.is_some() {
                        deployed.canary_percent
                    } else {
                        0
                    },
                    actor: opts.actor.clone(),
                    reason: Some(reason.clone()),
                },
            )
            .await?;
        }
        Verdict::Candidate => {
            let text = format!(
                "model {} version {version} was kept as a candidate: {reason}",
                spec.name
            );
            strata_warehouse::alert::Alerter::new(&opts.alert_webhook)
                .send(&text)
                .await;
        }
    }
    Ok(TrainOutcome {
        name: spec.name.clone(),
        version,
        verdict,
        reason,
        train: train_w.to_string(),
        valid: valid_w.to_string(),
        train_rows: trained.train_rows,
        valid_rows: trained.valid_rows,
        metrics: trained.metrics,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The current snapshot of every table the model reads.
async fn snapshots(lake: &Lake, spec: &ModelSpec) -> Result<BTreeMap<String, i64>> {
    let mut out = BTreeMap::new();
    for t in spec.reads()? {
        let Some((ns, name)) = t.split_once('.') else {
            continue;
        };
        let ident = iceberg::TableIdent::new(iceberg::NamespaceIdent::new(ns.into()), name.into());
        let table = lake.load_table(&ident).await?;
        if let Some(s) = table.metadata().current_snapshot() {
            out.insert(t.clone(), s.snapshot_id());
        }
    }
    Ok(out)
}

/// The feature columns of a GBDT model: (name, categorical?), in the rows' column order.
fn gbdt_features(spec: &ModelSpec, schema: &SchemaRef) -> Result<Vec<(String, bool)>> {
    let label = spec.label.as_deref().unwrap_or_default();
    let mut problems = Vec::new();
    let names: Vec<String> = match &spec.features {
        Features::Only(list) => list.clone(),
        Features::AllBut(exclude) => schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| {
                n != label
                    && *n != spec.split.column
                    && Some(n.as_str()) != spec.group.as_deref()
                    && !exclude.contains(n)
            })
            .collect(),
    };
    for c in &spec.categorical {
        if !names.contains(c) {
            problems.push(format!("categorical column {c} is not among the features"));
        }
    }
    let mut out = Vec::new();
    for n in names {
        match schema.field_with_name(&n) {
            Err(_) => problems.push(format!("feature column {n} is not in the training rows")),
            Ok(f) => {
                let categorical = spec.categorical.contains(&n);
                if !categorical && !data::is_numeric(f.data_type()) {
                    problems.push(format!(
                        "column {n} is {}: exclude it or declare it in categorical",
                        f.data_type()
                    ));
                }
                out.push((n, categorical));
            }
        }
    }
    for (what, col) in [("label", Some(label)), ("group", spec.group.as_deref())] {
        if let Some(c) = col {
            if schema.field_with_name(c).is_err() {
                problems.push(format!("{what} column {c} is not in the training rows"));
            }
        }
    }
    if schema.field_with_name(&spec.split.column).is_err() {
        problems.push(format!(
            "split column {} is not in the training rows",
            spec.split.column
        ));
    }
    if out.is_empty() {
        problems.push("no feature columns are left".to_string());
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(Error::Plan(format!(
            "model {}: {}",
            spec.name,
            problems.join("; ")
        )))
    }
}

/// How a GBDT artifact maps request values to its inputs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GbdtInputs {
    /// Feature columns in model order, and whether each is categorical.
    pub features: Vec<(String, bool)>,
    /// Per categorical column: value (as text) → code.
    pub categories: BTreeMap<String, HashMap<String, u32>>,
}

/// One batch's feature columns, label and query ids.
struct GbdtBatch {
    columns: Vec<Vec<f32>>,
    labels: Vec<f32>,
    queries: Option<Vec<u64>>,
}

/// A bottom-k sample of rows by a seeded hash of their values: the same rows whatever order
/// they arrive in, at most `k` of them held.
struct BinSample {
    k: usize,
    seed: u64,
    /// Max-heap on the hash: the top is the first row to give up.
    heap: std::collections::BinaryHeap<(u64, usize)>,
    /// Row-major values of the kept rows; slot `i` of the heap's `(hash, i)`.
    rows: Vec<f32>,
    width: usize,
}

impl BinSample {
    fn new(k: usize, width: usize, seed: u64) -> Self {
        BinSample {
            k: k.max(1),
            seed,
            heap: std::collections::BinaryHeap::new(),
            rows: Vec::new(),
            width,
        }
    }

    fn len(&self) -> usize {
        self.heap.len()
    }

    /// Offers every row of column-major `columns`.
    fn offer(&mut self, columns: &[Vec<f32>]) {
        let n = columns.first().map_or(0, Vec::len);
        for r in 0..n {
            let mut h = self.seed ^ 0x9E37_79B9_7F4A_7C15;
            for c in columns {
                h = (h ^ u64::from(c[r].to_bits())).wrapping_mul(0x0100_0000_01B3);
                h ^= h >> 29;
            }
            if self.heap.len() < self.k {
                let slot = self.heap.len();
                self.rows.extend(columns.iter().map(|c| c[r]));
                self.heap.push((h, slot));
            } else if let Some(&(top, slot)) = self.heap.peek() {
                if h < top {
                    self.heap.pop();
                    for (i, c) in columns.iter().enumerate() {
                        self.rows[slot * self.width + i] = c[r];
                    }
                    self.heap.push((h, slot));
                }
            }
        }
    }

    /// One bin mapper per feature from the sampled rows.
    fn fit(&self, specs: &[strata_gbdt::FeatureSpec], max_bin: u32) -> Vec<strata_gbdt::BinMapper> {
        let n = self.heap.len();
        specs
            .iter()
            .enumerate()
            .map(|(f, spec)| {
                let column: Vec<f32> = (0..n).map(|r| self.rows[r * self.width + f]).collect();
                strata_gbdt::BinMapper::fit(spec.kind, &column, max_bin)
            })
            .collect()
    }
}

fn gbdt_batch(
    spec: &ModelSpec,
    features: &[(String, bool)],
    dicts: &mut BTreeMap<String, HashMap<String, u32>>,
    b: &RecordBatch,
) -> Result<GbdtBatch> {
    let mut columns = Vec::with_capacity(features.len());
    for (name, categorical) in features {
        let mut col = Vec::with_capacity(b.num_rows());
        if *categorical {
            data::codes(b, name, dicts.entry(name.clone()).or_default(), &mut col)?;
        } else {
            data::f32s(b, name, &mut col)?;
        }
        columns.push(col);
    }
    let mut labels = Vec::with_capacity(b.num_rows());
    data::f32s(b, spec.label.as_deref().unwrap_or_default(), &mut labels)?;
    if labels.iter().any(|l| l.is_nan()) {
        return Err(Error::Plan(format!(
            "model {}: label column {} has NULLs",
            spec.name,
            spec.label.as_deref().unwrap_or_default()
        )));
    }
    let queries = match &spec.group {
        None => None,
        Some(g) => {
            let mut days = Vec::new();
            data::days(b, &spec.split.column, &mut days)?;
            let mut ids = Vec::new();
            data::u64s(b, g, &mut ids)?;
            Some(
                days.iter()
                    .zip(&ids)
                    .map(|(d, id)| {
                        id.rotate_left(17) ^ (*d as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
                    })
                    .collect(),
            )
        }
    };
    Ok(GbdtBatch {
        columns,
        labels,
        queries,
    })
}

async fn train_gbdt(
    lake: &Lake,
    spec: &ModelSpec,
    opts: &TrainOptions,
    train_w: Window,
    valid_w: Window,
    dir: &Path,
    progress: &ProgressFn,
) -> Result<Trained> {
    let mut params = gbdt_params(spec)?;
    if let Some(t) = opts.threads {
        params.threads = t as u32;
    }
    let sql = spec.source.sql();
    let order = spec
        .group
        .as_ref()
        .map(|g| format!("{}, {g}", spec.split.column));
    let train_sql = data::windowed(&sql, &spec.split.column, train_w, order.as_deref());
    let (schema, mut rows) = data::stream(lake, &train_sql).await?;
    let features = gbdt_features(spec, &schema)?;
    let specs: Vec<strata_gbdt::FeatureSpec> = features
        .iter()
        .map(|(n, c)| {
            if *c {
                strata_gbdt::FeatureSpec::categorical(n.clone())
            } else {
                strata_gbdt::FeatureSpec::numeric(n.clone())
            }
        })
        .collect();
    let gbdt_err = |e: strata_gbdt::GbdtError| Error::Train(format!("model {}: {e}", spec.name));

    // Pass 1: the bins are fitted from a sample of the whole window, not its first rows (which
    // would be its earliest days). The sample keeps the rows of smallest seeded hash, so it
    // does not depend on the order the scan returns rows in.
    let mut dicts = BTreeMap::new();
    let mut sample = BinSample::new(params.bin_sample_rows as usize, features.len(), params.seed);
    while let Some(b) = data::next(&mut rows).await? {
        let batch = gbdt_batch(spec, &features, &mut dicts, &b)?;
        sample.offer(&batch.columns);
    }
    let mappers = sample.fit(&specs, params.max_bin);
    progress(&format!(
        "{}: bins fitted from {} sampled rows",
        spec.name,
        sample.len()
    ));

    // Pass 2: every row, binned.
    let (_, mut rows) = data::stream(lake, &train_sql).await?;
    let mut builder =
        strata_gbdt::DatasetBuilder::with_mappers(specs, mappers).map_err(gbdt_err)?;
    let mut train_rows = 0u64;
    let mut label_sum = 0f64;
    while let Some(b) = data::next(&mut rows).await? {
        let batch = gbdt_batch(spec, &features, &mut dicts, &b)?;
        label_sum += batch.labels.iter().map(|&l| f64::from(l)).sum::<f64>();
        let cols: Vec<&[f32]> = batch.columns.iter().map(Vec::as_slice).collect();
        builder
            .push_columns(&cols, &batch.labels, None, batch.queries.as_deref())
            .map_err(gbdt_err)?;
        train_rows += b.num_rows() as u64;
    }
    if train_rows == 0 {
        return Err(Error::NotEnoughData(format!(
            "model {}: no training rows in {train_w} ({})",
            spec.name,
            spec.source.describe()
        )));
    }
    let train_set = builder.finish().map_err(gbdt_err)?;
    progress(&format!("{}: {train_rows} training rows read", spec.name));

    // Validation rows: binned like training's for early stopping, and kept raw (row-major)
    // to score with the finished model.
    let (_, mut rows) = data::stream(
        lake,
        &data::windowed(&sql, &spec.split.column, valid_w, order.as_deref()),
    )
    .await?;
    let mut vbuilder = strata_gbdt::DatasetBuilder::like(&train_set);
    let nf = features.len();
    let mut raw: Vec<f32> = Vec::new();
    let mut vlabels: Vec<f32> = Vec::new();
    let mut vqueries: Vec<u64> = Vec::new();
    while let Some(b) = data::next(&mut rows).await? {
        let batch = gbdt_batch(spec, &features, &mut dicts, &b)?;
        let cols: Vec<&[f32]> = batch.columns.iter().map(Vec::as_slice).collect();
        vbuilder
            .push_columns(&cols, &batch.labels, None, batch.queries.as_deref())
            .map_err(gbdt_err)?;
        for r in 0..batch.labels.len() {
            raw.extend(batch.columns.iter().map(|c| c[r]));
        }
        vlabels.extend_from_slice(&batch.labels);
        if let Some(q) = batch.queries {
            vqueries.extend(q);
        }
    }
    if vlabels.is_empty() {
        return Err(Error::NotEnoughData(format!(
            "model {}: no validation rows in {valid_w} ({}): the validation day must have data",
            spec.name,
            spec.source.describe()
        )));
    }
    let valid_set = vbuilder.finish().map_err(gbdt_err)?;
    let valid_rows = vlabels.len() as u64;
    progress(&format!("{}: {valid_rows} validation rows read", spec.name));

    let name = spec.name.clone();
    let p = progress.clone();
    let params_for_train = params.clone();
    let (model, _report) = tokio::task::spawn_blocking(move || {
        let mut last = Instant::now();
        strata_gbdt::train(&params_for_train, &train_set, Some(&valid_set), &mut |pr| {
            if last.elapsed().as_secs() >= 2 {
                last = Instant::now();
                p(&format!("{name}: {pr:?}"));
            }
        })
    })
    .await
    .map_err(|e| Error::Internal(format!("training thread: {e}")))?
    .map_err(gbdt_err)?;

    let mut scores = vec![0f32; vlabels.len()];
    model
        .predict_batch(&raw, nf, &mut scores)
        .map_err(gbdt_err)?;
    let mut metrics = BTreeMap::new();
    match params.objective {
        strata_gbdt::Objective::Binary => {
            metrics.insert("auc".into(), strata_gbdt::metrics::auc(&scores, &vlabels));
            metrics.insert(
                "logloss".into(),
                strata_gbdt::metrics::logloss(&scores, &vlabels),
            );
            // The simple baseline: the training base rate for everyone.
            let base = label_sum / train_rows as f64;
            if base > 0.0 && base < 1.0 {
                let prior = vec![base as f32; vlabels.len()];
                metrics.insert(
                    "baseline_logloss".into(),
                    strata_gbdt::metrics::logloss(&prior, &vlabels),
                );
            }
        }
        strata_gbdt::Objective::Lambdarank => {
            let offsets = group_offsets(&vqueries);
            metrics.insert(
                "ndcg@10".into(),
                strata_gbdt::metrics::ndcg_at(10, &scores, &vlabels, &offsets),
            );
        }
    }
    metrics.insert("trees".into(), model.num_trees() as f64);
    progress(&format!(
        "{}: {} trees, validation {}",
        spec.name,
        model.num_trees(),
        metrics
            .iter()
            .map(|(k, v)| format!("{k} {v:.4}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    let bytes = model.to_bytes().map_err(gbdt_err)?;
    write(dir, "model.json", &bytes)?;
    let inputs = GbdtInputs {
        features,
        categories: dicts,
    };
    write(
        dir,
        "inputs.json",
        &serde_json::to_vec(&inputs).map_err(|e| Error::Internal(e.to_string()))?,
    )?;
    Ok(Trained {
        train_rows,
        valid_rows,
        metrics,
        params: serde_json::to_value(&params).unwrap_or_default(),
        embeddings: None,
    })
}

/// Group boundaries of rows sorted by query id runs.
fn group_offsets(queries: &[u64]) -> Vec<u32> {
    let mut out = Vec::new();
    for (i, q) in queries.iter().enumerate() {
        if i == 0 || queries[i - 1] != *q {
            out.push(i as u32);
        }
    }
    out.push(queries.len() as u32);
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    }
    std::fs::write(&path, bytes).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// The columns of one tower of a batch.
fn tower_columns(tower: &Tower, b: &RecordBatch, out: &mut strata_twotower::Columns) -> Result<()> {
    for (i, n) in tower.numeric.iter().enumerate() {
        data::f32s(b, n, &mut out.numeric[i])?;
    }
    for (i, c) in tower.categorical.iter().enumerate() {
        data::u64s(b, c.name(), &mut out.categorical[i])?;
    }
    Ok(())
}

fn pairs_batch(
    tt: &crate::spec::TwoTowerSpec,
    cfg: &strata_twotower::TrainConfig,
    b: &RecordBatch,
) -> Result<strata_twotower::Batch> {
    let mut batch = strata_twotower::Batch::for_specs(&cfg.user, &cfg.item);
    data::u64s(b, &tt.user.id, &mut batch.user_id)?;
    data::u64s(b, &tt.item.id, &mut batch.item_id)?;
    tower_columns(&tt.user, b, &mut batch.user)?;
    tower_columns(&tt.item, b, &mut batch.item)?;
    Ok(batch)
}

/// Appends `src`'s rows to `dst` (same tower spec).
fn append_columns(dst: &mut strata_twotower::Columns, src: strata_twotower::Columns) {
    for (d, s) in dst.numeric.iter_mut().zip(src.numeric) {
        d.extend(s);
    }
    for (d, s) in dst.categorical.iter_mut().zip(src.categorical) {
        d.extend(s);
    }
}

/// The item catalogue with its payload, read from `[items]`.
pub struct Catalogue {
    pub items: strata_twotower::ItemTable,
    pub created_at: Vec<i64>,
    /// Payload columns: name, integer values or string values.
    pub payload: Vec<(String, PayloadColumn)>,
}

pub enum PayloadColumn {
    Int(Vec<i64>),
    Str(Vec<String>),
}

async fn read_catalogue(
    lake: &Lake,
    tt: &crate::spec::TwoTowerSpec,
    cfg: &strata_twotower::TrainConfig,
) -> Result<Catalogue> {
    let (schema, mut rows) = data::stream(lake, &tt.items_source.sql()).await?;
    let mut payload = Vec::new();
    for p in &tt.items.payload {
        let f = schema.field_with_name(p).map_err(|_| {
            Error::Plan(format!(
                "[items] payload column {p} is not in the catalogue"
            ))
        })?;
        let col = match f.data_type() {
            t if t.is_integer() => PayloadColumn::Int(Vec::new()),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                PayloadColumn::Str(Vec::new())
            }
            t => {
                return Err(Error::Plan(format!(
                    "[items] payload column {p} is {t}: payload fields are integers or text"
                )))
            }
        };
        payload.push((p.clone(), col));
    }
    let mut items = strata_twotower::ItemTable {
        ids: Vec::new(),
        features: strata_twotower::Columns::for_spec(&cfg.item),
    };
    let mut created_at = Vec::new();
    while let Some(b) = data::next(&mut rows).await? {
        data::u64s(&b, &tt.item.id, &mut items.ids)?;
        tower_columns(&tt.item, &b, &mut items.features)?;
        match &tt.items.created_at {
            Some(c) => data::micros(&b, c, &mut created_at)?,
            None => created_at.extend(std::iter::repeat_n(0, b.num_rows())),
        }
        for (name, col) in payload.iter_mut() {
            match col {
                PayloadColumn::Int(v) => {
                    let mut u = Vec::new();
                    data::u64s(&b, name, &mut u)?;
                    v.extend(u.into_iter().map(|x| x as i64));
                }
                PayloadColumn::Str(v) => {
                    let a = b
                        .column_by_name(name)
                        .ok_or_else(|| Error::Plan(format!("payload column {name} is missing")))?;
                    let a = arrow::compute::cast(a, &DataType::Utf8)
                        .map_err(|e| Error::Plan(format!("payload column {name}: {e}")))?;
                    let a = arrow::array::AsArray::as_string::<i32>(&a);
                    v.extend((0..arrow::array::Array::len(a)).map(|i| {
                        if arrow::array::Array::is_null(a, i) {
                            String::new()
                        } else {
                            a.value(i).to_string()
                        }
                    }));
                }
            }
        }
    }
    Ok(Catalogue {
        items,
        created_at,
        payload,
    })
}

async fn train_two_tower(
    lake: &Lake,
    spec: &ModelSpec,
    opts: &TrainOptions,
    train_w: Window,
    valid_w: Window,
    dir: &Path,
    progress: &ProgressFn,
) -> Result<Trained> {
    let tt = spec
        .two_tower
        .clone()
        .ok_or_else(|| Error::Internal("not a two-tower model".into()))?;
    let mut cfg = two_tower_config(spec)?;
    if let Some(t) = opts.threads {
        cfg.threads = t;
    }
    let tt_err = |e: strata_twotower::Error| Error::Train(format!("model {}: {e}", spec.name));
    let sql = spec.source.sql();

    // Training pairs → a spill file (read once per epoch, shuffled).
    let (_, mut rows) = data::stream(
        lake,
        &data::windowed(&sql, &spec.split.column, train_w, None),
    )
    .await?;
    let mut spill =
        strata_twotower::SpillWriter::new(&cfg.user, &cfg.item, Some(dir.parent().unwrap_or(dir)))
            .map_err(tt_err)?;
    while let Some(b) = data::next(&mut rows).await? {
        spill.push(&pairs_batch(&tt, &cfg, &b)?).map_err(tt_err)?;
    }
    let train_rows = spill.rows();
    if train_rows == 0 {
        return Err(Error::NotEnoughData(format!(
            "model {}: no training pairs in {train_w} ({})",
            spec.name,
            spec.source.describe()
        )));
    }
    let mut spill = spill.finish(cfg.seed).map_err(tt_err)?;

    let (_, mut rows) = data::stream(
        lake,
        &data::windowed(&sql, &spec.split.column, valid_w, None),
    )
    .await?;
    let mut valid = strata_twotower::Batch::for_specs(&cfg.user, &cfg.item);
    while let Some(b) = data::next(&mut rows).await? {
        let batch = pairs_batch(&tt, &cfg, &b)?;
        valid.user_id.extend(batch.user_id);
        valid.item_id.extend(batch.item_id);
        append_columns(&mut valid.user, batch.user);
        append_columns(&mut valid.item, batch.item);
    }
    let valid_rows = valid.rows() as u64;
    if valid_rows == 0 {
        return Err(Error::NotEnoughData(format!(
            "model {}: no validation pairs in {valid_w}: the validation day must have data",
            spec.name
        )));
    }
    let catalogue = read_catalogue(lake, &tt, &cfg).await?;
    if catalogue.items.is_empty() {
        return Err(Error::Plan(format!(
            "model {}: the item catalogue ([items]) is empty",
            spec.name
        )));
    }
    progress(&format!(
        "{}: {train_rows} training pairs, {valid_rows} validation pairs, {} items",
        spec.name,
        catalogue.items.len()
    ));

    let name = spec.name.clone();
    let p = progress.clone();
    let cfg_train = cfg.clone();
    let index_settings = tt.index.clone();
    let seed = spec.seed;
    let threads = cfg.threads.max(1);
    let dir_owned = dir.to_path_buf();
    let (model_report, catalogue) = tokio::task::spawn_blocking(move || {
        let mut last = Instant::now();
        let mut valid_source = match strata_twotower::InMemory::new(valid) {
            Ok(v) => v,
            Err(e) => return (Err(e), catalogue),
        };
        let out = strata_twotower::train(
            &cfg_train,
            &mut spill,
            Some(&mut valid_source),
            Some(&catalogue.items),
            |pr: &strata_twotower::Progress| {
                if last.elapsed().as_secs() >= 2 || pr.valid.is_some() {
                    last = Instant::now();
                    p(&format!(
                        "{name}: {:?} epoch {}/{} rows {}/{} loss {:.4}{}",
                        pr.phase,
                        pr.epoch,
                        pr.epochs,
                        pr.rows_done,
                        pr.rows_total,
                        pr.loss,
                        pr.valid
                            .map(|v| format!(" recall@100 {:.4}", v.recall_at_100))
                            .unwrap_or_default()
                    ));
                }
            },
        );
        (out, catalogue)
    })
    .await
    .map_err(|e| Error::Internal(format!("training thread: {e}")))?;
    let (model, report) = model_report.map_err(tt_err)?;

    let mut metrics = BTreeMap::new();
    if let Some(v) = report.valid {
        metrics.insert("recall@100".into(), v.recall_at_100);
        metrics.insert("ndcg@10".into(), v.ndcg_at_10);
        metrics.insert("valid_users".into(), v.users as f64);
    }
    if let Some(v) = report.popularity {
        metrics.insert("popularity_recall@100".into(), v.recall_at_100);
        metrics.insert("popularity_ndcg@10".into(), v.ndcg_at_10);
    }
    progress(&format!(
        "{}: validation {}",
        spec.name,
        metrics
            .iter()
            .map(|(k, v)| format!("{k} {v:.4}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    // Every item embedded, then the index.
    let p = progress.clone();
    let name = spec.name.clone();
    let (ids, vectors, dim) = tokio::task::spawn_blocking(move || -> Result<_> {
        let vectors = model
            .item_vectors(&catalogue.items.features)
            .map_err(|e| Error::Train(format!("embedding items: {e}")))?;
        let dim = model.dim();
        let mut params = strata_ann::IndexParams::new(dim, strata_ann::Metric::Dot);
        params.m = index_settings.m;
        params.ef_construction = index_settings.ef_construction;
        params.ef_search = index_settings.ef_search;
        params.seed = seed;
        for (n, col) in &catalogue.payload {
            params.schema.fields.push(strata_ann::FieldDef {
                name: n.clone(),
                kind: match col {
                    PayloadColumn::Int(_) => strata_ann::FieldKind::Int,
                    PayloadColumn::Str(_) => strata_ann::FieldKind::Str,
                },
            });
        }
        let ann_err = |e: strata_ann::AnnError| Error::Train(format!("building the index: {e}"));
        let mut builder = strata_ann::IndexBuilder::new(params).map_err(ann_err)?;
        for (i, id) in catalogue.items.ids.iter().enumerate() {
            let mut payload = strata_ann::Payload::at(catalogue.created_at[i]);
            for (n, col) in &catalogue.payload {
                let v = match col {
                    PayloadColumn::Int(v) => strata_ann::PayloadValue::Int(v[i]),
                    PayloadColumn::Str(v) => strata_ann::PayloadValue::Str(v[i].clone()),
                };
                payload.fields.push((n.clone(), v));
            }
            builder
                .add(*id, &vectors[i * dim..(i + 1) * dim], payload)
                .map_err(ann_err)?;
        }
        let started = Instant::now();
        let index = builder.build(threads).map_err(ann_err)?;
        p(&format!(
            "{name}: index of {} items built in {:.1}s",
            index.len(),
            started.elapsed().as_secs_f64()
        ));
        index.save(&dir_owned.join("index")).map_err(ann_err)?;
        model
            .save(&dir_owned.join("tower"))
            .map_err(|e| Error::Train(format!("saving the towers: {e}")))?;
        Ok((catalogue.items.ids, vectors, dim))
    })
    .await
    .map_err(|e| Error::Internal(format!("index thread: {e}")))??;

    let mut params = serde_json::to_value(&cfg).unwrap_or_default();
    if let Some(o) = params.as_object_mut() {
        o.insert(
            "index".into(),
            serde_json::json!({"m": tt.index.m, "ef_construction": tt.index.ef_construction, "ef_search": tt.index.ef_search}),
        );
    }
    Ok(Trained {
        train_rows,
        valid_rows,
        metrics,
        params,
        embeddings: Some((ids, vectors, dim)),
    })
}

/// The table of a two-tower model's item embeddings: `ml.<model>_item_embeddings`.
pub fn embeddings_table(model: &str) -> String {
    format!("ml.{}_item_embeddings", model.replace('-', "_"))
}

async fn write_embeddings(
    lake: &Lake,
    model: &str,
    version: i64,
    ids: &[u64],
    vectors: &[f32],
    dim: usize,
) -> Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("version", DataType::Int64, false),
        Field::new("item_id", DataType::Int64, false),
        Field::new(
            "embedding",
            DataType::List(Arc::new(Field::new("element", DataType::Float32, true))),
            false,
        ),
    ]));
    let name = embeddings_table(model);
    let (ns, t) = name.split_once('.').unwrap_or(("ml", &name));
    let ident = iceberg::TableIdent::new(iceberg::NamespaceIdent::new(ns.into()), t.into());
    table::create_table(lake, &ident, &schema, None, HashMap::new()).await?;
    let mut batches = Vec::new();
    for chunk in (0..ids.len()).collect::<Vec<_>>().chunks(65_536) {
        let mut list = ListBuilder::new(Float32Builder::new()).with_field(Arc::new(Field::new(
            "element",
            DataType::Float32,
            true,
        )));
        for &i in chunk {
            list.values().append_slice(&vectors[i * dim..(i + 1) * dim]);
            list.append(true);
        }
        let cols: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![version; chunk.len()])),
            Arc::new(Int64Array::from_iter_values(
                chunk.iter().map(|&i| ids[i] as i64),
            )),
            Arc::new(list.finish()),
        ];
        batches.push(
            RecordBatch::try_new(schema.clone(), cols)
                .map_err(|e| Error::Internal(format!("embedding rows: {e}")))?,
        );
    }
    table::append(lake, &ident, batches).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::BinSample;
    use strata_gbdt::{BinMapper, FeatureSpec};

    /// Two columns of `n` rows: a day number that grows through the window, and noise.
    fn rows(n: usize) -> Vec<(f32, f32)> {
        (0..n)
            .map(|i| ((i / 100) as f32, ((i * 7919) % 1013) as f32))
            .collect()
    }

    fn sample(rows: &[(f32, f32)], k: usize) -> (usize, Vec<BinMapper>) {
        let mut s = BinSample::new(k, 2, 42);
        for chunk in rows.chunks(37) {
            s.offer(&[
                chunk.iter().map(|r| r.0).collect(),
                chunk.iter().map(|r| r.1).collect(),
            ]);
        }
        let specs = [FeatureSpec::numeric("day"), FeatureSpec::numeric("x")];
        (s.len(), s.fit(&specs, 255))
    }

    #[test]
    fn bin_sample_ignores_row_order_and_spans_the_window() {
        let forward = rows(5000);
        let mut backward = forward.clone();
        backward.reverse();
        let (n, a) = sample(&forward, 500);
        assert_eq!(n, 500);
        assert_eq!(a, sample(&backward, 500).1);
        // The first 500 rows would hold days 0-4 only; the sample reaches the last days.
        let BinMapper::Numeric { upper } = &a[0] else {
            panic!("numeric mapper expected");
        };
        let finite: Vec<f32> = upper.iter().copied().filter(|v| v.is_finite()).collect();
        assert!(finite.last().is_some_and(|&v| v >= 40.0), "{finite:?}");
        // Fewer rows than k: all are kept.
        assert_eq!(sample(&forward[..100], 500).0, 100);
    }
}
