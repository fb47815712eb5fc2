//! CDC benchmark: a real MariaDB (row binlog) and a real PostgreSQL 15 (logical decoding) in
//! temp dirs, `sysbench` OLTP write load on `CDC_TABLES` tables, and `strata serve` with a
//! `[[sources]]` entry on them (1 s commit interval). Per engine it measures the source alone
//! (the ceiling), Strata's initial snapshot, then the same load with Strata attached: row
//! changes/s applied to the ODS, freshness of a heartbeat table (source commit → visible to
//! Strata's SQL), peak RSS and CPU of strata, the ODS merger's commit times. Then Strata's own
//! capacity, which a live load on these 2 cores cannot reach (the source alone writes a few
//! thousand rows a second): Strata is stopped, `CDC_BACKLOG_SECONDS` of load pile up in the
//! binlog / WAL, Strata restarts, and the catch-up rate (backlog row changes ÷ time from the
//! restart until every ODS table shows the end marker written after the backlog) is the
//! sustained row changes/s applied. The run fails when `strata cdc verify` does not find the
//! ODS equal to the source.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use mysql_async::prelude::Queryable;
use serde_json::{json, Value};
use strata_bench::cdc::{parse_commits, parse_sysbench, quantile, SysbenchRun};
use strata_bench::{machine, peak_rss_mib, suite};
use strata_testdb::{MariaDb, Postgres};

/// The value the end markers set `k` to (sysbench's `k` is a positive random number); the
/// backlog's markers use the next value.
const MARKER_K: i64 = -424_242;
const SOURCE: &str = "app";
const HEARTBEAT: &str = "strata_heartbeat";

#[derive(Parser, Debug)]
#[command(about = "CDC benchmark: sysbench OLTP writes on MariaDB and PostgreSQL into ODS tables")]
struct Args {
    /// The release `strata` binary.
    #[arg(long, default_value = "target/release/strata")]
    strata: PathBuf,
    /// Engines to run, in order.
    #[arg(
        long,
        env = "CDC_ENGINES",
        default_value = "mariadb,postgres",
        value_delimiter = ','
    )]
    engines: Vec<String>,
    /// sysbench workload (`oltp_write_only`, `oltp_insert`, `oltp_update_non_index`, …).
    #[arg(long, env = "CDC_WORKLOAD", default_value = "oltp_write_only")]
    workload: String,
    /// Seconds of load with Strata attached.
    #[arg(long, env = "CDC_SECONDS", default_value_t = 60)]
    seconds: u64,
    /// Seconds of the same load before Strata starts (the source's own rate); 0 skips it.
    #[arg(long, env = "CDC_ALONE_SECONDS", default_value_t = 20)]
    alone_seconds: u64,
    /// Seconds of load while Strata is stopped, applied when it restarts (its catch-up rate);
    /// 0 skips it.
    #[arg(long, env = "CDC_BACKLOG_SECONDS", default_value_t = 60)]
    backlog_seconds: u64,
    /// sysbench tables (`sbtest1` …).
    #[arg(long, env = "CDC_TABLES", default_value_t = 4)]
    tables: u32,
    /// Rows per table (suffixes k and M allowed).
    #[arg(long, env = "CDC_TABLE_SIZE", default_value = "100k", value_parser = suite::parse_count)]
    table_size: u64,
    /// sysbench client threads.
    #[arg(long, env = "CDC_THREADS", default_value_t = 8)]
    threads: u32,
    /// sysbench transactions/s during the live phase (with Strata attached); 0 = as fast as
    /// the source goes, which on 2 shared cores leaves Strata little CPU. A fixed rate below
    /// the source's ceiling measures freshness at a stated load, as a separate database host
    /// would see it. The phases without Strata stay unthrottled.
    #[arg(long, env = "CDC_RATE", default_value_t = 0)]
    rate: u32,
    /// The source's commit_interval.
    #[arg(long, env = "CDC_COMMIT_INTERVAL", default_value = "1s")]
    commit_interval: String,
    /// One heartbeat row is inserted every this many ms during the load.
    #[arg(long, env = "CDC_HEARTBEAT_MS", default_value_t = 100)]
    heartbeat_ms: u64,
    /// The ODS is polled every this many ms for heartbeats and end markers.
    #[arg(long, env = "CDC_POLL_MS", default_value_t = 100)]
    poll_ms: u64,
    /// Longest wait for the snapshot, and for the ODS to catch up after the load.
    #[arg(long, env = "CDC_TIMEOUT_SECS", default_value_t = 1800)]
    timeout_secs: u64,
    /// Keep the scratch dirs (servers are still stopped).
    #[arg(long)]
    keep: bool,
    /// Where reports go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// A note on how this run was made, kept in the report (e.g. which strata build).
    #[arg(long, env = "CDC_NOTE", default_value = "")]
    note: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    which("sysbench")
        .context("sysbench not found: `apt-get install -y sysbench` (bench/run.sh installs it)")?;
    let mut engines = Vec::new();
    for engine in &args.engines {
        eprintln!("\n=== cdc bench: {engine}");
        engines.push(run_engine(&args, engine).await?);
    }
    let report = json!({
        "suite": "cdc",
        "machine": machine(&format!("the database server, sysbench, strata serve and the ODS poller share the cores{}{}", if args.note.is_empty() { "" } else { "; " }, args.note)),
        "workload": {
            "sysbench": args.workload, "tables": args.tables, "table_size": args.table_size,
            "threads": args.threads, "seconds": args.seconds, "alone_seconds": args.alone_seconds,
            "backlog_seconds": args.backlog_seconds, "live_rate_tps": args.rate,
            "commit_interval": args.commit_interval, "heartbeat_ms": args.heartbeat_ms,
            "poll_ms": args.poll_ms,
        },
        "targets": {"row_changes_per_sec": 50_000, "freshness_p99_ms": 2000},
        "engines": engines,
    });
    let md = markdown(&report);
    let path = suite::write_report(&args.out, "cdc", &report, &md)?;
    println!("{md}");
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.exists())
}

