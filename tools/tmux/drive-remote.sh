#!/usr/bin/env bash
# Captures the "ways in" in a real terminal (tmux, 80x24 by default):
# the studio served by `whet serve` through the real OpenSSH client, and
# `whet attach` following a detached CPU run of the tiny test model to its
# summary. Loopback only; everything goes to a temporary folder.
#
#   tools/tmux/drive-remote.sh [--out DIR] [--size 80x24]
#
# Captures: DIR/serve-01-studio.txt, DIR/attach-01-dashboard.txt,
# DIR/attach-02-summary.txt (plain; .ansi with colours). Fails (exit 1)
# when an expected screen does not appear.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=docs/screens size=80x24
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    *) echo "drive-remote.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
cols=${size%x*} rows=${size#*x}
tmp=$(mktemp -d)
sess=whet-remote-$$
serve_pid=""
cleanup() {
  tmux kill-session -t "$sess" 2>/dev/null || true
  [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$out"
go build -o "$tmp/whet" .
ssh-keygen -q -t ed25519 -N '' -f "$tmp/key"
cp "$tmp/key.pub" "$tmp/authorized_keys"

capture() { # name
  tmux capture-pane -p -t "$sess" > "$out/$1.txt"
  tmux capture-pane -p -e -t "$sess" > "$out/$1.ansi"
}
wait_screen() { # text
  for _ in $(seq 600); do
    tmux capture-pane -p -t "$sess" | grep -qF -- "$1" && return 0
    sleep 0.1
  done
  echo "drive-remote.sh: the screen never showed '$1':" >&2
  tmux capture-pane -p -t "$sess" >&2
  exit 1
}

# 1. whet serve, and a session through ssh.
"$tmp/whet" serve --listen 127.0.0.1:0 --authorized-keys "$tmp/authorized_keys" --host-key "$tmp/host_key" \
  --runs "$tmp/runs" --models testdata > "$tmp/serve.out" 2>&1 &
serve_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$tmp/serve.out" && break; sleep 0.1; done
port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$tmp/serve.out")
[ -n "$port" ] || { cat "$tmp/serve.out" >&2; exit 1; }
tmux new-session -d -s "$sess" -x "$cols" -y "$rows" \
  "ssh -F /dev/null -p $port -i $tmp/key -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -t whet@127.0.0.1"
wait_screen "Choose the base model"
capture serve-01-studio
tmux send-keys -t "$sess" q
tmux kill-session -t "$sess" 2>/dev/null || true

# 2. a detached run, followed by whet attach to its summary.
cat > "$tmp/run.yaml" <<YAML
name: remote
model: $PWD/testdata/tiny-llama
backend: cpu
runs_dir: $tmp/runs
lora: {r: 4, alpha: 8}
data: {path: $PWD/testdata/datasets/tiny-chat.jsonl, max_length: 64, packing: true, seed: 1}
train: {max_steps: 400, lr: 0.002, seed: 1, eval_every: 50, save_every: 100}
YAML
(cd "$tmp" && ./whet train -c run.yaml --detach)
tmux new-session -d -s "$sess" -x "$cols" -y "$rows" "cd $tmp && ./whet attach remote; sleep 600"
wait_screen "quit viewer"
wait_screen "step 1"
capture attach-01-dashboard
wait_screen "remote"
for _ in $(seq 1200); do
  tmux capture-pane -p -t "$sess" | grep -qiE "finished|done|summary" && break
  sleep 0.1
done
capture attach-02-summary
echo "drive-remote.sh: screens in $out"
