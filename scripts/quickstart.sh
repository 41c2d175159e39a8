#!/usr/bin/env bash
# The main job on the embedded defaults (no LLM, no network beyond Debian's
# package mirror for the set-up):
#   1. set up (scripts/setup.sh) and build;
#   2. index the example corpus, SQLite's own HTML documentation from Debian's
#      sqlite3-doc package, into indexes/sqlite-docs (once; --reindex redoes it);
#   3. answer a question through pipelines/adaptive-rag.yaml, printing the
#      answer, its sources and the route decision of each stage.
# Usage: scripts/quickstart.sh [--reindex] ["question"]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
reindex=0
if [ "${1:-}" = "--reindex" ]; then reindex=1; shift; fi
question=${1:-"What is the maximum size of a SQLite database?"}
"$root/scripts/setup.sh"
"$root/scripts/build.sh"
dynrag=$root/build/dynrag
pipeline=$root/pipelines/adaptive-rag.yaml
corpus=/usr/share/doc/sqlite3/
index=$root/indexes/sqlite-docs

echo "== validating $pipeline"
"$dynrag" validate "$pipeline"

if [ $reindex -eq 1 ] || [ ! -f "$index/index.db" ]; then
    rm -rf "$index"
    echo "== indexing $corpus into $index"
    "$dynrag" index --pipeline "$pipeline" --index "$index" "$corpus"
fi

echo "== question: $question"
echo
"$dynrag" query --pipeline "$pipeline" --index "$index" "$question"
