#!/usr/bin/env bash
# The main job on the embedded defaults (no LLM, no network):
#   set up and build, index the example corpus (SQLite's own HTML documentation
#   from Debian's sqlite3-doc package), then answer an example question through
#   pipelines/adaptive-rag.yaml, printing the answer, its sources and the route
#   decision of each stage.
# Usage: scripts/quickstart.sh ["question"]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
question=${1:-"How do I enable write-ahead logging in SQLite?"}
"$root/scripts/setup.sh"
"$root/scripts/build.sh"
dynrag=$root/build/dynrag
corpus=/usr/share/doc/sqlite3/
index=$root/indexes/sqlite-docs

has_cmd() { "$dynrag" help "$1" >/dev/null 2>&1; }

echo "== validating pipelines/adaptive-rag.yaml"
if has_cmd validate; then
    "$dynrag" validate "$root/pipelines/adaptive-rag.yaml"
else
    echo "(dynrag validate is not built yet)"
fi

if has_cmd index; then
    echo "== indexing $corpus into $index"
    "$dynrag" index --index "$index" --pipeline "$root/pipelines/adaptive-rag.yaml" "$corpus"
else
    echo "(dynrag index is not built yet: nothing indexed)"
fi

if has_cmd query; then
    echo "== query: $question"
    "$dynrag" query --pipeline "$root/pipelines/adaptive-rag.yaml" --index "$index" "$question"
elif has_cmd retrieve; then
    echo "== retrieve (the query engine is not built yet): $question"
    "$dynrag" retrieve --index "$index" --mode hybrid -k 5 "$question"
else
    echo "(dynrag query is not built yet: no answer)"
fi
