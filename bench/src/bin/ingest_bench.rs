//! Ingest benchmark: durable-ack throughput and latency of `strata serve` under batches of 100
//! events of ~400 bytes, the lake sink's lag during the run, ack → visible-in-SQL freshness at
//! the default flush interval and at 1 s, peak RSS — next to the fsync-only ceiling server
//! measured the same way in the same run.
//!
//! Usage: ingest-bench [--seconds N] [--connections C] [--strata PATH] [--out DIR]
//!        [--tansu PATH] [--only default|1s|schema] [--schema]
//!
//! `--schema` adds a run at the default settings with a JSON Schema registered for the events
//! it sends (`Post Viewed`: every event validated by the collector), right after the plain
//! default run, and reports the throughput ratio of the two (issue #28: validation may cost at
//! most 10 %). `--only schema` runs that configuration alone.
//! (bench/run.sh builds everything in release mode and calls this.)

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;
use strata_bench::{machine, peak_rss_mib, run_load, suite, BatchTemplate, Conn, LoadResult};

const WRITE_KEY: &str = "bench-key";
const EVENTS_PER_BATCH: usize = 100;
const EVENT_BYTES: usize = 400;
/// The schema `--schema` registers for the template's events (`strata_bench::BatchTemplate`).
const SCHEMA: &str = r#"{"type":"object","required":["post_id","feed"],"additionalProperties":false,
  "properties":{"post_id":{"type":"integer","minimum":0},
                "feed":{"type":"string","enum":["home","following","trending"]},
                "pad":{"type":"string","maxLength":1000}}}"#;

struct Args {
    seconds: u64,
    connections: usize,
    strata: PathBuf,
    out: PathBuf,
    /// A tansu broker binary: with it, the same load also runs on the Kafka bus.
    tansu: Option<PathBuf>,
    /// `--only default` (or `1s`, `schema`): run just that Strata run and print its figures,
    /// no report (for profiling one configuration).
    only: Option<String>,
    /// Also run the default settings with a schema registered for the events sent.
    schema: bool,
}

