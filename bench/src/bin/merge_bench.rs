//! MERGE benchmark: a 1M-row CDC change set (70 % updates, 20 % inserts, 10 % deletes) merged
//! into a 10M-row table through `strata_table::table::merge` in merge-on-read and copy-on-write
//! mode, with wall time, files and bytes written, peak RSS and full-scan speed before and after;
//! the same upsert through pyiceberg and DuckDB in the same run as peers. Prints figures, asserts
//! nothing about speed; a wrong result (row count or `sum(score)`) makes the exit status 1.
//!
//! `bash bench/run.sh merge` builds it in release mode, sets up the peers' venv and calls it;
//! `MERGE_ROWS=200k MERGE_CHANGES=20k bash bench/run.sh merge` is the one-minute smoke run.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use serde_json::{json, Value};
use strata_bench::merge::data::Sizes;
use strata_bench::merge::peer::Peer;
use strata_bench::merge::strata::{lake_dir, open_lake, StrataRun};
use strata_bench::merge::{input, report};
use strata_bench::{machine, suite};
use strata_table::table::WriteMode;

#[derive(Parser, Debug)]
#[command(about = "MERGE benchmark: Strata's row-level MERGE vs pyiceberg and DuckDB")]
struct Args {
    /// Rows in the target table (suffixes k and M allowed: 200k, 10M).
    #[arg(long, env = "MERGE_ROWS", default_value = "10M", value_parser = suite::parse_count)]
    rows: u64,
    /// Rows in the change set.
    #[arg(long, env = "MERGE_CHANGES", default_value = "1M", value_parser = suite::parse_count)]
    changes: u64,
    /// Rows per append (one commit and one data file each).
    #[arg(long, env = "MERGE_CHUNK_ROWS", default_value = "1M", value_parser = suite::parse_count)]
    chunk_rows: u64,
    /// Strata write modes to run: merge-on-read, copy-on-write.
    #[arg(
        long,
        env = "MERGE_MODES",
        value_delimiter = ',',
        default_value = "merge-on-read,copy-on-write"
    )]
    modes: Vec<String>,
    /// Peer engines run through the Python script: pyiceberg, duckdb (empty: none).
    #[arg(
        long,
        env = "MERGE_PEERS",
        value_delimiter = ',',
        default_value = "pyiceberg,duckdb"
    )]
    peers: Vec<String>,
    /// Python with the peers' packages (bench/python/requirements.txt).
    #[arg(long, env = "MERGE_PYTHON", default_value = "bench/.venv/bin/python")]
    python: PathBuf,
    /// The peers' script.
    #[arg(long, default_value = "bench/python/merge_peer.py")]
    peer_script: PathBuf,
    /// A peer engine running longer than this is stopped and reported as timed out.
    #[arg(long, env = "MERGE_PEER_TIMEOUT_SECS", default_value_t = 3600)]
    peer_timeout_secs: u64,
    /// Timed repetitions of each full scan (the report shows the median).
    #[arg(long, env = "MERGE_READ_RUNS", default_value_t = 3)]
    read_runs: usize,
    /// Scratch directory (input files, lakes, peer tables); a temp dir by default.
    #[arg(long, env = "MERGE_WORK_DIR")]
    work_dir: Option<PathBuf>,
    /// Keep the scratch directory afterwards.
    #[arg(long)]
    keep: bool,
    /// Where reports go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
}

fn mode(name: &str) -> Result<WriteMode> {
    match name {
        "merge-on-read" | "mor" => Ok(WriteMode::MergeOnRead),
        "copy-on-write" | "cow" => Ok(WriteMode::CopyOnWrite),
        other => anyhow::bail!("unknown write mode {other:?}: merge-on-read or copy-on-write"),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let sizes = Sizes {
        rows: args.rows,
        changes: args.changes,
    };
    sizes.validate()?;
    let modes: Vec<WriteMode> = args
        .modes
        .iter()
        .filter(|m| !m.is_empty())
        .map(|m| mode(m))
        .collect::<Result<_>>()?;
    let work = match &args.work_dir {
        Some(d) => d.clone(),
        None => std::env::var_os("STRATA_BENCH_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
            .join(format!("strata-merge-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    eprintln!(
        "merge bench: {} rows, {} changes, chunks of {}, work dir {}",
        sizes.rows,
        sizes.changes,
        args.chunk_rows,
        work.display()
    );

    let start = std::time::Instant::now();
    let inputs = input::generate(&work.join("input"), sizes, args.chunk_rows)?;
    eprintln!(
        "generated inputs in {:.1} s ({:.0} MiB of Parquet)",
        start.elapsed().as_secs_f64(),
        input::bytes(&inputs) as f64 / 1048576.0
    );

    let mut runs: Vec<Value> = Vec::new();
    for mode in modes {
        let dir = lake_dir(&work, mode);
        let lake = open_lake(&dir).await?;
        let run = StrataRun {
            lake: &lake,
            inputs: &inputs,
            mode,
            read_runs: args.read_runs,
        };
        runs.push(run.run().await);
        drop(lake);
        if !args.keep {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    for engine in args.peers.iter().filter(|p| !p.is_empty()) {
        let peer = Peer {
            python: &args.python,
            script: &args.peer_script,
            manifest: &inputs.manifest,
            work: work.join(format!("peer-{engine}")),
            read_runs: args.read_runs,
            timeout: Duration::from_secs(args.peer_timeout_secs),
        };
        runs.extend(peer.run(engine));
        if !args.keep {
            let _ = std::fs::remove_dir_all(&peer.work);
        }
    }

    let e = &inputs.expected;
    let report = json!({
        "benchmark": "merge",
        "date": chrono::Utc::now().to_rfc3339(),
        "machine": machine("engines run one at a time; input generation and the peers' process start are not timed"),
        "sizes": {"rows": sizes.rows, "changes": sizes.changes, "chunk_rows": args.chunk_rows},
        "partitioning": "identity(country) for the Iceberg tables; DuckDB files unpartitioned",
        "expected": {
            "updates": e.updates, "inserts": e.inserts, "deletes": e.deletes,
            "rows_after": e.rows_after,
            "score_sum_before": e.score_sum_before, "score_sum_after": e.score_sum_after,
        },
        "read_runs": args.read_runs,
        "runs": runs,
    });
    let md = report::markdown(&report);
    let json_path = suite::write_report(&args.out, "merge", &report, &md)?;
    println!("{md}");
    eprintln!("wrote {}", json_path.display());
    if !args.keep {
        let _ = std::fs::remove_dir_all(&work);
    }
    let wrong: Vec<&str> = report["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["check"]["ok"] == json!(false))
        .filter_map(|r| r["name"].as_str())
        .collect();
    if !wrong.is_empty() {
        eprintln!("WRONG RESULT from: {}", wrong.join(", "));
        std::process::exit(1);
    }
    Ok(())
}
