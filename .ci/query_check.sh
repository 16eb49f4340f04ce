#!/usr/bin/env bash
# Query correctness check: the benchmark queries (benches/queries) give the same answers on
# civiclake and on DuckDB over the same simulated city.
#
#   1. `civiclake simulate --sensors 100 --days 1` (seed below) to Parquet files, for DuckDB;
#   2. a fresh `civiclake serve` on 127.0.0.1 port 0, the same city published to it over HTTP;
#   3. benches/duckdb_side.py check, three times: rows still in the server's buffer; after
#      POST /api/v1/admin/flush (rows in Delta files); and DuckDB reading civiclake's own Delta
#      tables (`delta:DIR` sources) instead of the simulator's files;
#   4. the server stopped with SIGTERM.
#
# Usage: .ci/query_check.sh PYTHON [CIVICLAKE_BIN]   (PYTHON with duckdb, pyarrow, deltalake)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${1:?usage: .ci/query_check.sh PYTHON [CIVICLAKE_BIN]}"
BIN="${2:-target/debug/civiclake}"
SEED=1  # the simulator's default, as in the benchmark runs
SENSORS=100
DAYS=1
TABLES=(air noise traffic parking waste)
STARTUP_DEADLINE_S=60

WORK="$(mktemp -d "${TMPDIR:-/tmp}/civiclake-queries.XXXXXX")"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "simulating the city (seed $SEED, $SENSORS sensors, $DAYS day) to Parquet in $WORK/parquet"
"$BIN" simulate --seed "$SEED" --sensors "$SENSORS" --days "$DAYS" --format parquet --out "$WORK/parquet"

# No `_metrics` samples and no pipelines (the shipped ones in pipelines/ would write their
# aggregates): the flush below must write exactly the city's rows.
"$BIN" serve --insecure-no-auth --http-addr 127.0.0.1:0 --data-dir "$WORK/data" \
    --metrics-sample-interval 0s --pipelines-dir "$WORK/no-pipelines" \
    >"$WORK/serve.out" 2>"$WORK/serve.err" &
SERVER_PID=$!
URL=""
for _ in $(seq $((STARTUP_DEADLINE_S * 10))); do
    URL="$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$WORK/serve.out" | head -n 1 || true)"
    if [ -n "$URL" ] || ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
    sleep 0.1
done
if [ -z "$URL" ]; then
    echo "civiclake serve did not start within ${STARTUP_DEADLINE_S}s:" >&2
    cat "$WORK/serve.out" "$WORK/serve.err" >&2
    exit 1
fi
echo "civiclake serving at $URL (pid $SERVER_PID)"

echo "publishing the same city to $URL"
"$BIN" simulate --seed "$SEED" --sensors "$SENSORS" --days "$DAYS" --server "$URL"

parquet_sources=()
delta_sources=()
for t in "${TABLES[@]}"; do
    parquet_sources+=(--source "$t=$WORK/parquet/$t.parquet")
    delta_sources+=(--source "$t=delta:$WORK/data/tables/$t")
done

echo
echo "--- check 1/3: civiclake answering from its buffer (nothing flushed yet)"
"$PYTHON" benches/duckdb_side.py check --server "$URL" "${parquet_sources[@]}" --queries benches/queries

echo
echo "--- flush: POST $URL/api/v1/admin/flush"
# Every row of the city must still have been in the buffer (check 1 answered from it) and
# the flush writes all of them: per city table, no rows in files before and all after. The
# platform's own tables (the kiosk fleet's catalog events, the bus's schemas) are flushed too
# and are not counted.
"$PYTHON" - "$URL" "$((SENSORS * DAYS * 1440))" "${TABLES[@]}" <<'EOF'
import json, sys, urllib.request
url, expected, city = sys.argv[1], int(sys.argv[2]), sys.argv[3:]

def tables():
    with urllib.request.urlopen(url + "/api/v1/tables", timeout=60) as resp:
        return {t["name"]: t for t in json.load(resp) if t["name"] in city}

before = tables()
if sorted(before) != sorted(city):
    sys.exit(f"the city's tables are {sorted(before)}, expected {sorted(city)}")
in_files = {n: t["file_rows"] for n, t in before.items() if t["file_rows"]}
if in_files:
    sys.exit(f"rows were already in files before the flush (an earlier flush?): {in_files}")
req = urllib.request.Request(url + "/api/v1/admin/flush", data=b"", method="POST")
with urllib.request.urlopen(req, timeout=300) as resp:
    stats = json.load(resp)
print(stats)
if stats.get("failed_tables"):
    sys.exit(f"flush failed for {stats['failed_tables']}")
after = tables()
flushed = sum(t["file_rows"] for t in after.values())
if flushed != expected or any(t["buffered_rows"] for t in after.values()):
    sys.exit(f"the flush put {flushed} of the city's rows in files, expected all {expected}: {after}")
EOF

echo
echo "--- check 2/3: civiclake answering from its Delta tables"
"$PYTHON" benches/duckdb_side.py check --server "$URL" "${parquet_sources[@]}" --queries benches/queries

echo
echo "--- check 3/3: DuckDB reading civiclake's Delta tables"
"$PYTHON" benches/duckdb_side.py check --server "$URL" "${delta_sources[@]}" --queries benches/queries

kill -TERM "$SERVER_PID"
wait "$SERVER_PID" || { rc=$?; echo "civiclake serve exited with $rc after SIGTERM" >&2; exit "$rc"; }
SERVER_PID=""
echo "query check passed"
