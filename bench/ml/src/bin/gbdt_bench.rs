//! GBDT benchmark: strata-gbdt against LightGBM (PyPI) on the same Parquet file, split and
//! features, in one run. Writes `<out>/gbdt-<UTC>.md`.
//!
//! Training time is the boosting alone (both sides also report their binning time); AUC and log
//! loss of both models are computed here with `strata_gbdt::metrics` from each side's
//! validation predictions. Scoring latency: 1,200 validation rows, one thread, many repetitions.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};
use clap::Parser;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use strata_gbdt::metrics::{auc, logloss};
use strata_gbdt::{train, BinMapper, DatasetBuilder, FeatureSpec, Model, Objective, Params};

#[derive(Parser, Debug)]
#[command(about = "strata-gbdt vs LightGBM on a Parquet sample file")]
struct Args {
    /// A Parquet file or a directory of Parquet files.
    #[arg(long)]
    data: PathBuf,
    /// Label column (0/1).
    #[arg(long, default_value = "label")]
    label: String,
    /// Columns that are not features (comma-separated); every other column is one.
    #[arg(
        long,
        default_value = "user_id,post_id,author_id,sample_ts,feature_dt,dt"
    )]
    exclude: String,
    /// Rows with `dt >= this` (YYYY-MM-DD) are validation, the rest training.
    #[arg(long)]
    valid_from: String,
    /// Threads for both trainers.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// `binary` (lambdarank needs query ids, not in this bench yet).
    #[arg(long, default_value = "binary")]
    objective: String,
    #[arg(long, default_value_t = 100)]
    trees: u32,
    #[arg(long, default_value_t = 31)]
    num_leaves: u32,
    #[arg(long, default_value_t = 0.1)]
    learning_rate: f64,
    #[arg(long, default_value_t = 20)]
    min_data_in_leaf: u32,
    #[arg(long, default_value_t = 255)]
    max_bin: u32,
    /// Training rows sampled (uniformly) to fit our bins; LightGBM's default is 200,000.
    #[arg(long, default_value_t = 200_000)]
    bin_sample_rows: u32,
    /// Repetitions of the 1,200-row scoring measurement.
    #[arg(long, default_value_t = 2000)]
    latency_reps: usize,
    /// Python of the peer's venv (with bench/python/requirements-ml-gbdt.txt); omit to skip the peer.
    #[arg(long)]
    python: Option<PathBuf>,
    /// The peer script.
    #[arg(long, default_value = "bench/python/gbdt_lightgbm.py")]
    peer_script: PathBuf,
    /// Also write our model (JSON) here.
    #[arg(long)]
    save_model: Option<PathBuf>,
    /// Directory for the markdown report.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
}

fn parquet_files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    if out.is_empty() {
        bail!("no Parquet files under {}", path.display());
    }
    Ok(out)
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date.
fn days_from_civil(s: &str) -> Result<i32> {
    let parts: Vec<i64> = s
        .split('-')
        .map(|p| p.parse::<i64>())
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("bad date {s:?}"))?;
    let [y, m, d] = parts[..] else {
        bail!("bad date {s:?}")
    };
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Ok((era * 146_097 + doe - 719_468) as i32)
}

struct Split {
    train: DatasetBuilder,
    valid: Vec<(Vec<Vec<f32>>, Vec<f32>)>,
    valid_rows: usize,
    bin_time: Duration,
}

