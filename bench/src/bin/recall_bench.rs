//! Recommendation-quality benchmark (issue #26): on the simulator's world, in one run,
//! two-tower recall against popularity and the `ads_recall_u2u_cf` pool, measured on a day
//! none of them trained on, and against the simulated users' hidden preferences.
//!
//! 1. `strata demo --skip-models` builds the lake (events, business tables, the warehouse and
//!    the features for every simulated day); `strata models train two_tower` then trains once
//!    for the last day (the days before it are the training window, the last day validates),
//!    and `strata models train ctr_ranker` gives the GBDT's AUC on the same lake.
//! 2. Held-out clicks: users with a `Post Clicked` on the validation day (up to `--sample`,
//!    seeded). Every method ranks 100 posts per user from what was known before that day;
//!    recall@100 and NDCG@10 against the user's clicked posts of the day, computed by the
//!    same function for every method.
//! 3. Hidden preferences (which never reach the lake): the same world regenerated in
//!    process; each method's top 10 scored by `World::score_list` at noon of the validation
//!    day, normalised by the best possible list (`World::ideal_list`), beside a random list.
//!
//! Two-tower is measured twice. "as trained" searches the version's own ANN index, whose
//! catalogue was embedded from the newest post features — those of the validation day, which
//! count that day's clicks (`ctr_7d`, `impressions_7d`): it sees the answer. "at serving time"
//! re-embeds the catalogue the way it stood before the validation day (posts created
//! before it, post features of the day before) with the same towers, and searches an index
//! built with the model's settings: that is the honest figure, and the one the ratio uses.
//!
//! `bash bench/run.sh recall` builds it in release mode and calls it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use std::time::Instant;

use anyhow::{bail, Context, Result};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use chrono::{NaiveDate, NaiveTime};
use clap::Parser;
use serde_json::{json, Value};
use strata_bench::demo::{self, DemoWorld};
use strata_bench::{machine, suite};
use strata_models::data;
use strata_models::spec::{ModelSpec, TwoTowerSpec};
use strata_sim::{World, WorldConfig};
use strata_sql::SqlSession;
use strata_table::config::LakeOptions;
use strata_table::Lake;
use strata_twotower::{ndcg_at_k, recall_at_k};

#[path = "recall_bench/reference.rs"]
mod reference;

/// The list length recall is measured at.
const K: usize = 100;
/// The list length shown to a simulated user (NDCG@10, hidden-preference scores).
const SHOWN: usize = 10;
/// Simulated organic impressions per user behind the oracle list.
const ORACLE_DRAWS: usize = 20_000;

#[derive(Parser, Debug)]
#[command(about = "Recall quality on the simulator: two-tower vs popularity vs u2u CF")]
struct Args {
    /// The release `strata` binary.
    #[arg(long, default_value = "target/release/strata")]
    strata: PathBuf,
    /// Simulated users.
    #[arg(long, env = "RECALL_USERS", default_value = "20k", value_parser = suite::parse_count)]
    users: u64,
    /// Simulated days: all but the last train, the last validates.
    #[arg(long, env = "RECALL_DAYS", default_value_t = 8)]
    days: u32,
    /// Seed of the simulated world.
    #[arg(long, env = "RECALL_SEED", default_value_t = 7)]
    seed: u64,
    /// Mean events per active user per day (the demo's default).
    #[arg(long, default_value_t = 40)]
    events_per_user: u32,
    /// Users evaluated (sampled, seeded, among those who clicked on the validation day).
    #[arg(long, default_value_t = 5000)]
    sample: usize,
    /// Scratch directory (a temp dir by default; removed afterwards unless --keep).
    #[arg(long, env = "RECALL_WORK_DIR")]
    work_dir: Option<PathBuf>,
    #[arg(long)]
    keep: bool,
    /// Keep the lake an earlier `--keep` run built in the work dir: train and evaluate again
    /// (a new version each time; the one just trained is evaluated). The work dir is kept.
    #[arg(long, requires = "work_dir")]
    reuse: bool,
    /// The two-tower model file trained (copied over the demo project's before training).
    #[arg(long, default_value = "models/social/ml/two_tower.toml")]
    model_file: PathBuf,
    /// Evaluate an earlier training again instead of training: the outcome JSON it left in the
    /// work dir (`two_tower-v<N>.json`). The index settings still come from --model-file, so
    /// this is how index parameters are compared on one set of towers.
    #[arg(long, requires = "reuse")]
    outcome: Option<PathBuf>,
    /// Do not train the GBDT (`ctr_ranker`) again.
    #[arg(long)]
    skip_gbdt: bool,
    /// A note for the report (e.g. what this variant changed).
    #[arg(long, default_value = "")]
    note: String,
    /// Where reports go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let work = match &args.work_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("strata-recall-bench-{}", std::process::id())),
    };
    let result = run(&args, &work);
    if !args.keep && !args.reuse {
        let _ = std::fs::remove_dir_all(&work);
    } else {
        eprintln!("recall bench: kept {}", work.display());
    }
    result
}

