//! Stream benchmark (issue #29): real-time features and risk rules inside `strata serve`, with
//! the load generator on the same machine.
//!
//! 1. **Freshness.** Background clicks from many users, open loop at each `--rates`, plus
//!    `--probe-rate` probes a second: a click for a probe user with a post id never used
//!    before; once the collector acknowledged it, the probe reads
//!    `GET /v1/features/user_realtime/{user}` every ~1 ms until `last_5_clicked_post_ids`
//!    holds the post. Acknowledged → visible (and sent → visible) p50/p99 per rate, the lake
//!    sink's lag during the run and its ack → commit for the run's events.
//! 2. **Risk.** A rate rule (more than 50 events of a user within 10 s: block for 10 min);
//!    `--bots` bots, one after another, each sending `--bot-rate` single-event requests a
//!    second while background load runs. Decision → first refused event, and the bot events
//!    accepted more than 1 s after the decision (decision times from `ods.ods_risk_decision`).
//! 3. **CPU.** The same load at each `--cpu-rates` on two fresh servers, one without the stream
//!    views and the rule, one with them: the server's CPU seconds per second
//!    (`/proc/PID/stat`); the difference is the realtime and risk consumers' share.
//!
//! Prints figures and writes `bench/results/stream-*.{json,md}`; asserts nothing about speed.
//! `bash bench/run.sh stream` builds it in release mode and calls it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Parser;
use serde_json::{json, Value};
use strata_bench::stream::events::{background, basic_auth, Clicks};
use strata_bench::stream::freshness::{wait_visible, Probes};
use strata_bench::stream::risk::{analyse, Bots, BOT_USER_BASE};
use strata_bench::stream::server::{
    consumer_counters, consumer_delta, lake_ack_to_commit, lake_rows, prepare, sample_for,
    samples_json, sql, CpuMark, Serve, Setup, RISK_RULE_MAX, RISK_RULE_NAME, WRITE_KEY,
};
use strata_bench::stream::wall_us;
use strata_bench::{machine, suite};

#[derive(Parser, Debug)]
#[command(about = "Stream views and risk rules: freshness, enforcement, CPU share")]
struct Args {
    /// The release `strata` binary.
    #[arg(long, default_value = "target/release/strata")]
    strata: PathBuf,
    /// Background rates of the freshness runs, events per second, comma-separated.
    #[arg(
        long,
        env = "STREAM_RATES",
        default_value = "1000,10000,50000",
        value_delimiter = ','
    )]
    rates: Vec<f64>,
    /// Seconds per freshness run.
    #[arg(long, env = "STREAM_SECONDS", default_value_t = 20)]
    seconds: u64,
    /// Freshness probes per second.
    #[arg(long, env = "STREAM_PROBE_RATE", default_value_t = 20.0)]
    probe_rate: f64,
    /// Probes in flight at most.
    #[arg(long, default_value_t = 16)]
    probe_workers: usize,
    /// Events per background request (`/v1/batch`).
    #[arg(long, env = "STREAM_BATCH", default_value_t = 50)]
    batch: usize,
    /// Background connections.
    #[arg(long, env = "STREAM_CONNECTIONS", default_value_t = 64)]
    connections: usize,
    /// Background users (ids 1..=N), each clicking now and then.
    #[arg(long, env = "STREAM_USERS", default_value = "200k", value_parser = suite::parse_count)]
    users: u64,
    /// Posts the background clicks.
    #[arg(long, default_value = "100k", value_parser = suite::parse_count)]
    posts: u64,
    /// Bots of the risk run.
    #[arg(long, env = "STREAM_BOTS", default_value_t = 20)]
    bots: usize,
    /// Events per second of each bot.
    #[arg(long, env = "STREAM_BOT_RATE", default_value_t = 500.0)]
    bot_rate: f64,
    /// Seconds each bot sends.
    #[arg(long, env = "STREAM_BOT_SECONDS", default_value_t = 3.0)]
    bot_seconds: f64,
    /// Milliseconds between two bots' starts.
    #[arg(long, env = "STREAM_BOT_STAGGER_MS", default_value_t = 500)]
    bot_stagger_ms: u64,
    /// Connections per bot (its requests are spread over them, in order of due time).
    #[arg(long, default_value_t = 4)]
    bot_connections: usize,
    /// Background rate during the risk run, events per second.
    #[arg(long, env = "STREAM_RISK_RATE", default_value_t = 10_000.0)]
    risk_rate: f64,
    /// Target rates of the CPU runs, events per second, comma-separated (open loop; the
    /// achieved rate is reported).
    #[arg(
        long,
        env = "STREAM_CPU_RATES",
        default_value = "50000,100000",
        value_delimiter = ','
    )]
    cpu_rates: Vec<f64>,
    /// Seconds per CPU run.
    #[arg(long, env = "STREAM_CPU_SECONDS", default_value_t = 20)]
    cpu_seconds: u64,
    /// Which parts run: freshness, risk, cpu (comma-separated).
    #[arg(
        long,
        env = "STREAM_PARTS",
        default_value = "freshness,risk,cpu",
        value_delimiter = ','
    )]
    parts: Vec<String>,
    /// Where the servers' data directories go (default: a temporary directory, removed at
    /// the end).
    #[arg(long, env = "STREAM_WORK_DIR")]
    work_dir: Option<PathBuf>,
    /// Keep the work directory.
    #[arg(long)]
    keep: bool,
    /// A note kept in the report.
    #[arg(long, default_value = "")]
    note: String,
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
}

