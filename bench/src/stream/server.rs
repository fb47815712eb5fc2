//! `strata serve` as a child process over a fresh data directory: its project (the reference
//! stream views, or none), its risk rule, its `/metrics`, its CPU time, and `strata sql` over
//! its lake.

use std::collections::HashMap;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::Conn;

/// The reference project's stream views (`models/social/features/`), as the binary was built.
const STREAM_VIEWS: [(&str, &str); 2] = [
    (
        "user_realtime.toml",
        include_str!("../../../models/social/features/user_realtime.toml"),
    ),
    (
        "post_trending.toml",
        include_str!("../../../models/social/features/post_trending.toml"),
    ),
];

/// The rule the risk figures are about (issue #29): more than 50 events of one user within
/// 10 s blocks that user for 10 minutes.
pub const RISK_RULE_NAME: &str = "bench_flood";
pub const RISK_RULE_MAX: u64 = 50;
const RISK_RULE: &str = "
[[risk.rules]]
name = \"bench_flood\"
kind = \"rate\"
subject = \"user_id\"
max = 50
window = \"10s\"
action = \"block\"
block_for = \"10m\"
";

pub const WRITE_KEY: &str = "stream-bench-key";

/// What the server computes besides the collector and the lake sink.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    /// The project holds `user_realtime` and `post_trending` (consumer group `realtime`).
    pub stream_views: bool,
    /// `[[risk.rules]]` holds the rate rule (consumer group `risk`).
    pub risk_rule: bool,
}

impl Setup {
    pub fn describe(&self) -> &'static str {
        match (self.stream_views, self.risk_rule) {
            (true, true) => "stream views and risk rule",
            (true, false) => "stream views only",
            (false, true) => "risk rule only",
            (false, false) => "neither stream views nor risk rules",
        }
    }
}

/// A data directory ready for `strata serve`.
pub struct Prepared {
    pub dir: PathBuf,
    pub config: PathBuf,
    /// `Bearer …` for the feature API.
    pub bearer: String,
}

/// `strata init DIR`, an app with [`WRITE_KEY`], a project at `DIR/project` with the stream
/// views (or an empty `features/`), the risk rule appended, a serve token.
pub fn prepare(strata: &Path, dir: &Path, setup: Setup) -> Result<Prepared> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let config = dir.join("strata.toml");
    strata_cli(strata, &["init"], Some(dir), None)?;
    strata_cli(
        strata,
        &["apps", "create", "stream-bench", "--write-key", WRITE_KEY],
        None,
        Some(&config),
    )?;
    let project = dir.join("project");
    let features = project.join("features");
    std::fs::create_dir_all(&features)?;
    std::fs::write(
        project.join("strata_project.toml"),
        "# The stream benchmark's project: stream views only, no warehouse models.\nname = \"stream_bench\"\nsources = [\"ods.ods_event\"]\n",
    )?;
    if setup.stream_views {
        for (name, text) in STREAM_VIEWS {
            std::fs::write(features.join(name), text)?;
        }
    }
    let mut text = std::fs::read_to_string(&config)?;
    if !text.contains("\nproject = \"\"") {
        bail!(
            "{}: no `project = \"\"` to point at the project (the default config moved on; update the bench)",
            config.display()
        );
    }
    text = text.replacen("\nproject = \"\"", "\nproject = \"project\"", 1);
    if setup.risk_rule {
        text.push_str(RISK_RULE);
    }
    std::fs::write(&config, text)?;
    let token = strata_cli(
        strata,
        &["tokens", "create", "stream-bench", "--scope", "serve"],
        None,
        Some(&config),
    )?;
    Ok(Prepared {
        dir: dir.to_path_buf(),
        config,
        bearer: format!("Bearer {}", token.trim()),
    })
}

