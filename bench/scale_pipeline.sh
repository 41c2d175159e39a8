#!/bin/sh
# scale_pipeline.sh - the whole indexing pipeline at scale: a deterministic
# generated corpus of N passages (Zipf(1) over 200,000 synthetic words,
# 20-80 words each), indexed with `dynrag index` (BM25 + built-in dense
# embedder + the FAISS factory given), then search latency per mode through
# the public API (dynrag_bench_search_modes) over 1,000 generated queries.
#
#   bench/scale_pipeline.sh [N] [FAISS_FACTORY] [BUILD_DIR] [NPROBE]
#       defaults: 1000000, Flat, build, 0 (FAISS's default)
# Prints the build time, the size on disk and the latency table.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-1000000}
FACTORY=${2:-Flat}
BUILD=$(cd "${3:-$ROOT/build}" && pwd)
NPROBE=${4:-0}
WORK=$BUILD/scale-pipeline-$N
FACTORY_TAG=$(echo "$FACTORY" | tr -c 'A-Za-z0-9\n' '_')
mkdir -p "$WORK"
[ -f "$WORK/queries.jsonl" ] || python3 - "$N" "$WORK" <<'PY'
import random, sys, json, bisect, itertools
n, work = int(sys.argv[1]), sys.argv[2]
rng = random.Random(42)
V = 200000
cum = list(itertools.accumulate(1.0 / (r + 1) for r in range(V)))
tot = cum[-1]
def word():
    return "w%d" % bisect.bisect_left(cum, rng.random() * tot)
with open(f"{work}/corpus.jsonl", "w") as f:
    for i in range(n):
        text = " ".join(word() for _ in range(rng.randint(20, 80))) + "."
        f.write(json.dumps({"_id": "p%d" % i, "title": "passage %d" % i, "text": text}) + "\n")
with open(f"{work}/queries.jsonl", "w") as f:
    for i in range(1000):
        q = []
        while len(q) < rng.randint(2, 6):
            w = word()
            if int(w[1:]) >= 20:
                q.append(w)
        f.write(json.dumps({"_id": "q%d" % i, "text": " ".join(q)}) + "\n")
PY
INDEX=$WORK/index-$FACTORY_TAG
rm -rf "$INDEX"
start=$(date +%s.%N)
"$BUILD/dynrag" index --index "$INDEX" --faiss "$FACTORY" "$WORK/corpus.jsonl"
end=$(date +%s.%N)
echo "build: $(awk "BEGIN { printf \"%.1f\", $end - $start }") s wall for $N passages ($FACTORY)"
du -sh "$INDEX"/* | sed 's/^/size: /'
"$BUILD/dynrag_bench_search_modes" "$INDEX" "$WORK/queries.jsonl" --repeat 1 --nprobe "$NPROBE"
