//! Feature-store benchmark (issue 25): 1M users × the 137 columns of `ads.ads_user_features`
//! and 100k posts × `ads.ads_post_features`, generated into a real lake (Iceberg, partitioned
//! by `dt`); materialization into the embedded store and into Redis (rows/s, peak RSS of the
//! sync's own process), an incremental sync after one more day; single-user lookups of 100
//! features over HTTP at a fixed rate and 1,200-post lookups, against both stores; the same
//! lookups against `redis-server` from redis-py (and Feast's Redis online store when it
//! installs) in the same run. Prints figures and writes `bench/results/features-*.{json,md}`;
//! asserts nothing about speed. A wrong value read back makes the exit status 1.
//!
//! `bash bench/run.sh features` builds it in release mode, installs the peers and calls it.
//! The subcommands `materialize` and `serve` are the child processes the run starts.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use arrow::array::{Array, ArrayRef, RecordBatch, TimestampMicrosecondArray};
use arrow::datatypes::{Field, Schema};
use clap::{Args, Parser, Subcommand};
use parquet::arrow::ArrowWriter;
use serde_json::{json, Value};
use strata_bench::features::answers::{check_answer, feast_body, feed_ids, user_lookup_ids};
use strata_bench::features::data::{self, changed_on, GenValue, Kind, TableShape};
use strata_bench::features::load::{BodyFn, OpenLoop};
use strata_bench::features::redis_server::RedisServer;
use strata_bench::features::{report, serve};
use strata_bench::{machine, self_rss_mib, suite, Conn};
use strata_core::tokens::{NewToken, Scope, Tokens};
use strata_features::materialize::{materialize, resolve, SyncOptions};
use strata_features::view::{load_views, FeatureView};
use strata_features::FeatureServer;
use strata_online::config::OnlineKind;
use strata_online::{entity_key, LookupStatus, OnlineConfig, OnlineStore, Value as FValue};
use strata_table::config::LakeOptions;
use strata_table::Lake;

/// Features of `user_features` one lookup asks for (the "100 features").
const USER_LOOKUP_FEATURES: usize = 100;
/// Entities checked value by value after each sync.
const CHECK_SAMPLE: u64 = 2_000;

#[derive(Parser, Debug)]
#[command(
    about = "Feature store benchmark: materialization and online lookups vs redis-py and Feast"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// (child) Materializes one view and prints its report as JSON.
    #[command(hide = true)]
    Materialize(MaterializeArgs),
    /// (child) Serves the views over HTTP on 127.0.0.1 and prints `listening ADDR`.
    #[command(hide = true)]
    Serve(ServeArgs),
}

#[derive(Args, Debug)]
struct ServeArgs {
    #[arg(long)]
    lake: PathBuf,
    #[arg(long)]
    models: PathBuf,
    /// The token file (`catalog_tokens.json`).
    #[arg(long)]
    tokens: PathBuf,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args, Debug, Clone)]
struct StoreArgs {
    /// The embedded store's directory.
    #[arg(long)]
    online_path: Option<PathBuf>,
    /// Redis instead: `redis://127.0.0.1:PORT`.
    #[arg(long)]
    redis_url: Option<String>,
}

