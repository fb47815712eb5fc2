//! Feed speed benchmark (issue #27): `GET /v1/feed` on `strata serve` at the scale —
//! 1M users, 100k live posts, features materialized, the two-tower index loaded — with the
//! load generator on the same machine.
//!
//! 1. `strata demo --skip-models` builds the simulator's world at that scale (events through
//!    the collector, the business tables, the reference warehouse, every feature view synced
//!    to the embedded online store).
//! 2. The reference models are trained once for the last day from copies of their files
//!    that read a seeded share of the users (`--train-every`: training at full scale is the
//!    models benchmark's business, not this one's) and whose two-tower catalogue is the
//!    newest `--posts` posts. The server's catalogue reads the same posts
//!    (`STRATA_FEED__CATALOG__POSTS_SQL`): those are the live posts.
//! 3. `strata serve` starts as a child; the time until its first 200 is the catalogue's load.
//!    Feeds are requested for users drawn uniformly from all users (cold ones included), open
//!    loop at each `--rates` for `--seconds` (latency from each request's due time, so queueing
//!    shows), then closed loop over `--connections` for the ceiling. Every answer's `stages`
//!    give each stage's p50/p99 as the server measured it. Peak RSS is the server's VmHWM.
//!
//! Prints figures and writes `bench/results/feed-*.{json,md}`; asserts nothing about speed.
//! `bash bench/run.sh feed` builds it in release mode and calls it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::{json, Value};
use strata_bench::demo::{self, DemoWorld};
use strata_bench::features::load::{AnswerFn, OpenLoop, PathFn};
use strata_bench::{machine, peak_rss_mib, suite, Conn};

/// Per-partition bytes the embedded bus keeps in the benchmark's runs.
const BUS_RETENTION_BYTES: &str = "1073741824";

#[derive(Parser, Debug)]
#[command(about = "Feed speed: GET /v1/feed at 1M users and 100k live posts")]
struct Args {
    /// The release `strata` binary.
    #[arg(long, default_value = "target/release/strata")]
    strata: PathBuf,
    /// Simulated users.
    #[arg(long, env = "FEED_USERS", default_value = "1m", value_parser = suite::parse_count)]
    users: u64,
    /// Simulated days (the last one validates the models).
    #[arg(long, env = "FEED_DAYS", default_value_t = 2)]
    days: u32,
    /// Mean events per active user per day.
    #[arg(long, env = "FEED_EVENTS_PER_USER", default_value_t = 5)]
    events_per_user: u32,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Live posts: the newest this many, in the server's catalogue and the ANN index.
    #[arg(long, env = "FEED_POSTS", default_value = "100k", value_parser = suite::parse_count)]
    posts: u64,
    /// The models train on users with `user_id % N = 0`.
    #[arg(long, default_value_t = 20)]
    train_every: u64,
    /// Open-loop rates, requests per second, comma-separated.
    #[arg(
        long,
        env = "FEED_RATES",
        default_value = "100,500",
        value_delimiter = ','
    )]
    rates: Vec<f64>,
    /// Seconds per measured run.
    #[arg(long, env = "FEED_SECONDS", default_value_t = 30)]
    seconds: u64,
    /// Client connections (open loop and the closed-loop ceiling).
    #[arg(long, env = "FEED_CONNECTIONS", default_value_t = 32)]
    connections: usize,
    /// Items per feed.
    #[arg(long, default_value_t = 10)]
    n: usize,
    #[arg(long, default_value_t = 18_191)]
    port: u16,
    /// Where the lake goes (default: a temporary directory, removed at the end).
    #[arg(long, env = "FEED_WORK_DIR")]
    work_dir: Option<PathBuf>,
    /// Keep the work directory.
    #[arg(long)]
    keep: bool,
    /// Reuse the world (and the models) already in `--work-dir`.
    #[arg(long, requires = "work_dir")]
    reuse: bool,
    /// Reuse the world already in `--work-dir` (e.g. its warehouse finished by hand with
    /// `strata dag run`) but train the models.
    #[arg(long, requires = "work_dir", conflicts_with = "reuse")]
    reuse_world: bool,
    /// A note kept in the report.
    #[arg(long, default_value = "")]
    note: String,
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let work = match &args.work_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("strata-feed-bench-{}", std::process::id())),
    };
    let result = run(&args, &work);
    if !args.keep && args.work_dir.is_none() {
        let _ = std::fs::remove_dir_all(&work);
    } else {
        eprintln!("feed bench: kept {}", work.display());
    }
    result
}

