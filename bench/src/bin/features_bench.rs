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

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use strata_bench::features::data::{self, changed_on, GenValue, Kind, TableShape};
use strata_bench::features::load::{quantile_ms, BodyFn, OpenLoop};
use strata_bench::{machine, self_rss_mib, suite};
use strata_features::materialize::{materialize, SyncOptions};
use strata_features::view::{load_views, FeatureView};
use strata_online::config::OnlineKind;
use strata_online::{entity_key, LookupStatus, OnlineConfig, OnlineStore, Value as FValue};
use strata_table::config::LakeOptions;
use strata_table::Lake;

/// Features of `user_features` one lookup asks for (the "100 features").
const USER_LOOKUP_FEATURES: usize = 100;
/// Entities checked value by value after each sync.
const CHECK_SAMPLE: u64 = 2_000;

#[derive(Parser, Debug)]
#[command(about = "Feature store benchmark: materialization and online lookups vs redis-py and Feast")]
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
    /// Users Feast materializes (its own materialization is slow).
    #[arg(long, env = "FEATURES_FEAST_USERS", default_value = "100k", value_parser = suite::parse_count)]
    feast_users: u64,
    /// Lookups per second of the fixed-rate runs.
    #[arg(long, env = "FEATURES_RATE", default_value_t = 5000.0)]
    rate: f64,
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
    let start = Instant::now();
    let report = materialize(&lake, &store, &view, &SyncOptions::default()).await?;
    let secs = start.elapsed().as_secs_f64();
    let (rss_end, peak) = self_rss_mib();
    println!(
        "{}",
        json!({
            "report": report,
            "secs": secs,
            "rss_start_mib": rss_start,
            "rss_end_mib": rss_end,
            "peak_rss_mib": peak,
        })
    );
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
    data::create_table(&lake, &ctx.user).await?;
    data::create_table(&lake, &ctx.post).await?;
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
        mat.insert("user_features_full".into(), sync(ctx, &store, "user_features")?);
        mat.insert("post_features_full".into(), sync(ctx, &store, "post_features")?);
        check_store(ctx, &store, &mut failures, true).await?;
        report["materialize_redis"] = Value::Object(mat);
        report["redis_used_after_strata_mib"] = json!(redis.used_memory_mib().await?);
        let start = Instant::now();
        populate_peer(ctx, redis).await?;
        report["peer_populate_secs"] = json!(start.elapsed().as_secs_f64());
        report["redis_used_after_peer_mib"] = json!(redis.used_memory_mib().await?);
    }

    if !a.skip_lookups {
        if let (Some(redis), Some(python)) = (&redis, &a.python) {
            report["redis_py"] = redis_py_peer(ctx, redis, python)?;
        }
        if let Some(feast) = &a.feast_python {
            report["feast"] = match feast_peer(ctx, feast) {
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
    let md = markdown(ctx, &report);
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
        "materialize {view} → {kind}: {} ({} rows read, {written} written) in {secs:.1} s = {:.0} rows/s, peak RSS {:.0} MiB",
        out["report"]["mode"],
        out["report"]["rows_read"],
        out["rows_per_sec"].as_f64().unwrap_or(0.0),
        out["peak_rss_mib"].as_f64().unwrap_or(f64::NAN)
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
            failures.push(format!("{what}: {bad} wrong or missing values in a sample of {} entities", ids.len()));
        }
        eprintln!("check {what}: {} entities, {bad} wrong values", ids.len());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Redis and the peers

/// A redis-server in a temp dir on a free loopback port, stopped on drop.
struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    fn start(bin: &str, dir: &Path) -> Result<RedisServer> {
        std::fs::create_dir_all(dir)?;
        let port = free_port()?;
        let child = Command::new(bin)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .arg("--dir")
            .arg(dir)
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {bin}"))?;
        let mut server = RedisServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                bail!("{bin} exited: {status}");
            }
            if Instant::now() > deadline {
                bail!("{bin} did not listen on {port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn conn(&self) -> Result<redis::aio::MultiplexedConnection> {
        let client = redis::Client::open(self.url())?;
        Ok(client.get_multiplexed_async_connection().await?)
    }

    async fn used_memory_mib(&self) -> Result<f64> {
        let mut c = self.conn().await?;
        let info: String = redis::cmd("INFO").arg("memory").query_async(&mut c).await?;
        let bytes = info
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(f64::NAN);
        Ok(bytes / 1048576.0)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The peer's data: one hash per user (`peer:u:<id>`, the first 100 features of the row
/// served after both days) and per post (`peer:p:<id>`, every feature), values as text.
async fn populate_peer(ctx: &Ctx, redis: &RedisServer) -> Result<()> {
    let mut conn = redis.conn().await?;
    for (shape, prefix, n, features, is_user) in [
        (&ctx.user, "peer:u:", ctx.args.users, USER_LOOKUP_FEATURES, true),
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

fn redis_py_peer(ctx: &Ctx, redis: &RedisServer, python: &Path) -> Result<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/features_peer.py");
    let a = &ctx.args;
    let out = Command::new(python)
        .arg(script)
        .args(["--port", &redis.port.to_string()])
        .args(["--users", &a.users.to_string()])
        .args(["--posts", &a.posts.to_string()])
        .args(["--features", &USER_LOOKUP_FEATURES.to_string()])
        .args(["--rate", &a.rate.to_string()])
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

fn feast_peer(_ctx: &Ctx, _python: &Path) -> Result<Value> {
    bail!("not run yet")
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

fn f(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x >= 100.0 => format!("{x:.0}"),
        Some(x) if x >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.2}"),
        None => "–".to_string(),
    }
}

fn markdown(ctx: &Ctx, r: &Value) -> String {
    let a = &ctx.args;
    let mut md = String::from("# Feature store\n\n");
    md.push_str(&format!(
        "{} users × {} columns of `ads.ads_user_features`, {} posts × {} columns of `ads.ads_post_features`, \
         generated into a lake in {} s. Machine: {} cores ({}), load average {} at the start and {} at the end; \
         other engineers' builds shared the cores, so the figures are noisy.\n\n",
        a.users,
        ctx.user.columns.len(),
        a.posts,
        ctx.post.columns.len(),
        f(&r["generation"]["secs"]),
        r["machine"]["cpus"],
        r["machine"]["cpu"].as_str().unwrap_or(""),
        r["load_at_start"].as_str().unwrap_or("?"),
        r["load_at_end"].as_str().unwrap_or("?"),
    ));
    md.push_str("## Materialization (each sync in its own process)\n\n");
    md.push_str("| store | view | mode | rows read | rows written | s | rows/s | peak RSS MiB |\n|---|---|---|---|---|---|---|---|\n");
    for (store, key) in [("embedded", "materialize_embedded"), ("redis", "materialize_redis")] {
        if let Some(m) = r[key].as_object() {
            for (name, v) in m {
                md.push_str(&format!(
                    "| {store} | {name} | {} | {} | {} | {} | {} | {} |\n",
                    v["report"]["mode"].as_str().unwrap_or("?"),
                    v["report"]["rows_read"],
                    v["report"]["written"],
                    f(&v["secs"]),
                    f(&v["rows_per_sec"]),
                    f(&v["peak_rss_mib"]),
                ));
            }
        }
    }
    md.push_str(&format!(
        "\nEmbedded store on disk: {} MiB. Redis used memory after Strata's syncs: {} MiB, after the peer's hashes too: {} MiB.\n",
        f(&r["embedded_store_mib"]),
        f(&r["redis_used_after_strata_mib"]),
        f(&r["redis_used_after_peer_mib"]),
    ));
    if let Some(lookups) = r["lookups"].as_object() {
        md.push_str("\n## Lookups\n\n");
        md.push_str("| run | target /s | achieved /s | p50 ms | p99 ms | p999 ms | server p99 ms | errors |\n|---|---|---|---|---|---|---|---|\n");
        for (name, v) in lookups {
            md.push_str(&lookup_row(name, v));
        }
    }
    for (peer, key) in [("redis-py", "redis_py"), ("feast", "feast")] {
        if let Some(runs) = r[key].as_object() {
            md.push_str(&format!("\n## Peer: {peer}\n\n"));
            if let Some(e) = runs.get("error") {
                md.push_str(&format!("Not measured: {}\n", e.as_str().unwrap_or("?")));
                continue;
            }
            md.push_str("| run | target /s | achieved /s | p50 ms | p99 ms | p999 ms | server p99 ms | errors |\n|---|---|---|---|---|---|---|---|\n");
            for (name, v) in runs {
                if v.is_object() {
                    md.push_str(&lookup_row(name, v));
                }
            }
            if let Some(note) = runs.get("note").and_then(|n| n.as_str()) {
                md.push_str(&format!("\n{note}\n"));
            }
        }
    }
    if let Some(failures) = r["failures"].as_array() {
        if !failures.is_empty() {
            md.push_str("\n## Wrong results\n\n");
            for x in failures {
                md.push_str(&format!("- {}\n", x.as_str().unwrap_or("?")));
            }
        }
    }
    md
}

fn lookup_row(name: &str, v: &Value) -> String {
    format!(
        "| {name} | {} | {} | {} | {} | {} | {} | {} |\n",
        f(&v["target_rate"]),
        f(&v["throughput"]),
        f(&v["p50_ms"]),
        f(&v["p99_ms"]),
        f(&v["p999_ms"]),
        f(&v["server_p99_ms"]),
        v["errors"].as_u64().unwrap_or(0) + v["bad_status"].as_u64().unwrap_or(0),
    )
}

#[allow(dead_code)]
fn unused(_: SocketAddr, _: BodyFn, _: OpenLoop, _: Arc<()>) -> f64 {
    quantile_ms(&[], 0.5)
}