fn run(args: &Args, work: &Path) -> Result<()> {
    let config = work.join("strata.toml");
    let demo_secs = if args.reuse {
        if !config.exists() {
            bail!("--reuse: {} holds no strata.toml", work.display());
        }
        None
    } else {
        Some(run_demo(args, work)?)
    };
    let project = work.join("models").join("social");
    std::fs::copy(&args.model_file, project.join("ml").join("two_tower.toml"))
        .with_context(|| format!("copying {}", args.model_file.display()))?;
    let (two_tower, tt_secs) = match &args.outcome {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let outcome: Value = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            (outcome, 0.0)
        }
        None => {
            let (outcome, secs) = demo::train(&args.strata, &config, "two_tower")?;
            let version = outcome["version"].as_i64().unwrap_or_default();
            let saved = work.join(format!("two_tower-v{version}.json"));
            std::fs::write(&saved, outcome.to_string())
                .with_context(|| format!("writing {}", saved.display()))?;
            (outcome, secs)
        }
    };
    let gbdt = if args.skip_gbdt {
        None
    } else {
        Some(demo::train(&args.strata, &config, "ctr_ranker")?)
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let eval = rt.block_on(evaluate(args, work, &project, &two_tower))?;

    let model_toml = std::fs::read_to_string(&args.model_file)?;
    let params = model_toml
        .split("[params]")
        .nth(1)
        .map(|p| p.split("\n[").next().unwrap_or_default().trim().to_string())
        .unwrap_or_default();
    let report = json!({
        "suite": "recall",
        "started": chrono::Utc::now().to_rfc3339(),
        "machine": machine("2 cores shared with other engineers' builds: times are noisy; quality figures are not"),
        "note": args.note,
        "scale": {"users": args.users, "days": args.days, "seed": args.seed,
                  "events_per_user": args.events_per_user, "sample": args.sample},
        "demo_seconds": demo_secs,
        "two_tower_train": {"wall_seconds": tt_secs, "outcome": two_tower, "params": params},
        "gbdt": gbdt.map(|(o, s)| json!({"wall_seconds": s, "outcome": o})),
        "evaluation": eval,
    });
    let md = markdown(&report);
    let json_path = suite::write_report(&args.out, "recall", &report, &md)?;
    println!("{md}");
    eprintln!("wrote {}", json_path.display());
    Ok(())
}

/// The demo lake of the benchmark's world.
fn run_demo(args: &Args, work: &Path) -> Result<f64> {
    let world = DemoWorld {
        users: args.users,
        days: args.days,
        seed: args.seed,
        events_per_user: args.events_per_user,
    };
    demo::run_demo(&args.strata, &world, work, &[])
}

/// One method's ranked lists, by user.
struct Method {
    name: &'static str,
    what: String,
    lists: HashMap<u64, Vec<u64>>,
}

/// A stable 64-bit mix (splitmix64), for the seeded sample and the random lists.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn day(v: &Value, key: &str, which: usize) -> Result<NaiveDate> {
    let text = v[key].as_str().with_context(|| format!("outcome.{key}"))?;
    let part = text.split(" .. ").nth(which).unwrap_or(text);
    Ok(part.trim().parse()?)
}

async fn query(session: &SqlSession, sql: &str) -> Result<Vec<RecordBatch>> {
    let (_, batches) = session
        .query(sql)
        .await
        .with_context(|| format!("query {sql}"))?;
    Ok(batches)
}

fn i64s(b: &RecordBatch, name: &str) -> Result<Vec<i64>> {
    let a = b
        .column_by_name(name)
        .with_context(|| format!("column {name}"))?;
    let a = arrow::compute::cast(a, &DataType::Int64)?;
    let a = a.as_primitive::<Int64Type>();
    Ok((0..a.len())
        .map(|i| if a.is_null(i) { 0 } else { a.value(i) })
        .collect())
}