fn run(args: &Args, work: &Path) -> Result<()> {
    let config = work.join("strata.toml");
    if (args.reuse || args.reuse_world) && !config.exists() {
        bail!("{} holds no strata.toml to reuse", work.display());
    }
    let (demo_secs, training) = if args.reuse {
        (None, Value::Null)
    } else {
        let demo = if args.reuse_world {
            None
        } else {
            Some(run_demo(args, work)?)
        };
        write_model_files(args, work)?;
        let mut training = serde_json::Map::new();
        for name in ["two_tower", "ctr_ranker"] {
            let (outcome, secs) = demo::train(&args.strata, &config, name)?;
            training.insert(
                name.into(),
                json!({"wall_seconds": secs, "outcome": outcome}),
            );
        }
        (demo, Value::Object(training))
    };
    // A name of its own per run: a reused lake keeps the tokens of earlier runs.
    let token_name = format!("feed-bench-{}", std::process::id());
    let token = demo::strata_command(
        &args.strata,
        &["tokens", "create", &token_name, "--scope", "serve", "-c"],
        &config,
    )?;

    let addr: SocketAddr = ([127, 0, 0, 1], args.port).into();
    let mut server = Server::start(args, &config, work, addr)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let auth = format!("Bearer {}", token.trim());
    let loaded_secs = rt.block_on(wait_ready(&mut server, addr, &auth))?;
    eprintln!("feed bench: catalogue loaded, first feed after {loaded_secs:.1} s");
    let rss_loaded = rss_mib(server.child.id());
    let runs = rt.block_on(load_runs(args, addr, &auth))?;
    let peak = peak_rss_mib(server.child.id());
    let rss_end = rss_mib(server.child.id());
    drop(server);

    let report = json!({
        "suite": "feed",
        "started": chrono::Utc::now().to_rfc3339(),
        "machine": machine("2 cores; the load generator, the server (with its collector and lake sink writing the Feed Served events) share them"),
        "note": args.note,
        "scale": {"users": args.users, "days": args.days, "events_per_user": args.events_per_user,
                  "live_posts": args.posts, "seed": args.seed, "train_every": args.train_every,
                  "n": args.n, "connections": args.connections, "seconds": args.seconds},
        "demo_seconds": demo_secs,
        "training": training,
        "first_feed_seconds": loaded_secs,
        "server_rss_mib": {"after_load": rss_loaded, "end": rss_end, "peak": peak},
        "runs": runs,
    });
    let md = markdown(&report);
    let json_path = suite::write_report(&args.out, "feed", &report, &md)?;
    println!("{md}");
    eprintln!("wrote {}", json_path.display());
    Ok(())
}

/// The demo lake at the benchmark's scale.
fn run_demo(args: &Args, work: &Path) -> Result<f64> {
    let world = DemoWorld {
        users: args.users,
        days: args.days,
        seed: args.seed,
        events_per_user: args.events_per_user,
    };
    // The embedded bus keeps 16 GiB per partition by default: at this scale the events would
    // fill a small disk before the lake sink's consumed segments are let go.
    demo::run_demo(
        &args.strata,
        &world,
        work,
        &[("STRATA_BUS__RETENTION_BYTES", BUS_RETENTION_BYTES)],
    )
}

/// The live posts: the newest `posts`.
fn live_posts_sql(posts: u64) -> String {
    format!(
        "SELECT post_id, author_id, created_at, tags FROM dwd.dwd_post \
         ORDER BY created_at DESC LIMIT {posts}"
    )
}

