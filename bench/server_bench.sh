#!/bin/sh
# server_bench.sh - HTTP throughput of `dynrag serve` /v1/retrieve (BM25, k=10
# or $K) next to the in-process throughput of the same searches, on equal
# cores, and (ROUTED=1) of the same requests routed by a rules router.
#
#   bench/server_bench.sh [BUILD_DIR] [SECONDS] [RUNS]
#   K=100 ROUTED=1 SETUPS=pinned bench/server_bench.sh build 8 5
#
# K (default 10) is the k of every request and in-process search. ROUTED=1
# adds, in each set-up and round, a run of the same server with the same
# queries posted without "mode", so that the index stage's rules router
# (a regex rule, a max_words rule, a default; every choice a bm25 option
# with the same parameters: the same search) picks the option: its QPS
# against the fixed-mode run is the cost of routing. SETUPS limits the
# set-ups (default: all that the machine allows).
#
# Builds a BM25 index of SciFact (../shared/data/scifact/corpus.jsonl, or
# $DYNRAG_DATA_DIR/scifact) and drives /v1/retrieve with wrk (1 thread,
# 4 connections, a Lua script posting the 1109 SciFact queries in turn),
# then runs dynrag_bench_server over the same queries in process. Three
# set-ups, RUNS times each (default 3, interleaved), medians reported:
#
# PAIRED=1 measures differently (only the HTTP and in-process QPS): one
# server per set-up and round, SECONDS one-second wrk windows, each followed
# by a one-second in-process window on the same CPUs; it prints the medians
# and the median (and quartiles) of the per-pair ratios. On a shared virtual
# machine whose speed drifts between modes from second to second, this is
# the ratio that repeats:
#   PAIRED=1 K=100 SETUPS=pinned bench/server_bench.sh build 10 3
#
# CONNS (default 4) sets wrk's keep-alive connections.
#   pinned    the server (--threads 1) on CPU $SERVER_CPU (default 1), wrk on
#             CPU $CLIENT_CPU (default 0); in process: 1 thread on
#             $SERVER_CPU. Both sides get exactly one core: the fair ratio.
#   unpinned  the server with --threads 2, wrk and the server sharing every
#             core; in process: 2 threads with the machine to themselves
#             (wrk's own CPU time is charged to the HTTP side).
#   shared    the server (--threads 1) and wrk both on CPU $SERVER_CPU; in
#             process: 1 thread on that CPU. The client's CPU time counts
#             against the server, but no reply has to wake a client on
#             another CPU: on a virtual machine whose idle vCPUs halt, that
#             cross-CPU wake-up (an inter-processor interrupt, a VM exit)
#             costs the sending side tens of microseconds per reply, more
#             than all the server's own HTTP and JSON work. The server's
#             CPU time per request in this set-up against the pinned one
#             shows that cost.
#
# Besides QPS and latency it prints the CPU time per request: the server
# process's user+system time (from /proc) over the requests wrk completed,
# wrk's own (the shell's `times` around it), and the in-process CPU time per
# search. This is less sensitive to other
# load on the machine than QPS. Installs wrk (Debian package `wrk`) when
# missing; needs taskset (util-linux) for the pinned set-up.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
SECS=${2:-10}
RUNS=${3:-3}
CONNS=${CONNS:-4}   # wrk keep-alive connections
K=${K:-10}
ROUTED=${ROUTED:-0}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
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
WORK=$(cd "$WORK" && pwd) # (the pipeline names the index by this path)

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
      - {name: bm25-short, kind: bm25}
      - {name: bm25-code, kind: bm25}
    router:
      type: rules
      params:
        rules:
          - when: {regex: "pragma|sqlite3_[a-z_]+|[a-z_]+\\\\(\\\\)"}
            option: bm25-code
          - when: {max_words: 4}
            option: bm25-short
        default: bm25
  generator:
    options:
      - {name: extractive, kind: extractive}
YAML

