#!/bin/sh
# Builds the query-complexity data sets into build/ and runs the
# logistic-regression baseline router on the in-distribution split and on
# the leave-one-source-out holdouts (musique, hotpotqa). Prints Markdown.
#
# usage: bench/router_baseline.sh [BUILD_DIR] [DATA_DIR]
set -eu
B=${1:-build}
D=${2:-../shared/data}
cmake --build "$B" -j2 --target dynrag dynrag_bench_router_baseline >/dev/null

"$B/dynrag" dataset complexity --data "$D" --out "$B/complexity" --seed 13
for h in musique hotpotqa; do
    "$B/dynrag" dataset complexity --data "$D" --out "$B/complexity-ho-$h" --seed 13 --holdout "$h"
done

for cfg in "" "--binary --balanced --l2 1e-6 --epochs 30"; do
    echo "# configuration: ${cfg:-defaults (TF-IDF, l2 1e-5, 10 epochs)}"
    echo
    # shellcheck disable=SC2086
    "$B/dynrag_bench_router_baseline" $cfg --train "$B/complexity/train.jsonl" \
        --eval "valid=$B/complexity/valid.jsonl"
    for h in musique hotpotqa; do
        # shellcheck disable=SC2086
        "$B/dynrag_bench_router_baseline" $cfg --train "$B/complexity-ho-$h/train.jsonl" \
            --eval "valid (without $h)=$B/complexity-ho-$h/valid.jsonl" \
            --eval "holdout $h=$B/complexity-ho-$h/holdout-$h.jsonl"
    done
done