#[derive(Args, Debug)]
struct MaterializeArgs {
    #[arg(long)]
    lake: PathBuf,
    #[arg(long)]
    models: PathBuf,
    #[arg(long)]
    view: String,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Users in `ads.ads_user_features` (k and M suffixes).
    #[arg(long, env = "FEATURES_USERS", default_value = "1M", value_parser = suite::parse_count)]
    users: u64,
    /// Posts in `ads.ads_post_features`.
    #[arg(long, env = "FEATURES_POSTS", default_value = "100k", value_parser = suite::parse_count)]
    posts: u64,
    /// Share of users with a new row on the second day (percent).
    #[arg(long, env = "FEATURES_CHANGED_PCT", default_value_t = 30)]
    changed_pct: u64,
    /// The project whose models and feature views are used.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/social"))]
    models: PathBuf,
    /// Scratch directory (default: a new one under $TMPDIR, removed at the end).
    #[arg(long, env = "FEATURES_WORK_DIR")]
    work_dir: Option<PathBuf>,
    /// Keep the scratch directory.
    #[arg(long)]
    keep: bool,
    /// redis-server binary (Redis store and the redis-py peer; skipped when none is found).
    #[arg(long, env = "STRATA_REDIS_BIN", default_value = "redis-server")]
    redis_server: String,
    /// Python with redis-py for the Redis peer.
    #[arg(long, env = "FEATURES_PYTHON")]
    python: Option<PathBuf>,
    /// Python with feast[redis] for the Feast peer.
    #[arg(long, env = "FEATURES_FEAST_PYTHON")]
    feast_python: Option<PathBuf>,
    /// Why the Feast peer is not run (written in the report).
    #[arg(long)]
    feast_skipped: Option<String>,
    /// Users Feast materializes (its own materialization is slow).
    #[arg(long, env = "FEATURES_FEAST_USERS", default_value = "100k", value_parser = suite::parse_count)]
    feast_users: u64,
    /// Lookups per second of the fixed-rate runs (one run per rate).
    #[arg(
        long,
        env = "FEATURES_RATE",
        value_delimiter = ',',
        default_value = "5000,2000"
    )]
    rate: Vec<f64>,
    /// Seconds of each fixed-rate run.
    #[arg(long, env = "FEATURES_SECONDS", default_value_t = 20)]
    seconds: u64,
    /// Concurrent connections of the load generators.
    #[arg(long, env = "FEATURES_CONNECTIONS", default_value_t = 32)]
    connections: usize,
    /// Posts per feed request.
    #[arg(long, default_value_t = 1200)]
    feed_posts: usize,
    /// Feed requests per run.
    #[arg(long, default_value_t = 500)]
    feed_requests: u64,
    /// Only generate and materialize (no lookups, no peers).
    #[arg(long)]
    skip_lookups: bool,
    /// Where reports go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.cmd {
        Some(Cmd::Materialize(a)) => rt.block_on(materialize_child(a)),
        Some(Cmd::Serve(a)) => rt.block_on(serve_child(a)),
        None => rt.block_on(run(cli.run)),
    }
}

// ---------------------------------------------------------------------------------------------
// Children

async fn open_store(store: &StoreArgs) -> Result<OnlineStore> {
    let config = match (&store.online_path, &store.redis_url) {
        (Some(path), None) => OnlineConfig {
            path: Some(path.clone()),
            ..OnlineConfig::default()
        },
        (None, Some(url)) => OnlineConfig {
            kind: OnlineKind::Redis,
            url: Some(url.clone()),
            timeout: Duration::from_secs(30),
            ..OnlineConfig::default()
        },
        _ => bail!("give one of --online-path and --redis-url"),
    };
    Ok(OnlineStore::open(&config, Path::new(".")).await?)
}

fn find_view(models: &Path, name: &str) -> Result<FeatureView> {
    load_views(models)?
        .into_iter()
        .find(|v| v.name == name)
        .with_context(|| format!("no feature view {name} in {}", models.display()))
}

async fn materialize_child(a: MaterializeArgs) -> Result<()> {
    let (rss_start, _) = self_rss_mib();
    let lake = Lake::open(&LakeOptions::new(&a.lake)).await?;
    let store = open_store(&a.store).await?;
    let view = find_view(&a.models, &a.view)?;
    let sampler = RssSampler::start();
    let start = Instant::now();
    let report = materialize(&lake, &store, &view, &SyncOptions::default()).await?;
    let secs = start.elapsed().as_secs_f64();
    let (anon, file) = sampler.stop();
    let (rss_end, peak) = self_rss_mib();
    println!(
        "{}",
        json!({
            "report": report,
            "secs": secs,
            "rss_start_mib": rss_start,
            "rss_end_mib": rss_end,
            "peak_rss_mib": peak,
            "peak_rss_anon_mib": anon,
            "peak_rss_file_mib": file,
        })
    );
    Ok(())
}

/// Samples this process's RssAnon (heap, stacks) and RssFile (mapped files: the embedded
/// store's LMDB map counts here once its pages are touched, though the kernel can drop them
/// as page cache) every 20 ms; VmHWM alone cannot tell them apart.
struct RssSampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(f64, f64)>,
}

impl RssSampler {
    fn start() -> RssSampler {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut anon, mut file) = (0f64, 0f64);
            loop {
                if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
                    let kib = |key: &str| {
                        status
                            .lines()
                            .find_map(|l| l.strip_prefix(key))
                            .and_then(|v| v.split_whitespace().next())
                            .and_then(|v| v.parse::<f64>().ok())
                            .unwrap_or(0.0)
                    };
                    anon = anon.max(kib("RssAnon:") / 1024.0);
                    file = file.max(kib("RssFile:") / 1024.0);
                }
                if flag.load(std::sync::atomic::Ordering::Relaxed) {
                    return (anon, file);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        RssSampler { stop, thread }
    }