/// A database server under test.
enum Server {
    Maria(MariaDb),
    Pg(Postgres),
}

impl Server {
    fn start(engine: &str) -> Result<Server> {
        Ok(match engine {
            // Durability settings as the tests use (group commit without fsync per commit):
            // the figures are about CDC, not the disk.
            "mariadb" => Server::Maria(MariaDb::start_with(&[
                "--innodb-buffer-pool-size=512M",
                "--max-connections=200",
            ])),
            "postgres" => Server::Pg(Postgres::start_with(&[
                ("shared_buffers", "256MB"),
                ("max_connections", "200"),
            ])),
            other => bail!("unknown engine {other:?} (mariadb, postgres)"),
        })
    }

    fn kind(&self) -> &'static str {
        match self {
            Server::Maria(_) => "mysql",
            Server::Pg(_) => "postgres",
        }
    }

    fn url(&self) -> String {
        match self {
            Server::Maria(m) => m.url(),
            Server::Pg(p) => p.url(),
        }
    }

    fn sysbench_args(&self, args: &Args) -> Vec<String> {
        let mut v = vec![
            args.workload.clone(),
            format!("--tables={}", args.tables),
            format!("--table-size={}", args.table_size),
        ];
        match self {
            Server::Maria(m) => v.extend([
                "--db-driver=mysql".to_string(),
                "--mysql-host=127.0.0.1".to_string(),
                format!("--mysql-port={}", m.port),
                "--mysql-user=cdc".to_string(),
                "--mysql-password=secret".to_string(),
                "--mysql-db=app".to_string(),
            ]),
            Server::Pg(p) => v.extend([
                "--db-driver=pgsql".to_string(),
                "--pgsql-host=127.0.0.1".to_string(),
                format!("--pgsql-port={}", p.port),
                "--pgsql-user=cdc".to_string(),
                "--pgsql-password=secret".to_string(),
                "--pgsql-db=app".to_string(),
            ]),
        }
        v
    }

    fn sql(&self, script: &str) -> String {
        match self {
            Server::Maria(m) => m.sql(script),
            Server::Pg(p) => p.sql(script),
        }
    }

    fn version(&self) -> String {
        match self {
            Server::Maria(_) => self.sql("SELECT version();").trim().to_string(),
            Server::Pg(_) => format!("PostgreSQL {}", self.sql("SHOW server_version;").trim()),
        }
    }

    fn heartbeat_ddl(&self) -> String {
        let ts = match self {
            Server::Maria(_) => "DATETIME(6)",
            Server::Pg(_) => "TIMESTAMP(6)",
        };
        format!("CREATE TABLE {HEARTBEAT} (id BIGINT PRIMARY KEY, sent_at {ts} NOT NULL);")
    }

    /// Rows inserted + updated + deleted in user tables, from the server's own counters
    /// (MariaDB's handler counters, which leave out internal temporary tables; PostgreSQL's
    /// per-table statistics).
    fn row_changes(&self) -> Result<u64> {
        let q = match self {
            Server::Maria(_) => {
                "SELECT SUM(VARIABLE_VALUE) FROM information_schema.GLOBAL_STATUS \
                 WHERE VARIABLE_NAME IN ('HANDLER_WRITE','HANDLER_UPDATE','HANDLER_DELETE');"
            }
            Server::Pg(_) => {
                "SELECT sum(n_tup_ins + n_tup_upd + n_tup_del) FROM pg_stat_user_tables;"
            }
        };
        let out = self.sql(q);
        out.trim()
            .parse::<f64>()
            .map(|v| v as u64)
            .with_context(|| format!("row counters: {out:?}"))
    }

    fn count(&self, table: &str) -> Result<u64> {
        let out = self.sql(&format!("SELECT count(*) FROM {table};"));
        out.trim()
            .parse()
            .with_context(|| format!("count of {table}: {out:?}"))
    }
}

