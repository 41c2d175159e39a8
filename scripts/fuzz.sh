#!/usr/bin/env bash
# Builds the pipeline-loader fuzzer with clang (libFuzzer + ASan + UBSan) in
# build-fuzz/ and runs it for a bounded time on a working corpus seeded from
# fuzz/corpus/pipeline/ (which is never written to).
# Usage: scripts/fuzz.sh [SECONDS] [JOBS]   (defaults: 60 seconds, 1 job)
# Findings are written as build-fuzz/crash-* / leak-* / timeout-*; reproduce
# one with: build-fuzz/fuzz_pipeline build-fuzz/crash-...
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-60}
jobs=${2:-1}
dir=$root/build-fuzz
faiss=${DYNRAG_FAISS_SOURCE_DIR:-$root/.deps/faiss-src}
CC=clang CXX=clang++ cmake -S "$root" -B "$dir" -DDYNRAG_FUZZ=ON -DDYNRAG_BUILD_TESTS=OFF \
    -DDYNRAG_FAISS_SOURCE_DIR="$faiss" >/dev/null
cmake --build "$dir" --target fuzz_pipeline -j2
work=$dir/corpus-pipeline
mkdir -p "$work"
cd "$dir"
# -max_len: pipelines are small; the 1 MiB cap is tested by the unit tests.
par=()
if [ "$jobs" -gt 1 ]; then par=(-jobs="$jobs" -workers="$jobs"); fi
"$dir/fuzz_pipeline" -max_total_time="$secs" -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
    "${par[@]}" -dict="$root/fuzz/pipeline.dict" -print_final_stats=1 \
    "$work" "$root/fuzz/corpus/pipeline"