    /// (peak RssAnon, peak RssFile) in MiB.
    fn stop(self) -> (f64, f64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or((f64::NAN, f64::NAN))
    }
}

/// The views the benchmark serves.
const VIEWS: [&str; 2] = ["user_features", "post_features"];

async fn serve_child(a: ServeArgs) -> Result<()> {
    let times = serve::install_recorder()?;
    let lake = Lake::open(&LakeOptions::new(&a.lake)).await?;
    let store = open_store(&a.store).await?;
    let mut views = Vec::new();
    let mut resolved = Vec::new();
    for name in VIEWS {
        let view = find_view(&a.models, name)?;
        resolved.push(resolve(&lake, &view).await?);
        views.push(view);
    }
    let server = FeatureServer::new(store, views, a.tokens).with_resolved(&resolved);
    let app = serve::with_times_route(server.router(), times);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    axum::serve(listener, app).await?;
    Ok(())
}

/// Runs this binary with `args`, returns the JSON its last stdout line holds.
fn child_json(args: &[String]) -> Result<Value> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .args(args)
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        bail!("{} failed: {}", args.join(" "), out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().context("child printed nothing")?;
    Ok(serde_json::from_str(line)?)
}

fn store_args(store: &StoreArgs) -> Vec<String> {
    match (&store.online_path, &store.redis_url) {
        (Some(p), _) => vec!["--online-path".into(), p.display().to_string()],
        (_, Some(u)) => vec!["--redis-url".into(), u.clone()],
        _ => vec![],
    }
}

// ---------------------------------------------------------------------------------------------
// The run

struct Ctx {
    args: RunArgs,
    work: PathBuf,
    lake_dir: PathBuf,
    user: TableShape,
    post: TableShape,
    /// `dt` of day 0 and day 1, days since the epoch.
    dt: [i32; 2],
}

async fn run(args: RunArgs) -> Result<()> {
    let work = match &args.work_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("features-bench-{}", std::process::id())),
    };
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    let ads = args.models.join("ads");
    let user = data::shape_from_model(
        &ads.join("ads_user_features.sql"),
        "ads",
        "ads_user_features",
    )?;
    let post = data::shape_from_model(
        &ads.join("ads_post_features.sql"),
        "ads",
        "ads_post_features",
    )?;
    let today = chrono::Utc::now().date_naive();
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).context("epoch")?;
    let today_days = (today - epoch).num_days() as i32;
    let ctx = Ctx {
        lake_dir: work.join("lake"),
        work: work.clone(),
        user,
        post,
        dt: [today_days - 1, today_days],
        args,
    };
    let result = steps(&ctx).await;
    if !ctx.args.keep {
        std::fs::remove_dir_all(&work).ok();
    } else {
        eprintln!("kept {}", work.display());
    }
    result
}