/// `strata ARGS… [DIR] [-c CONFIG]`: its stdout.
fn strata_cli(
    strata: &Path,
    args: &[&str],
    dir: Option<&Path>,
    config: Option<&Path>,
) -> Result<String> {
    let mut cmd = Command::new(strata);
    cmd.args(args).env("RUST_LOG", "warn");
    if let Some(d) = dir {
        cmd.arg(d);
    }
    if let Some(c) = config {
        cmd.arg("-c").arg(c);
    }
    let out = cmd
        .output()
        .with_context(|| format!("starting {}", strata.display()))?;
    if !out.status.success() {
        bail!(
            "strata {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `strata sql --format json -c CONFIG QUERY`: its rows.
pub fn sql(strata: &Path, config: &Path, query: &str) -> Result<Vec<Value>> {
    let out = Command::new(strata)
        .args(["sql", "--format", "json", "-c"])
        .arg(config)
        .arg(query)
        .env("RUST_LOG", "warn")
        .output()?;
    if !out.status.success() {
        bail!(
            "strata sql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// `strata serve` as a child, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Serve {
    child: Child,
    pub addr: SocketAddr,
}

impl Serve {
    /// Starts `strata serve -c CONFIG --listen 127.0.0.1:0`, its log in `log`; returns once it
    /// printed its address.
    pub fn start(strata: &Path, config: &Path, log: &Path) -> Result<Serve> {
        let log = std::fs::File::create(log)?;
        let mut child = Command::new(strata)
            .args(["serve", "-c"])
            .arg(config)
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", strata.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the address line, then keeps draining stdout so the server never writes into
        // a closed pipe.
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("strata serve printed no address within 120 s (see its log)");
            }
        };
        let addr = line
            .trim()
            .rsplit("http://")
            .next()
            .and_then(|a| a.parse().ok())
            .with_context(|| format!("no address in {line:?}"))?;
        Ok(Serve { child, addr })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails when the server has exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("strata serve exited ({status}); see its log");
        }
        Ok(())
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server's `/metrics` text.
pub async fn scrape(addr: SocketAddr) -> Result<String> {
    let mut conn = Conn::connect(addr).await?;
    let (status, body) = conn.get("/metrics").await?;
    if status != 200 {
        bail!("/metrics answered {status}");
    }
    Ok(body)
}

/// The sum of a metric's samples whose labels contain every `filter` (`group="lake"`);
/// `None` when there is none.
pub fn metric_sum(text: &str, name: &str, filters: &[&str]) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        if !filters.iter().all(|f| rest.contains(f)) {
            continue;
        }
        if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// Seconds of CPU (user + system) a process has used, from `/proc/PID/stat`.
pub fn process_cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces, in parentheses): state is the
    // first, utime the 12th, stime the 13th.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux unless told otherwise).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The whole machine's (busy, total) CPU time in ticks, from `/proc/stat`.
pub fn machine_cpu_ticks() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let total: f64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0.0);
    Some((total - idle, total))
}

/// CPU use over an interval: the server's, this process's (the load generator) and the
/// machine's.
#[derive(Debug, Clone, Copy)]
pub struct CpuMark {
    at: Instant,
    serve: f64,
    bench: f64,
    machine: (f64, f64),
}

impl CpuMark {
    pub fn now(serve_pid: u32) -> CpuMark {
        CpuMark {
            at: Instant::now(),
            serve: process_cpu_secs(&serve_pid.to_string()).unwrap_or(f64::NAN),
            bench: process_cpu_secs("self").unwrap_or(f64::NAN),
            machine: machine_cpu_ticks().unwrap_or((f64::NAN, f64::NAN)),
        }
    }

    /// From `self` to `later`: wall seconds, the server's and the bench's CPU seconds and per
    /// second, the machine's busy share (of all its cores).
    pub fn until(&self, later: &CpuMark) -> Value {
        let wall = later.at.duration_since(self.at).as_secs_f64().max(1e-9);
        let serve = later.serve - self.serve;
        let bench = later.bench - self.bench;
        let busy = (later.machine.0 - self.machine.0) / (later.machine.1 - self.machine.1);
        json!({
            "wall_s": wall,
            "serve_cpu_s": serve,
            "serve_cpu_s_per_s": serve / wall,
            "bench_cpu_s_per_s": bench / wall,
            "machine_busy_share": busy,
        })
    }
}

/// One sample of the server's state each second.
#[derive(Debug, Clone)]
pub struct Sample {
    pub t: f64,
    /// `strata_bus_consumer_lag_records{group="lake"}`.
    pub lake_lag: Option<f64>,
    /// `strata_stream_lag_records` (the realtime consumer, updated at its checkpoints).
    pub stream_lag: Option<f64>,
    /// The server's CPU seconds per second over the last interval.
    pub serve_cpu: f64,
}

/// Samples the server every second for `duration`.
pub async fn sample_for(addr: SocketAddr, pid: u32, duration: Duration) -> Vec<Sample> {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut last = CpuMark::now(pid);
    while start.elapsed() + Duration::from_millis(500) < duration {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mark = CpuMark::now(pid);
        let cpu = last.until(&mark)["serve_cpu_s_per_s"]
            .as_f64()
            .unwrap_or(f64::NAN);
        last = mark;
        let text = scrape(addr).await.unwrap_or_default();
        out.push(Sample {
            t: start.elapsed().as_secs_f64(),
            lake_lag: metric_sum(
                &text,
                "strata_bus_consumer_lag_records",
                &["group=\"lake\""],
            ),
            stream_lag: metric_sum(&text, "strata_stream_lag_records", &[]),
            serve_cpu: cpu,
        });
    }
    out
}

/// The samples as JSON, with the lake's and the stream's largest and last lag.
pub fn samples_json(samples: &[Sample]) -> Value {
    let max = |f: &dyn Fn(&Sample) -> Option<f64>| {
        samples
            .iter()
            .filter_map(f)
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
    };
    let last = |f: &dyn Fn(&Sample) -> Option<f64>| samples.iter().rev().find_map(f);
    json!({
        "lake_lag_max": max(&|s| s.lake_lag),
        "lake_lag_last": last(&|s| s.lake_lag),
        "stream_lag_max": max(&|s| s.stream_lag),
        "stream_lag_last": last(&|s| s.stream_lag),
        "per_second": samples.iter().map(|s| json!({
            "t": (s.t * 10.0).round() / 10.0,
            "lake_lag": s.lake_lag,
            "stream_lag": s.stream_lag,
            "serve_cpu": (s.serve_cpu * 1000.0).round() / 1000.0,
        })).collect::<Vec<_>>(),
    })
}

/// The consumers' counters (`/metrics`) a run's figures are deltas of.
const COUNTERS: [(&str, &str); 7] = [
    ("records", "strata_stream_records_total"),
    ("apply_s", "strata_stream_apply_seconds_sum"),
    ("batches", "strata_stream_apply_seconds_count"),
    ("flush_s", "strata_stream_flush_seconds_sum"),
    ("flushes", "strata_stream_flush_seconds_count"),
    ("rows", "strata_stream_rows_written_total"),
    ("decisions", "strata_risk_decisions_total"),
];

/// The consumers' counters now (absent ones are 0).
pub async fn consumer_counters(addr: SocketAddr) -> HashMap<&'static str, f64> {
    let text = scrape(addr).await.unwrap_or_default();
    COUNTERS
        .iter()
        .map(|(k, name)| (*k, metric_sum(&text, name, &[]).unwrap_or(0.0)))
        .collect()
}

