#!/usr/bin/env bash
# Sets up (idempotent), builds and runs the whole test suite with ctest.
# Usage: scripts/test.sh [--sanitize]   (--sanitize: ASan + UBSan build in build-asan/)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
dir=$root/build
if [ "${1:-}" = "--sanitize" ]; then dir=$root/build-asan; fi
"$root/scripts/build.sh" "$@"
cd "$dir"
jobs=$(nproc 2>/dev/null || echo 2)
ctest --output-on-failure -j "$jobs"
