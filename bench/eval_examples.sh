#!/bin/sh
# eval_examples.sh - reproduces the worked examples of docs/evaluation.md.
#   1. Adaptive retrieval (none / single / multi) on a mix of HotpotQA dev300,
#      NQ-open and CLINC150 questions, over an index of the HotpotQA contexts.
#   2. BM25 / dense / hybrid index routing on SciFact (train qrels).
# Usage: bench/eval_examples.sh [BUILD_DIR] [DATA_DIR]   (about 5 minutes on 2 cores)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
DATA=${2:-$ROOT/../shared/data}
DYNRAG=$BUILD/dynrag
WORK=$BUILD/eval-examples
mkdir -p "$WORK"

# ---- 1. Adaptive-RAG mix ------------------------------------------------------
# The HotpotQA contexts (one document per distinct title) as a JSONL corpus.
python3 - "$DATA" "$WORK" <<'PY'
import json, sys, random
data, work = sys.argv[1], sys.argv[2]
seen = {}
with open(f"{data}/hotpotqa/dev300.jsonl") as f:
    hot = [json.loads(l) for l in f if l.strip()]
for q in hot:
    for c in q["contexts"]:
        seen.setdefault(c["title"], c["paragraph_text"])
with open(f"{work}/hotpot-corpus.jsonl", "w") as out:
    for t, p in seen.items():
        out.write(json.dumps({"_id": t, "title": t, "text": p}) + "\n")
rng = random.Random(13)
mix = [json.dumps(q) for q in hot[:100]]
with open(f"{data}/nq-open/NQ-open.dev.jsonl") as f:
    nq = [l.strip() for l in f if l.strip()]
mix += rng.sample(nq, 50)
doms = json.load(open(f"{data}/clinc150/domains.json"))
keep = set()
for d in ("small_talk", "meta"):
    keep.update(doms.get(d, []))
keep.update({"calculator", "time", "date"})
clinc = [t for t, i in json.load(open(f"{data}/clinc150/val.json")) if i in keep]
mix += [json.dumps({"question": t, "answers": []}) for t in rng.sample(clinc, 50)]
with open(f"{work}/adaptive-mix.jsonl", "w") as out:
    out.write("\n".join(mix) + "\n")
print(f"corpus {len(seen)} docs; mix {len(mix)} questions", file=sys.stderr)
PY
rm -rf "$WORK/hotpot-index"
"$DYNRAG" index --index "$WORK/hotpot-index" "$WORK/hotpot-corpus.jsonl" >/dev/null
"$DYNRAG" eval --pipeline "$ROOT/pipelines/adaptive-rag.yaml" --index "$WORK/hotpot-index" \
    --data "$WORK/adaptive-mix.jsonl" --format qa --quality context --cost steps \
    --out "$WORK/adaptive-classifier" --seed 1 --stages retrieval_mode
"$DYNRAG" eval --pipeline "$ROOT/pipelines/adaptive-rag-rules.yaml" --index "$WORK/hotpot-index" \
    --data "$WORK/adaptive-mix.jsonl" --format qa --quality context --cost steps \
    --out "$WORK/adaptive" --seed 1

# ---- 2. SciFact index routing ----------------------------------------------------
if [ ! -f "$WORK/scifact-index/.built" ]; then
    rm -rf "$WORK/scifact-index"
    "$DYNRAG" index --index "$WORK/scifact-index" "$DATA/scifact/corpus.jsonl" >/dev/null
    touch "$WORK/scifact-index/.built"
fi
"$DYNRAG" eval --pipeline "$ROOT/pipelines/index-router.yaml" --index "$WORK/scifact-index" \
    --data "$DATA/scifact/queries.jsonl" --qrels "$DATA/scifact/qrels/train.tsv" --format beir \
    --out "$WORK/scifact" --seed 1