/// Feature columns of a batch as f32 (strings through a shared dictionary).
fn batch_features(
    batch: &RecordBatch,
    specs: &[FeatureSpec],
    dicts: &mut HashMap<String, HashMap<String, u32>>,
) -> Result<Vec<Vec<f32>>> {
    let mut cols = Vec::with_capacity(specs.len());
    for s in specs {
        let col = batch
            .column_by_name(&s.name)
            .with_context(|| format!("column {} missing from a file", s.name))?;
        let v: Vec<f32> = match col.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                let strings = arrow::compute::cast(col, &DataType::Utf8)?;
                let d = dicts.entry(s.name.clone()).or_default();
                strings
                    .as_string::<i32>()
                    .iter()
                    .map(|v| match v {
                        Some(v) => {
                            let next = d.len() as u32;
                            *d.entry(v.to_string()).or_insert(next) as f32
                        }
                        None => f32::NAN,
                    })
                    .collect()
            }
            DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _) => {
                let ints = arrow::compute::cast(col, &DataType::Int64)?;
                let f = arrow::compute::cast(&ints, &DataType::Float64)?;
                f.as_primitive::<Float64Type>()
                    .iter()
                    .map(|v| v.map_or(f32::NAN, |x| x as f32))
                    .collect()
            }
            _ => {
                let f = arrow::compute::cast(col, &DataType::Float64)
                    .with_context(|| format!("column {} is not numeric", s.name))?;
                f.as_primitive::<Float64Type>()
                    .iter()
                    .map(|v| v.map_or(f32::NAN, |x| x as f32))
                    .collect()
            }
        };
        cols.push(v);
    }
    Ok(cols)
}

/// One batch, split: (train columns, train labels), (valid columns, valid labels).
type Halves = ((Vec<Vec<f32>>, Vec<f32>), (Vec<Vec<f32>>, Vec<f32>));

/// Calls `each` with every batch of every file, split by `dt` and turned into f32 columns.
fn scan(
    args: &Args,
    files: &[PathBuf],
    specs: &[FeatureSpec],
    dicts: &mut HashMap<String, HashMap<String, u32>>,
    mut each: impl FnMut(Halves) -> Result<()>,
) -> Result<()> {
    let valid_day = days_from_civil(&args.valid_from)?;
    for file in files {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(file)?)?
            .with_batch_size(65_536)
            .build()?;
        for batch in reader {
            let batch = batch?;
            let dt = batch.column_by_name("dt").context("no dt column")?;
            let is_valid: Vec<bool> = match dt.data_type() {
                DataType::Date32 => dt
                    .as_primitive::<arrow::datatypes::Date32Type>()
                    .iter()
                    .map(|d| d.is_some_and(|d| d >= valid_day))
                    .collect(),
                _ => {
                    let s = arrow::compute::cast(dt, &DataType::Utf8)?;
                    s.as_string::<i32>()
                        .iter()
                        .map(|d| d.is_some_and(|d| d >= args.valid_from.as_str()))
                        .collect()
                }
            };
            let label_col = batch
                .column_by_name(&args.label)
                .with_context(|| format!("no label column {}", args.label))?;
            let labels = arrow::compute::cast(label_col, &DataType::Float64)?;
            let labels: Vec<f32> = labels
                .as_primitive::<Float64Type>()
                .iter()
                .map(|v| v.map_or(f32::NAN, |x| x as f32))
                .collect();
            let cols = batch_features(&batch, specs, dicts)?;
            let pick = |want: bool| -> (Vec<Vec<f32>>, Vec<f32>) {
                let rows: Vec<usize> = (0..labels.len()).filter(|i| is_valid[*i] == want).collect();
                (
                    cols.iter()
                        .map(|c| rows.iter().map(|i| c[*i]).collect())
                        .collect(),
                    rows.iter().map(|i| labels[*i]).collect(),
                )
            };
            each((pick(false), pick(true)))?;
        }
    }
    Ok(())
}