# 2. The wrk script: every SciFact query as a /v1/retrieve body, in turn.
# gen_lua OUT fixed|routed: with "mode": "bm25", or without (routed).
gen_lua() {
python3 - "$QUERIES" "$1" "$K" "$2" <<'PY'
import json, sys
qs = [json.loads(l)["text"] for l in open(sys.argv[1]) if l.strip()]
with open(sys.argv[2], "w") as f:
    f.write("local bodies = {\n")
    for q in qs:
        body = {"query": q, "k": int(sys.argv[3])}
        if sys.argv[4] == "fixed":
            body["mode"] = "bm25"
        body = json.dumps(body)
        f.write("  %s,\n" % json.dumps(body))
    # The requests are formatted once, in init(): request() only picks the
    # next one, which keeps wrk's own CPU time per request low (it shares
    # the cores with the server in the unpinned and shared set-ups).
    f.write("}\nlocal i = 0\nlocal reqs = {}\n")
    f.write("init = function(args)\n  for k, b in ipairs(bodies) do\n")
    f.write('    reqs[k] = wrk.format("POST", "/v1/retrieve", '
            '{["Content-Type"] = "application/json"}, b)\n  end\nend\n')
    f.write("request = function()\n  i = i % #reqs + 1\n  return reqs[i]\nend\n")
    f.write('done = function(summary, latency, requests)\n'
            '  io.write(string.format("wrk_errors=%d\\n", summary.errors.status + '
            'summary.errors.connect + summary.errors.read + summary.errors.write + '
            'summary.errors.timeout))\nend\n')
PY
}
gen_lua "$WORK/retrieve.lua" fixed
[ "$ROUTED" != 1 ] || gen_lua "$WORK/retrieve-routed.lua" routed

# 3. One HTTP run: serve_run MODE -> "qps p50_ms p99_ms cpu_us_per_req errors
#    client_cpu_us_per_req".
ms() { # wrk latency ("850.00us", "1.20ms", "1.02s") in ms
    awk -v v="$1" 'BEGIN { u = v; sub(/^[0-9.]+/, "", u); n = v + 0;
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; printf "%.3f", n }'
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
children_cpu_s() { # user+system seconds of the children in a `times` output file
    awk 'NR == 2 { t = 0; for (f = 1; f <= 2; f++) { v = $f; m = v; sub(/m.*/, "", m);
        sub(/^[0-9]+m/, "", v); sub(/s$/, "", v); t += m * 60 + v } printf "%.3f", t }' "$1"
}
# start_server MODE: the server of a set-up, pinned as it says; sets PID,
# URL and CPIN (how to pin the client).
start_server() {
    if [ "$1" = pinned ]; then
        SPIN="taskset -c $SERVER_CPU"; CPIN="taskset -c $CLIENT_CPU"; THREADS=1
    elif [ "$1" = shared ]; then
        SPIN="taskset -c $SERVER_CPU"; CPIN="taskset -c $SERVER_CPU"; THREADS=1
    else
        SPIN=; CPIN=; THREADS=2
    fi
    $SPIN "$CLI" serve --pipeline "$WORK/pipeline.yaml" --port 0 --threads $THREADS --no-log \
        > "$WORK/serve.out" 2> "$WORK/serve.err" &
    PID=$!
    trap 'kill $PID 2>/dev/null || true' EXIT
    for _ in $(seq 1 100); do
        grep -q "listening on" "$WORK/serve.out" 2>/dev/null && break
        sleep 0.1
    done
    URL=$(sed -n 's/^listening on //p' "$WORK/serve.out")
    [ -n "$URL" ] || { cat "$WORK/serve.err" >&2; exit 1; }
}
serve_run() {
    LUA=${2:-$WORK/retrieve.lua}
    start_server "$1"
    curl -sf -X POST "$URL/v1/retrieve" -H 'Content-Type: application/json' \
         -d '{"query":"warm up","k":10,"mode":"bm25"}' >/dev/null
    $CPIN wrk -t1 -c"$CONNS" -d2s -s "$LUA" "$URL" >/dev/null   # warm-up
    T0=$(cpu_ticks $PID)
    times > "$WORK/times0" # (in this shell: a $(...) would time its own children)
    $CPIN wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s "$LUA" "$URL" > "$WORK/wrk.out"
    times > "$WORK/times1"
    C0=$(children_cpu_s "$WORK/times0")
    C1=$(children_cpu_s "$WORK/times1")
    T1=$(cpu_ticks $PID)
    kill -TERM $PID
    wait $PID || true
    trap - EXIT
    N=$(awk '/requests in/ {print $1}' "$WORK/wrk.out")
    echo "$(awk '/^Requests\/sec:/ {print $2}' "$WORK/wrk.out")" \
         "$(ms "$(awk '$1 == "50%" {print $2}' "$WORK/wrk.out")")" \
         "$(ms "$(awk '$1 == "99%" {print $2}' "$WORK/wrk.out")")" \
         "$(awk -v d=$((T1 - T0)) -v n="$N" -v hz="$(getconf CLK_TCK)" \
              'BEGIN { printf "%.1f", d * 1e6 / hz / n }')" \
         "$(sed -n 's/^wrk_errors=//p' "$WORK/wrk.out")" \
         "$(awk -v a="$C0" -v b="$C1" -v n="$N" 'BEGIN { printf "%.1f", (b - a) * 1e6 / n }')"
}

