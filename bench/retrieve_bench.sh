#!/bin/sh
# retrieve_bench.sh - `dynrag retrieve --queries FILE --trec OUT -k 100` against
# Lucene 8 on SciFact, side by side, and the run's nDCG@10 on the train
# judgements.
#
#   bench/retrieve_bench.sh [BUILD_DIR] [RUNS]
#
# Both sides index SciFact's corpus one document per unit (dynrag: `dynrag
# index --no-dense --chunk-tokens 5000`, one chunk per document; Lucene:
# bench/LuceneBench.java, Anserini's BEIR flat settings) and answer the 1109
# SciFact queries top-100 with BM25 k1=0.9 b=0.4 on one thread, writing a TREC
# run. RUNS rounds (default 3), interleaved so that other load on the machine
# hits both alike; each round is one `java LuceneBench search` (the queries
# three times to warm the JVM up, then three timed passes: the median pass)
# and one `dynrag retrieve` process (one pass, cold process: its first query
# also reads the chunk -> document map). Prints per side the medians over the
# rounds of QPS (queries / wall time of the pass), median latency and CPU time
# per query (dynrag: the process; Lucene: the searching thread, and the whole
# JVM with its JIT and garbage collector), then the ratios, and checks that
# dynrag's nDCG@10 on qrels/train.tsv is 0.6976 (exit status 1 if not).
#
# Needs Debian's liblucene8-java and default-jdk-headless (installed here with
# apt-get when javac or the jars are missing). Data: ../shared/data/scifact
# or $DYNRAG_DATA_DIR/scifact.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
RUNS=${2:-3}
DATA=${DYNRAG_DATA_DIR:-$ROOT/../shared/data}
CORPUS=$DATA/scifact/corpus.jsonl
QUERIES=$DATA/scifact/queries.jsonl
QRELS=$DATA/scifact/qrels/train.tsv
WORK=${BENCH_WORK:-$BUILD/bench-retrieve}
CLI=$BUILD/dynrag
EVAL=$BUILD/dynrag_bench_trec_eval
EXPECT_NDCG=0.6976

[ -f "$CORPUS" ] || { echo "retrieve_bench: $CORPUS not found" >&2; exit 1; }
[ -x "$CLI" ] && [ -x "$EVAL" ] || { echo "retrieve_bench: build first (cmake --build $BUILD)" >&2; exit 1; }
jar() { ls /usr/share/java/"$1"-8*.jar 2>/dev/null | head -n 1; }
if ! command -v javac >/dev/null 2>&1 || [ -z "$(jar lucene-core)" ]; then
    echo "retrieve_bench: installing liblucene8-java default-jdk-headless" >&2
    SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get install -y --no-install-recommends liblucene8-java default-jdk-headless >/dev/null
fi
CP="$(jar lucene-core):$(jar lucene-analyzers-common)"
mkdir -p "$WORK/classes"

# 1. The two indexes and the Java program.
[ -f "$WORK/index/index.db" ] ||
    "$CLI" index --index "$WORK/index" --no-dense --chunk-tokens 5000 "$CORPUS" >&2
javac -d "$WORK/classes" -cp "$CP" "$ROOT/bench/LuceneBench.java"
[ -d "$WORK/lucene" ] || java -cp "$WORK/classes:$CP" LuceneBench index "$CORPUS" "$WORK/lucene" >&2

# 2. RUNS interleaved rounds.
: > "$WORK/runs.txt"
r=1
while [ "$r" -le "$RUNS" ]; do
    java -cp "$WORK/classes:$CP" LuceneBench search "$WORK/lucene" "$QUERIES" 100 3 \
        "$WORK/lucene.trec" |
        sed -n 's/^lucene qps=\([0-9.]*\) p50_ms=\([0-9.]*\) cpu_ms=\([0-9.]*\) process_cpu_ms=\([0-9.]*\).*/lucene \1 \2 \3 \4/p' \
        >> "$WORK/runs.txt"
    "$CLI" retrieve --index "$WORK/index" --queries "$QUERIES" --trec "$WORK/dynrag.trec" -k 100 \
        2> "$WORK/retrieve.err"
    sed -n 's/.*: \([0-9.]*\) QPS, median \([0-9.]*\) ms,.*cpu \([0-9.]*\) ms per query/dynrag \1 \2 \3 \3/p' \
        "$WORK/retrieve.err" >> "$WORK/runs.txt"
    r=$((r + 1))
done

# 3. Medians and ratios; the quality check.
med() { # med SIDE COLUMN
    awk -v s="$1" -v c="$2" '$1 == s { print $(c + 1) }' "$WORK/runs.txt" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) print "nan";
            else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
DQ=$(med dynrag 1); LQ=$(med lucene 1)
DC=$(med dynrag 3); LC=$(med lucene 3); LP=$(med lucene 4)
echo "retrieve_bench: SciFact, 1109 queries, top-100, BM25 k1=0.9 b=0.4, one thread, $RUNS rounds, medians (all rounds: $WORK/runs.txt)"
echo "  lucene 8 (warm JVM)       qps=$LQ p50=$(med lucene 2)ms cpu/query=${LC}ms (thread) ${LP}ms (JVM)"
echo "  dynrag retrieve --queries qps=$DQ p50=$(med dynrag 2)ms cpu/query=${DC}ms (process)"
awk -v d="$DQ" -v l="$LQ" -v dc="$DC" -v lc="$LC" -v lp="$LP" 'BEGIN {
    printf "  ratio  dynrag/lucene qps = %.2f (target >= 2); lucene/dynrag cpu per query = %.2f (thread), %.2f (JVM)\n",
           d / l, lc / dc, lp / dc }'
LN=$("$EVAL" "$QRELS" "$WORK/lucene.trec")
DN=$("$EVAL" "$QRELS" "$WORK/dynrag.trec")
echo "  quality (qrels/train.tsv) lucene: $LN"
echo "  quality (qrels/train.tsv) dynrag: $DN"
case "$DN" in
    "ndcg@10=$EXPECT_NDCG "*) echo "  nDCG@10 unchanged ($EXPECT_NDCG)" ;;
    *) echo "retrieve_bench: dynrag nDCG@10 is not $EXPECT_NDCG" >&2; exit 1 ;;
esac