/// The demo project's model files, changed in three places: training reads every
/// `train_every`-th user, and the two-tower's catalogue is the live posts. A reused world
/// first gets the repository's reference files again (`models/social/ml/` under the working
/// directory, when run from the checkout), so the models trained are today's and a rerun
/// edits fresh files rather than its own earlier edits.
fn write_model_files(args: &Args, work: &Path) -> Result<()> {
    let ml = work.join("models").join("social").join("ml");
    if args.reuse_world {
        for file in ["two_tower.toml", "ctr_ranker.toml"] {
            let reference = Path::new("models").join("social").join("ml").join(file);
            if reference.exists() {
                std::fs::copy(&reference, ml.join(file))
                    .with_context(|| format!("copying {}", reference.display()))?;
            }
        }
    }
    let edit = |file: &str, from: &str, to: &str| -> Result<()> {
        let path = ml.join(file);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        if !text.contains(from) {
            bail!(
                "{}: no {from:?} to change (the reference model file moved on; update the bench)",
                path.display()
            );
        }
        std::fs::write(&path, text.replacen(from, to, 1))?;
        Ok(())
    };
    let every = args.train_every.max(1);
    edit(
        "two_tower.toml",
        "WHERE s.label = 1\n",
        &format!("WHERE s.label = 1 AND s.user_id % {every} = 0\n"),
    )?;
    edit(
        "two_tower.toml",
        "(SELECT max(dt) FROM ads.ads_post_features)\n\"\"\"",
        &format!(
            "(SELECT max(dt) FROM ads.ads_post_features)\nORDER BY p.created_at DESC LIMIT {}\n\"\"\"",
            args.posts
        ),
    )?;
    edit(
        "ctr_ranker.toml",
        "source = \"ads.ads_sample_ctr\"",
        &format!("query = \"SELECT * FROM ads.ads_sample_ctr WHERE user_id % {every} = 0\""),
    )?;
    Ok(())
}

/// `strata serve` as a child process, killed on drop.
struct Server {
    child: Child,
    started: Instant,
}