async fn steps(ctx: &Ctx) -> Result<()> {
    let a = &ctx.args;
    let mut report = json!({
        "suite": "features",
        "started": chrono::Utc::now().to_rfc3339(),
        "machine": machine("2 cores shared with other engineers' builds while this ran: figures are noisy"),
        "load_at_start": load_average(),
        "users": a.users,
        "posts": a.posts,
        "user_columns": ctx.user.columns.len(),
        "post_columns": ctx.post.columns.len(),
    });
    let mut failures: Vec<String> = Vec::new();

    // 1. Data.
    let lake = Lake::open(&LakeOptions::new(&ctx.lake_dir)).await?;
    let start = Instant::now();
    data::create_tables(&lake, &[&ctx.user, &ctx.post]).await?;
    let users: Vec<u64> = (1..=a.users).collect();
    let posts: Vec<u64> = (1..=a.posts).collect();
    data::append_day(&lake, &ctx.user, &users, 0, ctx.dt[0]).await?;
    data::append_day(&lake, &ctx.post, &posts, 0, ctx.dt[0]).await?;
    let gen_secs = start.elapsed().as_secs_f64();
    eprintln!(
        "generated {} users × {} columns and {} posts × {} columns in {gen_secs:.1} s",
        a.users,
        ctx.user.columns.len(),
        a.posts,
        ctx.post.columns.len()
    );
    report["generation"] = json!({"secs": gen_secs, "lake_mib": dir_mib(&ctx.lake_dir)});

    // 2. Materialization into the embedded store.
    let embedded = StoreArgs {
        online_path: Some(ctx.work.join("online")),
        redis_url: None,
    };
    let mut mat = serde_json::Map::new();
    let full = sync(ctx, &embedded, "user_features")?;
    mat.insert("user_features_full".into(), full);
    let posts_sync = sync(ctx, &embedded, "post_features")?;
    mat.insert("post_features_full".into(), posts_sync);
    check_store(ctx, &embedded, &mut failures, false).await?;

    // The second day: `changed_pct` % of users get a new row in a new partition.
    let changed: Vec<u64> = users
        .iter()
        .copied()
        .filter(|&u| changed_on(u, 1, a.changed_pct))
        .collect();
    let start = Instant::now();
    data::append_day(&lake, &ctx.user, &changed, 1, ctx.dt[1]).await?;
    eprintln!(
        "appended day 2: {} changed users in {:.1} s",
        changed.len(),
        start.elapsed().as_secs_f64()
    );
    let inc = sync(ctx, &embedded, "user_features")?;
    if inc["report"]["mode"] != "incremental" {
        failures.push(format!(
            "the sync after one appended day was {} instead of incremental",
            inc["report"]["mode"]
        ));
    }
    if inc["report"]["written"].as_u64() != Some(changed.len() as u64) {
        failures.push(format!(
            "the incremental sync wrote {} rows, {} users changed",
            inc["report"]["written"],
            changed.len()
        ));
    }
    mat.insert("user_features_incremental".into(), inc);
    check_store(ctx, &embedded, &mut failures, true).await?;
    report["materialize_embedded"] = Value::Object(mat);
    report["embedded_store_mib"] = json!(dir_mib(&ctx.work.join("online")));

    // Redis: the same syncs into a real redis-server, and the peer's hashes beside them.
    let redis = match RedisServer::start(&a.redis_server, &ctx.work.join("redis")) {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("redis: skipped ({e:#})");
            report["redis_skipped"] = json!(format!("{e:#}"));
            None
        }
    };
    if let Some(redis) = &redis {
        let store = StoreArgs {
            online_path: None,
            redis_url: Some(redis.url()),
        };
        let mut mat = serde_json::Map::new();
        mat.insert(
            "user_features_full".into(),
            sync(ctx, &store, "user_features")?,
        );
        mat.insert(
            "post_features_full".into(),
            sync(ctx, &store, "post_features")?,
        );
        check_store(ctx, &store, &mut failures, true).await?;
        report["materialize_redis"] = Value::Object(mat);
        report["redis_used_after_strata_mib"] = json!(redis.used_memory_mib().await?);
        report["redis_user_features_meta_bytes"] =
            json!(redis.strlen("strata:user_features:m").await?);
        let start = Instant::now();
        populate_peer(ctx, redis).await?;
        report["peer_populate_secs"] = json!(start.elapsed().as_secs_f64());
        report["redis_used_after_peer_mib"] = json!(redis.used_memory_mib().await?);
    }

    if !a.skip_lookups {
        let token = bench_token(&ctx.work.join("catalog_tokens.json"))?;
        let mut lookups = serde_json::Map::new();
        let mut server_rss = serde_json::Map::new();
        let mut stores = vec![("embedded", embedded.clone())];
        if let Some(redis) = &redis {
            stores.push((
                "redis",
                StoreArgs {
                    online_path: None,
                    redis_url: Some(redis.url()),
                },
            ));
        }
        for (label, store) in &stores {
            match http_lookups(
                ctx,
                store,
                label,
                &token,
                &mut lookups,
                &mut server_rss,
                &mut failures,
            )
            .await
            {
                Ok(()) => {}
                Err(e) => {
                    eprintln!("lookups against {label}: {e:#}");
                    failures.push(format!("lookups against {label}: {e:#}"));
                }
            }
        }
        report["lookups"] = Value::Object(lookups);
        report["server_peak_rss_mib"] = Value::Object(server_rss);
        if let (Some(redis), Some(python)) = (&redis, &a.python) {
            report["redis_py"] = redis_py_peer(ctx, redis, python)?;
        }
        if let Some(reason) = &a.feast_skipped {
            report["feast"] = json!({ "error": reason });
        }
        if let (Some(redis), Some(feast)) = (&redis, &a.feast_python) {
            report["feast"] = match feast_peer(ctx, redis, feast) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("feast: {e:#}");
                    json!({"error": format!("{e:#}")})
                }
            };
        }
    }

    report["failures"] = json!(failures);
    report["load_at_end"] = load_average();
    let md = report::markdown(&report);
    println!("{md}");
    let path = suite::write_report(&a.out, "features", &report, &md)?;
    eprintln!("report: {}", path.display());
    drop(redis);
    if !failures.is_empty() {
        bail!("wrong results: {}", failures.join("; "));
    }
    Ok(())
}