fn parse_args() -> Result<Args> {
    let exe_dir = std::env::current_exe()?
        .parent()
        .map(Path::to_path_buf)
        .context("exe dir")?;
    let mut args = Args {
        seconds: 30,
        connections: 64,
        strata: exe_dir.join("strata"),
        out: PathBuf::from("bench/results"),
        tansu: std::env::var_os("STRATA_TANSU_BIN").map(PathBuf::from),
        only: None,
        schema: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--seconds" => args.seconds = val()?.parse()?,
            "--connections" => args.connections = val()?.parse()?,
            "--strata" => args.strata = PathBuf::from(val()?),
            "--out" => args.out = PathBuf::from(val()?),
            "--tansu" => args.tansu = Some(PathBuf::from(val()?)),
            "--only" => args.only = Some(val()?),
            "--schema" => args.schema = true,
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let template = Arc::new(BatchTemplate::new("bench", EVENTS_PER_BATCH, EVENT_BYTES));
    let duration = Duration::from_secs(args.seconds);
    eprintln!(
        "ingest bench: {} s per run, {} connections, batches of {} events, {} bytes per batch",
        args.seconds,
        args.connections,
        EVENTS_PER_BATCH,
        template.len()
    );

    if let Some(only) = &args.only {
        let (flush, schema) = match only.as_str() {
            "default" => (None, false),
            "1s" => (Some("1s"), false),
            "schema" => (None, true),
            other => bail!("--only takes default, 1s or schema, not {other}"),
        };
        strata_run(&args, &template, duration, flush, None, 1, schema).await?;
        return Ok(());
    }

    // 1. Strata at default settings (10 s flush), then 2. with --flush-interval 1s.
    settle();
    let default_run = strata_run(&args, &template, duration, None, None, 1, false).await?;
    // 1b. The same with every event validated against a registered schema (--schema).
    let schema_run = if args.schema {
        settle();
        Some(strata_run(&args, &template, duration, None, None, 3_000_000_000, true).await?)
    } else {
        None
    };
    settle();
    let fast_run = strata_run(
        &args,
        &template,
        duration,
        Some("1s"),
        None,
        1_000_000_000,
        false,
    )
    .await?;
    // 3. The same as 2. on the Kafka bus (a tansu broker on loopback, memory storage).
    let kafka_run = match &args.tansu {
        Some(bin) => {
            settle();
            let broker = Tansu::start(bin)?;
            let run = strata_run(
                &args,
                &template,
                duration,
                Some("1s"),
                Some(&broker.brokers()),
                2_000_000_000,
                false,
            )
            .await?;
            let broker_rss = peak_rss_mib(broker.child.id()).unwrap_or(f64::NAN);
            Some((run, broker_rss))
        }
        None => {
            eprintln!("no tansu binary (--tansu or STRATA_TANSU_BIN): the Kafka run is skipped");
            None
        }
    };

    // 4. The ceiling: an fsync-only HTTP server. Last, because deleting the ~10 GB it wrote
    // slowed whichever run came next (the first Strata run's ack p99 was 55-58 ms there
    // against 38-42 ms in the same build's runs on a quiet machine).
    settle();
    let ceiling_dir = tempdir("ceiling")?;
    let fsync_bin = args.strata.with_file_name("fsync-server");
    let mut ceiling = Command::new(&fsync_bin)
        .arg(&ceiling_dir)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", fsync_bin.display()))?;
    let ceiling_addr = read_addr(&mut ceiling)?;
    let ceiling_load = run_load(
        ceiling_addr,
        WRITE_KEY,
        template.clone(),
        args.connections,
        duration,
        0,
    )
    .await?;
    let _ = ceiling.kill();
    let _ = ceiling.wait();
    let _ = std::fs::remove_dir_all(&ceiling_dir);
    report_load("fsync-only ceiling", &ceiling_load);

    let ratio = default_run.load.events_per_sec() / ceiling_load.events_per_sec();
    eprintln!("strata / ceiling throughput ratio: {ratio:.2}");

    let report = json!({
        "benchmark": "ingest",
        "date": chrono::Utc::now().to_rfc3339(),
        "machine": machine("load generator runs on the same cores"),
        "seconds_per_run": args.seconds,
        "connections": args.connections,
        "events_per_batch": EVENTS_PER_BATCH,
        "bytes_per_batch": template.len(),
        "ceiling_fsync_only": load_json(&ceiling_load),
        "strata_default": default_run.to_json(),
        "strata_flush_1s": fast_run.to_json(),
        "strata_default_schema_validated": schema_run.as_ref().map(StrataRun::to_json),
        "ratio_schema_validated_to_default": schema_run
            .as_ref()
            .map(|r| r.load.events_per_sec() / default_run.load.events_per_sec()),
        "strata_kafka_flush_1s": kafka_run.as_ref().map(|(run, broker_rss)| {
            let mut j = run.to_json();
            j["broker"] = json!("tansu 0.6, memory storage, same machine");
            j["broker_peak_rss_mib"] = json!(broker_rss);
            j
        }),
        "ratio_strata_to_ceiling": ratio,
        "targets": {"events_per_sec": 300000, "p99_ack_ms": 50, "p99_freshness_s_at_1s_flush": 5, "peak_rss_mib": 1024}
    });
    let md = markdown(&report);
    let json_path = suite::write_report(&args.out, "ingest", &report, &md)?;
    println!("{md}");
    eprintln!("wrote {}", json_path.display());
    Ok(())
}

struct StrataRun {
    flush: String,
    load: LoadResult,
    lag_samples: Vec<(f64, f64)>,
    drain_s: f64,
    lake_rows: i64,
    freshness_ms: (f64, f64, f64),
    peak_rss_mib: f64,
}

impl StrataRun {
    fn to_json(&self) -> serde_json::Value {
        json!({
            "flush_interval": self.flush,
            "load": load_json(&self.load),
            "lake_lag_records_samples": self.lag_samples.iter().map(|(t, l)| json!([t, l])).collect::<Vec<_>>(),
            "drain_after_load_s": self.drain_s,
            "lake_rows": self.lake_rows,
            "freshness_ack_to_commit_ms": {"p50": self.freshness_ms.0, "p99": self.freshness_ms.1, "max": self.freshness_ms.2},
            "peak_rss_mib": self.peak_rss_mib,
        })
    }
}

async fn strata_run(
    args: &Args,
    template: &Arc<BatchTemplate>,
    duration: Duration,
    flush: Option<&str>,
    kafka: Option<&str>,
    first_request: u64,
    schema: bool,
) -> Result<StrataRun> {
    let dir = tempdir("strata")?;
    let config = dir.join("strata.toml");
    cli(&args.strata, &["init".as_ref(), dir.as_os_str()])?;
    cli(
        &args.strata,
        &[
            "apps".as_ref(),
            "create".as_ref(),
            "bench".as_ref(),
            "--write-key".as_ref(),
            WRITE_KEY.as_ref(),
            "-c".as_ref(),
            config.as_os_str(),
        ],
    )?;
    if schema {
        // Every event the template sends is valid: the run measures the check, not rejects.
        let file = dir.join("post_viewed.json");
        std::fs::write(&file, SCHEMA)?;
        cli(
            &args.strata,
            &[
                "schemas".as_ref(),
                "register".as_ref(),
                "Post Viewed".as_ref(),
                file.as_os_str(),
                "-c".as_ref(),
                config.as_os_str(),
            ],
        )?;
    }
    if let Some(brokers) = kafka {
        let text = std::fs::read_to_string(&config)?;
        let text = text
            .replacen("kind = \"embedded\"", "kind = \"kafka\"", 1)
            .replacen("brokers = \"\"", &format!("brokers = \"{brokers}\""), 1);
        std::fs::write(&config, text)?;
    }
    let mut cmd = Command::new(&args.strata);
    cmd.arg("serve")
        .arg("-c")
        .arg(&config)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(server_stderr(args.only.is_some()));
    if let Some(f) = flush {
        cmd.args(["--flush-interval", f]);
    }
    let mut server = cmd.spawn().context("starting strata serve")?;
    let addr = read_addr(&mut server)?;
    let label = format!(
        "strata (flush {}, {} bus{})",
        flush.unwrap_or("10s default"),
        if kafka.is_some() { "kafka" } else { "embedded" },
        if schema { ", schema validated" } else { "" }
    );

    // Sample the lake sink's lag once a second while the load runs.
    let sampler = tokio::spawn(sample_lag(addr, duration));
    let load = run_load(
        addr,
        WRITE_KEY,
        template.clone(),
        args.connections,
        duration,
        first_request,
    )
    .await?;
    let lag_samples = sampler.await.unwrap_or_default();
    report_load(&label, &load);
    if args.only.is_some() {
        // Profiling one configuration: keep the server's own view of the run (request and
        // fsync histograms) beside what the client measured.
        let mut conn = Conn::connect(addr).await?;
        let (_, metrics) = conn.get("/metrics").await?;
        let path = std::env::temp_dir().join("ingest-bench-metrics.txt");
        std::fs::write(&path, metrics)?;
        eprintln!("server metrics after the load: {}", path.display());
    }

    // Drain: how long until the lake holds everything acknowledged.
    let drain_start = Instant::now();
    let expected = load.events_acked as i64;
    let mut lake_rows = 0;
    while drain_start.elapsed() < Duration::from_secs(300) {
        lake_rows = sql_count(&args.strata, &config, "SELECT count(*) FROM ods.ods_event")?;
        if lake_rows >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let drain_s = drain_start.elapsed().as_secs_f64();
    let peak_rss_mib = peak_rss_mib(server.id()).unwrap_or(f64::NAN);
    let freshness_ms = freshness(&args.strata, &config)?;
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "{label}: lake rows {lake_rows}/{expected}, drained {drain_s:.1} s after load, \
         freshness p50 {:.0} ms p99 {:.0} ms, peak RSS {peak_rss_mib:.0} MiB",
        freshness_ms.0, freshness_ms.1
    );
    Ok(StrataRun {
        flush: flush.unwrap_or("10s").to_string(),
        load,
        lag_samples,
        drain_s,
        lake_rows,
        freshness_ms,
        peak_rss_mib,
    })
}

/// Lets the disk settle between runs: flushes what the previous run left dirty (and the
/// deletion of its data) and pauses, so each run starts on a quiet machine.
fn settle() {
    let _ = Command::new("sync").status();
    std::thread::sleep(Duration::from_secs(5));
}

/// The server's log: dropped, except when profiling one run (`--only`), where it goes to
/// `$TMPDIR/ingest-bench-server.log` (with `MIMALLOC_SHOW_STATS=1` set, the allocator's
/// figures land there at exit).
fn server_stderr(profiling: bool) -> Stdio {
    if !profiling {
        return Stdio::null();
    }
    let path = std::env::temp_dir().join("ingest-bench-server.log");
    std::fs::File::create(path).map_or_else(|_| Stdio::null(), Stdio::from)
}

async fn sample_lag(addr: SocketAddr, duration: Duration) -> Vec<(f64, f64)> {
    let start = Instant::now();
    let mut out = Vec::new();
    let Ok(mut conn) = Conn::connect(addr).await else {
        return out;
    };
    while start.elapsed() < duration {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Ok((200, body)) = conn.get("/metrics").await {
            let lag = body
                .lines()
                .filter(|l| l.starts_with("strata_bus_consumer_lag_records"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>();
            out.push((start.elapsed().as_secs_f64(), lag));
        }
    }
    out
}

/// Ack → commit time of every row: `ingested_at - server_ts`, from the lake itself.
fn freshness(strata: &Path, config: &Path) -> Result<(f64, f64, f64)> {
    let q = "SELECT approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY d) AS p50, \
             approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY d) AS p99, max(d) AS mx FROM \
             (SELECT (arrow_cast(ingested_at, 'Int64') - arrow_cast(server_ts, 'Int64')) / 1000.0 AS d \
              FROM ods.ods_event)";
    let rows = sql_json(strata, config, q)?;
    let row = rows.first().context("no freshness row")?;
    let f = |k: &str| row[k].as_f64().unwrap_or(f64::NAN);
    Ok((f("p50"), f("p99"), f("mx")))
}

fn sql_json(strata: &Path, config: &Path, q: &str) -> Result<Vec<serde_json::Value>> {
    let out = Command::new(strata)
        .args(["sql", "--format", "json", "-c"])
        .arg(config)
        .arg(q)
        .output()?;
    if !out.status.success() {
        bail!("sql failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

fn sql_count(strata: &Path, config: &Path, q: &str) -> Result<i64> {
    let rows = sql_json(strata, config, q)?;
    Ok(rows
        .first()
        .and_then(|r| r.as_object())
        .and_then(|o| o.values().next())
        .and_then(|v| v.as_i64())
        .unwrap_or(0))
}

fn cli(strata: &Path, args: &[&std::ffi::OsStr]) -> Result<()> {
    let out = Command::new(strata).args(args).output()?;
    if !out.status.success() {
        bail!("strata failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn read_addr(child: &mut Child) -> Result<SocketAddr> {
    use std::io::BufRead;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    line.trim()
        .rsplit("http://")
        .next()
        .and_then(|a| a.parse().ok())
        .with_context(|| format!("no address in {line:?}"))
}

fn tempdir(prefix: &str) -> Result<PathBuf> {
    let base = std::env::var_os("STRATA_BENCH_TMP")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!(
        "strata-bench-{prefix}-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn report_load(label: &str, r: &LoadResult) {
    eprintln!(
        "{label}: {:.0} events/s, ack p50 {:.1} ms p99 {:.1} ms p999 {:.1} ms, {} failed requests",
        r.events_per_sec(),
        r.percentile_ms(0.5),
        r.percentile_ms(0.99),
        r.percentile_ms(0.999),
        r.requests_failed
    );
}

fn load_json(r: &LoadResult) -> serde_json::Value {
    json!({
        "events_per_sec": r.events_per_sec(),
        "events_acked": r.events_acked,
        "requests_ok": r.requests_ok,
        "requests_failed": r.requests_failed,
        "ack_ms": {"p50": r.percentile_ms(0.5), "p99": r.percentile_ms(0.99), "p999": r.percentile_ms(0.999)},
    })
}

fn markdown(r: &serde_json::Value) -> String {
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    let row = |name: &str, run: &serde_json::Value| {
        let load = &run["load"];
        format!(
            "| {name} | {:.0} | {:.1} | {:.1} | {:.1} | {} | {:.0} / {:.0} | {:.0} |\n",
            f(&load["events_per_sec"]),
            f(&load["ack_ms"]["p50"]),
            f(&load["ack_ms"]["p99"]),
            f(&load["ack_ms"]["p999"]),
            load["requests_failed"],
            f(&run["freshness_ack_to_commit_ms"]["p50"]),
            f(&run["freshness_ack_to_commit_ms"]["p99"]),
            f(&run["peak_rss_mib"]),
        )
    };
    let mut s = String::new();
    s.push_str(&format!(
        "# Ingest benchmark — {}\n\nMachine: {}. {} s per run, {} connections, batches of {} events ({} bytes per batch), durable acks.\n\n",
        r["date"].as_str().unwrap_or(""),
        r["machine"],
        r["seconds_per_run"],
        r["connections"],
        r["events_per_batch"],
        r["bytes_per_batch"]
    ));
    s.push_str("| run | events/s | ack p50 ms | ack p99 ms | ack p999 ms | failed req | ack→commit p50 / p99 ms | peak RSS MiB |\n|---|---|---|---|---|---|---|---|\n");
    let c = &r["ceiling_fsync_only"];
    s.push_str(&format!(
        "| fsync-only ceiling | {:.0} | {:.1} | {:.1} | {:.1} | {} | – | – |\n",
        f(&c["events_per_sec"]),
        f(&c["ack_ms"]["p50"]),
        f(&c["ack_ms"]["p99"]),
        f(&c["ack_ms"]["p999"]),
        c["requests_failed"]
    ));
    s.push_str(&row("strata, flush 10 s (default)", &r["strata_default"]));
    if !r["strata_default_schema_validated"].is_null() {
        s.push_str(&row(
            "strata, flush 10 s, schema validated",
            &r["strata_default_schema_validated"],
        ));
    }
    s.push_str(&row("strata, flush 1 s", &r["strata_flush_1s"]));
    if !r["strata_kafka_flush_1s"].is_null() {
        s.push_str(&row(
            "strata, flush 1 s, Kafka bus (tansu)",
            &r["strata_kafka_flush_1s"],
        ));
    }
    s.push_str(&format!(
        "\nStrata / ceiling throughput: **{:.2}**. Targets: ≥ 300,000 events/s, ack p99 ≤ 50 ms, ack→visible p99 ≤ 5 s at 1 s flush, RSS ≤ 1 GiB.\n\n",
        f(&r["ratio_strata_to_ceiling"])
    ));
    for (name, key) in [
        ("default", "strata_default"),
        ("1 s", "strata_flush_1s"),
        ("Kafka 1 s", "strata_kafka_flush_1s"),
    ] {
        let run = &r[key];
        if run.is_null() {
            continue;
        }
        s.push_str(&format!(
            "Lake sink lag (records) during the {name} run, sampled each second: {}; drained {:.1} s after the load stopped; lake rows {} of {} acknowledged.\n\n",
            run["lake_lag_records_samples"]
                .as_array()
                .map(|a| a
                    .iter()
                    .map(|p| format!("{:.0}", f(&p[1])))
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default(),
            f(&run["drain_after_load_s"]),
            run["lake_rows"],
            run["load"]["events_acked"],
        ));
    }
    if let Some(rss) = r["strata_kafka_flush_1s"]["broker_peak_rss_mib"].as_f64() {
        s.push_str(&format!(
            "The Kafka run's broker is tansu 0.6 (memory storage) on the same 2 cores; its peak RSS was {rss:.0} MiB (not in Strata's figure).\n\n"
        ));
    }
    if let Some(ratio) = r["ratio_schema_validated_to_default"].as_f64() {
        s.push_str(&format!(
            "Schema validation (every event checked against a registered JSON Schema): **{ratio:.2}** of the plain default run's throughput (target ≥ 0.90).\n\n"
        ));
    }
    s.push_str("Ack→commit is `ingested_at - server_ts` of every row in the lake (the time from the collector stamping an event to the lake sink committing it).\n");
    s
}

/// A tansu broker (memory storage) on a free loopback port, killed when dropped.
struct Tansu {
    child: Child,
    port: u16,
}

impl Tansu {
    fn start(bin: &Path) -> Result<Tansu> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let broker = Tansu { child, port };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if start.elapsed() > Duration::from_secs(20) {
                bail!("tansu did not listen on {port} within 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(broker)
    }

    fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
