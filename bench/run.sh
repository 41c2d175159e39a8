#!/bin/sh
# bench/run.sh - build and run the retrieval benchmark, printing its figures.
#
#   bench/run.sh [BUILD_DIR] [SCALE_N]
#
# Runs SciFact quality + speed (one thread, medians over 5 repetitions) and
# the generated-corpus scale mode with SCALE_N passages (default 200000; 0
# skips it). Work files go to ${TMPDIR:-/tmp}/dynrag-bench. Data:
# ../shared/data/scifact (override with DYNRAG_DATA_DIR).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-"$root/build"}
scale=${2:-200000}
data=${DYNRAG_DATA_DIR:-"$root/../shared/data"}
work=${TMPDIR:-/tmp}/dynrag-bench
cmake --build "$build" -j2 --target dynrag_bench_retrieval >/dev/null
bin="$build/dynrag_bench_retrieval"
echo "== SciFact ($data/scifact)"
rm -rf "$work/scifact"
"$bin" scifact "$data/scifact" "$work/scifact" --repeat 5
if [ "$scale" -gt 0 ]; then
    echo
    echo "== Scale: $scale generated passages"
    "$bin" scale "$scale" "$work/scale" --queries 1000 --repeat 3 --fts-queries 100
    rm -rf "$work/scale"
fi
