"""Peers of the MERGE benchmark, run by `merge-bench` (bench/src/merge/peer.rs) once per engine.

Reads the input files that `merge-bench` wrote (manifest.json: the target in Parquet chunks,
the change set with its `op` column, the expected result), does the same upsert and prints one
JSON line: {"version": ..., "runs": [...]}, each run in the shape of Strata's figures.

Engines:
- pyiceberg: a SqlCatalog (SQLite) table partitioned by identity(country) as Strata's, loaded with one `append` per chunk;
  the MERGE is one transaction of `delete(In(user_id, D keys))` and
  `upsert(U and I rows, join_cols=["user_id"])` (pyiceberg writes copy-on-write only).
- duckdb: two runs. "parquet rewrite" reads the target Parquet files and writes the merged table
  as a new, unpartitioned Parquet file (an anti-join plus the new rows: copy-on-write of files, no catalog);
  "merge into" loads the target into a native table in a database file and runs DuckDB's own
  `MERGE INTO` with the same clauses.
"""

import argparse
import json
import sys
import time
from pathlib import Path


def status_mib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def reset_peak_rss():
    """Resets VmHWM to the current RSS (Linux clear_refs 5); False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Phase:
    """Wall time and peak RSS of the block."""

    def __enter__(self):
        self.rss_before = status_mib("VmRSS:")
        self.exact = reset_peak_rss()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.secs = time.perf_counter() - self.start
        self.peak = status_mib("VmHWM:")
        return False

    def figures(self):
        return {
            "secs": self.secs,
            "rss_before_mib": self.rss_before,
            "peak_rss_mib": self.peak,
            "peak_rss_exact": self.exact,
        }


def read_figures(rows, score_sum, expected_sum, secs):
    median = sorted(secs)[len(secs) // 2]
    return {
        "rows": rows,
        "score_sum": score_sum,
        "score_sum_ok": score_sum == expected_sum,
        "secs": secs,
        "median_secs": median,
        "rows_per_sec": rows / median if median > 0 else None,
    }


def timed_reads(runs, scan):
    """Runs `scan` (returning (rows, sum)) `runs` times."""
    secs = []
    result = (0, 0)
    for _ in range(max(1, runs)):
        start = time.perf_counter()
        result = scan()
        secs.append(time.perf_counter() - start)
    return result, secs


def check(read, expected, counts_ok=True):
    rows_ok = read["rows"] == expected["rows_after"]
    sum_ok = read["score_sum"] == expected["score_sum_after"]
    return {
        "ok": rows_ok and sum_ok and counts_ok,
        "rows_ok": rows_ok,
        "score_sum_ok": sum_ok,
        "outcome_counts_ok": counts_ok,
        "expected_rows": expected["rows_after"],
        "expected_score_sum": expected["score_sum_after"],
    }


def log(msg):
    print(msg, file=sys.stderr, flush=True)


COLUMNS = ["user_id", "name", "score", "updated_at", "country"]


def run_pyiceberg(m, work, read_runs):
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    import pyiceberg
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.expressions import In

    expected = m["expected"]
    catalog = SqlCatalog(
        "bench",
        uri=f"sqlite:///{work}/catalog.db",
        warehouse=f"file://{work}/warehouse",
    )
    catalog.create_namespace("bench")
    table = catalog.create_table("bench.users", schema=pq.read_schema(m["target_files"][0]))
    # Partitioned like Strata's table: identity(country).
    with table.update_spec() as spec:
        spec.add_identity("country")
    table = catalog.load_table("bench.users")
    run = {"name": "pyiceberg", "engine": "pyiceberg", "mode": "copy-on-write"}

    load_secs = 0.0
    for path in m["target_files"]:
        chunk = pq.read_table(path)
        start = time.perf_counter()
        table.append(chunk)
        load_secs += time.perf_counter() - start
    run["load"] = {
        "secs": load_secs,
        "rows": m["rows"],
        "rows_per_sec": m["rows"] / load_secs,
        "commits": len(m["target_files"]),
    }
    log(f"pyiceberg: appended {m['rows']} rows in {load_secs:.1f} s")

    def scan():
        t = catalog.load_table("bench.users")
        scores = t.scan(selected_fields=("score",)).to_arrow()["score"]
        return len(scores), pc.sum(scores).as_py() or 0

    (rows, total), secs = timed_reads(read_runs, scan)
    run["read_before_merge"] = read_figures(rows, total, expected["score_sum_before"], secs)

    changes = pq.read_table(m["changes_file"])
    delete_keys = changes.filter(pc.equal(changes["op"], "D"))["user_id"].to_pylist()
    upserts = changes.filter(pc.not_equal(changes["op"], "D")).drop_columns(["op"])
    before = table.metadata.current_snapshot_id
    with Phase() as phase:
        with table.transaction() as tx:
            tx.delete(In("user_id", delete_keys))
            result = tx.upsert(upserts, join_cols=["user_id"])
    table = catalog.load_table("bench.users")
    files_written = bytes_written = 0
    new_snapshots = 0
    seen_before = before is None
    for snap in table.metadata.snapshots:
        if not seen_before:
            seen_before = snap.snapshot_id == before
            continue
        summary = snap.summary.additional_properties if snap.summary else {}
        new_snapshots += 1
        files_written += int(summary.get("added-data-files", 0)) + int(
            summary.get("added-delete-files", 0)
        )
        bytes_written += int(summary.get("added-files-size", 0))
    merge = phase.figures()
    merge.update(
        {
            "changes_per_sec": m["changes"] / phase.secs,
            "updated": result.rows_updated,
            "inserted": result.rows_inserted,
            "deleted": len(delete_keys),
            "files_written": files_written,
            "bytes_written": bytes_written,
            "snapshots": new_snapshots,
        }
    )
    run["merge"] = merge
    log(f"pyiceberg: MERGE {phase.secs:.1f} s, {files_written} files, peak RSS {phase.peak:.0f} MiB")
    data_files = delete_files = data_bytes = delete_bytes = 0
    for task in table.scan().plan_files():
        data_files += 1
        data_bytes += task.file.file_size_in_bytes
        for d in task.delete_files:
            delete_files += 1
            delete_bytes += d.file_size_in_bytes
    run["table_after_merge"] = {
        "data_files": data_files,
        "data_bytes": data_bytes,
        "delete_files": delete_files,
        "delete_bytes": delete_bytes,
        "snapshots": len(table.metadata.snapshots),
    }
    (rows, total), secs = timed_reads(read_runs, scan)
    run["read_after_merge"] = read_figures(rows, total, expected["score_sum_after"], secs)
    counts_ok = (result.rows_updated, result.rows_inserted) == (
        expected["updates"],
        expected["inserts"],
    )
    run["check"] = check(run["read_after_merge"], expected, counts_ok)
    return pyiceberg.__version__, [run]


def duckdb_list(paths):
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


def run_duckdb(m, work, read_runs):
    import duckdb
    import pyarrow.parquet as pq

    expected = m["expected"]
    changes = pq.read_table(m["changes_file"])
    target = f"read_parquet({duckdb_list(m['target_files'])})"
    cols = ", ".join(COLUMNS)
    runs = []

    # 1. Parquet rewrite: the merged table written as a new Parquet file.
    con = duckdb.connect()
    con.register("changes", changes)
    run = {"name": "duckdb parquet rewrite", "engine": "duckdb", "mode": "copy-on-write (files)"}

    def scan_files(source):
        return lambda: tuple(con.execute(f"SELECT count(*), sum(score) FROM {source}").fetchone())

    (rows, total), secs = timed_reads(read_runs, scan_files(target))
    run["read_before_merge"] = read_figures(rows, total, expected["score_sum_before"], secs)
    out = work / "merged.parquet"
    with Phase() as phase:
        con.execute(
            f"""COPY (
                  SELECT {cols} FROM {target} t ANTI JOIN changes c ON t.user_id = c.user_id
                  UNION ALL
                  SELECT {cols} FROM changes WHERE op IN ('U', 'I')
                ) TO '{out}' (FORMAT parquet, COMPRESSION zstd)"""
        )
    merge = phase.figures()
    merge.update(
        {
            "changes_per_sec": m["changes"] / phase.secs,
            "files_written": 1,
            "bytes_written": out.stat().st_size,
        }
    )
    run["merge"] = merge
    run["table_after_merge"] = {
        "data_files": 1,
        "data_bytes": out.stat().st_size,
        "delete_files": 0,
        "delete_bytes": 0,
    }
    (rows, total), secs = timed_reads(read_runs, scan_files(f"read_parquet('{out}')"))
    run["read_after_merge"] = read_figures(rows, total, expected["score_sum_after"], secs)
    run["check"] = check(run["read_after_merge"], expected)
    log(f"duckdb parquet rewrite: {phase.secs:.1f} s, peak RSS {phase.peak:.0f} MiB")
    runs.append(run)
    con.close()

    # 2. MERGE INTO a native table in a database file.
    db = work / "users.duckdb"
    con = duckdb.connect(str(db))
    con.register("changes", changes)
    run = {"name": "duckdb merge into", "engine": "duckdb", "mode": "native table"}
    start = time.perf_counter()
    con.execute(f"CREATE TABLE users AS SELECT {cols} FROM {target}")
    con.execute("CHECKPOINT")
    load_secs = time.perf_counter() - start
    run["load"] = {"secs": load_secs, "rows": m["rows"], "rows_per_sec": m["rows"] / load_secs}

    def scan_table():
        return tuple(con.execute("SELECT count(*), sum(score) FROM users").fetchone())

    (rows, total), secs = timed_reads(read_runs, scan_table)
    run["read_before_merge"] = read_figures(rows, total, expected["score_sum_before"], secs)
    size_before = db.stat().st_size
    sets = ", ".join(f"{c} = s.{c}" for c in COLUMNS if c != "user_id")
    values = ", ".join(f"s.{c}" for c in COLUMNS)
    with Phase() as phase:
        merged = con.execute(
            f"""MERGE INTO users t USING changes s ON t.user_id = s.user_id
                WHEN MATCHED AND s.op = 'D' THEN DELETE
                WHEN MATCHED AND s.op IN ('U', 'I') THEN UPDATE SET {sets}
                WHEN NOT MATCHED AND s.op IN ('U', 'I') THEN INSERT ({cols}) VALUES ({values})"""
        ).fetchone()
        con.execute("CHECKPOINT")
    merge = phase.figures()
    wal = Path(str(db) + ".wal")
    merge.update(
        {
            "changes_per_sec": m["changes"] / phase.secs,
            "rows_affected": merged[0] if merged else None,
            "files_written": None,
            "bytes_written": None,
            "database_growth_bytes": db.stat().st_size
            + (wal.stat().st_size if wal.exists() else 0)
            - size_before,
        }
    )
    run["merge"] = merge
    (rows, total), secs = timed_reads(read_runs, scan_table)
    run["read_after_merge"] = read_figures(rows, total, expected["score_sum_after"], secs)
    # Every change acts: updates and deletes hit existing ids, inserts new ones.
    acted = expected["updates"] + expected["inserts"] + expected["deletes"]
    counts_ok = merged is not None and merged[0] == acted
    run["check"] = check(run["read_after_merge"], expected, counts_ok)
    log(f"duckdb merge into: {phase.secs:.1f} s, peak RSS {phase.peak:.0f} MiB")
    runs.append(run)
    con.close()
    return duckdb.__version__, runs


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engine", choices=["pyiceberg", "duckdb"], required=True)
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--read-runs", type=int, default=3)
    args = p.parse_args()
    m = json.loads(args.manifest.read_text())
    args.work.mkdir(parents=True, exist_ok=True)
    work = args.work.resolve()
    if args.engine == "pyiceberg":
        version, runs = run_pyiceberg(m, work, args.read_runs)
    else:
        version, runs = run_duckdb(m, work, args.read_runs)
    print(json.dumps({"engine": args.engine, "version": version, "runs": runs}))


if __name__ == "__main__":
    main()