/// What the realtime consumer did between two [`consumer_counters`]: records read per
/// second, bus reads (batches) per second and their mean records and apply time, view
/// flushes (each writes the changed rows and states of one view to the online store) and
/// their mean time, rows written per second, risk decisions.
pub fn consumer_delta(
    before: &HashMap<&'static str, f64>,
    after: &HashMap<&'static str, f64>,
    secs: f64,
) -> Value {
    let d = |k: &str| after.get(k).unwrap_or(&0.0) - before.get(k).unwrap_or(&0.0);
    let per = |x: f64, n: f64| if n > 0.0 { x / n } else { f64::NAN };
    let secs = secs.max(1e-9);
    json!({
        "records_per_s": d("records") / secs,
        "batches_per_s": d("batches") / secs,
        "records_per_batch": per(d("records"), d("batches")),
        "apply_ms_mean": per(d("apply_s") * 1e3, d("batches")),
        "view_flushes_per_s": d("flushes") / secs,
        "view_flush_ms_mean": per(d("flush_s") * 1e3, d("flushes")),
        "rows_written_per_s": d("rows") / secs,
        "risk_decisions": d("decisions"),
    })
}

/// Ack → commit of the lake sink for events the collector stamped in `[from_us, to_us)`:
/// `ingested_at - server_ts` of those rows, p50 / p99 / max in ms, and their count.
pub fn lake_ack_to_commit(strata: &Path, config: &Path, from_us: i64, to_us: i64) -> Result<Value> {
    let q = format!(
        "SELECT count(*) AS n, approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY d) AS p50, \
         approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY d) AS p99, max(d) AS mx FROM \
         (SELECT (arrow_cast(ingested_at, 'Int64') - arrow_cast(server_ts, 'Int64')) / 1000.0 AS d \
          FROM ods.ods_event WHERE arrow_cast(server_ts, 'Int64') >= {from_us} \
          AND arrow_cast(server_ts, 'Int64') < {to_us})"
    );
    let rows = sql(strata, config, &q)?;
    let row = rows.first().context("no ack→commit row")?;
    Ok(json!({"rows": row["n"], "p50": row["p50"], "p99": row["p99"], "max": row["mx"]}))
}

/// Rows of `ods.ods_event`.
pub fn lake_rows(strata: &Path, config: &Path) -> Result<i64> {
    let rows = sql(strata, config, "SELECT count(*) AS n FROM ods.ods_event")?;
    Ok(rows.first().and_then(|r| r["n"].as_i64()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sums_filter_by_label() {
        let text =
            "# HELP x\nstrata_bus_consumer_lag_records{group=\"lake\",topic=\"events\"} 12\n\
                    strata_bus_consumer_lag_records{group=\"cdc\",topic=\"x\"} 5\n\
                    strata_bus_consumer_lag_records_other 7\nstrata_stream_lag_records 3\n";
        assert_eq!(
            metric_sum(text, "strata_bus_consumer_lag_records", &["group=\"lake\""]),
            Some(12.0)
        );
        assert_eq!(
            metric_sum(text, "strata_bus_consumer_lag_records", &[]),
            Some(17.0)
        );
        assert_eq!(
            metric_sum(text, "strata_stream_lag_records", &[]),
            Some(3.0)
        );
        assert_eq!(metric_sum(text, "strata_missing", &[]), None);
    }

    #[test]
    fn own_cpu_time_is_readable() {
        assert!(process_cpu_secs("self").is_some_and(|s| s >= 0.0));
        let (busy, total) = machine_cpu_ticks().unwrap();
        assert!(busy <= total);
    }
}