fn read(args: &Args, params: &Params) -> Result<(Vec<FeatureSpec>, Split)> {
    let files = parquet_files(&args.data)?;
    let exclude: Vec<&str> = args.exclude.split(',').filter(|s| !s.is_empty()).collect();
    let schema = ParquetRecordBatchReaderBuilder::try_new(File::open(&files[0])?)?
        .schema()
        .clone();
    let specs: Vec<FeatureSpec> = schema
        .fields()
        .iter()
        .filter(|f| f.name() != &args.label && !exclude.contains(&f.name().as_str()))
        .map(|f| match f.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                FeatureSpec::categorical(f.name())
            }
            _ => FeatureSpec::numeric(f.name()),
        })
        .collect();
    let mut dicts = HashMap::new();
    // Pass 1: a uniform random sample of the training rows (reservoir, seeded) to fit the bins:
    // the file is ordered by day, so its first rows would describe one day only.
    let cap = params.bin_sample_rows as usize;
    let mut sample: Vec<Vec<f32>> = vec![Vec::with_capacity(cap); specs.len()];
    let mut seen = 0u64;
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    scan(args, &files, &specs, &mut dicts, |((tc, tl), _)| {
        for i in 0..tl.len() {
            seen += 1;
            if sample[0].len() < cap {
                for (s, c) in sample.iter_mut().zip(&tc) {
                    s.push(c[i]);
                }
            } else {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let j = (rng % seen) as usize;
                if j < cap {
                    for (s, c) in sample.iter_mut().zip(&tc) {
                        s[j] = c[i];
                    }
                }
            }
        }
        Ok(())
    })?;
    let started = Instant::now();
    let mappers = specs
        .iter()
        .zip(&sample)
        .map(|(s, col)| BinMapper::fit(s.kind, col, params.max_bin))
        .collect();
    drop(sample);
    let mut split = Split {
        train: DatasetBuilder::with_mappers(specs.clone(), mappers)?,
        valid: Vec::new(),
        valid_rows: 0,
        bin_time: started.elapsed(),
    };
    // Pass 2: bin the training rows, keep the validation rows raw (for scoring).
    scan(args, &files, &specs, &mut dicts, |((tc, tl), v)| {
        let started = Instant::now();
        let refs: Vec<&[f32]> = tc.iter().map(|c| c.as_slice()).collect();
        split.train.push_columns(&refs, &tl, None, None)?;
        split.bin_time += started.elapsed();
        split.valid_rows += v.1.len();
        split.valid.push(v);
        Ok(())
    })?;
    Ok((specs, split))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[derive(Default)]
struct Peer {
    json: serde_json::Value,
    auc: f64,
    logloss: f64,
}

