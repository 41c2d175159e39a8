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
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dynrag-python.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "python_test: $*" >&2; exit 1; }

prefix=/opt/dynrag
DESTDIR="$tmp/dest" cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" ||
    { cat "$tmp/install.log" >&2; fail "cmake --install failed"; }
root="$tmp/dest$prefix"
lib=$(find "$root" -name 'libdynrag.so.[0-9]*' -type l -print -quit)
[ -n "$lib" ] || fail "no libdynrag.so.<major> installed"
[ -f "$root/share/dynrag/python/dynrag/__init__.py" ] || fail "the Python package is not installed"
"$root/bin/dynrag" index --index "$tmp/index" "$src/tests/fixtures/corpus/tiny.jsonl" \
    >"$tmp/index.log" 2>&1 || { cat "$tmp/index.log" >&2; fail "dynrag index failed"; }
mkdir -p "$tmp/scratch"
cd "$src/bindings/python/tests"
DYNRAG_LIBRARY="$lib" PYTHONPATH="$root/share/dynrag/python" DYNRAG_TEST_INDEX="$tmp/index" \
    DYNRAG_TEST_CORPUS="$src/tests/fixtures/corpus/tiny.jsonl" \
    DYNRAG_TEST_INCLUDE="$root/include" DYNRAG_TEST_TMP="$tmp/scratch" \
    PYTHONDONTWRITEBYTECODE=1 "$python" -m unittest -v test_dynrag 2>&1
