#!/usr/bin/env bash
# folder_swap_soak.sh - a hostile soak of `dynrag serve`: the served index
# folder is removed, rebuilt, moved away and back, copied while open and
# swapped for a copy, every few tens of milliseconds, while wrk posts k=100
# /v1/retrieve requests on 4 keep-alive connections.
#
#   bench/folder_swap_soak.sh [BUILD_DIR] [SECONDS]   (default: build 300)
#
# Six actions in turn (docs/http-api.md, "Serving after a re-index", says
# which of them are supported: only in-place `dynrag index` is):
#   0 rm -rf the folder, build it again at the same path
#   1 build a new folder beside it, mv the old one away, mv the new one in
#   2 dynrag index in place (the supported way)
#   3 mv the folder away and back
#   4 mv the folder away, cp -r it back while open, re-index the moved one
#   5 cp -r the open folder, re-index the copy, rm -rf the folder, mv the copy in
# The server must never die; requests meanwhile may get 503
# index_unavailable (counted as wrk's non-2xx). Prints the rounds, wrk's
# summary and the server's distinct warnings; exits 1 if the server died.
# Uses ../shared/data/scifact/corpus.jsonl (or $DYNRAG_DATA_DIR/scifact).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=$(cd "${1:-$ROOT/build}" && pwd)
SECS=${2:-300}
DATA=${DYNRAG_DATA_DIR:-$ROOT/../shared/data}
C=$DATA/scifact/corpus.jsonl
QUERIES=$DATA/scifact/queries.jsonl
W=${BENCH_WORK:-$B/folder-swap-soak}
PORT=${PORT:-18190}
[ -f "$C" ] || { echo "folder_swap_soak: $C not found" >&2; exit 1; }
[ -x "$B/dynrag" ] || { echo "folder_swap_soak: build first" >&2; exit 1; }
command -v wrk >/dev/null 2>&1 || { echo "folder_swap_soak: needs wrk (apt-get install wrk)" >&2; exit 1; }
rm -rf "$W"
mkdir -p "$W"
head -1500 "$C" > "$W/c1.jsonl"
sed -n 1501,3000p "$C" > "$W/c2.jsonl"
"$B/dynrag" index --index "$W/X" --no-dense "$W/c1.jsonl" > /dev/null 2>&1
cat > "$W/p.yaml" <<Y
version: 1
name: folder-swap-soak
index: $W/X
stages:
  index:
    options:
      - {name: bm25, kind: bm25}
  generator:
    options:
      - {name: extractive, kind: extractive}
Y
python3 - "$QUERIES" "$W/q.lua" <<'PY'
import json, sys
qs = [json.loads(l)["text"] for l in open(sys.argv[1]) if l.strip()]
with open(sys.argv[2], "w") as f:
    f.write("local bodies = {\n")
    for q in qs:
        f.write("  %s,\n" % json.dumps(json.dumps({"query": q, "k": 100, "mode": "bm25"})))
    f.write("}\nlocal i = 0\nrequest = function()\n  i = i % #bodies + 1\n"
            '  return wrk.format("POST", "/v1/retrieve", '
            '{["Content-Type"] = "application/json"}, bodies[i])\nend\n')
PY
"$B/dynrag" serve --pipeline "$W/p.yaml" --port "$PORT" --threads 4 --no-log \
    > "$W/serve.out" 2> "$W/serve.err" &
SP=$!
for _ in $(seq 1 100); do grep -q "listening on" "$W/serve.out" 2>/dev/null && break; sleep 0.1; done
wrk -t1 -c4 -d"${SECS}s" -s "$W/q.lua" "http://127.0.0.1:$PORT" > "$W/wrk.out" 2>&1 &
WP=$!
idx() { "$B/dynrag" index --index "$1" --no-dense "$2" > /dev/null 2>&1; }
i=0
died=0
while kill -0 $WP 2>/dev/null; do
    i=$((i + 1))
    f=$W/c$(( (i % 2) + 1 )).jsonl
    case $((i % 6)) in  # (races with the server's own files make some rm/mv fail: fine)
        0) rm -rf "$W/X" 2>/dev/null; idx "$W/X" "$f" ;;
        1) rm -rf "$W/Y"; idx "$W/Y" "$f"; mv "$W/X" "$W/X.old"; mv "$W/Y" "$W/X"; rm -rf "$W/X.old" ;;
        2) idx "$W/X" "$f" ;;
        3) mv "$W/X" "$W/Z"; sleep 0.05; mv "$W/Z" "$W/X" ;;
        4) rm -rf "$W/X.old"; mv "$W/X" "$W/X.old"; cp -r "$W/X.old" "$W/X" 2>/dev/null; idx "$W/X.old" "$f" ;;
        5) rm -rf "$W/Y"; cp -r "$W/X" "$W/Y" 2>/dev/null; idx "$W/Y" "$f"; rm -rf "$W/X"; mv "$W/Y" "$W/X" ;;
    esac 2>/dev/null
    if ! kill -0 $SP 2>/dev/null; then
        wait $SP
        echo "folder_swap_soak: THE SERVER DIED (exit status $?) in round $i (action $((i % 6)))"
        died=1
        kill $WP 2>/dev/null
        break
    fi
    sleep 0.05
done
wait $WP 2>/dev/null
echo "folder_swap_soak: $i rounds in ${SECS}s"
grep -E "requests in|Non-2xx|Requests/sec" "$W/wrk.out"
if [ $died = 0 ]; then
    kill -TERM $SP
    wait $SP
fi
echo "server warnings (distinct, with counts):"
sed -e 's/generation [0-9]*/generation N/' "$W/serve.err" | sort | uniq -c | sort -rn | head -8
exit $died