impl Server {
    fn start(args: &Args, config: &Path, work: &Path, addr: SocketAddr) -> Result<Server> {
        let log = std::fs::File::create(work.join("serve.log"))?;
        let child = Command::new(&args.strata)
            .args(["serve", "-c"])
            .arg(config)
            .args(["--listen", &addr.to_string()])
            .env("RUST_LOG", "warn")
            .env(
                "STRATA_FEED__CATALOG__POSTS_SQL",
                live_posts_sql(args.posts),
            )
            .env("STRATA_BUS__RETENTION_BYTES", BUS_RETENTION_BYTES)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", args.strata.display()))?;
        Ok(Server {
            child,
            started: Instant::now(),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Seconds from the server's start to its first 200 on `/v1/feed` (503 while the catalogue
/// loads).
async fn wait_ready(server: &mut Server, addr: SocketAddr, auth: &str) -> Result<f64> {
    let limit = Duration::from_secs(1200);
    loop {
        if let Some(status) = server.child.try_wait()? {
            bail!("strata serve exited ({status}); see serve.log in the work directory");
        }
        if server.started.elapsed() > limit {
            bail!("no feed within {limit:?}");
        }
        if let Ok(mut conn) = Conn::connect(addr).await {
            if let Ok((status, body)) = conn.get_read("/v1/feed?user_id=1&n=10", auth).await {
                match status {
                    200 => return Ok(server.started.elapsed().as_secs_f64()),
                    503 => {}
                    other => bail!(
                        "GET /v1/feed answered {other}: {}",
                        String::from_utf8_lossy(&body)
                    ),
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What the server said about its answers in one run.
#[derive(Default)]
struct Answers {
    /// Stage name → its times (ms), as measured by the server.
    stages: BTreeMap<String, Vec<f64>>,
    /// Stage name → answers where it was not `ok`/`empty`/`skipped`.
    stage_failures: BTreeMap<String, u64>,
    server_ms: Vec<f64>,
    degraded: u64,
    cold: u64,
    items: u64,
    answers: u64,
}

impl Answers {
    fn add(&mut self, body: &[u8]) {
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return;
        };
        self.answers += 1;
        if let Some(ms) = v["ms"].as_f64() {
            self.server_ms.push(ms);
        }
        if v["degraded"].as_array().is_some_and(|d| !d.is_empty()) {
            self.degraded += 1;
        }
        if v["cold_start"].as_bool() == Some(true) {
            self.cold += 1;
        }
        self.items += v["items"].as_array().map_or(0, |a| a.len() as u64);
        for s in v["stages"].as_array().into_iter().flatten() {
            let (Some(name), Some(ms)) = (s["name"].as_str(), s["ms"].as_f64()) else {
                continue;
            };
            let status = s["status"].as_str().unwrap_or_default();
            if status == "skipped" {
                continue;
            }
            if !matches!(status, "ok" | "empty") {
                *self.stage_failures.entry(name.to_string()).or_default() += 1;
            }
            self.stages.entry(name.to_string()).or_default().push(ms);
        }
    }

    fn figures(mut self) -> Value {
        let q = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            let at = |p: f64| -> f64 {
                if v.is_empty() {
                    return f64::NAN;
                }
                v[((v.len() - 1) as f64 * p).round() as usize]
            };
            json!({"n": v.len(), "p50_ms": at(0.5), "p99_ms": at(0.99)})
        };
        let stages: serde_json::Map<String, Value> = self
            .stages
            .iter_mut()
            .map(|(k, v)| {
                let mut f = q(v);
                f["not_ok"] = json!(self.stage_failures.get(k).copied().unwrap_or(0));
                (k.clone(), f)
            })
            .collect();
        let n = self.answers.max(1) as f64;
        json!({
            "answers": self.answers,
            "server": q(&mut self.server_ms),
            "stages": stages,
            "degraded_share": self.degraded as f64 / n,
            "cold_share": self.cold as f64 / n,
            "items_per_feed": self.items as f64 / n,
        })
    }
}

/// A user drawn uniformly from 1..=users for request `i` (splitmix64).
fn user_for(i: u64, seed: u64, users: u64) -> u64 {
    let mut x = i.wrapping_add(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    1 + x % users.max(1)
}

/// Warm-up, one open-loop run per rate, then the closed-loop ceiling.
async fn load_runs(args: &Args, addr: SocketAddr, auth: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut plan: Vec<(&str, f64, u64)> = vec![("warm-up", 50.0, 5)];
    for &r in &args.rates {
        plan.push(("open loop", r, args.seconds));
    }
    plan.push(("closed loop (ceiling)", 0.0, args.seconds));
    for (round, (what, rate, secs)) in plan.into_iter().enumerate() {
        eprintln!("feed bench: {what} at {rate} requests/s for {secs} s");
        let answers = Arc::new(Mutex::new(Answers::default()));
        let sink = answers.clone();
        let on_answer: AnswerFn = Arc::new(move |body: &[u8]| {
            if let Ok(mut a) = sink.lock() {
                a.add(body);
            }
        });
        let (users, n) = (args.users, args.n);
        // A fresh draw of users per round, so the seen cache is not replayed.
        let seed = args.seed + round as u64 * 1_000_003;
        let path: PathFn =
            Arc::new(move |i| format!("/v1/feed?user_id={}&n={n}", user_for(i, seed, users)));
        let run = OpenLoop {
            addr,
            path: String::new(),
            auth: auth.to_string(),
            rate,
            duration: Duration::from_secs(secs),
            connections: args.connections,
            max_requests: None,
            body: Arc::new(|_| Vec::new()),
            get: Some(path),
            on_answer: Some(on_answer),
        }
        .run()
        .await?;
        if what == "warm-up" {
            continue;
        }
        let mut fig = run.figures(rate);
        fig["what"] = json!(what);
        let answers = std::mem::take(&mut *answers.lock().map_err(|_| anyhow::anyhow!("lock"))?);
        fig["answers"] = answers.figures();
        out.push(fig);
    }
    Ok(out)
}

/// Resident set size of a process in MiB: all of it (VmRSS), the heap and other anonymous
/// memory (RssAnon), and mapped file pages (RssFile: the binary, and the online store's
/// memory-mapped LMDB file, whose pages a lookup leaves resident).
fn rss_mib(pid: u32) -> Value {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    };
    json!({"rss": field("VmRSS:"), "anon": field("RssAnon:"), "file": field("RssFile:")})
}

fn f(v: &Value) -> String {
    v.as_f64().map_or("–".into(), |x| format!("{x:.2}"))
}

fn markdown(r: &Value) -> String {
    let mut md = String::from("# Feed speed (`GET /v1/feed`)\n\n");
    let s = &r["scale"];
    md.push_str(&format!(
        "{} users, {} live posts (the newest), {} simulated days at {} events per user; models \
         trained for the last day on every {}th user; feeds of {} items for users drawn \
         uniformly from all users; {} client connections on the same 2 cores. {}\n\n",
        s["users"],
        s["live_posts"],
        s["days"],
        s["events_per_user"],
        s["train_every"],
        s["n"],
        s["connections"],
        r["note"].as_str().unwrap_or_default()
    ));
    md.push_str(&format!(
        "World built in {} s; first feed {} s after `strata serve` started (catalogue load); \
         server RSS after load {} MiB ({} anonymous, {} file pages), at the end {} MiB ({} \
         anonymous, {} file pages), **peak {} MiB**.\n\n",
        f(&r["demo_seconds"]),
        f(&r["first_feed_seconds"]),
        f(&r["server_rss_mib"]["after_load"]["rss"]),
        f(&r["server_rss_mib"]["after_load"]["anon"]),
        f(&r["server_rss_mib"]["after_load"]["file"]),
        f(&r["server_rss_mib"]["end"]["rss"]),
        f(&r["server_rss_mib"]["end"]["anon"]),
        f(&r["server_rss_mib"]["end"]["file"]),
        f(&r["server_rss_mib"]["peak"]),
    ));
    for (name, t) in r["training"].as_object().into_iter().flatten() {
        md.push_str(&format!(
            "- `{name}`: trained in {} s, version {}, metrics {}\n",
            f(&t["wall_seconds"]),
            t["outcome"]["version"],
            t["outcome"]["metrics"]
        ));
    }
    md.push_str("\n| run | target rate | throughput | p50 ms | p99 ms | p99.9 ms | server p50 / p99 ms | degraded | cold | errors |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for run in r["runs"].as_array().into_iter().flatten() {
        let a = &run["answers"];
        md.push_str(&format!(
            "| {} | {} | {:.0}/s | {} | **{}** | {} | {} / {} | {:.1} % | {:.1} % | {} |\n",
            run["what"].as_str().unwrap_or_default(),
            run["target_rate"],
            run["throughput"].as_f64().unwrap_or(0.0),
            f(&run["p50_ms"]),
            f(&run["p99_ms"]),
            f(&run["p999_ms"]),
            f(&a["server"]["p50_ms"]),
            f(&a["server"]["p99_ms"]),
            a["degraded_share"].as_f64().unwrap_or(0.0) * 100.0,
            a["cold_share"].as_f64().unwrap_or(0.0) * 100.0,
            run["bad_status"].as_u64().unwrap_or(0) + run["errors"].as_u64().unwrap_or(0),
        ));
    }
    md.push_str("\nStages as the server timed them (p50 / p99 ms; sources run concurrently):\n\n");
    let runs: Vec<&Value> = r["runs"].as_array().into_iter().flatten().collect();
    md.push_str("| stage |");
    for run in &runs {
        md.push_str(&format!(
            " {} {} |",
            run["what"].as_str().unwrap_or_default(),
            run["target_rate"]
        ));
    }
    md.push_str("\n|---|");
    md.push_str(&"---|".repeat(runs.len()));
    md.push('\n');

    for stage in strata_feed::STAGES {
        md.push_str(&format!("| {stage} |"));
        for run in &runs {
            let st = &run["answers"]["stages"][stage];
            if st.is_null() {
                md.push_str(" – |");
            } else {
                let bad = st["not_ok"].as_u64().unwrap_or(0);
                md.push_str(&format!(
                    " {} / {}{} |",
                    f(&st["p50_ms"]),
                    f(&st["p99_ms"]),
                    if bad > 0 {
                        format!(" ({bad} not ok)")
                    } else {
                        String::new()
                    }
                ));
            }
        }
        md.push('\n');
    }
    md
}
