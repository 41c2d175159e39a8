#!/usr/bin/env bash
# Configures and builds DynamicRAG. Usage: scripts/build.sh [--sanitize] [BUILD_DIR]
# --sanitize builds with ASan + UBSan into build-asan/ (default dir).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
sanitize=OFF
dir=""
for a in "$@"; do
    case "$a" in
        --sanitize) sanitize=ON ;;
        -*) echo "build.sh: unknown option $a" >&2; exit 2 ;;
        *) dir=$a ;;
    esac
done
if [ -z "$dir" ]; then
    if [ $sanitize = ON ]; then dir=$root/build-asan; else dir=$root/build; fi
fi
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDYNRAG_SANITIZE=$sanitize >/dev/null
cmake --build "$dir" -j "$jobs"