# 4. One in-process run: inproc_run MODE [SECONDS] -> "qps p50_ms p99_ms cpu_us_per_q".
inproc_run() {
    if [ "$1" != unpinned ]; then PIN="taskset -c $SERVER_CPU"; T=1; else PIN=; T=2; fi
    $PIN "$TOOL" search --index "$WORK/index" --queries "$QUERIES" --threads $T \
        --seconds "${2:-$SECS}" --k "$K" |
        sed -n 's/.*qps=\([0-9.]*\) p50_ms=\([0-9.]*\) p99_ms=\([0-9.]*\).*cpu_us_per_q=\([0-9.]*\).*/\1 \2 \3 \4/p'
}

# 4b. PAIRED=1: one server per set-up and round, measured in SECS windows of
#     one second each, every window followed by a one-second in-process
#     window on the same CPUs: the machine's speed drifts between modes over
#     seconds (on a shared virtual machine the in-process QPS alone moved
#     between 3,400 and 4,400 from one second to the next), and a ratio of
#     neighbouring windows sees the same mode on both sides.
#     -> one line per window pair: "http_qps inproc_qps ratio".
paired_run() {
    start_server "$1"
    $CPIN wrk -t1 -c"$CONNS" -d2s -s "$WORK/retrieve.lua" "$URL" >/dev/null   # warm-up
    w=1
    while [ $w -le "$SECS" ]; do
        $CPIN wrk -t1 -c"$CONNS" -d1s -s "$WORK/retrieve.lua" "$URL" > "$WORK/wrk.out"
        H=$(awk '/^Requests\/sec:/ {print $2}' "$WORK/wrk.out")
        I=$(inproc_run "$1" 1 | cut -d' ' -f1)
        echo "$H $I" | awk '$1 > 0 && $2 > 0 { printf "%s %s %.4f\n", $1, $2, $2 / $1 }'
        w=$((w + 1))
    done
    kill -TERM $PID
    wait $PID || true
    trap - EXIT
}

