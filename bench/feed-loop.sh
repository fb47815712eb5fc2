#!/usr/bin/env bash
# The feed's closed loop on simulated users (issue #27): a world whose window ends LOOP_DAYS
# days ago is built by `strata demo`; then, for each day up to yesterday, simulated users read
# Strata's feeds for a day (`strata sim feed`, an A/B experiment: the full pipeline vs a
# popularity-only feed), the DAG runs for that day (samples from those very feeds, features,
# models retrained and promoted), and the server picks the new versions up. Prints CTR per day
# and variant, and the expected CTR under the users' hidden preferences, then what lists built
# from what a recommender could know would reach (`strata sim ceiling`).
#
#   bash bench/feed-loop.sh            # 2,000 users, 3 world days, 3 loop days, 3,000 feeds a day
#   LOOP_USERS=5000 LOOP_SESSIONS=10000 bash bench/feed-loop.sh
#   LOOP_VARIANTS='{ name = "control", share = 40 }, { name = "relevance", share = 30, mmr_lambda = 1.0 }, { name = "popular", share = 30, sources = ["trending"], no_ranker = true }' bash bench/feed-loop.sh
#
# LOOP_VARIANTS: the experiment's variants (TOML inline tables; see docs/feed.md), by default
# the full pipeline ("control") against a popularity-only feed ("popular"), 50/50.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${CARGO_TARGET_DIR:-target}/release"
USERS="${LOOP_USERS:-2000}"; WORLD_DAYS="${LOOP_WORLD_DAYS:-3}"; LOOP_DAYS="${LOOP_DAYS:-3}"
SESSIONS="${LOOP_SESSIONS:-3000}"; SEED="${LOOP_SEED:-7}"; PORT="${LOOP_PORT:-18181}"
DEFAULT_VARIANTS='{ name = "control", share = 50 }, { name = "popular", share = 50, sources = ["trending"], no_ranker = true }'
VARIANTS="${LOOP_VARIANTS:-$DEFAULT_VARIANTS}"
WORK="${LOOP_WORK_DIR:-$(mktemp -d)}"
cargo build --release -p strata >/dev/null
B="$TARGET/strata"
today=$(date -u +%F)
start=$(date -u -d "$today - $((WORLD_DAYS + LOOP_DAYS)) days" +%F)
rm -rf "$WORK/demo"
echo "feed loop: demo of $USERS users, $WORLD_DAYS days from $start, then $LOOP_DAYS loop days" >&2
"$B" demo --users "$USERS" --days "$WORLD_DAYS" --seed "$SEED" --start-date "$start" \
  --data-dir "$WORK/demo" > "$WORK/demo.log"
CONFIG="$WORK/demo/strata.toml"
cat >> "$CONFIG" <<EOT

[[experiments]]
name = "pipeline_vs_popular"
variants = [$VARIANTS]
EOT
TOKEN=$("$B" tokens create feed-loop --scope serve -c "$CONFIG" 2>/dev/null)
# Simulated days pass in seconds: reload the catalogue often, and let the seen cache forget
# within a simulated day (its TTL is wall-clock time).
export STRATA_FEED__CATALOG__REFRESH_SECS=3
export STRATA_FEED__FILTERS__SEEN_TTL_SECS=1
"$B" serve -c "$CONFIG" --listen "127.0.0.1:$PORT" --flush-interval 1s \
  > "$WORK/serve.out" 2> "$WORK/serve.err" &
SERVE=$!
trap 'kill $SERVE 2>/dev/null || true' EXIT
sleep 6
out="bench/results/feedloop-$(date -u +%Y%m%dT%H%M%SZ).md"
{
  echo "# Feed loop on simulated users"
  echo
  echo "$USERS users, world $start + $WORLD_DAYS days (seed $SEED), $SESSIONS feeds a day, experiment variants [$VARIANTS] (control: the full pipeline; popular: trending only, no ranker). After each day the DAG retrains on that day's samples (Strata's own served impressions)."
  echo
  echo "| day | variant | feeds | impressions | CTR | likes / impression | expected CTR (hidden prefs) |"
  echo "|---|---|---|---|---|---|---|"
} > "$out"
for k in $(seq "$LOOP_DAYS" -1 1); do
  day=$(date -u -d "$today - $k days" +%F)
  json=$("$B" sim feed --target "http://127.0.0.1:$PORT" --token "$TOKEN" --write-key demo-write-key \
    --seed "$SEED" --users "$USERS" --days "$WORLD_DAYS" --start-date "$start" \
    --sessions "$SESSIONS" --day "$day" --json)
  echo "$json" | python3 -c "
import json, sys
r = json.load(sys.stdin)
if r['failed'] or r['events_rejected']:
    sys.exit(f\"day $day: {r['failed']} feeds failed, {r['events_rejected']} events refused ({r.get('first_rejection')}); see $WORK/serve.err\")
for name, v in sorted(r['variants'].items()):
    print(f\"| $day | {name} | {v['feeds']} | {v['impressions']} | {v['ctr']:.4f} | {v['likes_per_impression']:.4f} | {v['expected_ctr']:.4f} |\")
" >> "$out"
  sleep 3
  "$B" dag run --date "$day" -c "$CONFIG" > "$WORK/dag-$day.log" 2>&1
  sleep 12
done
{
  echo
  echo "Models after the loop:"
  echo
  echo '```'
  "$B" models list -c "$CONFIG"
  echo '```'
  echo
  echo '```'
  "$B" experiments report pipeline_vs_popular -c "$CONFIG"
  echo '```'
  echo
  echo "What a feed could reach in this world when the loop began (\`strata sim ceiling\`: lists built from what a recommender could know, scored against the hidden preferences):"
  echo
  echo '```'
  "$B" sim ceiling --seed "$SEED" --users "$USERS" --days "$WORLD_DAYS" --start-date "$start" 2>/dev/null
  echo '```'
} >> "$out" 2>&1
cat "$out"