/// A client connection for the heartbeats.
enum Client {
    My(mysql_async::Conn),
    Pg(tokio_postgres::Client),
}

impl Client {
    async fn connect(server: &Server) -> Result<Client> {
        Ok(match server {
            Server::Maria(m) => Client::My(mysql_async::Conn::from_url(m.url()).await?),
            Server::Pg(p) => {
                let (client, conn) =
                    tokio_postgres::connect(&p.url(), tokio_postgres::NoTls).await?;
                tokio::spawn(conn);
                Client::Pg(client)
            }
        })
    }

    async fn exec(&mut self, sql: &str) -> Result<()> {
        match self {
            Client::My(c) => c.query_drop(sql).await?,
            Client::Pg(c) => c.batch_execute(sql).await?,
        }
        Ok(())
    }
}

async fn sysbench(server: &Server, args: &Args, extra: &[String]) -> Result<String> {
    let out = tokio::process::Command::new("sysbench")
        .args(server.sysbench_args(args))
        .args(extra)
        .output()
        .await
        .context("running sysbench")?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!(
            "sysbench {extra:?} failed:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(text)
}

/// `rate`: sysbench's `--rate` (transactions/s; 0 = unthrottled).
async fn sysbench_run(
    server: &Server,
    args: &Args,
    seconds: u64,
    rate: u32,
) -> Result<SysbenchRun> {
    let text = sysbench(
        server,
        args,
        &[
            format!("--threads={}", args.threads),
            format!("--time={seconds}"),
            format!("--rate={rate}"),
            "--report-interval=0".to_string(),
            "run".to_string(),
        ],
    )
    .await?;
    parse_sysbench(&text).with_context(|| format!("unreadable sysbench report:\n{text}"))
}

fn sysbench_json(r: &SysbenchRun) -> Value {
    json!({
        "transactions": r.transactions, "tps": r.tps, "row_writes": r.writes,
        "row_writes_per_sec": r.writes as f64 / r.seconds, "seconds": r.seconds,
        "ignored_errors": r.ignored_errors, "latency_avg_ms": r.latency_avg_ms,
        "latency_p95_ms": r.latency_p95_ms,
    })
}

/// `strata serve` and its scratch dir.
struct Strata {
    dir: PathBuf,
    config: PathBuf,
    child: Child,
    sql: Sql,
}

impl Strata {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default()
    }

    /// The source's progress file.
    fn state(&self) -> Value {
        std::fs::read_to_string(
            self.dir
                .join("data")
                .join("cdc")
                .join(format!("{SOURCE}.json")),
        )
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
    }

    fn stop(self) -> Result<()> {
        drop(self);
        Ok(())
    }

    /// Stops `strata serve` (SIGTERM, then wait for it) and starts it again on the same data
    /// dir once `between` has run.
    async fn restart_after<T>(
        &mut self,
        args: &Args,
        between: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        terminate(&mut self.child);
        let out = between.await?;
        self.child = spawn_serve(args, &self.dir, &self.config)?;
        Ok(out)
    }
}

fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// Stops `strata serve` (SIGTERM, then wait) also when the run fails half-way.
impl Drop for Strata {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// `strata serve -c config`, its log appended to `dir/serve.log`.
fn spawn_serve(args: &Args, dir: &Path, config: &Path) -> Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("serve.log"))?;
    Command::new(&args.strata)
        .arg("serve")
        .arg("-c")
        .arg(config)
        .args(["--listen", "127.0.0.1:0"])
        // The merger's per-commit lines are the time breakdown in the report.
        .env(
            "RUST_LOG",
            "warn,strata_cdc=info,strata_cdc::merge::merger=debug",
        )
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting strata serve")
}

