#!/bin/sh
# sqlite_howto.sh - how-to questions over SQLite's HTML documentation.
# Indexes /usr/share/doc/sqlite3 (Debian sqlite3-doc) with `dynrag index`, runs
# bench/data/sqlite-howto.jsonl through `dynrag query --questions` and reports,
# per question and in total: whether the answer contains one of the expected
# key strings (case-insensitive, white space collapsed), whether the expected
# page was retrieved, and whether it is cited.
# Usage: bench/sqlite_howto.sh [BUILD_DIR] [PIPELINE]   (a few seconds)
#   PIPELINE defaults to pipelines/naive-rag.yaml; the index is rebuilt each run
#   in BUILD_DIR/sqlite-howto/ so HTML conversion changes are measured too.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
PIPELINE=${2:-$ROOT/pipelines/naive-rag.yaml}
DOCS=/usr/share/doc/sqlite3
DYNRAG=$BUILD/dynrag
WORK=$BUILD/sqlite-howto
[ -d "$DOCS" ] || { echo "$DOCS not found (apt-get install sqlite3-doc)" >&2; exit 1; }
rm -rf "$WORK"
mkdir -p "$WORK"
"$DYNRAG" index --pipeline "$PIPELINE" --index "$WORK/ix" "$DOCS" >/dev/null
"$DYNRAG" query --pipeline "$PIPELINE" --index "$WORK/ix" --no-log \
    --questions "$ROOT/bench/data/sqlite-howto.jsonl" --out "$WORK/out.jsonl" >/dev/null
python3 - "$ROOT/bench/data/sqlite-howto.jsonl" "$WORK/out.jsonl" "$PIPELINE" <<'PY'
import json, sys, re
qs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
outs = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
norm = lambda s: re.sub(r"\s+", " ", s).lower()
hit = ret = cit = 0
print(f"pipeline {sys.argv[3].split('/')[-1]}, {len(qs)} questions\n")
print("| id | key in answer | page retrieved | page cited | answer (start) |")
print("|---|---|---|---|---|")
for q, o in zip(qs, outs):
    ans = o.get("answer") or ""
    docs = {d for s in o.get("steps", []) for d in s.get("doc_ids", [])}
    cites = {c.get("doc_id") for c in o.get("citations", [])}
    h = any(norm(k) in norm(ans) for k in q["expect"])
    r, c = q["page"] in docs, q["page"] in cites
    hit += h; ret += r; cit += c
    short = ans[:90].replace("|", "/")
    print(f"| {q['id']} | {'yes' if h else 'no'} | {'yes' if r else 'no'} | {'yes' if c else 'no'} | {short} |")
n = len(qs)
print(f"\nkey in answer {hit}/{n} ({100*hit/n:.0f}%), page retrieved {ret}/{n}, page cited {cit}/{n}")
PY
