#!/usr/bin/env bash
# Interoperability of whet's Hub client with huggingface_hub and transformers,
# on a machine where those are installed (the GPU machine). Needs the two
# binaries built beforehand (no network is used; everything is on loopback):
#
#   CGO_ENABLED=0 go build -o .dev/whet . && CGO_ENABLED=0 go build -o .dev/fakehub ./tools/hub/fakehub
#   bash tools/hub/interop.sh [LOG]          # default LOG: docs/hub-interop.log
#
# 1. .dev/fakehub serves presets/demo/model as whet-test/demo (main and tag v1.0,
#    plus a README, a .bin stand-in and original/ that whet must skip).
# 2. huggingface_hub's snapshot_download fills cache A through HF_ENDPOINT;
#    whet reads cache A offline (pull, pull --list, fit by repo id).
# 3. whet pull fills cache B; the fake Hub stops; with HF_HUB_OFFLINE=1
#    huggingface_hub's scan_cache_dir finds cache B well formed and
#    transformers loads the model and tokenizer from it, equal to the folder.
# 4. The blobs whet wrote carry the names huggingface_hub gave the same files.
set -euo pipefail
cd "$(dirname "$0")/../.."
log=${1:-docs/hub-interop.log}
mkdir -p "$(dirname "$log")"
exec > >(tee "$log") 2>&1

repo=whet-test/demo
work=$(mktemp -d)
trap 'kill "$hub_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
unset HF_TOKEN HUGGING_FACE_HUB_TOKEN HF_HUB_OFFLINE TRANSFORMERS_OFFLINE HF_HUB_CACHE HF_HOME
export HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_DISABLE_PROGRESS_BARS=1 HF_TOKEN_PATH="$work/no-token"

echo "# whet Hub interoperability check, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "# $(uname -srm); whet $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
for b in .dev/whet .dev/fakehub; do
  [ -x "$b" ] || { echo "missing $b: build it first (see the top of this script)"; exit 1; }
done

.dev/fakehub -repo "$repo=presets/demo/model" -tag v1.0 -url-file "$work/url" &
hub_pid=$!
for _ in $(seq 100); do [ -s "$work/url" ] && break; sleep 0.1; done
export HF_ENDPOINT=$(cat "$work/url")
echo "# fake Hub at $HF_ENDPOINT"

step() { echo; echo "== $*"; }
run() { echo "\$ $*"; "$@"; }

step "1. huggingface_hub fills cache A from the fake Hub"
HF_HUB_CACHE="$work/A" run python3 tools/hub/interop.py snapshot "$repo"

step "2. whet reads cache A offline"
export HF_HUB_OFFLINE=1
HF_HUB_CACHE="$work/A" run .dev/whet pull "$repo"
HF_HUB_CACHE="$work/A" run .dev/whet pull "$repo@v1.0"
HF_HUB_CACHE="$work/A" run .dev/whet pull --list
HF_HUB_CACHE="$work/A" run .dev/whet fit --model "$repo" --method lora --batch 1 --seq 256 --gpu H100
unset HF_HUB_OFFLINE

step "3. whet fills cache B from the fake Hub"
HF_HUB_CACHE="$work/B" run .dev/whet pull "$repo"
HF_HUB_CACHE="$work/B" run .dev/whet pull --json "$repo@v1.0" | tail -n 2
echo "# cache B as whet wrote it (mode, path, link target):"
(cd "$work/B" && find . -mindepth 1 | sort | while read -r p; do
  if [ -L "$p" ]; then echo "$(stat -c %A "$p") $p -> $(readlink "$p")"; else echo "$(stat -c %A "$p") $p"; fi
done)
kill "$hub_pid"; wait "$hub_pid" 2>/dev/null || true
echo "# fake Hub stopped"

step "4. transformers loads cache B offline"
HF_HUB_OFFLINE=1 HF_HUB_CACHE="$work/B" run python3 tools/hub/interop.py load "$repo" presets/demo/model

step "5. same blob names in both caches"
a=$(ls "$work/A/models--whet-test--demo/blobs" | sort)
b=$(ls "$work/B/models--whet-test--demo/blobs" | sort)
echo "cache A (huggingface_hub, every file): $(echo "$a" | wc -l) blobs"
echo "cache B (whet, the files a run needs): $(echo "$b" | wc -l) blobs"
missing=$(comm -13 <(echo "$a") <(echo "$b"))
if [ -n "$missing" ]; then echo "FAIL: whet named blobs huggingface_hub does not: $missing"; exit 1; fi
echo "every blob whet wrote has the name huggingface_hub gave the same file"
echo; echo "PASS"
