#!/usr/bin/env bash
# Installs llama.cpp for the GGUF export tests: the npm package node-llama-cpp
# (JavaScript bindings) with only its CPU prebuilt binaries for this machine,
# @node-llama-cpp/linux-x64 (~30 MB: a Node addon llama-addon.node plus
# libllama/libggml shared objects, one libggml-cpu variant per x86 level) or,
# on an arm64 machine (DGX Spark), @node-llama-cpp/linux-arm64.
# tools/export/llama.mjs drives it. Optional dependencies (the CUDA and Vulkan
# builds, hundreds of MB) and install scripts (which would try to download or
# compile llama.cpp) are skipped. Goes to .cache/npm-llama (git-ignored).
# Idempotent: when the pinned versions are already there it returns at once.
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=.cache/npm-llama
version=3.22.1
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) platform=linux-x64 ;;
  Linux-aarch64) platform=linux-arm64 ;;
  *) echo "llamacpp.sh: the pinned prebuilt llama.cpp exists for Linux x86-64 and arm64 only (this is $(uname -s)-$(uname -m))" >&2; exit 1 ;;
esac
binary=@node-llama-cpp/$platform

present() {
  local pj
  for pj in "$dest/node_modules/node-llama-cpp/package.json" "$dest/node_modules/$binary/package.json"; do
    [ -f "$pj" ] || return 1
    grep -q "\"version\": *\"$version\"" "$pj" || return 1
  done
  [ -s "$dest/node_modules/$binary/bins/$platform/llama-addon.node" ]
}

if present; then
  exit 0
fi
command -v npm >/dev/null || { echo "llamacpp.sh: npm is required to install node-llama-cpp" >&2; exit 1; }
mkdir -p "$dest"
[ -f "$dest/package.json" ] || echo '{"name": "whet-llamacpp", "private": true}' > "$dest/package.json"
npm install --prefix "$dest" --save-exact --no-audit --no-fund --omit=optional --ignore-scripts --loglevel=error \
  "node-llama-cpp@$version" "$binary@$version"
present || { echo "llamacpp.sh: npm finished but $binary's addon is missing under $dest" >&2; exit 1; }
