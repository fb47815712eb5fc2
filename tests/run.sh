#!/usr/bin/env bash
# The whole test suite: what `.ci/run` calls and what the README's test command runs.
#
# It installs what the tests need on a fresh Debian machine (MariaDB and PostgreSQL for the CDC tests, a
# Python venv with the real client SDKs and pyiceberg), builds the workspace, runs every Rust test with nextest, then
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

# --- MariaDB and PostgreSQL 15 (the CDC tests start their own servers from these binaries) ---
apt_pkgs=()
if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
  apt_pkgs+=(mariadb-server)
fi
if [ ! -x /usr/lib/postgresql/15/bin/postgres ]; then
  apt_pkgs+=(postgresql)
fi
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
