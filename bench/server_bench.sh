#!/bin/sh
# server_bench.sh - HTTP throughput of `dynrag serve` /v1/retrieve (BM25, k=10)
# next to the in-process throughput of the same searches.
#
#   bench/server_bench.sh [BUILD_DIR] [SECONDS]
#
# Builds a BM25 index of SciFact (/work/shared/data/scifact/corpus.jsonl, or
# $DYNRAG_DATA_DIR/scifact), starts the server with 2 threads on 127.0.0.1,
# runs wrk (1 thread, 4 connections) with a Lua script posting the SciFact
# queries in turn, then dynrag_bench_server with 2 threads over the same
# queries. Prints QPS and p99 of both and the ratio. Installs wrk (Debian
# package `wrk`) when missing.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
SECS=${2:-10}
DATA=${DYNRAG_DATA_DIR:-$ROOT/../shared/data}
CORPUS=$DATA/scifact/corpus.jsonl
QUERIES=$DATA/scifact/queries.jsonl
WORK=${BENCH_WORK:-$BUILD/bench-server}
CLI=$BUILD/dynrag
TOOL=$BUILD/dynrag_bench_server

[ -f "$CORPUS" ] || { echo "server_bench: $CORPUS not found" >&2; exit 1; }
[ -x "$CLI" ] && [ -x "$TOOL" ] || { echo "server_bench: build first (cmake --build $BUILD)" >&2; exit 1; }
if ! command -v wrk >/dev/null 2>&1; then
    echo "server_bench: installing wrk" >&2
    if [ "$(id -u)" = 0 ]; then apt-get install -y wrk >/dev/null; else sudo apt-get install -y wrk >/dev/null; fi
fi
mkdir -p "$WORK"

# 1. The index (BM25 only) and a pipeline that names it.
[ -f "$WORK/index/index.db" ] || "$TOOL" build --corpus "$CORPUS" --index "$WORK/index"
cat > "$WORK/pipeline.yaml" <<YAML
version: 1
name: server-bench
index: $WORK/index
stages:
  index:
    options:
      - {name: bm25, kind: bm25}
  generator:
    options:
      - {name: extractive, kind: extractive}
YAML

# 2. The wrk script: every SciFact query as a /v1/retrieve body, in turn.
python3 - "$QUERIES" "$WORK/retrieve.lua" <<'PY'
import json, sys
qs = [json.loads(l)["text"] for l in open(sys.argv[1]) if l.strip()]
with open(sys.argv[2], "w") as f:
    f.write("local bodies = {\n")
    for q in qs:
        body = json.dumps({"query": q, "k": 10, "mode": "bm25"})
        f.write("  %s,\n" % json.dumps(body))
    f.write("}\nlocal i = 0\n")
    f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
    f.write("request = function()\n  i = i % #bodies + 1\n")
    f.write('  return wrk.format(nil, "/v1/retrieve", nil, bodies[i])\nend\n')
    f.write('done = function(summary, latency, requests)\n'
            '  io.write(string.format("wrk_errors=%d\\n", summary.errors.status + '
            'summary.errors.connect + summary.errors.read + summary.errors.write + '
            'summary.errors.timeout))\nend\n')
PY

# 3. The server (2 threads, port picked by the kernel).
"$CLI" serve --pipeline "$WORK/pipeline.yaml" --port 0 --threads 2 --no-log \
    > "$WORK/serve.out" 2> "$WORK/serve.err" &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    grep -q "listening on" "$WORK/serve.out" 2>/dev/null && break
    sleep 0.1
done
URL=$(sed -n 's/^listening on //p' "$WORK/serve.out")
[ -n "$URL" ] || { cat "$WORK/serve.err" >&2; exit 1; }
curl -sf -X POST "$URL/v1/retrieve" -H 'Content-Type: application/json' \
     -d '{"query":"warm up","k":10,"mode":"bm25"}' >/dev/null
wrk -t1 -c4 -d2s -s "$WORK/retrieve.lua" "$URL" >/dev/null   # warm-up
wrk -t1 -c4 -d"${SECS}s" --latency -s "$WORK/retrieve.lua" "$URL" > "$WORK/wrk.out"
kill -TERM $PID
wait $PID || true
trap - EXIT

HTTP_QPS=$(awk '/^Requests\/sec:/ {print $2}' "$WORK/wrk.out")
HTTP_P99=$(awk '$1 == "99%" {print $2}' "$WORK/wrk.out")
HTTP_P50=$(awk '$1 == "50%" {print $2}' "$WORK/wrk.out")
ERRS=$(sed -n 's/^wrk_errors=//p' "$WORK/wrk.out")

# 4. In process: the same queries, 2 threads.
IN=$("$TOOL" search --index "$WORK/index" --queries "$QUERIES" --threads 2 --seconds "$SECS" --k 10)
IN_QPS=$(echo "$IN" | sed -n 's/.*qps=\([0-9.]*\).*/\1/p')
IN_P99=$(echo "$IN" | sed -n 's/.*p99_ms=\([0-9.]*\).*/\1/p')

echo "http    /v1/retrieve bm25 k=10: qps=$HTTP_QPS p50=$HTTP_P50 p99=$HTTP_P99 errors=$ERRS (wrk -t1 -c4, server --threads 2)"
echo "inproc  dynrag_index_search   : qps=$IN_QPS p99=${IN_P99}ms (2 threads)"
awk -v h="$HTTP_QPS" -v i="$IN_QPS" 'BEGIN { printf "ratio   http/inproc = %.2f (target >= 0.70)\n", h / i }'