fn run_peer(args: &Args, python: &Path, valid_labels: &[f32]) -> Result<Peer> {
    let preds = std::env::temp_dir().join(format!("gbdt-bench-peer-{}.f32", std::process::id()));
    // Passive OpenMP waiting: on a shared machine with more runnable threads than cores,
    // LightGBM's spinning workers otherwise slow it several-fold (measured 19 s vs 3 s).
    let out = Command::new(python)
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .arg(&args.peer_script)
        .args(["--data", &args.data.display().to_string()])
        .args(["--label", &args.label, "--exclude", &args.exclude])
        .args(["--valid-from", &args.valid_from])
        .args(["--threads", &args.threads.to_string()])
        .args(["--trees", &args.trees.to_string()])
        .args(["--num-leaves", &args.num_leaves.to_string()])
        .args(["--learning-rate", &args.learning_rate.to_string()])
        .args(["--min-data-in-leaf", &args.min_data_in_leaf.to_string()])
        .args(["--max-bin", &args.max_bin.to_string()])
        .args(["--predictions", &preds.display().to_string()])
        .output()
        .context("running the LightGBM peer")?;
    if !out.status.success() {
        bail!(
            "the LightGBM peer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "peer output is not JSON: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    let bytes = std::fs::read(&preds)?;
    let _ = std::fs::remove_file(&preds);
    let p: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if p.len() != valid_labels.len() {
        bail!(
            "the peer predicted {} validation rows, we have {} (different split?)",
            p.len(),
            valid_labels.len()
        );
    }
    Ok(Peer {
        auc: auc(&p, valid_labels),
        logloss: logloss(&p, valid_labels),
        json,
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    let objective = match args.objective.as_str() {
        "binary" => Objective::Binary,
        other => bail!("objective {other:?}: this bench runs binary"),
    };
    let params = Params {
        objective,
        num_trees: args.trees,
        num_leaves: args.num_leaves,
        learning_rate: args.learning_rate,
        min_data_in_leaf: args.min_data_in_leaf,
        max_bin: args.max_bin,
        bin_sample_rows: args.bin_sample_rows,
        threads: args.threads,
        ..Params::default()
    };
    params.validate()?;
    eprintln!("reading {}", args.data.display());
    let (specs, split) = read(&args, &params)?;
    let nf = specs.len();
    let started = Instant::now();
    let train_ds = split.train.finish()?;
    let mut vb = DatasetBuilder::like(&train_ds);
    let mut valid_rows_raw: Vec<f32> = Vec::with_capacity(split.valid_rows * nf);
    let mut valid_labels = Vec::with_capacity(split.valid_rows);
    for (cols, labels) in &split.valid {
        let refs: Vec<&[f32]> = cols.iter().map(|c| c.as_slice()).collect();
        vb.push_columns(&refs, labels, None, None)?;
        for i in 0..labels.len() {
            valid_rows_raw.extend(cols.iter().map(|c| c[i]));
        }
        valid_labels.extend_from_slice(labels);
    }
    let valid_ds = vb.finish()?;
    let bin_time = split.bin_time + started.elapsed();
    eprintln!(
        "training on {} rows, validating on {} ({nf} features, {} threads)",
        train_ds.num_rows(),
        valid_ds.num_rows(),
        args.threads
    );
    let (model, report) = train(&params, &train_ds, Some(&valid_ds), &mut |p| {
        if p.iteration % 10 == 0 {
            eprintln!(
                "round {}/{} valid {} {:.5} ({:.1}s)",
                p.iteration,
                p.num_trees,
                p.metric,
                p.valid_metric.unwrap_or(f64::NAN),
                p.elapsed.as_secs_f64()
            );
        }
    })?;
    let train_s = report.elapsed.as_secs_f64();
    let bytes = model.to_bytes()?;
    if let Some(p) = &args.save_model {
        std::fs::write(p, &bytes)?;
    }
    let model = Model::from_bytes(&bytes)?;
    let mut preds = vec![0f32; valid_labels.len()];
    model.predict_batch(&valid_rows_raw, nf, &mut preds)?;
    let ours_auc = auc(&preds, &valid_labels);
    let ours_ll = logloss(&preds, &valid_labels);

    // Scoring latency: 1,200 rows, one thread.
    let n_lat = 1200.min(valid_labels.len());
    let sample = &valid_rows_raw[..n_lat * nf];
    let mut out = vec![0f32; n_lat];
    let mut lat = Vec::with_capacity(args.latency_reps);
    for _ in 0..args.latency_reps {
        let s = Instant::now();
        model.predict_batch(sample, nf, &mut out)?;
        lat.push(s.elapsed().as_secs_f64() * 1e3);
    }
    lat.sort_by(f64::total_cmp);
    let mut single = Vec::with_capacity(args.latency_reps);
    for i in 0..args.latency_reps {
        let r = i % n_lat;
        let s = Instant::now();
        let p = model.predict_row(&sample[r * nf..(r + 1) * nf])?;
        single.push(s.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(p);
    }
    single.sort_by(f64::total_cmp);
    eprintln!(
        "ours: auc {ours_auc:.5} logloss {ours_ll:.5} train {train_s:.2}s, 1200 rows p50 {:.3} ms ({} form)",
        percentile(&lat, 0.5),
        model.batch_scorer()
    );

    let peer = match &args.python {
        Some(py) => {
            eprintln!("running LightGBM");
            Some(run_peer(&args, py, &valid_labels)?)
        }
        None => None,
    };

    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let name = format!("gbdt-{}.md", utc_stamp(stamp));
    std::fs::create_dir_all(&args.out)?;
    let mut md = String::new();
    md.push_str(&format!(
        "# GBDT: strata-gbdt vs LightGBM\n\nData: `{}`; training rows {}, validation rows {} (dt >= {}); {nf} features: {}.\n\
         Params: binary, {} trees, {} leaves, learning rate {}, min_data_in_leaf {}, max_bin {}, {} threads, no early stopping, validation metric evaluated every round on both sides; our bins are fitted from a uniform random sample of 200,000 training rows (LightGBM: `bin_construct_sample_cnt` 200,000); LightGBM runs with OMP_WAIT_POLICY=PASSIVE.\n\n",
        args.data.display(),
        train_ds.num_rows(),
        valid_ds.num_rows(),
        args.valid_from,
        specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", "),
        args.trees, args.num_leaves, args.learning_rate, args.min_data_in_leaf, args.max_bin, args.threads,
    ));
    md.push_str("| | strata-gbdt | LightGBM | ratio / delta |\n|---|---|---|---|\n");
    let pj = |k: &str| {
        peer.as_ref()
            .and_then(|p| p.json.get(k))
            .and_then(|v| v.as_f64())
    };
    let fmt = |v: Option<f64>, d: usize| v.map_or("—".to_string(), |v| format!("{v:.d$}"));
    md.push_str(&format!(
        "| validation AUC | {ours_auc:.5} | {} | {} |\n",
        fmt(peer.as_ref().map(|p| p.auc), 5),
        fmt(peer.as_ref().map(|p| ours_auc - p.auc), 5)
    ));
    md.push_str(&format!(
        "| validation logloss | {ours_ll:.5} | {} | {} |\n",
        fmt(peer.as_ref().map(|p| p.logloss), 5),
        fmt(peer.as_ref().map(|p| ours_ll - p.logloss), 5)
    ));
    md.push_str(&format!(
        "| training (boosting) s | {train_s:.2} | {} | {} |\n",
        fmt(pj("train_s"), 2),
        fmt(pj("train_s").map(|p| train_s / p), 2)
    ));
    md.push_str(&format!(
        "| binning s | {:.2} | {} | |\n",
        bin_time.as_secs_f64(),
        fmt(pj("construct_s"), 2)
    ));
    md.push_str(&format!(
        "| predict 1,200 rows p50 ms (1 thread; ours: {} form) | {:.3} | {} | {} |\n",
        model.batch_scorer(),
        percentile(&lat, 0.5),
        fmt(pj("predict_1200_p50_ms"), 3),
        fmt(
            pj("predict_1200_p50_ms").map(|p| percentile(&lat, 0.5) / p),
            3
        )
    ));
    md.push_str(&format!(
        "| predict 1,200 rows p99 ms (1 thread) | {:.3} | {} | |\n",
        percentile(&lat, 0.99),
        fmt(pj("predict_1200_p99_ms"), 3)
    ));
    md.push_str(&format!(
        "| predict 1,200 rows min ms (1 thread) | {:.3} | {} | {} |\n",
        lat.first().copied().unwrap_or(f64::NAN),
        fmt(pj("predict_1200_min_ms"), 3),
        fmt(
            pj("predict_1200_min_ms").map(|p| lat.first().copied().unwrap_or(f64::NAN) / p),
            3
        )
    ));
    md.push_str(&format!(
        "| predict 1 row p50 µs | {:.2} | {} | |\n",
        percentile(&single, 0.5),
        fmt(pj("predict_1_p50_us"), 2)
    ));
    md.push_str(&format!(
        "\nTrees kept: {} (of {} rounds). Model: {} bytes of JSON. LightGBM {}.\n\
         Targets (issue #26): AUC within 0.005 of LightGBM's, training time at most 2x.\n",
        report.trees,
        report.rounds,
        bytes.len(),
        peer.as_ref()
            .and_then(|p| p.json.get("lightgbm_version"))
            .and_then(|v| v.as_str())
            .unwrap_or("not run"),
    ));
    md.push_str("\nTop features by gain (ours):\n\n");
    let mut imp = model.feature_importance();
    imp.sort_by(|a, b| b.gain.total_cmp(&a.gain));
    for f in imp.iter().take(10) {
        md.push_str(&format!(
            "- {} — gain {:.1}, {} splits\n",
            f.name, f.gain, f.splits
        ));
    }
    let path = args.out.join(name);
    std::fs::write(&path, &md)?;
    println!("{md}");
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// `YYYYMMDDTHHMMSSZ` of a Unix time.
fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}
