#!/bin/sh
# The query-complexity classifier against the TF-IDF word+char logistic
# regression, side by side on held-out evaluation sets (docs/classifier.md,
# "Against the linear baseline"):
#   1. `dynrag dataset complexity --eval-split --holdout hotpotqa` with the
#      shipped recipe's augmentations: CLINC150 val small talk + meta (A),
#      EfficientQA (B) and every fifth MuSiQue question (C) are held out of
#      train/valid, and all of HotpotQA (the leave-one-source-out share);
#   2. trains the classifier on that train.jsonl with the recipe of
#      scripts/train-complexity.sh (or uses MODEL if set);
#   3. dynrag_bench_complexity_compare trains the baselines on the same
#      train.jsonl and prints the per-set shares and their mean for each.
#
# usage: bench/complexity_compare.sh [BUILD_DIR] [DATA_DIR]
# environment: CONFIG (default: the shipped recipe), SEED (1), MODEL (skip training),
#              EXTRA_MODELS ("NAME=PATH ..." more rows)
set -eu
B=${1:-build}
D=${2:-../shared/data}
CONFIG=${CONFIG:-epochs=20,patience=5}
SEED=${SEED:-1}
cmake --build "$B" -j2 --target dynrag dynrag_bench_complexity_compare >/dev/null
out="$B/complexity-evalsplit"
"$B/dynrag" dataset complexity --data "$D" --out "$out" --seed 13 --augment \
    --augment-comparisons 600 --augment-chains 1200 --eval-split --holdout hotpotqa >/dev/null
model=${MODEL:-$out/model.safetensors}
if [ -z "${MODEL:-}" ]; then
    "$B/dynrag" router train --train "$out/train.jsonl" --valid "$out/valid.jsonl" \
        --out "$model" --config "$CONFIG" --seed "$SEED" --threads 2
fi
extra=""
for m in ${EXTRA_MODELS:-}; do extra="$extra --model $m"; done
# shellcheck disable=SC2086
"$B/dynrag_bench_complexity_compare" --train "$out/train.jsonl" \
    --eval "clinc150=$out/eval-clinc150.jsonl" --eval "efficientqa=$out/eval-efficientqa.jsonl" \
    --eval "musique=$out/eval-musique.jsonl" --extra "hotpotqa=$out/holdout-hotpotqa.jsonl" \
    --model "classifier ($CONFIG)=$model" $extra
