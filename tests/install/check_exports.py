#!/usr/bin/env python3
"""Checks libdynrag.so's ABI against the public headers.

Usage: check_exports.py LIBDYNRAG.so HEADER.h...

The expected set is every function declared with DYNRAG_API in the headers;
the actual set is `nm -D --defined-only` of the library. The check fails when
the library exports anything else (an internal dr_* function, FAISS, the C++
runtime), when a marked function is missing, or when a header declares a
function without DYNRAG_API. Prints both lists' sizes and every difference.
"""
import re
import subprocess
import sys


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    # Preprocessor lines (with continuations) declare no functions.
    return re.sub(r"^[ \t]*#(?:[^\n]*\\\n)*[^\n]*", " ", text, flags=re.M)


def declarations(path):
    """(marked, unmarked) function names declared in one header."""
    marked, unmarked = set(), set()
    text = strip_comments(open(path, encoding="utf-8").read())
    for stmt in re.split(r"[;{}]", text):
        stmt = " ".join(stmt.split())
        # Type definitions, function pointers and static inline helpers
        # (compiled into the caller) are not library exports.
        if not stmt or stmt.startswith(("typedef", "static")) or "(*" in stmt:
            continue
        m = re.search(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*\(", stmt)
        # Upper-case names are macro uses (DYNRAG_STATUS_MAP(X) in an enum).
        if not m or m.group(1).isupper():
            continue
        name = m.group(1)
        if stmt.startswith('extern "C"'):
            continue
        (marked if re.search(r"\bDYNRAG_API\b", stmt) else unmarked).add((name, path))
    return marked, unmarked


def main():
    if len(sys.argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    lib, headers = sys.argv[1], sys.argv[2:]
    marked, unmarked = set(), set()
    for h in headers:
        m, u = declarations(h)
        marked |= m
        unmarked |= u
    expected = {name for name, _ in marked}
    out = subprocess.run(["nm", "-D", "--defined-only", lib], check=True,
                         capture_output=True, text=True).stdout
    exported = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            exported.add(parts[2].split("@")[0])
    ok = True
    for name, path in sorted(unmarked):
        print(f"{path}: {name}() is declared without DYNRAG_API")
        ok = False
    for name in sorted(exported - expected):
        print(f"exported but not a DYNRAG_API declaration: {name}")
        ok = False
    for name in sorted(expected - exported):
        print(f"declared DYNRAG_API but not exported: {name}")
        ok = False
    print(f"{len(expected)} DYNRAG_API declarations in {len(headers)} headers, "
          f"{len(exported)} exported symbols: {'match' if ok else 'MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