/// One view's sync in a child process; prints and returns its figures.
fn sync(ctx: &Ctx, store: &StoreArgs, view: &str) -> Result<Value> {
    let mut args = vec![
        "materialize".to_string(),
        "--lake".into(),
        ctx.lake_dir.display().to_string(),
        "--models".into(),
        ctx.args.models.display().to_string(),
        "--view".into(),
        view.to_string(),
    ];
    args.extend(store_args(store));
    let start = Instant::now();
    let mut out = child_json(&args)?;
    let wall = start.elapsed().as_secs_f64();
    let written = out["report"]["written"].as_u64().unwrap_or(0);
    let secs = out["secs"].as_f64().unwrap_or(wall);
    out["process_secs"] = json!(wall);
    out["rows_per_sec"] = json!(written as f64 / secs.max(1e-9));
    let kind = if store.redis_url.is_some() {
        "redis"
    } else {
        "embedded"
    };
    eprintln!(
        "materialize {view} → {kind}: {} ({} rows read, {written} written) in {secs:.1} s = {:.0} rows/s, peak RSS {:.0} MiB (anon {:.0}, file {:.0})",
        out["report"]["mode"],
        out["report"]["rows_read"],
        out["rows_per_sec"].as_f64().unwrap_or(0.0),
        out["peak_rss_mib"].as_f64().unwrap_or(f64::NAN),
        out["peak_rss_anon_mib"].as_f64().unwrap_or(f64::NAN),
        out["peak_rss_file_mib"].as_f64().unwrap_or(f64::NAN),
    );
    Ok(out)
}

/// The day whose row of user `id` is served after `day1` was synced (or not).
fn user_day(ctx: &Ctx, id: u64, day1: bool) -> u32 {
    u32::from(day1 && changed_on(id, 1, ctx.args.changed_pct))
}

fn same(v: &FValue, g: GenValue) -> bool {
    match (v, g) {
        (FValue::Int64(a), GenValue::Int(b)) => *a == b,
        (FValue::Float64(a), GenValue::Float(b)) => *a == b,
        (FValue::String(a), GenValue::Text(b)) => a == b,
        _ => false,
    }
}

