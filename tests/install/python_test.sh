#!/usr/bin/env bash
# Runs the Python binding's tests (bindings/python/tests/, unittest) with
# Debian's python3 against a DESTDIR installation of this build: the
# installed package (share/dynrag/python) over the installed libdynrag.so,
# on an index built by the installed CLI. Offline.
# Usage: python_test.sh BUILD_DIR SOURCE_DIR [PYTHON3]   (ctest: python_binding)
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
python=${3:-python3}
# shellcheck source=tests/install/common.sh
. "$src/tests/install/common.sh"
install_build python_test "$build"
lib=$(find "$root" -name 'libdynrag.so.[0-9]*' -type l -print -quit)
[ -n "$lib" ] || fail "no libdynrag.so.<major> installed"
[ -f "$root/share/dynrag/python/dynrag/__init__.py" ] || fail "the Python package is not installed"
index_corpus "$src" "$tmp/index"
mkdir -p "$tmp/scratch"
cd "$src/bindings/python/tests"
DYNRAG_LIBRARY="$lib" PYTHONPATH="$root/share/dynrag/python" DYNRAG_TEST_INDEX="$tmp/index" \
    DYNRAG_TEST_CORPUS="$src/tests/fixtures/corpus/tiny.jsonl" \
    DYNRAG_TEST_INCLUDE="$root/include" DYNRAG_TEST_TMP="$tmp/scratch" \
    PYTHONDONTWRITEBYTECODE=1 "$python" -m unittest -v test_dynrag 2>&1
