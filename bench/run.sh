#!/usr/bin/env bash
# Builds in release mode and runs the benchmark suite; reports go to bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p strata -p strata-bench
TARGET="${CARGO_TARGET_DIR:-target}/release"
"$TARGET/ingest-bench" --strata "$TARGET/strata" --seconds "${BENCH_SECONDS:-30}" \
  --connections "${BENCH_CONNECTIONS:-64}" --out bench/results "$@"