fn f64s(b: &RecordBatch, name: &str) -> Result<Vec<f64>> {
    let a = b
        .column_by_name(name)
        .with_context(|| format!("column {name}"))?;
    let a = arrow::compute::cast(a, &DataType::Float64)?;
    let a = a.as_primitive::<arrow::datatypes::Float64Type>();
    Ok((0..a.len())
        .map(|i| if a.is_null(i) { 0.0 } else { a.value(i) })
        .collect())
}

/// `(a, b)` integer pairs of a two-column query.
async fn pairs(session: &SqlSession, sql: &str, a: &str, b: &str) -> Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    for batch in query(session, sql).await? {
        let x = i64s(&batch, a)?;
        let y = i64s(&batch, b)?;
        out.extend(x.into_iter().zip(y).map(|(x, y)| (x as u64, y as u64)));
    }
    Ok(out)
}

/// Top `k` of a score map, best first (ties by lower id).
fn top(scores: &HashMap<u64, f64>, k: usize) -> Vec<u64> {
    let mut v: Vec<(u64, f64)> = scores.iter().map(|(&i, &s)| (i, s)).collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    v.into_iter().take(k).map(|(i, _)| i).collect()
}

/// Reciprocal-rank fusion of two lists (constant 60), top `k`.
fn fuse(a: &[u64], b: &[u64], k: usize) -> Vec<u64> {
    let mut s: HashMap<u64, f64> = HashMap::new();
    for list in [a, b] {
        for (r, &id) in list.iter().enumerate() {
            *s.entry(id).or_default() += 1.0 / (60.0 + r as f64 + 1.0);
        }
    }
    top(&s, k)
}

/// The towers' inputs of one side from query rows, in the spec's order.
fn tower_columns(
    tower: &strata_models::spec::Tower,
    b: &RecordBatch,
    out: &mut strata_twotower::Columns,
) -> Result<()> {
    for (i, n) in tower.numeric.iter().enumerate() {
        data::f32s(b, n, &mut out.numeric[i])?;
    }
    for (i, c) in tower.categorical.iter().enumerate() {
        data::u64s(b, c.name(), &mut out.categorical[i])?;
    }
    Ok(())
}

