# Sourced by the tests/install/*_test.sh scripts: installs the build into a
# temporary DESTDIR and indexes the tiny test corpus with the installed CLI.
#   install_build NAME BUILD_DIR   sets tmp (removed on exit), root (the
#                                  installed prefix inside DESTDIR) and
#                                  libdir (where libdynrag and dynrag.pc are)
#   index_corpus SOURCE_DIR DIR    builds DIR from tests/fixtures/corpus/tiny.jsonl
# fail MESSAGE prints "NAME: MESSAGE" and exits 1.

install_build() {
    test_name=$1
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/dynrag-$test_name.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    local prefix=/opt/dynrag
    DESTDIR="$tmp/dest" cmake --install "$2" --prefix "$prefix" >"$tmp/install.log" ||
        { cat "$tmp/install.log" >&2; fail "cmake --install failed"; }
    root="$tmp/dest$prefix"
    local pc
    pc=$(find "$root" -name dynrag.pc -print -quit)
    [ -n "$pc" ] || fail "dynrag.pc not installed"
    libdir=$(cd "$(dirname "$pc")/.." && pwd)
}

index_corpus() {
    "$root/bin/dynrag" index --index "$2" "$1/tests/fixtures/corpus/tiny.jsonl" \
        >"$tmp/index.log" 2>&1 || { cat "$tmp/index.log" >&2; fail "installed dynrag index failed"; }
}

fail() {
    echo "${test_name:-install}: $*" >&2
    exit 1
}