fn start_strata(args: &Args, server: &Server, tables: &[String]) -> Result<Strata> {
    let dir = std::env::temp_dir().join(format!(
        "strata-cdc-bench-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    ));
    let out = Command::new(&args.strata).arg("init").arg(&dir).output()?;
    if !out.status.success() {
        bail!("strata init: {}", String::from_utf8_lossy(&out.stderr));
    }
    let config = dir.join("strata.toml");
    let list = tables
        .iter()
        .map(|t| format!("{t:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut text = std::fs::read_to_string(&config)?;
    text.push_str(&format!(
        "\n[[sources]]\nname = \"{SOURCE}\"\nkind = \"{}\"\nurl = \"{}\"\ntables = [{list}]\ncommit_interval = \"{}\"\n",
        server.kind(),
        server.url(),
        args.commit_interval
    ));
    std::fs::write(&config, text)?;
    let child = spawn_serve(args, &dir, &config)?;
    let sql = Sql {
        strata: args.strata.clone(),
        config: config.clone(),
    };
    Ok(Strata {
        dir,
        config,
        child,
        sql,
    })
}

/// The first column of the first row of `strata sql` as an i64 (None: no table yet, NULL, or
/// an error). Each call is a fresh `strata sql` process: what a user running it would see.
async fn query_i64(sql: &Sql, q: &str) -> Option<i64> {
    let out = tokio::process::Command::new(&sql.strata)
        .args(["sql", "--format", "json", "-c"])
        .arg(&sql.config)
        .arg(q)
        .env("RUST_LOG", "error")
        .output()
        .await
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let row: Value = serde_json::from_str(text.lines().next()?).ok()?;
    row.as_object()?.values().next()?.as_i64()
}

/// How to run `strata sql` on the bench's data dir.
#[derive(Clone)]
struct Sql {
    strata: PathBuf,
    config: PathBuf,
}

/// (utime + stime) of a process in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    let Some(rest) = stat.rsplit(')').next() else {
        return f64::NAN;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime 14, stime 15 (1-based) → 11, 12 here.
    let ticks = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// (busy, total) jiffies of the whole machine.
fn machine_cpu() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: f64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
    (total - idle, total)
}

async fn run_engine(args: &Args, engine: &str) -> Result<Value> {
    let timeout = Duration::from_secs(args.timeout_secs);
    let server = {
        let e = engine.to_string();
        tokio::task::spawn_blocking(move || Server::start(&e)).await??
    };
    let version = server.version();
    eprintln!("{engine}: {version} at {}", server.url());
    let prepare_started = Instant::now();
    sysbench(
        &server,
        args,
        &[
            format!("--threads={}", args.tables.min(4)),
            "prepare".into(),
        ],
    )
    .await?;
    server.sql(&server.heartbeat_ddl());
    eprintln!(
        "{engine}: sysbench prepare {} x {} rows in {:.0} s",
        args.tables,
        args.table_size,
        prepare_started.elapsed().as_secs_f64()
    );

    let alone = if args.alone_seconds > 0 {
        eprintln!("{engine}: {} s of load without Strata", args.alone_seconds);
        let r = sysbench_run(&server, args, args.alone_seconds, 0).await?;
        eprintln!(
            "{engine}: alone {:.0} tps, {:.0} row writes/s",
            r.tps,
            r.writes as f64 / r.seconds
        );
        Some(r)
    } else {
        None
    };

    let sb_tables: Vec<String> = (1..=args.tables).map(|i| format!("sbtest{i}")).collect();
    let mut all_tables = sb_tables.clone();
    all_tables.push(HEARTBEAT.to_string());
    let mut source_rows = BTreeMap::new();
    for t in &sb_tables {
        source_rows.insert(t.clone(), server.count(t)?);
    }
    let snapshot_rows: u64 = source_rows.values().sum();

    // Snapshot: until the source streams and every ODS table holds the source's row count.
    let snap_started = Instant::now();
    let mut strata = start_strata(args, &server, &all_tables)?;
    let pid = strata.child.id();
    loop {
        if snap_started.elapsed() > timeout {
            bail!("snapshot not done after {timeout:?}:\n{}", strata.log());
        }
        if strata.state()["phase"] == "stream" {
            let mut all = true;
            for (t, n) in &source_rows {
                let got =
                    query_i64(&strata.sql, &format!("SELECT count(*) FROM ods.ods_{t}")).await;
                if got != Some(*n as i64) {
                    all = false;
                    break;
                }
            }
            if all {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let snapshot_s = snap_started.elapsed().as_secs_f64();
    eprintln!(
        "{engine}: snapshot of {snapshot_rows} rows in {snapshot_s:.1} s ({:.0} rows/s)",
        snapshot_rows as f64 / snapshot_s
    );

    // The load with Strata attached, heartbeats, and the ODS poller.
    let changes0 = strata.state()["changes"].as_u64().unwrap_or(0);
    let rows0 = server.row_changes()?;
    let cpu0 = cpu_secs(pid);
    let m0 = machine_cpu();
    let stop_beats = Arc::new(AtomicBool::new(false));
    let origin = Instant::now();
    let beats = {
        let stop = stop_beats.clone();
        let mut client = Client::connect(&server).await?;
        let every = Duration::from_millis(args.heartbeat_ms);
        tokio::spawn(async move {
            let mut sent: Vec<Duration> = Vec::new();
            let mut tick = tokio::time::interval(every);
            while !stop.load(Ordering::SeqCst) {
                tick.tick().await;
                let id = sent.len() as i64 + 1;
                let at = origin.elapsed();
                client
                    .exec(&format!(
                        "INSERT INTO {HEARTBEAT} (id, sent_at) VALUES ({id}, CURRENT_TIMESTAMP(6))"
                    ))
                    .await?;
                sent.push(at);
            }
            anyhow::Ok(sent)
        })
    };
    let stop_poll = Arc::new(AtomicBool::new(false));
    let poller = {
        let stop = stop_poll.clone();
        let sql = strata.sql.clone();
        let every = Duration::from_millis(args.poll_ms);
        tokio::spawn(async move {
            // seen[i] = when heartbeat i+1 was first visible (the end of the poll that saw it).
            let mut seen: Vec<Duration> = Vec::new();
            let q = format!("SELECT max(id) FROM ods.ods_{HEARTBEAT}");
            while !stop.load(Ordering::SeqCst) {
                let started = Instant::now();
                if let Some(max) = query_i64(&sql, &q).await {
                    let at = origin.elapsed();
                    while (seen.len() as i64) < max {
                        seen.push(at);
                    }
                }
                tokio::time::sleep(every.saturating_sub(started.elapsed())).await;
            }
            seen
        })
    };
    eprintln!("{engine}: {} s of load with Strata attached", args.seconds);
    let t0 = origin.elapsed();
    let with_cdc = sysbench_run(&server, args, args.seconds, args.rate).await?;
    let t1 = origin.elapsed();
    stop_beats.store(true, Ordering::SeqCst);
    let sent = beats.await??;
    set_markers(&server, &sb_tables, MARKER_K);
    wait_for_markers(args, &strata, &sb_tables, MARKER_K).await?;
    let done = origin.elapsed();
    let cpu1 = cpu_secs(pid);
    let m1 = machine_cpu();
    let peak_rss = peak_rss_mib(pid).unwrap_or(f64::NAN);
    // Let the poller see the last heartbeats (written before the markers).
    let wait_beats = Instant::now();
    while wait_beats.elapsed() < Duration::from_secs(30) {
        let max = query_i64(
            &strata.sql,
            &format!("SELECT max(id) FROM ods.ods_{HEARTBEAT}"),
        )
        .await;
        if max == Some(sent.len() as i64) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(args.poll_ms)).await;
    }
    tokio::time::sleep(Duration::from_millis(2 * args.poll_ms + 200)).await;
    stop_poll.store(true, Ordering::SeqCst);
    let seen = poller.await?;
    // The state file is rewritten at least once a second while streaming.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let changes1 = strata.state()["changes"].as_u64().unwrap_or(0);
    let rows1 = server.row_changes()?;
    let commits_live = parse_commits(&strata.log()).len();

    // Catch-up: the same load while Strata is stopped, then the time it takes to apply it.
    let backlog = if args.backlog_seconds > 0 {
        eprintln!(
            "{engine}: {} s of load while Strata is stopped",
            args.backlog_seconds
        );
        let b0 = server.row_changes()?;
        let run = strata
            .restart_after(args, async {
                let run = sysbench_run(&server, args, args.backlog_seconds, 0).await?;
                set_markers(&server, &sb_tables, MARKER_K + 1);
                Ok(run)
            })
            .await?;
        let b1 = server.row_changes()?;
        let restarted = Instant::now();
        wait_for_markers(args, &strata, &sb_tables, MARKER_K + 1).await?;
        let seconds = restarted.elapsed().as_secs_f64();
        let changes = b1.saturating_sub(b0);
        eprintln!(
            "{engine}: backlog of {changes} row changes applied in {seconds:.1} s = {:.0}/s",
            changes as f64 / seconds
        );
        Some(json!({
            "load": sysbench_json(&run),
            "row_changes": changes,
            "seconds": seconds,
            "row_changes_per_sec": changes as f64 / seconds,
        }))
    } else {
        None
    };

    // Correctness: the ODS must equal the source.
    let verify = Command::new(&args.strata)
        .args(["cdc", "verify", SOURCE, "--wait", "120s", "-c"])
        .arg(&strata.config)
        .output()?;
    let verify_text = String::from_utf8_lossy(&verify.stdout).to_string();
    if !verify.status.success() {
        bail!(
            "{engine}: strata cdc verify failed — the ODS differs from the source:\n{verify_text}{}\n{}",
            String::from_utf8_lossy(&verify.stderr),
            strata.log()
        );
    }
    eprintln!("{engine}: verify ok");
    let log = strata.log();
    let strata_dir = strata.dir.clone();
    strata.stop()?;
    drop(server);
    if !args.keep {
        let _ = std::fs::remove_dir_all(&strata_dir);
    }

    // Figures.
    let window_changes = rows1.saturating_sub(rows0);
    let strata_changes = changes1.saturating_sub(changes0);
    let applied_s = (done - t0).as_secs_f64();
    let load_s = (t1 - t0).as_secs_f64();
    let mut fresh: Vec<f64> = sent
        .iter()
        .zip(&seen)
        .map(|(s, v)| (v.saturating_sub(*s)).as_secs_f64() * 1e3)
        .collect();
    let unseen = sent.len().saturating_sub(seen.len());
    fresh.sort_by(|a, b| a.total_cmp(b));
    let commits: Vec<_> = parse_commits(&log)
        .into_iter()
        .take(commits_live)
        .filter(|c| c.table.starts_with("ods.ods_sbtest") || c.table.contains(HEARTBEAT))
        .collect();
    let mut commit_ms: Vec<f64> = commits
        .iter()
        .map(|c| c.elapsed.as_secs_f64() * 1e3)
        .collect();
    commit_ms.sort_by(|a, b| a.total_cmp(b));
    let commit_changes: u64 = commits.iter().map(|c| c.changes).sum();
    let merge_busy_s: f64 = commit_ms.iter().sum::<f64>() / 1e3;
    let strata_cpu = cpu1 - cpu0;
    let machine_busy = (m1.0 - m0.0) / (m1.1 - m0.1).max(1.0);
    let rate = window_changes as f64 / applied_s;
    // The target is Strata's capacity: the catch-up rate when there is one.
    let capacity = backlog
        .as_ref()
        .map(|b| f(&b["row_changes_per_sec"]))
        .unwrap_or(rate);
    let p99 = quantile(&fresh, 0.99);
    let result = json!({
        "engine": engine,
        "server": version,
        "source_alone": alone.as_ref().map(sysbench_json),
        "snapshot": {"rows": snapshot_rows, "seconds": snapshot_s, "rows_per_sec": snapshot_rows as f64 / snapshot_s},
        "with_cdc": sysbench_json(&with_cdc),
        "window": {
            "source_row_changes": window_changes,
            "strata_changes": strata_changes,
            "load_seconds": load_s,
            "applied_seconds": applied_s,
            "drain_seconds": (done - t1).as_secs_f64(),
            "applied_row_changes_per_sec": rate,
            "source_row_changes_per_sec": window_changes as f64 / load_s,
        },
        "freshness_ms": {
            "heartbeats": sent.len(), "unseen": unseen,
            "p50": quantile(&fresh, 0.5), "p99": p99,
            "max": fresh.last().copied().unwrap_or(f64::NAN),
        },
        "strata": {
            "peak_rss_mib": peak_rss,
            "cpu_seconds": strata_cpu,
            "cpu_cores_avg": strata_cpu / applied_s,
            "machine_cpu_busy": machine_busy,
        },
        "merger": {
            "commits": commits.len(),
            "changes_applied": commit_changes,
            "changes_per_commit": commit_changes as f64 / commits.len().max(1) as f64,
            "commit_ms_p50": quantile(&commit_ms, 0.5),
            "commit_ms_p99": quantile(&commit_ms, 0.99),
            "commit_ms_max": commit_ms.last().copied().unwrap_or(f64::NAN),
            "busy_seconds": merge_busy_s,
        },
        "backlog": backlog,
        "verify": verify_text.trim(),
        "meets": {"row_changes_per_sec": capacity >= 50_000.0, "freshness_p99": p99 <= 2000.0},
    });
    eprintln!(
        "{engine}: {window_changes} row changes applied in {applied_s:.1} s = {rate:.0}/s (source {:.0}/s while attached); freshness p50 {:.0} ms p99 {p99:.0} ms; peak RSS {peak_rss:.0} MiB",
        window_changes as f64 / load_s,
        quantile(&fresh, 0.5)
    );
    Ok(result)
}

/// End markers, one per table: when an ODS table shows its marker it holds every earlier
/// change of that table (the merger commits contiguous bus ranges).
fn set_markers(server: &Server, tables: &[String], k: i64) {
    for t in tables {
        server.sql(&format!("UPDATE {t} SET k = {k} WHERE id = 1;"));
    }
}

/// Polls the ODS until every table shows the marker `k`.
async fn wait_for_markers(args: &Args, strata: &Strata, tables: &[String], k: i64) -> Result<()> {
    let timeout = Duration::from_secs(args.timeout_secs);
    let started = Instant::now();
    let q = tables
        .iter()
        .map(|t| format!("(SELECT count(*) FROM ods.ods_{t} WHERE k = {k})"))
        .collect::<Vec<_>>()
        .join(" + ");
    loop {
        if started.elapsed() > timeout {
            bail!(
                "the ODS did not catch up within {timeout:?}:\n{}",
                strata.log()
            );
        }
        let got = query_i64(&strata.sql, &format!("SELECT {q}")).await;
        if got == Some(tables.len() as i64) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(args.poll_ms)).await;
    }
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn markdown(r: &Value) -> String {
    let w = &r["workload"];
    let mut md = format!(
        "# CDC\n\n`sysbench {}` ({} tables × {} rows, {} threads) on each database with `strata serve` mirroring the tables into ODS (`commit_interval = {}`): {} s of load without Strata (the source's own rate), the initial snapshot, then {} s of load with Strata attached, then {} s of load while Strata is stopped (applied when it restarts: Strata's catch-up rate, its capacity). Targets (issue 4): ≥ 50,000 row changes/s applied, freshness p99 ≤ 2 s. For scale: Debezium Server ~23,000 ops/s with p99 ≈ 440 ms to Kafka alone.\n\n",
        w["sysbench"].as_str().unwrap_or(""),
        w["tables"], w["table_size"], w["threads"],
        w["commit_interval"].as_str().unwrap_or(""),
        w["alone_seconds"], w["seconds"], w["backlog_seconds"],
    );
    if let Some(rate) = w["live_rate_tps"].as_u64().filter(|&r| r > 0) {
        md.push_str(&format!(
            "**The live phase ran at a fixed {rate} transactions/s** (sysbench `--rate`), below the source's own rate, so the figures of that phase are at a stated load; the other phases are unthrottled.\n\n"
        ));
    }
    md.push_str("| figure | ");
    let engines = r["engines"].as_array().cloned().unwrap_or_default();
    for e in &engines {
        md.push_str(&format!("{} | ", e["engine"].as_str().unwrap_or("")));
    }
    md.push_str("\n|---|");
    for _ in &engines {
        md.push_str("---|");
    }
    md.push('\n');
    let row = |md: &mut String, name: &str, get: &dyn Fn(&Value) -> String| {
        md.push_str(&format!("| {name} | "));
        for e in &engines {
            md.push_str(&format!("{} | ", get(e)));
        }
        md.push('\n');
    };
    let num = |v: &Value, d: usize| {
        let x = f(v);
        if x.is_nan() {
            "–".to_string()
        } else {
            format!("{x:.d$}")
        }
    };
    row(&mut md, "server", &|e| {
        e["server"].as_str().unwrap_or("").to_string()
    });
    row(
        &mut md,
        "**row changes/s applied to the ODS** (catch-up of the backlog)",
        &|e| {
            format!(
                "**{}** ({} changes in {} s)",
                num(&e["backlog"]["row_changes_per_sec"], 0),
                e["backlog"]["row_changes"],
                num(&e["backlog"]["seconds"], 1)
            )
        },
    );
    row(
        &mut md,
        "row changes/s applied during the live load",
        &|e| num(&e["window"]["applied_row_changes_per_sec"], 0),
    );
    row(&mut md, "**freshness p50 / p99 (ms)**", &|e| {
        format!(
            "**{} / {}**",
            num(&e["freshness_ms"]["p50"], 0),
            num(&e["freshness_ms"]["p99"], 0)
        )
    });
    row(&mut md, "freshness max (ms), heartbeats", &|e| {
        format!(
            "{}, {}",
            num(&e["freshness_ms"]["max"], 0),
            e["freshness_ms"]["heartbeats"]
        )
    });
    row(
        &mut md,
        "source with Strata attached: tps / row changes/s",
        &|e| {
            format!(
                "{} / {}",
                num(&e["with_cdc"]["tps"], 0),
                num(&e["window"]["source_row_changes_per_sec"], 0)
            )
        },
    );
    row(
        &mut md,
        "source alone (ceiling): tps / row writes/s",
        &|e| {
            format!(
                "{} / {}",
                num(&e["source_alone"]["tps"], 0),
                num(&e["source_alone"]["row_writes_per_sec"], 0)
            )
        },
    );
    row(
        &mut md,
        "row changes in the window (source / Strata)",
        &|e| {
            format!(
                "{} / {}",
                e["window"]["source_row_changes"], e["window"]["strata_changes"]
            )
        },
    );
    row(
        &mut md,
        "load s / until ODS has all s / drain after load s",
        &|e| {
            format!(
                "{} / {} / {}",
                num(&e["window"]["load_seconds"], 1),
                num(&e["window"]["applied_seconds"], 1),
                num(&e["window"]["drain_seconds"], 1)
            )
        },
    );
    row(&mut md, "snapshot: rows, s (rows/s)", &|e| {
        format!(
            "{}, {} ({})",
            e["snapshot"]["rows"],
            num(&e["snapshot"]["seconds"], 1),
            num(&e["snapshot"]["rows_per_sec"], 0)
        )
    });
    row(&mut md, "strata peak RSS MiB", &|e| {
        num(&e["strata"]["peak_rss_mib"], 0)
    });
    row(&mut md, "strata CPU (cores, avg) / machine busy", &|e| {
        format!(
            "{} / {:.0} %",
            num(&e["strata"]["cpu_cores_avg"], 2),
            f(&e["strata"]["machine_cpu_busy"]) * 100.0
        )
    });
    row(&mut md, "merger: commits, changes/commit", &|e| {
        format!(
            "{}, {}",
            e["merger"]["commits"],
            num(&e["merger"]["changes_per_commit"], 0)
        )
    });
    row(&mut md, "merger commit ms p50 / p99 / max", &|e| {
        format!(
            "{} / {} / {}",
            num(&e["merger"]["commit_ms_p50"], 0),
            num(&e["merger"]["commit_ms_p99"], 0),
            num(&e["merger"]["commit_ms_max"], 0)
        )
    });
    row(&mut md, "merger busy s (sum of commit times)", &|e| {
        num(&e["merger"]["busy_seconds"], 1)
    });
    row(&mut md, "`strata cdc verify`", &|e| {
        let v = e["verify"].as_str().unwrap_or("");
        if v.contains("verify ok") {
            "equal".to_string()
        } else {
            "DIFFERENT".to_string()
        }
    });
    row(&mut md, "meets ≥ 50k/s, p99 ≤ 2 s", &|e| {
        format!(
            "{}, {}",
            yes(&e["meets"]["row_changes_per_sec"]),
            yes(&e["meets"]["freshness_p99"])
        )
    });
    if let Some(note) = r["machine"]["note"].as_str() {
        md.push_str(&format!(
            "\nMachine: {} cores ({}); {note}.\n",
            r["machine"]["cpus"],
            r["machine"]["cpu"].as_str().unwrap_or("")
        ));
    }
    md.push_str("\nbench/README.md says how each figure is measured.\n");
    md
}

fn yes(v: &Value) -> &'static str {
    if v.as_bool() == Some(true) {
        "yes"
    } else {
        "no"
    }
}
