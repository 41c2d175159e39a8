#!/usr/bin/env bash
# Installs DynamicRAG into a temporary DESTDIR and uses it the way a program
# outside this tree would:
#   1. checks the installed files (headers, libdynrag.so with its SONAME,
#      libdynrag.a, the CLI, the man page, pipelines, model, docs, dynrag.pc,
#      the CMake package);
#   2. builds examples/ask.c with `cc $(pkg-config --cflags --libs dynrag)`
#      (shared) and with libdynrag.a + `pkg-config --static --libs` (static);
#   3. builds ask.c and version_check.c with tests/install/consumer/, a CMake
#      project using find_package(dynrag);
#   4. indexes a small corpus with the installed CLI and runs the three ask
#      programs against it (offline: extractive answers).
# Usage: install_test.sh BUILD_DIR SOURCE_DIR   (run by ctest as install_destdir)
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
start=$(date +%s.%N)
# shellcheck source=tests/install/common.sh
. "$src/tests/install/common.sh"
install_build install_test "$build"

# 1. The installed files.
for f in include/dynrag/dynrag.h include/dynrag/version.h include/dynrag/export.h bin/dynrag \
         share/man/man1/dynrag.1 share/dynrag/pipelines/naive-rag.yaml \
         share/dynrag/models/complexity.safetensors share/doc/dynrag/README.md \
         share/doc/dynrag/pipeline-yaml.md; do
    [ -e "$root/$f" ] || fail "not installed: $f"
done
for h in "$src"/include/dynrag/*.h; do
    [ -e "$root/include/dynrag/$(basename "$h")" ] || fail "header not installed: $(basename "$h")"
done
for f in libdynrag.so libdynrag.a pkgconfig/dynrag.pc cmake/dynrag/dynrag-config.cmake; do
    [ -e "$libdir/$f" ] || fail "not installed: lib/$f"
done
# Every installed header compiles on its own, and dynrag.h includes them all
# (as C11 and as C++).
for h in "$root"/include/dynrag/*.h; do
    name=$(basename "$h")
    printf '#include <dynrag/%s>\n' "$name" |
        cc -std=c11 -Wall -Wextra -Werror -fsyntax-only -I"$root/include" -x c - ||
        fail "dynrag/$name does not compile on its own"
    [ "$name" = dynrag.h ] || grep -q "^#include \"dynrag/$name\"" "$root/include/dynrag/dynrag.h" ||
        fail "dynrag/dynrag.h does not include dynrag/$name"
done
if command -v c++ >/dev/null; then
    printf '#include <dynrag/dynrag.h>\nint main() { return dynrag_version() == nullptr; }\n' |
        c++ -std=c++17 -Wall -Wextra -Werror -fsyntax-only -I"$root/include" -x c++ - ||
        fail "dynrag/dynrag.h does not compile as C++"
fi
soname=$(readelf -d "$libdir/libdynrag.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ -n "$soname" ] && [ -e "$libdir/$soname" ] || fail "SONAME '$soname' missing or not installed"
# The man page formats without a warning (groff-base, scripts/setup.sh).
warn=$(groff -man -Tutf8 -ww -z "$root/share/man/man1/dynrag.1" 2>&1) || fail "groff failed: $warn"
[ -z "$warn" ] || fail "man page: $warn"
grep -q '^\.SS "dynrag query"' "$root/share/man/man1/dynrag.1" || fail "man page lacks dynrag query"

# 2. pkg-config, shared and static.
export PKG_CONFIG_PATH="$libdir/pkgconfig"
[ "$(pkg-config --modversion dynrag)" = "$("$root/bin/dynrag" version | awk '{print $2}')" ] ||
    fail "dynrag.pc version differs from dynrag version"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror "$src/examples/ask.c" -o "$tmp/ask_pc" \
    $(pkg-config --cflags --libs dynrag) || fail "cc with pkg-config --cflags --libs failed"
# libdynrag.a with what dynrag.pc declares private: the Requires.private
# packages (linked shared: `pkg-config --static` would also ask for curl's
# own static dependencies, which Debian's -dev packages do not all ship)
# and Libs.private (FAISS and its C++ runtime).
libs_private=$(sed -n 's/^Libs.private: //p' "$libdir/pkgconfig/dynrag.pc")
# shellcheck disable=SC2046,SC2086
cc -std=c11 -Wall -Wextra -Werror "$src/examples/ask.c" -o "$tmp/ask_static" \
    $(pkg-config --cflags dynrag) "$libdir/libdynrag.a" \
    $(pkg-config --libs $(pkg-config --print-requires-private dynrag)) $libs_private ||
    fail "static link with dynrag.pc's Requires.private and Libs.private failed"
dyn=$(readelf -d "$tmp/ask_static")
if grep -q 'libdynrag' <<<"$dyn"; then
    fail "ask_static depends on libdynrag.so"
fi

# 3. The CMake package.
cmake -S "$src/tests/install/consumer" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$root" \
    -DASK_SOURCE="$src/examples/ask.c" >"$tmp/consumer.log" 2>&1 ||
    { cat "$tmp/consumer.log" >&2; fail "find_package(dynrag) project does not configure"; }
cmake --build "$tmp/consumer" >>"$tmp/consumer.log" 2>&1 ||
    { cat "$tmp/consumer.log" >&2; fail "find_package(dynrag) project does not build"; }

# 4. Run them against the installed library, on an index built by the
#    installed CLI.
export LD_LIBRARY_PATH="$libdir"
# (Outputs are captured before grep: with pipefail, `grep -q` closing the
# pipe early would fail the pipeline through SIGPIPE.)
deps=$(ldd "$tmp/ask_pc")
grep -q "libdynrag.so.* => $libdir/" <<<"$deps" || fail "ask_pc does not load $libdir: $deps"
index_corpus "$src" "$tmp/index"
cat >"$tmp/p.yaml" <<YAML
version: 1
name: installed
index: $tmp/index
stages:
  index:
    options:
      - {name: bm25, kind: bm25}
  generator:
    options:
      - {name: extractive, kind: extractive, params: {threshold: 0.1, max_sentences: 1}}
YAML
"$tmp/consumer/version_check" >"$tmp/version.out" || fail "version_check: $(cat "$tmp/version.out")"
for ask in "$tmp/ask_pc" "$tmp/ask_static" "$tmp/consumer/ask"; do
    out=$("$ask" "$tmp/p.yaml" "What erupts as lava?" 2>&1) || fail "$ask failed: $out"
    case "$out" in *"erupts as lava"*"source [1] d2"*) ;; *) fail "$ask answered: $out" ;; esac
done
end=$(date +%s.%N)
echo "install_test: install + 3 builds (pkg-config shared, static, find_package) + runs" \
     "in $(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.2f", b - a}') s"
