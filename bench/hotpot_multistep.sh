#!/bin/sh
# hotpot_multistep.sh - does multi-step evidence reach the generator, and does
# the router spend steps only where they are needed?
# `dynrag eval` of pipelines/adaptive-rag.yaml (offline: extractive answers,
# bridge-entity reformulation for later steps) on HotpotQA dev300 over an
# index of its own paragraphs (one document per distinct title). Prints
# answer-in-context and supporting-paragraph recall *in the final context*
# and retrieval steps for the router, always-single, always-multi and
# always-adaptive (docs/benchmarks.md).
#
# Usage: bench/hotpot_multistep.sh [BUILD_DIR] [DATA_DIR] [SAMPLE]
#   SAMPLE  all (default): the 300 questions;
#           halves: two independent samples, questions 1-150 and 151-300,
#           each over an index of its own questions' paragraphs.
# About 1 minute per sample on 2 cores.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
DATA=${2:-$ROOT/../shared/data}
SAMPLE=${3:-all}
DYNRAG=$BUILD/dynrag
WORK=$BUILD/hotpot-multistep
mkdir -p "$WORK"
case "$SAMPLE" in
    all) SETS="all" ;;
    halves) SETS="q1-150 q151-300" ;;
    *) echo "hotpot_multistep.sh: SAMPLE must be all or halves, not '$SAMPLE'" >&2; exit 2 ;;
esac
unset DYNRAG_LLM_BASE_URL DYNRAG_LLM_MODEL
for set in $SETS; do
    dir=$WORK/$set
    mkdir -p "$dir"
    python3 - "$DATA/hotpotqa/dev300.jsonl" "$dir" "$set" <<'PY'
import json, sys
src, work, which = sys.argv[1], sys.argv[2], sys.argv[3]
lines = [l for l in open(src) if l.strip()]
if which == "q1-150":
    lines = lines[:150]
elif which == "q151-300":
    lines = lines[150:]
with open(f"{work}/questions.jsonl", "w") as out:
    out.writelines(lines)
seen = {}
for line in lines:
    for c in json.loads(line)["contexts"]:
        seen.setdefault(c["title"], c["paragraph_text"])
with open(f"{work}/corpus.jsonl", "w") as out:
    for t, p in seen.items():
        out.write(json.dumps({"_id": t, "title": t, "text": p}) + "\n")
print(f"{which}: {len(lines)} questions, {len(seen)} paragraphs", file=sys.stderr)
PY
    rm -rf "$dir/index" "$dir/out"
    "$DYNRAG" index --pipeline "$ROOT/pipelines/adaptive-rag.yaml" --index "$dir/index" \
        "$dir/corpus.jsonl" >/dev/null
    "$DYNRAG" eval --pipeline "$ROOT/pipelines/adaptive-rag.yaml" --index "$dir/index" \
        --data "$dir/questions.jsonl" --format qa --quality context --cost steps \
        --stages retrieval_mode --seed 1 --no-cache --out "$dir/out" >/dev/null
    python3 - "$dir/out/report.json" "$set" <<'PY'
import json, sys
rep = json.load(open(sys.argv[1]))
st = rep["stages"][0]
rows = {r["name"]: r for r in st["rows"]}
print(f"sample {sys.argv[2]}")
print("policy          answer-in-context  support-in-context  retrieval-steps")
for name in ("router", "always-single", "always-multi", "always-adaptive"):
    r = rows.get(name)
    if r is None:
        continue
    print(f"{name:15s} {r['quality']:17.3f}  {r.get('mean', {}).get('support', float('nan')):18.3f}  {r['cost']:15.2f}")
m, s, rt = rows.get("always-multi"), rows.get("always-single"), rows.get("router")
if m and s and rt and m["cost"] > 0:
    print(f"multi - single: {m['quality'] - s['quality']:+.3f}; router - multi: "
          f"{rt['quality'] - m['quality']:+.3f} at {rt['cost'] / m['cost']:.0%} of multi's steps")
PY
done