impl Args {
    fn runs(&self, part: &str) -> bool {
        self.parts.iter().any(|p| p.trim() == part)
    }
}

/// Seconds after a CPU run's load during which the server's CPU still counts (consumers
/// catching up).
const CPU_TAIL: Duration = Duration::from_secs(5);
/// Post ids of the freshness probes start here (far above the background's).
const PROBE_POST_BASE: u64 = 1_000_000_000;

fn main() -> Result<()> {
    let args = Args::parse();
    for part in &args.parts {
        if !["freshness", "risk", "cpu"].contains(&part.trim()) {
            bail!("--parts takes freshness, risk and cpu, not {part:?}");
        }
    }
    let (work, temporary) = match &args.work_dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("strata-stream-bench-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&work)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(run(&args, &work));
    if args.keep || !temporary {
        eprintln!("stream bench: kept {}", work.display());
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    let report = result?;
    let md = strata_bench::stream::report::markdown(&report);
    let json_path = suite::write_report(&args.out, "stream", &report, &md)?;
    println!("{md}");
    eprintln!("wrote {}", json_path.display());
    Ok(())
}

async fn run(args: &Args, work: &Path) -> Result<Value> {
    let version = std::process::Command::new(&args.strata)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut report = json!({
        "suite": "stream",
        "started": chrono::Utc::now().to_rfc3339(),
        "machine": machine("the load generator, the probes and the server share the cores"),
        "strata": version,
        "note": args.note,
        "settings": {
            "rates": args.rates, "seconds": args.seconds, "probe_rate": args.probe_rate,
            "batch": args.batch, "connections": args.connections, "users": args.users,
            "posts": args.posts, "bots": args.bots, "bot_rate": args.bot_rate,
            "bot_seconds": args.bot_seconds, "bot_stagger_ms": args.bot_stagger_ms,
            "bot_connections": args.bot_connections, "risk_rate": args.risk_rate,
            "cpu_rates": args.cpu_rates, "cpu_seconds": args.cpu_seconds,
            "risk_rule": {"name": RISK_RULE_NAME, "kind": "rate", "subject": "user_id",
                          "max": RISK_RULE_MAX, "window": "10s", "action": "block", "block_for": "10m"},
        },
    });
    if args.runs("freshness") || args.runs("risk") {
        let (freshness, risk) = streams_server(args, &work.join("streams")).await?;
        report["freshness"] = freshness;
        report["risk"] = risk;
    }
    if args.runs("cpu") {
        report["cpu"] = cpu_runs(args, work).await?;
    }
    Ok(report)
}

/// One server with the stream views and the rule: the freshness runs, then the risk run,
/// then the lake's ack → commit for each run's events.
async fn streams_server(args: &Args, dir: &Path) -> Result<(Value, Value)> {
    let setup = Setup {
        stream_views: true,
        risk_rule: true,
    };
    let prepared = prepare(&args.strata, dir, setup)?;
    let mut serve = Serve::start(&args.strata, &prepared.config, &dir.join("serve.log"))?;
    let (addr, pid) = (serve.addr, serve.pid());
    let write_auth = basic_auth(WRITE_KEY);
    let ready_ms = wait_visible(
        addr,
        &write_auth,
        &prepared.bearer,
        PROBE_POST_BASE - 1,
        Duration::from_secs(120),
    )
    .await?;
    eprintln!(
        "stream bench: server at {addr} ({}); first click visible {ready_ms:.1} ms after its ack",
        setup.describe()
    );

    let mut runs = Vec::new();
    let mut windows: Vec<(usize, i64, i64)> = Vec::new();
    if args.runs("freshness") {
        for (k, &rate) in args.rates.iter().enumerate() {
            serve.check_running()?;
            let duration = Duration::from_secs(args.seconds);
            eprintln!(
                "stream bench: freshness at {rate} events/s for {} s",
                args.seconds
            );
            let clicks = Clicks {
                run: format!("fresh{k}"),
                batch: args.batch,
                users: args.users,
                posts: args.posts,
            };
            let probes = Probes {
                addr,
                write_auth: write_auth.clone(),
                read_auth: prepared.bearer.clone(),
                rate: args.probe_rate,
                duration,
                workers: args.probe_workers,
                post_base: PROBE_POST_BASE + k as u64 * 10_000_000,
                run: format!("fresh{k}"),
            };
            let from_us = wall_us();
            let counters0 = consumer_counters(addr).await;
            let cpu0 = CpuMark::now(pid);
            let (bg, probed, samples) = tokio::join!(
                background(addr, &write_auth, clicks, rate, duration, args.connections),
                probes.run(),
                sample_for(addr, pid, duration),
            );
            let cpu = cpu0.until(&CpuMark::now(pid));
            let to_us = wall_us();
            let consumer = consumer_delta(
                &counters0,
                &consumer_counters(addr).await,
                cpu["wall_s"].as_f64().unwrap_or(f64::NAN),
            );
            let (bg, probed) = (bg?, probed?);
            let run = json!({
                "target_events_per_sec": rate,
                "background": bg.to_json(),
                "probes": probed.to_json(),
                "server": samples_json(&samples),
                "realtime_consumer": consumer,
                "cpu": cpu,
            });
            eprintln!(
                "  achieved {:.0} events/s; probes {} (not visible {}): ack→visible p50 {:.1} ms p99 {:.1} ms; send→visible p99 {:.1} ms; lake lag max {}; realtime lag max {}; serve CPU {:.2} s/s; realtime consumer {}",
                bg.events_per_sec,
                run["probes"]["ack_to_visible_ms"]["n"],
                probed.not_visible,
                run["probes"]["ack_to_visible_ms"]["p50"].as_f64().unwrap_or(f64::NAN),
                run["probes"]["ack_to_visible_ms"]["p99"].as_f64().unwrap_or(f64::NAN),
                run["probes"]["send_to_visible_ms"]["p99"].as_f64().unwrap_or(f64::NAN),
                run["server"]["lake_lag_max"],
                run["server"]["stream_lag_max"],
                run["cpu"]["serve_cpu_s_per_s"].as_f64().unwrap_or(f64::NAN),
                run["realtime_consumer"],
            );
            runs.push(run);
            windows.push((runs.len() - 1, from_us, to_us));
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    let mut risk = Value::Null;
    if args.runs("risk") {
        serve.check_running()?;
        let bots = Bots {
            addr,
            write_auth: write_auth.clone(),
            bots: args.bots,
            first_user: BOT_USER_BASE,
            stagger: Duration::from_millis(args.bot_stagger_ms),
            rate: args.bot_rate,
            duration: Duration::from_secs_f64(args.bot_seconds),
            connections_per_bot: args.bot_connections,
            run: "risk".into(),
        };
        let span = bots.span() + Duration::from_secs(1);
        eprintln!(
            "stream bench: risk — {} bots at {}/s each, one every {} ms, background {} events/s for {:.1} s",
            args.bots,
            args.bot_rate,
            args.bot_stagger_ms,
            args.risk_rate,
            span.as_secs_f64()
        );
        let clicks = Clicks {
            run: "riskbg".into(),
            batch: args.batch,
            users: args.users,
            posts: args.posts,
        };
        let cpu0 = CpuMark::now(pid);
        let (bg, bot_runs, samples) = tokio::join!(
            background(
                addr,
                &write_auth,
                clicks,
                args.risk_rate,
                span,
                args.connections
            ),
            bots.run(),
            sample_for(addr, pid, span),
        );
        let cpu = cpu0.until(&CpuMark::now(pid));
        let (bg, bot_runs) = (bg?, bot_runs?);
        let decisions = risk_decisions(args, &prepared.config, args.bots).await;
        let mut figures = analyse(&bot_runs, &decisions, RISK_RULE_MAX);
        figures["background"] = bg.to_json();
        figures["server"] = samples_json(&samples);
        figures["cpu"] = cpu;
        eprintln!(
            "  decisions from the lake {}/{}; decision→first refused (ack) p50 {} ms p99 {} ms; accepted > 1 s after the decision: {}; background refused: {}",
            figures["decisions_from_lake"],
            args.bots,
            figures["decision_to_first_refused_ack_ms"]["p50"],
            figures["decision_to_first_refused_ack_ms"]["p99"],
            figures["accepted_sent_over_1s_after_decision"],
            bg.events_rejected,
        );
        risk = figures;
    }

    // The lake: every run's events committed, then ack → commit of each run's window.
    if !windows.is_empty() {
        wait_lake_drained(args, &prepared.config).await;
        for (i, from_us, to_us) in windows {
            runs[i]["lake_ack_to_commit_ms"] =
                lake_ack_to_commit(&args.strata, &prepared.config, from_us, to_us)
                    .unwrap_or_else(|e| json!({"error": e.to_string()}));
        }
    }
    drop(serve);
    Ok((
        json!({"ready_click_ack_to_visible_ms": ready_ms, "runs": runs}),
        risk,
    ))
}

/// The rule's decision time per bot (user id → µs), from `ods.ods_risk_decision` (appended
/// every `risk.flush_interval`, 5 s by default): waits up to 30 s for `want` rows.
async fn risk_decisions(args: &Args, config: &Path, want: usize) -> HashMap<String, i64> {
    let q = format!(
        "SELECT subject, arrow_cast(decided_at, 'Int64') AS d FROM ods.ods_risk_decision \
         WHERE rule = '{RISK_RULE_NAME}' AND subject_kind = 'user_id'"
    );
    let started = std::time::Instant::now();
    let mut out = HashMap::new();
    while started.elapsed() < Duration::from_secs(30) {
        if let Ok(rows) = sql(&args.strata, config, &q) {
            out = rows
                .iter()
                .filter_map(|r| Some((r["subject"].as_str()?.to_string(), r["d"].as_i64()?)))
                .collect();
            if out.len() >= want {
                break;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    out
}

/// Waits (up to 2 minutes) until the lake's row count stops growing after the load.
async fn wait_lake_drained(args: &Args, config: &Path) {
    let started = std::time::Instant::now();
    let mut last = -1;
    let mut same = 0;
    while started.elapsed() < Duration::from_secs(120) {
        let n = lake_rows(&args.strata, config).unwrap_or(-1);
        if n == last && n > 0 {
            same += 1;
            // The sink commits every 10 s by default: unchanged over 12 s is drained.
            if same >= 6 {
                return;
            }
        } else {
            same = 0;
        }
        last = n;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// At each CPU rate, the same load on a server without, then with, the stream views and the
/// rule.
async fn cpu_runs(args: &Args, work: &Path) -> Result<Value> {
    let without = Setup {
        stream_views: false,
        risk_rule: false,
    };
    let with = Setup {
        stream_views: true,
        risk_rule: true,
    };
    let mut runs = Vec::new();
    for (k, &rate) in args.cpu_rates.iter().enumerate() {
        let mut pair = serde_json::Map::new();
        pair.insert("target_events_per_sec".into(), json!(rate));
        for (name, setup) in [("without", without), ("with", with)] {
            let run = cpu_run(args, &work.join(format!("cpu{k}-{name}")), setup, rate).await?;
            pair.insert(name.into(), run);
        }
        let share = |key: &str, field: &str| -> Value {
            let w = pair["with"][key][field].as_f64();
            let wo = pair["without"][key][field].as_f64();
            json!(w.zip(wo).map(|(a, b)| a - b))
        };
        let per_m = |name: &str| pair[name]["serve_cpu_s_per_million_events"].as_f64();
        let consumers = json!({
            "serve_cpu_s_per_s_during_load": share("load_cpu", "serve_cpu_s_per_s"),
            "serve_cpu_s_per_million_events": per_m("with").zip(per_m("without")).map(|(a, b)| a - b),
        });
        pair.insert("consumers_share".into(), consumers);
        runs.push(Value::Object(pair));
    }
    Ok(json!({ "runs": runs }))
}

/// One CPU run: a fresh server with `setup`, idle for 2 s, then the load at `rate`; the
/// server's CPU over the load, and over the load and the 5 s after it per 1M events.
async fn cpu_run(args: &Args, dir: &Path, setup: Setup, rate: f64) -> Result<Value> {
    let prepared = prepare(&args.strata, dir, setup)?;
    let mut serve = Serve::start(&args.strata, &prepared.config, &dir.join("serve.log"))?;
    let (addr, pid) = (serve.addr, serve.pid());
    let write_auth = basic_auth(WRITE_KEY);
    if setup.stream_views {
        wait_visible(
            addr,
            &write_auth,
            &prepared.bearer,
            PROBE_POST_BASE - 2,
            Duration::from_secs(120),
        )
        .await?;
    } else {
        wait_accepting(addr, &write_auth).await?;
    }
    // Settle: the start's own work (the lake's first tables, backfill) is not counted.
    tokio::time::sleep(Duration::from_secs(3)).await;
    serve.check_running()?;
    eprintln!(
        "stream bench: CPU run ({}) at {rate} events/s for {} s",
        setup.describe(),
        args.cpu_seconds
    );
    let duration = Duration::from_secs(args.cpu_seconds);
    let clicks = Clicks {
        run: "cpu".into(),
        batch: args.batch,
        users: args.users,
        posts: args.posts,
    };
    let idle0 = CpuMark::now(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = idle0.until(&CpuMark::now(pid));
    let from_us = wall_us();
    let counters0 = consumer_counters(addr).await;
    let cpu0 = CpuMark::now(pid);
    let (bg, samples) = tokio::join!(
        background(addr, &write_auth, clicks, rate, duration, args.connections),
        sample_for(addr, pid, duration),
    );
    let load = cpu0.until(&CpuMark::now(pid));
    let to_us = wall_us();
    let consumer = consumer_delta(
        &counters0,
        &consumer_counters(addr).await,
        load["wall_s"].as_f64().unwrap_or(f64::NAN),
    );
    tokio::time::sleep(CPU_TAIL).await;
    let with_tail = cpu0.until(&CpuMark::now(pid));
    let tail_samples = samples_json(&sample_for(addr, pid, Duration::from_secs(1)).await);
    let bg = bg?;
    let cpu_per_million =
        with_tail["serve_cpu_s"].as_f64().unwrap_or(f64::NAN) / (bg.events_acked as f64 / 1e6);
    wait_lake_drained(args, &prepared.config).await;
    let lake = lake_ack_to_commit(&args.strata, &prepared.config, from_us, to_us)
        .unwrap_or_else(|e| json!({"error": e.to_string()}));
    eprintln!(
        "  achieved {:.0} events/s; serve CPU {:.2} s/s during the load ({:.2} s per 1M events with {} s after it); machine busy {:.0} %; lake ack→commit p99 {} ms",
        bg.events_per_sec,
        load["serve_cpu_s_per_s"].as_f64().unwrap_or(f64::NAN),
        cpu_per_million,
        CPU_TAIL.as_secs(),
        load["machine_busy_share"].as_f64().unwrap_or(f64::NAN) * 100.0,
        lake["p99"],
    );
    drop(serve);
    if !args.keep {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(json!({
        "setup": setup.describe(),
        "background": bg.to_json(),
        "idle_cpu": idle,
        "load_cpu": load,
        "load_and_tail_cpu": with_tail,
        "serve_cpu_s_per_million_events": cpu_per_million,
        "server": samples_json(&samples),
        "realtime_consumer": consumer,
        "after_tail": tail_samples,
        "lake_ack_to_commit_ms": lake,
    }))
}

/// Waits until the collector accepts a batch.
async fn wait_accepting(addr: std::net::SocketAddr, auth: &str) -> Result<()> {
    let started = std::time::Instant::now();
    let body = strata_bench::stream::events::one_click("ready", 1, 1);
    loop {
        if let Ok(mut c) = strata_bench::Conn::connect(addr).await {
            if let Ok((200, _)) = c.post_read("/v1/batch", auth, &body).await {
                return Ok(());
            }
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("the collector accepted nothing within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
