#!/bin/sh
# hotpot_multistep.sh - does multi-step evidence reach the generator?
# `dynrag eval` of pipelines/adaptive-rag.yaml (offline: extractive answers,
# reformulation for later steps) on HotpotQA dev300 over an index of its own
# paragraphs (one document per distinct title). Prints answer-in-context and
# supporting-paragraph recall *in the final context* and retrieval steps for
# the router, always-single and always-multi (docs/benchmarks.md).
# Usage: bench/hotpot_multistep.sh [BUILD_DIR] [DATA_DIR]   (about 2 minutes on 2 cores)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
DATA=${2:-$ROOT/../shared/data}
DYNRAG=$BUILD/dynrag
WORK=$BUILD/hotpot-multistep
mkdir -p "$WORK"
python3 - "$DATA" "$WORK" <<'PY'
import json, sys
data, work = sys.argv[1], sys.argv[2]
seen = {}
with open(f"{data}/hotpotqa/dev300.jsonl") as f:
    for line in f:
        if line.strip():
            for c in json.loads(line)["contexts"]:
                seen.setdefault(c["title"], c["paragraph_text"])
with open(f"{work}/corpus.jsonl", "w") as out:
    for t, p in seen.items():
        out.write(json.dumps({"_id": t, "title": t, "text": p}) + "\n")
print(f"corpus: {len(seen)} paragraphs", file=sys.stderr)
PY
unset DYNRAG_LLM_BASE_URL DYNRAG_LLM_MODEL
rm -rf "$WORK/index" "$WORK/out"
"$DYNRAG" index --pipeline "$ROOT/pipelines/adaptive-rag.yaml" --index "$WORK/index" \
    "$WORK/corpus.jsonl" >/dev/null
"$DYNRAG" eval --pipeline "$ROOT/pipelines/adaptive-rag.yaml" --index "$WORK/index" \
    --data "$DATA/hotpotqa/dev300.jsonl" --format qa --quality context --cost steps \
    --stages retrieval_mode --seed 1 --no-cache --out "$WORK/out" >/dev/null
python3 - "$WORK/out/report.json" <<'PY'
import json, sys
rep = json.load(open(sys.argv[1]))
st = rep["stages"][0]
rows = {r["name"]: r for r in st["rows"]}
per = st.get("per_query", [])
def mean(name, metric):
    vals = [q["runs"][name]["metrics"].get(metric) for q in per
            if name in q.get("runs", {}) and q["runs"][name].get("metrics")]
    vals = [v for v in vals if v is not None]
    return sum(vals) / len(vals) if vals else float("nan")
print("policy          answer-in-context  support-in-context  retrieval-steps")
for name in ("router", "always-single", "always-multi"):
    r = rows.get(name)
    if r is None:
        continue
    print(f"{name:15s} {r['quality']:17.3f}  {r.get('support', float('nan')):18.3f}  {r['cost']:15.2f}")
PY
