#!/usr/bin/env bash
# The quick start: build, run `strata demo` once into ./strata-data (a simulated social app's
# events through the collector, its business rows in ODS, the reference warehouse built for the
# simulated days; app write key `demo-write-key`), then serve it on 127.0.0.1:8080.
# Extra arguments go to `strata serve` (e.g. --flush-interval 1s, --listen 0.0.0.0:8080).
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release -p strata
BIN=./target/release/strata
DIR=${STRATA_DIR:-./strata-data}
if [ ! -f "$DIR/strata.toml" ]; then
  "$BIN" demo --data-dir "$DIR"
fi
exec "$BIN" serve -c "$DIR/strata.toml" "$@"