/// An ANN index over `vectors` with the model's settings (no payload).
fn build_index(
    tt: &TwoTowerSpec,
    seed: u64,
    ids: &[u64],
    vectors: &[f32],
    dim: usize,
) -> Result<strata_ann::Index> {
    let mut params = strata_ann::IndexParams::new(dim, strata_ann::Metric::Dot);
    params.m = tt.index.m;
    params.ef_construction = tt.index.ef_construction;
    params.ef_search = tt.index.ef_search;
    params.seed = seed;
    let mut builder = strata_ann::IndexBuilder::new(params)?;
    for (i, &id) in ids.iter().enumerate() {
        builder.add(
            id,
            &vectors[i * dim..(i + 1) * dim],
            strata_ann::Payload::at(0),
        )?;
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(builder.build(threads)?)
}

async fn evaluate(args: &Args, work: &Path, project: &Path, outcome: &Value) -> Result<Value> {
    let lake = Lake::open(&LakeOptions::new(work.join("data"))).await?;
    let session = SqlSession::new(&lake).await?;
    let specs = strata_models::load_models(project)?;
    let spec: &ModelSpec = specs
        .iter()
        .find(|s| s.name == "two_tower")
        .context("the project has no two_tower model")?;
    let tt = spec
        .two_tower
        .as_ref()
        .context("two_tower is not a two-tower model")?;
    let valid = day(outcome, "valid", 0)?;
    let train_from = day(outcome, "train", 0)?;
    let train_to = day(outcome, "train", 1)?;
    let before = valid.pred_opt().context("date")?;
    eprintln!("recall bench: evaluating on {valid}, trained on {train_from} .. {train_to}");

    // Held-out clicks of the validation day, and the sample.
    let clicks = pairs(
        &session,
        &format!(
            "SELECT DISTINCT user_id, post_id FROM dwd.dwd_user_action
             WHERE dt = DATE '{valid}' AND action = 'Post Clicked'
               AND user_id IS NOT NULL AND post_id IS NOT NULL"
        ),
        "user_id",
        "post_id",
    )
    .await?;
    let mut truth: HashMap<u64, HashSet<u64>> = HashMap::new();
    for (u, p) in &clicks {
        truth.entry(*u).or_default().insert(*p);
    }
    let clickers = truth.len();
    let mut users: Vec<u64> = truth.keys().copied().collect();
    users.sort_by_key(|&u| (mix(u ^ mix(args.seed)), u));
    users.truncate(args.sample);
    users.sort_unstable();
    let sampled: HashSet<u64> = users.iter().copied().collect();
    let mean_clicked =
        users.iter().map(|u| truth[u].len()).sum::<usize>() as f64 / users.len().max(1) as f64;
    eprintln!(
        "recall bench: {clickers} users clicked on {valid}; {} sampled, {mean_clicked:.2} clicked posts each",
        users.len()
    );

    let mut methods: Vec<Method> = Vec::new();

    // Popularity: most clicked in the training window (and on its last day).
    let popular = |from: NaiveDate, to: NaiveDate| {
        format!(
            "SELECT post_id, count(*) AS n FROM dwd.dwd_user_action
             WHERE dt >= DATE '{from}' AND dt <= DATE '{to}' AND action = 'Post Clicked'
               AND post_id IS NOT NULL
             GROUP BY post_id ORDER BY n DESC, post_id LIMIT {K}"
        )
    };
    let pop_window: Vec<u64> = pairs(&session, &popular(train_from, train_to), "post_id", "n")
        .await?
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    let pop_last: Vec<u64> = pairs(&session, &popular(before, before), "post_id", "n")
        .await?
        .into_iter()
        .map(|(p, _)| p)
        .collect();

    // u2u CF: the warehouse model's SQL as of the day before validation (the table itself
    // holds the last run's, which counts the validation day's clicks).
    let u2u_file = project.join("ads").join("ads_recall_u2u_cf.sql");
    let u2u_sql =
        std::fs::read_to_string(&u2u_file)?.replace("$run_date", &format!("DATE '{before}'"));
    let mut similar: HashMap<u64, Vec<(u64, f64)>> = HashMap::new();
    for b in query(&session, &u2u_sql).await? {
        let u = i64s(&b, "user_id")?;
        let s = i64s(&b, "similar_user_id")?;
        let score = f64s(&b, "score")?;
        for i in 0..b.num_rows() {
            let u = u[i] as u64;
            if sampled.contains(&u) {
                similar.entry(u).or_default().push((s[i] as u64, score[i]));
            }
        }
    }
    let interactions = pairs(
        &session,
        &format!(
            "SELECT DISTINCT user_id, post_id FROM dwd.dwd_user_action
             WHERE dt >= DATE '{train_from}' AND dt <= DATE '{train_to}'
               AND action IN ('Post Clicked', 'Post Liked')
               AND user_id IS NOT NULL AND post_id IS NOT NULL"
        ),
        "user_id",
        "post_id",
    )
    .await?;
    let mut by_user: HashMap<u64, Vec<u64>> = HashMap::new();
    for (u, p) in interactions {
        by_user.entry(u).or_default().push(p);
    }
    let mut u2u: HashMap<u64, Vec<u64>> = HashMap::new();
    for &u in &users {
        let mut scores: HashMap<u64, f64> = HashMap::new();
        for (v, sim) in similar.get(&u).map(Vec::as_slice).unwrap_or_default() {
            for p in by_user.get(v).map(Vec::as_slice).unwrap_or_default() {
                *scores.entry(*p).or_default() += sim;
            }
        }
        u2u.insert(u, top(&scores, K));
    }
    let with_similar = users.iter().filter(|u| similar.contains_key(u)).count();

    // Reference lists (no model) and what the held-out clicks are made of.
    let (reference_methods, clicks_made_of) = reference::lists(
        &session,
        valid,
        (train_from, train_to),
        &users,
        &truth,
        &pop_window,
    )
    .await?;
    methods.extend(reference_methods);

    // Two-tower: the version just trained, from the registry.
    let version = outcome["version"].as_i64().context("outcome.version")?;
    let deployed = strata_models::registry::current(
        &strata_models::registry::deployments(&lake, "two_tower").await?,
    );
    let dir =
        strata_models::registry::download(&lake, "two_tower", version, &work.join("model-cache"))
            .await?;
    let tower = strata_twotower::TwoTower::load(&dir.join("tower"))?;
    let trained_index = strata_ann::Index::open(&dir.join("index"))?;
    let dim = tower.dim();

    // The user tower's inputs as served: the user's features of the day before.
    let mut ucols = strata_twotower::Columns::for_spec(tower.user_spec());
    let mut uids = Vec::new();
    for b in query(
        &session,
        &format!("SELECT * FROM ads.ads_user_features WHERE dt = DATE '{before}'"),
    )
    .await?
    {
        data::u64s(&b, &tt.user.id, &mut uids)?;
        let mut c = strata_twotower::Columns::for_spec(tower.user_spec());
        for (i, n) in tt.user.numeric.iter().enumerate() {
            data::f32s(&b, n, &mut c.numeric[i])?;
        }
        for (i, cat) in tt.user.categorical.iter().enumerate() {
            if cat.name() == tt.user.id {
                data::u64s(&b, &tt.user.id, &mut c.categorical[i])?;
            } else {
                data::u64s(&b, cat.name(), &mut c.categorical[i])?;
            }
        }
        for (d, s) in ucols.numeric.iter_mut().zip(c.numeric) {
            d.extend(s);
        }
        for (d, s) in ucols.categorical.iter_mut().zip(c.categorical) {
            d.extend(s);
        }
    }
    let row_of: HashMap<u64, usize> = uids.iter().enumerate().map(|(i, &u)| (u, i)).collect();
    let mut user_vec: HashMap<u64, Vec<f32>> = HashMap::new();
    let mut without_features = 0usize;
    for &u in &users {
        let (numeric, categorical): (Vec<f32>, Vec<u64>) = match row_of.get(&u) {
            Some(&r) => (
                ucols.numeric.iter().map(|c| c[r]).collect(),
                ucols.categorical.iter().map(|c| c[r]).collect(),
            ),
            // As served: no row → missing numerics, the id embedding.
            None => {
                without_features += 1;
                (
                    vec![f32::NAN; tt.user.numeric.len()],
                    tt.user
                        .categorical
                        .iter()
                        .map(|c| if c.name() == tt.user.id { u } else { 0 })
                        .collect(),
                )
            }
        };
        user_vec.insert(u, tower.user_vector(&numeric, &categorical)?);
    }

    // The catalogue as it stood before the validation day, embedded by the same towers.
    let newest = "(SELECT max(dt) FROM ads.ads_post_features)";
    let items_sql = tt.items_source.sql();
    if !items_sql.contains(newest) {
        bail!("the [items] query no longer reads {newest}: update the bench");
    }
    let created = tt.items.created_at.as_deref().unwrap_or("created_at");
    let items_sql = format!(
        "SELECT * FROM ({}) AS c WHERE c.{created} < TIMESTAMP '{valid} 00:00:00'",
        items_sql.replace(newest, &format!("DATE '{before}'"))
    );
    let mut item_ids = Vec::new();
    let mut icols = strata_twotower::Columns::for_spec(tower.item_spec());
    for b in query(&session, &items_sql).await? {
        data::u64s(&b, &tt.item.id, &mut item_ids)?;
        let mut c = strata_twotower::Columns::for_spec(tower.item_spec());
        tower_columns(&tt.item, &b, &mut c)?;
        for (d, s) in icols.numeric.iter_mut().zip(c.numeric) {
            d.extend(s);
        }
        for (d, s) in icols.categorical.iter_mut().zip(c.categorical) {
            d.extend(s);
        }
    }
    let started = Instant::now();
    let item_vectors = tower.item_vectors(&icols)?;
    let serving_index = build_index(tt, spec.seed, &item_ids, &item_vectors, dim)?;
    let index_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "recall bench: {} posts before {valid} embedded and indexed in {index_secs:.1}s (the trained index has {})",
        item_ids.len(),
        trained_index.len()
    );

    let none = strata_ann::Filter::default();
    let mut tt_ann = HashMap::new();
    let mut tt_exact = HashMap::new();
    let mut tt_trained = HashMap::new();
    let mut tt_trained_exact = HashMap::new();
    let mut ann_overlap = 0.0;
    let started = Instant::now();
    for &u in &users {
        let q = &user_vec[&u];
        let ann: Vec<u64> = serving_index
            .search(q, K, &none, None)?
            .iter()
            .map(|h| h.id)
            .collect();
        let exact: Vec<u64> = serving_index
            .exact_search(q, K, &none)?
            .iter()
            .map(|h| h.id)
            .collect();
        let exact_set: HashSet<u64> = exact.iter().copied().collect();
        ann_overlap += recall_at_k(&ann, &exact_set, K);
        tt_ann.insert(u, ann);
        tt_exact.insert(u, exact);
        let hits = trained_index.search(q, K, &none, None)?;
        tt_trained.insert(u, hits.iter().map(|h| h.id).collect::<Vec<_>>());
        let hits = trained_index.exact_search(q, K, &none)?;
        tt_trained_exact.insert(u, hits.iter().map(|h| h.id).collect::<Vec<_>>());
    }
    let search_secs = started.elapsed().as_secs_f64();
    let ann_vs_exact = ann_overlap / users.len().max(1) as f64;

    let blend: HashMap<u64, Vec<u64>> = users
        .iter()
        .map(|&u| (u, fuse(&tt_ann[&u], &pop_window, K)))
        .collect();
    let everyone = |list: &[u64]| -> HashMap<u64, Vec<u64>> {
        users.iter().map(|&u| (u, list.to_vec())).collect()
    };
    let hid = |a: &str| format!("{a} (exact search)");
    methods.push(Method {
        name: "two_tower",
        what:
            "two-tower at serving time: posts before the day, post features of the day before, ANN"
                .into(),
        lists: tt_ann,
    });
    methods.push(Method {
        name: "two_tower_exact",
        what: hid("two-tower at serving time"),
        lists: tt_exact,
    });
    methods.push(Method {
        name: "two_tower_as_trained",
        what: "two-tower, the version's own index (catalogue with the validation day's post features: leaks)".into(),
        lists: tt_trained,
    });
    methods.push(Method {
        name: "two_tower_as_trained_exact",
        what: hid("two-tower, the version's own index"),
        lists: tt_trained_exact,
    });
    methods.push(Method {
        name: "popularity",
        what: format!("the {K} most clicked posts of {train_from} .. {train_to}, for everyone"),
        lists: everyone(&pop_window),
    });
    methods.push(Method {
        name: "popularity_last_day",
        what: format!("the {K} most clicked posts of {before}, for everyone"),
        lists: everyone(&pop_last),
    });
    methods.push(Method {
        name: "u2u_cf",
        what: format!("posts clicked or liked in the training window by the user's ads_recall_u2u_cf neighbours (as of {before}), by summed similarity"),
        lists: u2u,
    });
    methods.push(Method {
        name: "two_tower+popularity",
        what: "reciprocal-rank fusion of two-tower (serving time) and popularity".into(),
        lists: blend,
    });

    // The same world, regenerated: hidden preferences and the organic feed.
    let start_date = valid - chrono::Days::new(u64::from(args.days.saturating_sub(1)));
    let world_config = WorldConfig {
        events_per_user: args.events_per_user,
        start_date,
        ..WorldConfig::ending_today(args.seed, args.users as u32, args.days)
    };
    let started = Instant::now();
    let world = World::generate(&world_config);
    let gen_secs = started.elapsed().as_secs_f64();

    // The exposure-aware oracle: what the organic feed would show each user on the day,
    // weighted by the hidden click chance. Held-out clicks are exposure times taste, so this
    // is about the ceiling any method has on them (it reads what no model can see).
    let day_start = valid.and_time(NaiveTime::MIN).and_utc().timestamp_micros();
    let day_end = day_start + 86_400_000_000;
    let started = Instant::now();
    // Restricted to the catalogue every method ranks from (posts created before the day).
    let catalogue: HashSet<u64> = item_ids.iter().copied().collect();
    let oracle: HashMap<u64, Vec<u64>> = users
        .iter()
        .map(|&u| {
            let list = world.organic_list(u, 3 * K, day_start, day_end, ORACLE_DRAWS, args.seed);
            let list: Vec<u64> = list
                .into_iter()
                .filter(|p| catalogue.contains(p))
                .take(K)
                .collect();
            (u, list)
        })
        .collect();
    eprintln!(
        "recall bench: organic oracle for {} users in {:.1}s",
        users.len(),
        started.elapsed().as_secs_f64()
    );
    methods.push(Method {
        name: "organic_oracle",
        what: format!("not a method, the ceiling: the organic feed's {ORACLE_DRAWS} simulated impressions of the day × hidden click chance (World::organic_list), posts before the day"),
        lists: oracle,
    });

    // Held-out clicks.
    let mut held_out = serde_json::Map::new();
    for m in &methods {
        let (mut r, mut n, mut len) = (0.0, 0.0, 0usize);
        for u in &users {
            let list = m.lists.get(u).map(Vec::as_slice).unwrap_or_default();
            r += recall_at_k(list, &truth[u], K);
            n += ndcg_at_k(list, &truth[u], SHOWN);
            len += list.len();
        }
        let count = users.len().max(1) as f64;
        held_out.insert(
            m.name.to_string(),
            json!({"recall@100": r / count, "ndcg@10": n / count, "mean_list": len as f64 / count, "what": m.what}),
        );
    }

    // Hidden preferences: scored on the world regenerated above.
    let lake_posts = query(&session, "SELECT count(*) AS n FROM dwd.dwd_post").await?;
    let lake_posts = lake_posts
        .first()
        .map(|b| i64s(b, "n"))
        .transpose()?
        .and_then(|v| v.first().copied())
        .unwrap_or(0);
    let at = valid.and_time(NaiveTime::from_hms_opt(12, 0, 0).context("noon")?);
    let at = at.and_utc().timestamp_micros();
    let random: HashMap<u64, Vec<u64>> = users
        .iter()
        .map(|&u| {
            let list = (0..SHOWN as u64)
                .map(|i| {
                    item_ids[(mix(u ^ mix(args.seed ^ (i + 1))) % item_ids.len().max(1) as u64)
                        as usize]
                })
                .collect();
            (u, list)
        })
        .collect();
    let mut sums: Vec<(f64, f64, f64)> = vec![(0.0, 0.0, 0.0); methods.len() + 2];
    let mut checked = 0;
    for (n, &u) in users.iter().enumerate() {
        let ideal = world.ideal_list(u, SHOWN, at);
        let best = world.score_list(u, &ideal, at).expected_clicks;
        let lists = methods
            .iter()
            .map(|m| m.lists.get(&u).map(Vec::as_slice).unwrap_or_default())
            .chain([ideal.as_slice(), random[&u].as_slice()]);
        for (i, list) in lists.enumerate() {
            let list = &list[..list.len().min(SHOWN)];
            let s = world.score_list(u, list, at);
            let norm = if best > 0.0 {
                s.expected_clicks / best
            } else {
                0.0
            };
            // The cached ideal list gives `normalised_clicks` exactly: checked on a few users.
            if n < 20 && list.len() == SHOWN {
                let direct = world.normalised_clicks(u, list, at);
                if (direct - norm).abs() > 1e-9 {
                    bail!("normalised clicks differ for user {u}: {direct} vs {norm}");
                }
                checked += 1;
            }
            sums[i].0 += norm;
            sums[i].1 += s.expected_clicks;
            sums[i].2 += s.expected_likes;
        }
    }
    let count = users.len().max(1) as f64;
    let mut hidden = serde_json::Map::new();
    let names = methods.iter().map(|m| m.name).chain(["ideal", "random"]);
    for (name, (norm, clicks, likes)) in names.zip(&sums) {
        hidden.insert(
            name.to_string(),
            json!({"normalised_clicks@10": norm / count, "expected_clicks@10": clicks / count,
                   "expected_likes@10": likes / count}),
        );
    }

    let ratio = held_out["two_tower"]["recall@100"].as_f64().unwrap_or(0.0)
        / held_out["popularity"]["recall@100"]
            .as_f64()
            .unwrap_or(f64::NAN);
    Ok(json!({
        "valid_day": valid.to_string(),
        "train_window": format!("{train_from} .. {train_to}"),
        "clickers": clickers,
        "users": users.len(),
        "mean_clicked_posts": mean_clicked,
        "users_without_features": without_features,
        "users_with_u2u_neighbours": with_similar,
        "two_tower_version": version,
        "promoted_version": deployed.promoted,
        "catalogue_before_day": item_ids.len(),
        "catalogue_as_trained": trained_index.len(),
        "serving_index_seconds": index_secs,
        "search_seconds": search_secs,
        "ann_recall_vs_exact@100": ann_vs_exact,
        "held_out": held_out,
        "held_out_clicks_made_of": clicks_made_of,
        "ratio_two_tower_over_popularity_recall@100": ratio,
        "ratio_oracle_over_popularity_recall@100": held_out["organic_oracle"]["recall@100"].as_f64().unwrap_or(0.0)
            / held_out["popularity"]["recall@100"].as_f64().unwrap_or(f64::NAN),
        "hidden": hidden,
        "world": {"start_date": start_date.to_string(), "users": world.user_count(),
                  "posts": world.post_count(), "lake_posts": lake_posts,
                  "generate_seconds": gen_secs, "at": format!("{valid} 12:00 UTC"),
                  "normalised_checked": checked},
    }))
}

