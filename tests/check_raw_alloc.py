#!/usr/bin/env python3
"""Fails when the library's C code calls the C library's allocator directly.

Every allocation of src/ (outside src/cli/, an application of the public
API) goes through the dr_malloc family of src/core/alloc.h, so that
dynrag_set_allocator() sees every block (docs/library.md). This check lists
raw malloc( calloc( realloc( free( strdup( strndup( calls in code (comments
and string literals are skipped; ->free( and dr_free( are not raw calls).
Usage: check_raw_alloc.py SOURCE_DIR
"""
import os
import re
import sys

TOKEN = re.compile(r'''(//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')'''
                   r'''|(?<![\w.>])(malloc|calloc|realloc|free|strdup|strndup)(?=\s*\()''', re.S)
EXEMPT = {os.path.join("src", "core", "alloc.c"), os.path.join("src", "core", "alloc.h")}


def main():
    root = sys.argv[1]
    bad = []
    for d, _, names in os.walk(os.path.join(root, "src")):
        rel_dir = os.path.relpath(d, root)
        if rel_dir.split(os.sep)[:2] == ["src", "cli"]:
            continue
        for name in sorted(names):
            rel = os.path.join(rel_dir, name)
            if not name.endswith((".c", ".h")) or rel in EXEMPT:
                continue
            with open(os.path.join(root, rel), encoding="utf-8") as f:
                text = f.read()
            for m in TOKEN.finditer(text):
                if m.group(2):
                    line = text.count("\n", 0, m.start()) + 1
                    bad.append(f"{rel}:{line}: raw {m.group(2)}() (use dr_{m.group(2)})")
    for b in bad:
        print(b)
    if bad:
        print(f"{len(bad)} raw allocation calls in src/: re-run the conversion of "
              "docs/library.md (Allocator hook)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
