#!/usr/bin/env bash
# Builds the libFuzzer harnesses with clang (libFuzzer + ASan + UBSan) in
# build-fuzz/ and runs each for a bounded time on a working corpus seeded
# from fuzz/corpus/<name>/ (which is never written to).
#
#   scripts/fuzz.sh [SECONDS] [NAME...]   (default: 60 s each; all of:
#                                          pipeline http_request http_framing
#                                          weights index router_model user_files)
#
# Findings land in build-fuzz/crash-*, leak-*, timeout-*; reproduce one with
# build-fuzz/fuzz_<name> build-fuzz/crash-...  Exits non-zero on a finding.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-60}
shift || true
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(pipeline http_request http_framing weights index router_model user_files)
dir=$root/build-fuzz
faiss=${DYNRAG_FAISS_SOURCE_DIR:-$root/.deps/faiss-src}
CC=clang CXX=clang++ cmake -S "$root" -B "$dir" -DDYNRAG_FUZZ=ON -DDYNRAG_BUILD_TESTS=OFF \
    -DDYNRAG_BUILD_BENCH=OFF -DDYNRAG_FAISS_SOURCE_DIR="$faiss" >/dev/null
targets=()
for n in "${names[@]}"; do targets+=("fuzz_$n"); done
cmake --build "$dir" --target "${targets[@]}" -j2
cd "$dir"
for n in "${names[@]}"; do
    work=$dir/corpus-$n
    mkdir -p "$work"
    seeds=$root/fuzz/corpus/$n
    [ -d "$seeds" ] || seeds=
    dict=()
    [ -f "$root/fuzz/$n.dict" ] && dict=(-dict="$root/fuzz/$n.dict")
    echo "== fuzz_$n for ${secs}s"
    "$dir/fuzz_$n" -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
        "${dict[@]}" -print_final_stats=1 "$work" ${seeds:+"$seeds"} 2>&1 | tail -n 12
done
