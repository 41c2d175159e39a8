#!/bin/sh
# Reproduces models/complexity.safetensors, the shipped query-complexity
# classifier (docs/classifier.md): builds the labelled data set with
# `dynrag dataset complexity --augment --augment-comparisons 600
# --augment-chains 1200`, trains the wide-and-deep model (the T5 encoder plus
# a hashed n-gram linear branch, wide_bits=18, trained jointly) with 2
# threads, printing progress, and prints the validation report.
#
# usage: scripts/train-complexity.sh [DATA_DIR] [OUT]
#   DATA_DIR  default ../shared/data      OUT  default models/complexity.safetensors
#   (relative paths are taken from the repository root)
# environment: BUILD (default build)
#
# With --loso as the first argument it instead reproduces the
# leave-one-source-out figures (musique, hotpotqa held out; 2 threads each).
# bench/complexity_compare.sh trains the same recipe on an evaluation split
# and compares it with a TF-IDF baseline (docs/classifier.md).
# bench/complexity_compare.sh trains the same recipe on the evaluation split
# and compares it with the TF-IDF baseline (docs/classifier.md).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" # relative paths: they are recorded in the model's provenance
B=${BUILD:-build}
CONFIG="epochs=20,patience=5,wide_bits=18,wide_lr=10"
SEED=1
AUG="--augment --augment-comparisons 600 --augment-chains 1200"
loso=0
if [ "${1:-}" = "--loso" ]; then loso=1; shift; fi
D=${1:-../shared/data}
OUT=${2:-models/complexity.safetensors}
cmake --build "$B" -j2 --target dynrag >/dev/null

if [ $loso = 0 ]; then
    "$B/dynrag" dataset complexity --data "$D" --out "$B/complexity-aug" --seed 13 $AUG
    "$B/dynrag" router train --train "$B/complexity-aug/train.jsonl" \
        --valid "$B/complexity-aug/valid.jsonl" --out "$OUT" \
        --config "$CONFIG" --seed $SEED --threads 2
    "$B/dynrag" router eval --model "$OUT" --data "$B/complexity-aug/valid.jsonl"
    exit 0
fi

for h in musique hotpotqa; do
    dir="$B/complexity-ho-$h-aug"
    "$B/dynrag" dataset complexity --data "$D" --out "$dir" --seed 13 --holdout "$h" \
        $AUG >/dev/null
    "$B/dynrag" router train --train "$dir/train.jsonl" --valid "$dir/valid.jsonl" \
        --out "$dir/model.safetensors" --config "$CONFIG" --seed $SEED --threads 2
    echo "## without $h: valid"
    "$B/dynrag" router eval --model "$dir/model.safetensors" --data "$dir/valid.jsonl"
    echo "## without $h: holdout $h (share labelled C = accuracy)"
    "$B/dynrag" router eval --model "$dir/model.safetensors" --data "$dir/holdout-$h.jsonl"
done