fn f(v: &Value) -> String {
    v.as_f64().map_or_else(|| "-".into(), |x| format!("{x:.4}"))
}

fn markdown(r: &Value) -> String {
    let e = &r["evaluation"];
    let tt = &r["two_tower_train"];
    let mut md = String::from("# Recall quality (simulator)\n\n");
    md.push_str(&format!(
        "{} users, {} days, seed {}; validation day {} (trained on {}); {} of {} users who clicked that day sampled, {:.2} clicked posts each.{}\n\n",
        r["scale"]["users"], r["scale"]["days"], r["scale"]["seed"], e["valid_day"].as_str().unwrap_or("-"),
        e["train_window"].as_str().unwrap_or("-"), e["users"], e["clickers"],
        e["mean_clicked_posts"].as_f64().unwrap_or(0.0),
        match r["note"].as_str() { Some(n) if !n.is_empty() => format!(" Variant: {n}."), _ => String::new() }
    ));
    md.push_str(&format!(
        "**two-tower / popularity, recall@100: {:.2}×** (target ≥ 2×; the organic oracle, the ceiling on held-out clicks, reaches {:.2}×). ANN recall vs exact search @100: {}.\n\n",
        e["ratio_two_tower_over_popularity_recall@100"].as_f64().unwrap_or(f64::NAN),
        e["ratio_oracle_over_popularity_recall@100"].as_f64().unwrap_or(f64::NAN),
        f(&e["ann_recall_vs_exact@100"])
    ));
    md.push_str("| method | recall@100 | NDCG@10 | hidden: normalised clicks@10 | expected clicks@10 | what |\n|---|---|---|---|---|---|\n");
    let held = e["held_out"].as_object().cloned().unwrap_or_default();
    for (name, h) in &held {
        let hid = &e["hidden"][name];
        md.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {} |\n",
            f(&h["recall@100"]),
            f(&h["ndcg@10"]),
            f(&hid["normalised_clicks@10"]),
            f(&hid["expected_clicks@10"]),
            h["what"].as_str().unwrap_or_default()
        ));
    }
    for name in ["ideal", "random"] {
        let hid = &e["hidden"][name];
        md.push_str(&format!(
            "| {name} | | | {} | {} | {} |\n",
            f(&hid["normalised_clicks@10"]),
            f(&hid["expected_clicks@10"]),
            if name == "ideal" {
                "the best 10 posts by hidden click chance (World::ideal_list)"
            } else {
                "10 random posts of the catalogue before the day"
            }
        ));
    }
    let m = &e["held_out_clicks_made_of"];
    if m.is_object() {
        md.push_str(&format!(
            "\nThe sampled users' {} held-out clicks: on posts created that day (no method can rank them) {}, by an account the user follows {} (among its 5 latest posts {}), with a tag among the user's top 3 {}, in popularity's 100 {}.\n",
            m["clicks"], f(&m["created_on_the_day"]), f(&m["by_followed_author"]),
            f(&m["followed_latest_5"]), f(&m["tag_in_users_top_3"]), f(&m["in_popularity_top_100"])
        ));
    }
    let metrics = |o: &Value| {
        o["metrics"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k} {}", f(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    md.push_str(&format!(
        "\nTwo-tower training (`strata models train two_tower`, version {}, {}): {:.1} s wall, {} training pairs; its own validation: {}.\nParams: `{}`.\n",
        tt["outcome"]["version"], tt["outcome"]["verdict"].as_str().unwrap_or("-"),
        tt["wall_seconds"].as_f64().unwrap_or(0.0), tt["outcome"]["train_rows"],
        metrics(&tt["outcome"]), tt["params"].as_str().unwrap_or_default().replace('\n', " ")
    ));
    if let Some(g) = r["gbdt"].as_object() {
        md.push_str(&format!(
            "\nGBDT (`strata models train ctr_ranker`): {:.1} s wall; {}.\n",
            g["wall_seconds"].as_f64().unwrap_or(0.0),
            metrics(&g["outcome"])
        ));
    }
    md.push_str(&format!(
        "\nCatalogue: {} posts created before the validation day (serving time) vs {} in the trained index. Users without a feature row the day before: {}. Sampled users with u2u neighbours: {}. Hidden preferences scored at {} on a regenerated world ({} users, {} posts; the lake has {} posts).\n",
        e["catalogue_before_day"], e["catalogue_as_trained"], e["users_without_features"],
        e["users_with_u2u_neighbours"], e["world"]["at"].as_str().unwrap_or("-"),
        e["world"]["users"], e["world"]["posts"], e["world"]["lake_posts"]
    ));
    if let Some(s) = r["demo_seconds"].as_f64() {
        md.push_str(&format!("\n`strata demo --skip-models`: {s:.0} s.\n"));
    }
    md
}
