#!/usr/bin/env bash
# DynamicRAG set-up for a fresh Debian 12 (bookworm) machine, run as root.
#
# 1. Installs every Debian package the build, the tests and the examples need.
# 2. Adds a deb-src entry for bookworm if none exists, and fetches Debian's
#    `faiss` source package with `apt-get source` into .deps/
#    (ignored by git), so the FAISS C API (c_api/) can be compiled
#    against Debian's libfaiss.a. Debian's libfaiss-dev ships the C API headers
#    but not its compiled code.
#
# Idempotent: a second run checks what is already there and takes seconds.
# Usage: scripts/setup.sh   (sources go to .deps/, which git ignores)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)

deps="$root/.deps"

packages=(
    build-essential cmake pkg-config dpkg-dev git
    libsqlite3-dev libcurl4-openssl-dev libcjson-dev libyaml-dev
    libmicrohttpd-dev libfaiss-dev libopenblas-dev libomp-dev groff-base
    sqlite3-doc python3 python3-numpy clang libclang-rt-14-dev curl
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
    sudo_cmd=(sudo)
fi

if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    "${sudo_cmd[@]}" apt-get update -q
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    echo "setup: Debian packages already installed"
fi

# deb-src for bookworm, so that `apt-get source faiss` works.
have_src=0
if grep -rqsE '^\s*deb-src\s.*bookworm' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null; then
    have_src=1
fi
if grep -rqsE '^\s*Types:.*deb-src' /etc/apt/sources.list.d/*.sources 2>/dev/null; then
    have_src=1
fi
if [ $have_src -eq 0 ]; then
    echo "setup: adding a deb-src entry for bookworm"
    "${sudo_cmd[@]}" tee /etc/apt/sources.list.d/dynrag-src.sources >/dev/null <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    "${sudo_cmd[@]}" apt-get update -q
fi

# Debian's faiss sources, for c_api/.
mkdir -p "$deps"
faiss_dir=$(find "$deps" -maxdepth 1 -type d -name 'faiss-*' 2>/dev/null | head -n 1 || true)
if [ -z "$faiss_dir" ] || [ ! -f "$faiss_dir/c_api/index_factory_c.cpp" ]; then
    echo "setup: fetching Debian's faiss source package"
    (cd "$deps" && apt-get source -q faiss >/dev/null)
    faiss_dir=$(find "$deps" -maxdepth 1 -type d -name 'faiss-*' | head -n 1)
fi
if [ ! -f "$faiss_dir/c_api/index_factory_c.cpp" ]; then
    echo "setup: error: $faiss_dir/c_api has no sources" >&2
    exit 1
fi
ln -sfn "$faiss_dir" "$deps/faiss-src"
echo "setup: FAISS C API sources at $deps/faiss-src/c_api"
