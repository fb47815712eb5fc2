#!/usr/bin/env bash
# The quick start: build, initialise ./strata-data (once) with an app whose write key is
# `demo-write-key`, and serve on 127.0.0.1:8080. Extra arguments go to `strata serve`
# (e.g. --flush-interval 1s, --listen 0.0.0.0:8080).
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release -p strata
BIN=./target/release/strata
DIR=${STRATA_DIR:-./strata-data}
if [ ! -f "$DIR/strata.toml" ]; then
  "$BIN" init "$DIR"
  "$BIN" apps create demo --write-key demo-write-key -c "$DIR/strata.toml"
fi
exec "$BIN" serve -c "$DIR/strata.toml" "$@"
