//! The MERGE section of the report, as Markdown, from the JSON figures.

use serde_json::Value;

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn num(v: &Value, decimals: usize) -> String {
    match v.as_f64() {
        Some(x) if x.is_finite() => format!("{x:.decimals$}"),
        _ => "–".to_string(),
    }
}

fn mib(v: &Value) -> String {
    match v.as_f64() {
        Some(x) => format!("{:.1}", x / 1048576.0),
        None => "–".to_string(),
    }
}

fn mrows(read: &Value) -> String {
    match read["rows_per_sec"].as_f64() {
        Some(x) if x.is_finite() => format!("{:.1}", x / 1e6),
        _ => "–".to_string(),
    }
}

fn run_label(run: &Value) -> String {
    let name = run["name"].as_str().unwrap_or("?");
    match run["version"].as_str() {
        Some(v) => format!("{name} ({v})"),
        None => name.to_string(),
    }
}

fn correct(run: &Value) -> &'static str {
    if run.get("error").is_some() {
        return "error";
    }
    match run["check"]["ok"].as_bool() {
        Some(true) => "yes",
        Some(false) => "**NO**",
        None => "–",
    }
}

fn find<'a>(runs: &'a [Value], name: &str) -> Option<&'a Value> {
    runs.iter()
        .find(|r| r["name"].as_str() == Some(name) && r.get("error").is_none())
}

pub fn markdown(r: &Value) -> String {
    let runs: Vec<Value> = r["runs"].as_array().cloned().unwrap_or_default();
    let e = &r["expected"];
    let mut s = String::new();
    s.push_str(&format!(
        "# MERGE benchmark — {}\n\nMachine: {}.\n\n",
        r["date"].as_str().unwrap_or(""),
        r["machine"]
    ));
    s.push_str(&format!(
        "Target: {} rows (`user_id BIGINT` key, `name STRING`, `score INT`, `updated_at TIMESTAMPTZ`, `country STRING`), \
         partitioned by `identity(country)` (20 values), appended in chunks of {} rows (one commit each). Change set: {} rows — {} updates, {} inserts, \
         {} deletes, keys spread over the whole table. MERGE: `WHEN MATCHED AND op = 'D' THEN DELETE`, \
         `WHEN MATCHED AND op IN ('U','I') THEN UPDATE SET *`, `WHEN NOT MATCHED AND op IN ('U','I') THEN INSERT *`. \
         A correct result has {} rows and `sum(score)` = {}.\n\n",
        r["sizes"]["rows"],
        r["sizes"]["chunk_rows"],
        r["sizes"]["changes"],
        e["updates"],
        e["inserts"],
        e["deletes"],
        e["rows_after"],
        e["score_sum_after"],
    ));
    s.push_str(
        "| run | load s | MERGE s | files written | MiB written | rows after | correct | scan before, M rows/s | scan after MERGE, M rows/s | scan after compaction, M rows/s | MERGE peak RSS MiB |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for run in &runs {
        if let Some(err) = run.get("error") {
            s.push_str(&format!(
                "| {} | error: {} | | | | | | | | | |\n",
                run_label(run),
                err.as_str()
                    .unwrap_or("?")
                    .replace('|', "/")
                    .replace('\n', " ")
            ));
            continue;
        }
        let compaction = if run.get("read_after_compaction").is_some() {
            mrows(&run["read_after_compaction"])
        } else {
            "not measured".to_string()
        };
        let compaction = if run["engine"] == "strata" {
            compaction
        } else {
            "n/a".to_string()
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            run_label(run),
            num(&run["load"]["secs"], 1),
            num(&run["merge"]["secs"], 1),
            num(&run["merge"]["files_written"], 0),
            mib(&run["merge"]["bytes_written"]),
            run["read_after_merge"]["rows"],
            correct(run),
            mrows(&run["read_before_merge"]),
            mrows(&run["read_after_merge"]),
            compaction,
            num(&run["merge"]["peak_rss_mib"], 0),
        ));
    }

    let ratios = [
        ("pyiceberg", "strata copy-on-write"),
        ("duckdb parquet rewrite", "strata copy-on-write"),
        ("duckdb parquet rewrite", "strata merge-on-read"),
        ("duckdb merge into", "strata merge-on-read"),
    ];
    let mut lines = Vec::new();
    for (peer, ours) in ratios {
        if let (Some(p), Some(o)) = (find(&runs, peer), find(&runs, ours)) {
            lines.push(format!(
                "- {peer} / {ours}: **{:.2}**",
                f(&p["merge"]["secs"]) / f(&o["merge"]["secs"])
            ));
        }
    }
    if !lines.is_empty() {
        s.push_str("\nMERGE wall time, peer / Strata (above 1: Strata is faster):\n\n");
        s.push_str(&lines.join("\n"));
        s.push('\n');
    }

    s.push_str("\nTable after the MERGE (live files of the current snapshot):\n\n");
    s.push_str(
        "| run | data files | data MiB | delete files | delete MiB |\n|---|---|---|---|---|\n",
    );
    for run in runs.iter().filter(|r| r.get("table_after_merge").is_some()) {
        let t = &run["table_after_merge"];
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            run_label(run),
            t["data_files"],
            mib(&t["data_bytes"]),
            t["delete_files"],
            mib(&t["delete_bytes"]),
        ));
    }

    for run in runs.iter().filter(|r| r.get("located_read").is_some()) {
        let l = &run["located_read"];
        s.push_str(&format!(
            "\n{}: the MERGE's first step alone (every live row read into memory with `_file`/`_pos`) took {} s and \
             {} MiB of Arrow arrays ({} MiB of them the `_file` column); process RSS peaked at {} MiB (from {} MiB).\n",
            run_label(run),
            num(&l["secs"], 1),
            num(&l["arrow_mib"], 0),
            num(&l["file_column_mib"], 0),
            num(&l["peak_rss_mib"], 0),
            num(&l["rss_before_mib"], 0),
        ));
    }

    if let Some(skip) = runs
        .iter()
        .find_map(|r| r["compaction"]["skipped"].as_str())
    {
        s.push_str(&format!("\nAfter compaction: not measured — {skip}.\n"));
    }
    s.push_str(
        "\nScans are `SELECT count(*), sum(score)` over the whole table, median of the timed runs: \
         Strata through `strata_sql::SqlSession` (what `strata sql` runs), pyiceberg through \
         `Table.scan().to_arrow()`, DuckDB over its Parquet files or native table. \
         Peak RSS is the process's VmHWM during the MERGE alone (reset before it). \
         Every figure is explained in bench/README.md.\n",
    );
    s
}