# Medians per set-up and column.
med() { # med MODE KIND COLUMN
    awk -v m="$1" -v k="$2" -v c="$3" '$1 == m && $2 == k { print $(c + 2) }' "$WORK/runs.txt" |
        sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan";
            else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# 5. RUNS rounds, the set-ups interleaved so that drifting load hits both.
MODES=unpinned
if [ -n "${SETUPS:-}" ]; then
    MODES=$SETUPS
elif command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
    MODES="unpinned pinned shared"
else
    echo "server_bench: no taskset or one CPU: skipping the pinned and shared set-ups" >&2
fi
: > "$WORK/runs.txt"
r=1
while [ $r -le "$RUNS" ] && [ "${PAIRED:-0}" = 1 ]; do
    for m in $MODES; do
        paired_run $m | sed "s/^/$m pair /" >> "$WORK/runs.txt"
    done
    r=$((r + 1))
done
if [ "${PAIRED:-0}" = 1 ]; then
    echo "server_bench: SciFact /v1/retrieve bm25 k=$K, $RUNS servers x $SECS one-second window pairs (HTTP, then in process), medians (all pairs: $WORK/runs.txt)"
    for m in $MODES; do
        echo "$m:"
        echo "  http    qps=$(med $m pair 1)"
        echo "  inproc  qps=$(med $m pair 2)"
        Q=$(awk -v m=$m '$1 == m && $2 == "pair" { print $5 }' "$WORK/runs.txt" | sort -g |
            awk '{ v[NR] = $1 } END { if (NR) printf "%.2f-%.2f", v[int((NR + 3) / 4)], v[int((3 * NR + 3) / 4)] }')
        echo "  ratio   time per request http/inproc, median of $(awk -v m=$m '$1 == m && $2 == "pair"' "$WORK/runs.txt" | wc -l) window pairs = $(med $m pair 3) (quartiles $Q; target <= 1.5)"
    done
    exit 0
fi
while [ $r -le "$RUNS" ]; do
    for m in $MODES; do
        echo "$m http $(serve_run $m)" >> "$WORK/runs.txt"
        echo "$m inproc $(inproc_run $m)" >> "$WORK/runs.txt"
        [ "$ROUTED" != 1 ] || echo "$m routed $(serve_run $m "$WORK/retrieve-routed.lua")" >> "$WORK/runs.txt"
    done
    r=$((r + 1))
done

# 6. Medians per set-up and column, and the ratios.
echo "server_bench: SciFact /v1/retrieve bm25 k=$K, ${SECS}s x $RUNS runs, medians (all runs: $WORK/runs.txt)"
for m in $MODES; do
    if [ $m = pinned ]; then
        DESC="server --threads 1 on cpu $SERVER_CPU, wrk -t1 -c$CONNS on cpu $CLIENT_CPU; inproc 1 thread on cpu $SERVER_CPU"
    elif [ $m = shared ]; then
        DESC="server --threads 1 and wrk -t1 -c$CONNS both on cpu $SERVER_CPU; inproc 1 thread on cpu $SERVER_CPU"
    else
        DESC="server --threads 2, wrk -t1 -c$CONNS, no pinning; inproc 2 threads"
    fi
    HQ=$(med $m http 1); IQ=$(med $m inproc 1)
    HC=$(med $m http 4); IC=$(med $m inproc 4)
    echo "$m: $DESC"
    echo "  http    qps=$HQ p50=$(med $m http 2)ms p99=$(med $m http 3)ms cpu/req=${HC}us errors=$(med $m http 5) (wrk cpu/req=$(med $m http 6)us)"
    echo "  inproc  qps=$IQ p50=$(med $m inproc 2)ms p99=$(med $m inproc 3)ms cpu/q=${IC}us"
    awk -v h="$HQ" -v i="$IQ" -v hc="$HC" -v ic="$IC" 'BEGIN {
        printf "  ratio   http/inproc qps = %.2f; time per request http/inproc = %.2f (target <= 1.5); inproc/http cpu = %.2f\n",
               h / i, i / h, ic / hc }'
    if [ "$ROUTED" = 1 ]; then
        RQ=$(med $m routed 1); RC=$(med $m routed 4)
        echo "  routed  qps=$RQ p50=$(med $m routed 2)ms p99=$(med $m routed 3)ms cpu/req=${RC}us errors=$(med $m routed 5) (rules router on the index stage)"
        # The median of the per-round ratios: each round's routed run follows
        # its fixed run, so drifting load on the machine hits both.
        PR=$(awk -v m=$m '$1 == m && $2 == "http" { h[++nh] = $6 }
                          $1 == m && $2 == "routed" { r[++nr] = $6 }
                          END { for (i = 1; i <= nr && i <= nh; i++) if (h[i] > 0) print r[i] / h[i] }' \
                 "$WORK/runs.txt" | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan";
                     else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
        awk -v r="$RQ" -v h="$HQ" -v rc="$RC" -v hc="$HC" -v pr="$PR" 'BEGIN {
            printf "  ratio   routed/fixed qps = %.3f; routed/fixed cpu per request = %.3f (median of the rounds %.3f; target <= 1.10)\n", r / h, rc / hc, pr }'
    fi
done