/// Reads a sample of users and posts back from the store and compares every value with the
/// generator's.
async fn check_store(
    ctx: &Ctx,
    store: &StoreArgs,
    failures: &mut Vec<String>,
    day1: bool,
) -> Result<()> {
    let online = open_store(store).await?;
    for (shape, view, n, is_user) in [
        (&ctx.user, "user_features", ctx.args.users, true),
        (&ctx.post, "post_features", ctx.args.posts, false),
    ] {
        let ids: Vec<u64> = (0..CHECK_SAMPLE.min(n))
            .map(|i| data::mix(i ^ 0xc4ec) % n + 1)
            .collect();
        let keys: Vec<Vec<u8>> = ids.iter().map(|i| entity_key(&[i.to_string()])).collect();
        let rows = online.lookup(view, &keys).await?;
        let mut bad = 0u64;
        for (id, row) in ids.iter().zip(&rows.rows) {
            if row.status != LookupStatus::Present {
                bad += 1;
                continue;
            }
            let day = if is_user { user_day(ctx, *id, day1) } else { 0 };
            for (col, (name, kind)) in shape.columns.iter().enumerate() {
                if col == 0 || *kind == Kind::Date {
                    continue;
                }
                let Some(i) = row.columns.iter().position(|c| &c.name == name) else {
                    bad += 1;
                    continue;
                };
                if !same(&row.values[i], data::value(*kind, *id, col, day)) {
                    bad += 1;
                }
            }
        }
        let what = format!("{view} in {}", online.kind());
        if bad > 0 {
            failures.push(format!(
                "{what}: {bad} wrong or missing values in a sample of {} entities",
                ids.len()
            ));
        }
        eprintln!("check {what}: {} entities, {bad} wrong values", ids.len());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Lookups over HTTP

/// A token with the `serve` scope in a new token file at `path`.
fn bench_token(path: &Path) -> Result<String> {
    let mut tokens = Tokens::load(path)?;
    let token = tokens.create(
        "features-bench",
        NewToken {
            scopes: vec![Scope::Serve],
            ..NewToken::default()
        },
    )?;
    tokens.save(path)?;
    Ok(token)
}

/// The serve child, stopped on drop.
struct ServerChild {
    child: Child,
    addr: SocketAddr,
}

impl ServerChild {
    fn start(ctx: &Ctx, store: &StoreArgs, tokens: &Path) -> Result<ServerChild> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .arg("serve")
            .arg("--lake")
            .arg(&ctx.lake_dir)
            .arg("--models")
            .arg(&ctx.args.models)
            .arg("--tokens")
            .arg(tokens)
            .args(store_args(store))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        let Some(addr) = line.trim().strip_prefix("listening ") else {
            child.kill().ok();
            child.wait().ok();
            bail!("the server child did not start (said {line:?})");
        };
        let addr = addr.parse()?;
        Ok(ServerChild { child, addr })
    }

    async fn server_times(&self) -> Result<Value> {
        let mut conn = Conn::connect(self.addr).await?;
        let (status, body) = conn.get("/bench/server-times").await?;
        if status != 200 {
            bail!("/bench/server-times answered {status}");
        }
        Ok(serde_json::from_str(&body)?)
    }

    fn peak_rss_mib(&self) -> Option<f64> {
        strata_bench::peak_rss_mib(self.child.id())
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Single-user lookups at the fixed rate, flat out, and feed requests, against one store.
async fn http_lookups(
    ctx: &Ctx,
    store: &StoreArgs,
    label: &str,
    token: &str,
    out: &mut serde_json::Map<String, Value>,
    server_rss: &mut serde_json::Map<String, Value>,
    failures: &mut Vec<String>,
) -> Result<()> {
    let a = &ctx.args;
    let server = ServerChild::start(ctx, store, &ctx.work.join("catalog_tokens.json"))?;
    let auth = format!("Bearer {token}");
    let user_refs: Vec<String> = ctx
        .user
        .features()
        .iter()
        .take(USER_LOOKUP_FEATURES)
        .map(|f| format!("user_features:{f}"))
        .collect();
    let post_refs: Vec<String> = ctx
        .post
        .features()
        .iter()
        .map(|f| format!("post_features:{f}"))
        .collect();

    // The answers are right before anything is timed.
    let ids = user_lookup_ids(a.users);
    let mut conn = Conn::connect(server.addr).await?;
    let day_of_user = |id: u64| user_day(ctx, id, true);
    let mut bad = 0;
    for i in 0..50 {
        let id = ids(i);
        let (status, body) = conn
            .post_read(
                "/get-online-features",
                &auth,
                &feast_body(&user_refs, "user_id", &[id]),
            )
            .await?;
        if status != 200 {
            bail!(
                "lookup answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        bad += check_answer(&body, &ctx.user, &user_refs, &[id], &day_of_user)?;
    }
    let feed = feed_ids(a.posts, a.feed_posts, 0);
    let (status, body) = conn
        .post_read(
            "/get-online-features",
            &auth,
            &feast_body(&post_refs, "post_id", &feed),
        )
        .await?;
    if status != 200 {
        bail!(
            "feed lookup answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    bad += check_answer(&body, &ctx.post, &post_refs, &feed, &|_| 0)?;
    if bad > 0 {
        failures.push(format!("{label}: {bad} wrong values over HTTP"));
    }
    eprintln!("{label}: HTTP answers checked, {bad} wrong values");

    let prefix = format!(
        "{{\"features\":{},\"entities\":{{\"user_id\":[",
        serde_json::to_string(&user_refs)?
    );
    let user_body: BodyFn = Arc::new(move |i| format!("{prefix}{}]}}}}", ids(i)).into_bytes());
    let user_load = |rate: f64, secs: u64, connections: usize| OpenLoop {
        addr: server.addr,
        path: "/get-online-features".to_string(),
        auth: auth.clone(),
        rate,
        duration: Duration::from_secs(secs),
        connections,
        max_requests: None,
        body: user_body.clone(),
        get: None,
        on_answer: None,
    };
    // Warm-up (connections, page cache), not reported.
    let first = a.rate.first().copied().unwrap_or(1000.0);
    user_load(first, 3, a.connections).run().await?;
    server.server_times().await?;

    for &rate in &a.rate {
        let result = user_load(rate, a.seconds, a.connections).run().await?;
        let mut fig = result.figures(rate);
        add_server_times(&mut fig, &server.server_times().await?);
        eprintln!("{label} user lookups at {rate}/s: {fig}");
        out.insert(format!("{label}: user, 100 features, {rate}/s"), fig);
    }

    let result = user_load(0.0, 10, a.connections).run().await?;
    let mut fig = result.figures(0.0);
    add_server_times(&mut fig, &server.server_times().await?);
    eprintln!("{label} user lookups flat out: {}", fig);
    out.insert(format!("{label}: user, 100 features, flat out"), fig);

    let (posts, n) = (a.posts, a.feed_posts);
    let feed_run = OpenLoop {
        addr: server.addr,
        path: "/get-online-features".to_string(),
        auth: auth.clone(),
        rate: 0.0,
        duration: Duration::from_secs(600),
        connections: 1,
        max_requests: Some(a.feed_requests),
        body: Arc::new(move |i| feast_body(&post_refs, "post_id", &feed_ids(posts, n, i + 1))),
        get: None,
        on_answer: None,
    };
    let result = feed_run.run().await?;
    let mut fig = result.figures(0.0);
    add_server_times(&mut fig, &server.server_times().await?);
    eprintln!("{label} feed of {n} posts: {}", fig);
    out.insert(format!("{label}: {n} posts, one connection"), fig);
    server_rss.insert(label.to_string(), json!(server.peak_rss_mib()));
    Ok(())
}

fn add_server_times(fig: &mut Value, times: &Value) {
    if let Some(t) = times.as_object().and_then(|m| m.values().next()) {
        fig["server_p50_ms"] = t["p50_ms"].clone();
        fig["server_p99_ms"] = t["p99_ms"].clone();
        fig["server_p999_ms"] = t["p999_ms"].clone();
        fig["server_count"] = t["count"].clone();
    }
}

// ---------------------------------------------------------------------------------------------
// Redis and the peers

/// The peer's data: one hash per user (`peer:u:<id>`, the first 100 features of the row
/// served after both days) and per post (`peer:p:<id>`, every feature), values as text.
async fn populate_peer(ctx: &Ctx, redis: &RedisServer) -> Result<()> {
    let mut conn = redis.conn().await?;
    for (shape, prefix, n, features, is_user) in [
        (
            &ctx.user,
            "peer:u:",
            ctx.args.users,
            USER_LOOKUP_FEATURES,
            true,
        ),
        (&ctx.post, "peer:p:", ctx.args.posts, usize::MAX, false),
    ] {
        let names = shape.features();
        let take = names.len().min(features);
        let mut id = 1u64;
        while id <= n {
            let mut pipe = redis::pipe();
            for i in id..(id + 1000).min(n + 1) {
                let day = if is_user { user_day(ctx, i, true) } else { 0 };
                let mut cmd = redis::cmd("HSET");
                cmd.arg(format!("{prefix}{i}"));
                for (k, name) in names.iter().take(take).enumerate() {
                    let col = k + 1;
                    cmd.arg(*name)
                        .arg(data::value(shape.columns[col].1, i, col, day).to_text());
                }
                pipe.add_command(cmd).ignore();
            }
            let () = pipe.query_async(&mut conn).await?;
            id += 1000;
        }
    }
    Ok(())
}

fn rates(r: &[f64]) -> String {
    r.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn redis_py_peer(ctx: &Ctx, redis: &RedisServer, python: &Path) -> Result<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/features_peer.py");
    let a = &ctx.args;
    let out = Command::new(python)
        .arg(script)
        .args(["--port", &redis.port.to_string()])
        .args(["--users", &a.users.to_string()])
        .args(["--posts", &a.posts.to_string()])
        .args(["--features", &USER_LOOKUP_FEATURES.to_string()])
        .args(["--rate", &rates(&a.rate)])
        .args(["--seconds", &a.seconds.to_string()])
        .args(["--concurrency", &a.connections.to_string()])
        .args(["--feed-posts", &a.feed_posts.to_string()])
        .args(["--feed-requests", &a.feed_requests.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .context("running the redis-py peer")?;
    if !out.status.success() {
        bail!("the redis-py peer failed: {}", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(text.lines().last().context("no output")?)?;
    eprintln!("redis-py: {v}");
    Ok(v)
}

/// A Parquet file of `ids`' rows as served after both days: the key, the first `features`
/// features, and `event_timestamp` (noon UTC of the row's `dt`), for Feast's file source.
fn write_feast_parquet(
    ctx: &Ctx,
    shape: &TableShape,
    ids: &[u64],
    features: usize,
    path: &Path,
    day_of: &dyn Fn(u64) -> u32,
) -> Result<()> {
    // The key and the features, without `dt` (the last column).
    let keep: Vec<usize> = (0..(shape.columns.len() - 1).min(features.saturating_add(1))).collect();
    let mut writer: Option<ArrowWriter<std::fs::File>> = None;
    for day in [0u32, 1] {
        let day_ids: Vec<u64> = ids.iter().copied().filter(|&i| day_of(i) == day).collect();
        for chunk in day_ids.chunks(data::BATCH_ROWS as usize) {
            let batch = data::batch(shape, chunk, day, ctx.dt[day as usize])?.project(&keep)?;
            let ts = i64::from(ctx.dt[day as usize]) * 86_400_000_000 + 43_200_000_000;
            let ts: ArrayRef = Arc::new(
                TimestampMicrosecondArray::from(vec![ts; chunk.len()]).with_timezone("UTC"),
            );
            let mut fields: Vec<Field> = batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect();
            fields.push(Field::new("event_timestamp", ts.data_type().clone(), false));
            let mut columns = batch.columns().to_vec();
            columns.push(ts);
            let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
            if writer.is_none() {
                writer = Some(ArrowWriter::try_new(
                    std::fs::File::create(path)?,
                    batch.schema(),
                    None,
                )?);
            }
            if let Some(w) = writer.as_mut() {
                w.write(&batch)?;
            }
        }
    }
    writer.context("no rows for Feast")?.close()?;
    Ok(())
}

fn feast_peer(ctx: &Ctx, redis: &RedisServer, python: &Path) -> Result<Value> {
    let dir = ctx.work.join("feast");
    std::fs::create_dir_all(&dir)?;
    let a = &ctx.args;
    let users: Vec<u64> = (1..=a.feast_users.min(a.users)).collect();
    let posts: Vec<u64> = (1..=a.posts).collect();
    let users_path = dir.join("users.parquet");
    let posts_path = dir.join("posts.parquet");
    write_feast_parquet(
        ctx,
        &ctx.user,
        &users,
        USER_LOOKUP_FEATURES,
        &users_path,
        &|id| user_day(ctx, id, true),
    )?;
    write_feast_parquet(ctx, &ctx.post, &posts, usize::MAX, &posts_path, &|_| 0)?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/feast_peer.py");
    let out = Command::new(python)
        .arg(script)
        .arg("--work")
        .arg(dir.join("repo"))
        .arg("--users-parquet")
        .arg(&users_path)
        .arg("--posts-parquet")
        .arg(&posts_path)
        .args(["--port", &redis.port.to_string()])
        .args(["--seconds", &a.seconds.to_string()])
        .args(["--feed-posts", &a.feed_posts.to_string()])
        .args(["--feed-requests", &a.feed_requests.min(100).to_string()])
        .stderr(Stdio::inherit())
        .output()
        .context("running the Feast peer")?;
    if !out.status.success() {
        bail!("the Feast peer failed: {}", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(text.lines().last().context("no output")?)?;
    eprintln!("feast: {v}");
    Ok(v)
}

// ---------------------------------------------------------------------------------------------
// Report

fn load_average() -> Value {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| json!(s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")))
        .unwrap_or(Value::Null)
}

fn dir_mib(dir: &Path) -> f64 {
    fn walk(p: &Path) -> u64 {
        let Ok(meta) = std::fs::symlink_metadata(p) else {
            return 0;
        };
        if meta.is_dir() {
            std::fs::read_dir(p)
                .map(|rd| rd.filter_map(|e| e.ok()).map(|e| walk(&e.path())).sum())
                .unwrap_or(0)
        } else {
            // Blocks actually used (LMDB's file is sparse).
            use std::os::unix::fs::MetadataExt;
            meta.blocks() * 512
        }
    }
    walk(dir) as f64 / 1048576.0
}
