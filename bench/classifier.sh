#!/bin/sh
# Classifier benchmark: p50/p99 inference latency at 16/32/64 tokens on one
# core (pinned with taskset when available) and training throughput.
#
# usage: bench/classifier.sh [BUILD_DIR] [MODEL] [DATA_DIR]
#   MODEL    default models/complexity.safetensors
#   DATA_DIR default ../shared/data; when present, also times one real
#            training epoch with --threads 1 and --threads 2.
set -eu
B=${1:-build}
M=${2:-models/complexity.safetensors}
D=${3:-../shared/data}
cmake --build "$B" -j2 --target dynrag dynrag_bench_classifier >/dev/null
pin=""
if command -v taskset >/dev/null 2>&1; then pin="taskset -c 0"; fi
echo "# latency and per-example training cost (one core)"
$pin "$B/dynrag_bench_classifier" "$M" --runs 3000

if [ -d "$D/nq-open" ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    "$B/dynrag" dataset complexity --data "$D" --out "$tmp/data" --seed 13 --augment >/dev/null
    echo
    echo "# training throughput: one epoch of the shipped recipe's data, default model size"
    for t in 1 2; do
        line=$("$B/dynrag" router train --train "$tmp/data/train.jsonl" \
            --valid "$tmp/data/valid.jsonl" --out "$tmp/m.safetensors" \
            --config epochs=1 --threads "$t" 2>/dev/null)
        echo "threads $t: $line" | sed 's/^\(threads [0-9]*\): .*(\(.*examples\/s\))$/\1: \2/'
    done
fi
