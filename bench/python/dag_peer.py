"""The DAG benchmark's peer: DuckDB runs the reference warehouse's model SQL over the same
Parquet files Strata read.

Input: the models as `strata dag compile --format json` prints them (one JSON object per line,
in run order, run-date parameters already substituted) and the Strata data directory. The
tables the models read that no model produces (the ODS sources) become DuckDB views over the
data files of their current Iceberg snapshot, found through pyiceberg's SqlCatalog on Strata's
catalog. A source with delete files (a CDC table with updates) is first read through pyiceberg,
deletes applied, and written to one Parquet file, untimed. Each model then runs once, timed:
`COPY (<model SQL>) TO '<model>.parquet'` (zstd, like Strata's writer), and later models read
that file through a view, so DuckDB runs the whole DAG on its own outputs.

Prints one JSON object per model (model, seconds, rows) and a last one with the totals.
"""

import argparse
import json
import os
import re
import sys
import time


def table_files(catalog, name, scratch):
    """Parquet paths holding `name`'s current rows, and whether they were re-written."""
    table = catalog.load_table(name)
    tasks = list(table.scan().plan_files())
    if not any(t.delete_files for t in tasks):
        return [t.file.file_path.removeprefix("file://") for t in tasks], False
    import pyarrow.parquet as pq

    path = os.path.join(scratch, f"src_{name.replace('.', '_')}.parquet")
    pq.write_table(table.scan().to_arrow(), path, compression="zstd")
    return [path], True


def quote(text):
    return "'" + text.replace("'", "''") + "'"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="Strata's data directory")
    ap.add_argument("--models", required=True, help="`strata dag compile --format json` output")
    ap.add_argument("--scratch", required=True, help="where DuckDB's outputs go")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--memory-limit", default="12GB")
    args = ap.parse_args()

    import duckdb
    from pyiceberg.catalog.sql import SqlCatalog

    with open(args.models) as f:
        models = [json.loads(line) for line in f if line.strip()]
    produced = {m["table"] for m in models}
    sources = sorted({t for m in models for t in m["reads"]} - produced)
    os.makedirs(args.scratch, exist_ok=True)

    catalog = SqlCatalog(
        "strata",
        uri=f"sqlite:///{os.path.join(args.data, 'catalog.db')}",
        warehouse=f"file://{os.path.join(args.data, 'lake')}",
    )
    con = duckdb.connect(os.path.join(args.scratch, "peer.duckdb"))
    con.execute(f"SET threads = {int(args.threads)}")
    con.execute(f"SET memory_limit = {quote(args.memory_limit)}")
    con.execute(f"SET temp_directory = {quote(os.path.join(args.scratch, 'spill'))}")
    for schema in sorted({t.split(".")[0] for t in set(sources) | produced}):
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")

    # JSON helpers under the names Strata's SQL uses, written the way a DuckDB user would
    # (one extraction each); the simulator's properties are well typed, so they agree with
    # datafusion-functions-json, and the row counts in the report check it.
    con.execute("CREATE MACRO json_get_str(j, k) AS json_extract_string(j, '$.' || k)")
    con.execute(
        "CREATE MACRO json_get_int(j, k) AS TRY_CAST(json_extract_string(j, '$.' || k) AS BIGINT)"
    )
    con.execute(
        "CREATE MACRO json_get_float(j, k) AS "
        "TRY_CAST(json_extract_string(j, '$.' || k) AS DOUBLE)"
    )

    rewritten = []
    for name in sources:
        files, copied = table_files(catalog, name, args.scratch)
        if copied:
            rewritten.append(name)
        if files:
            listing = "[" + ", ".join(quote(p) for p in files) + "]"
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({listing})")
        else:
            # An empty table: keep its columns so the models still bind.
            schema = catalog.load_table(name).schema().as_arrow()
            con.register(f"empty_{name.replace('.', '_')}", schema.empty_table())
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM empty_{name.replace('.', '_')}")

    total = 0.0
    for m in models:
        # The one dialect difference in the reference models: DataFusion's ordered
        # `first_value(x ORDER BY y)` aggregate is DuckDB's `first(x ORDER BY y)` (which also
        # works as a window function, so the rewrite is safe either way).
        m["sql"] = re.sub(r"\bfirst_value\s*\(", "first(", m["sql"], flags=re.IGNORECASE)
        out = os.path.join(args.scratch, f"{m['model']}.parquet")
        started = time.perf_counter()
        try:
            con.execute(
                f"COPY ({m['sql'].strip().rstrip(';')}) TO {quote(out)} "
                "(FORMAT parquet, COMPRESSION zstd)"
            )
        except duckdb.Error as e:
            print(json.dumps({"model": m["model"], "error": str(e).splitlines()[0]}), flush=True)
            return 1
        seconds = time.perf_counter() - started
        total += seconds
        rows = con.execute(f"SELECT count(*) FROM read_parquet({quote(out)})").fetchone()[0]
        con.execute(f"CREATE VIEW {m['table']} AS SELECT * FROM read_parquet({quote(out)})")
        print(json.dumps({"model": m["model"], "seconds": seconds, "rows": rows}), flush=True)
    print(
        json.dumps(
            {
                "total_seconds": total,
                "duckdb": duckdb.__version__,
                "threads": args.threads,
                "memory_limit": args.memory_limit,
                "sources_rewritten": rewritten,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
