#!/usr/bin/env bash
# Captures the ways in to a training box in a real terminal (tmux, 80x24
# by default), through the real OpenSSH client against `whet serve` on
# loopback:
#   serve-01-studio     a session's studio (the model page)
#   serve-02-dashboard  a CPU run of the demo model started in that session
#   serve-03-runs       after the ssh client was killed mid-run: a new
#                       session's runs page, the run still training
#   serve-04-summary    that session following the run to its summary
#   attach-01-dashboard whet attach following a detached run (whet train
#   attach-02-summary   --detach) of the tiny test model to its summary
# Everything runs in a box folder that looks like a user's (--box, default
# $HOME/whet-box, made and removed here) so the screens show no build or
# temporary paths; the binary and keys live in a temporary folder.
#
#   tools/tmux/drive-remote.sh [--out DIR] [--size 80x24] [--box DIR]
#
# Captures: DIR/NAME.txt (plain) and DIR/NAME.ansi (with colours). Fails
# (exit 1) when an expected screen does not appear.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
out=docs/screens size=80x24 box="$HOME/whet-box"
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --box) box=$2; shift 2 ;;
    *) echo "drive-remote.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -e "$box" ] && { echo "drive-remote.sh: $box exists; give another --box" >&2; exit 2; }
cols=${size%x*} rows=${size#*x}
out=$(mkdir -p "$out" && cd "$out" && pwd)
tmp=$(mktemp -d)
tm="tmux -S $tmp/tmux"
serve_pid=""
cleanup() {
  $tm kill-server 2>/dev/null || true
  [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null || true
  # Workers still training (a failed capture) end with their box.
  for lock in "$box"/runs/*/lock; do
    [ -f "$lock" ] || continue
    pid=$(cat "$lock" 2>/dev/null || true)
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp" "$box"
}
trap cleanup EXIT
go build -o "$tmp/whet" .
ssh-keygen -q -t ed25519 -N '' -f "$tmp/key"
cp "$tmp/key.pub" "$tmp/authorized_keys"

# The box: the demo (presets/demo) as a checkout has it, a models folder
# with the tiny test model, and the Hub cache inside.
mkdir -p "$box/models"
ln -s "$repo/presets" "$box/presets"
cp -r testdata/tiny-llama "$box/models/tiny-llama"
cp testdata/datasets/tiny-chat.jsonl "$box/tiny-chat.jsonl"
export HF_HOME="$box/.cache/huggingface"

capture() { # session name
  $tm capture-pane -p -t "$1" > "$out/$2.txt"
  $tm capture-pane -p -e -t "$1" > "$out/$2.ansi"
}
wait_screen() { # session text
  for _ in $(seq 1200); do
    $tm capture-pane -p -t "$1" 2>/dev/null | grep -qF -- "$2" && return 0
    sleep 0.1
  done
  echo "drive-remote.sh: the screen of $1 never showed '$2':" >&2
  $tm capture-pane -p -t "$1" >&2 || true
  exit 1
}
ssh_session() { # name
  $tm new-session -d -s "$1" -x "$cols" -y "$rows" \
    "exec ssh -F /dev/null -p $port -i $tmp/key -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -t whet@127.0.0.1"
}

# 1. whet serve in the box, and a session through ssh.
(cd "$box" && exec "$tmp/whet" serve --listen 127.0.0.1:0 --authorized-keys "$tmp/authorized_keys" \
  --host-key "$tmp/host_key" --runs runs --models models --data .) > "$tmp/serve.out" 2>&1 &
serve_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$tmp/serve.out" && break; sleep 0.1; done
port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$tmp/serve.out")
[ -n "$port" ] || { cat "$tmp/serve.out" >&2; exit 1; }
ssh_session a
wait_screen a "Choose the base model"
wait_screen a "whet-demo"
capture a serve-01-studio

# 2. the demo, 40 steps of micro-batch 2, started from the session.
$tm send-keys -t a Enter; wait_screen a "How should it learn?"
$tm send-keys -t a Enter; wait_screen a "format messages"
$tm send-keys -t a Enter; wait_screen a "Run settings"
$tm send-keys -t a C-u persona-demo Down Right Down C-u 40 Down Down C-u 2
wait_screen a "Max steps           40"
$tm send-keys -t a Enter; wait_screen a "fits"
$tm send-keys -t a Enter; wait_screen a "enter starts training"
$tm send-keys -t a Enter; wait_screen a "step 16/40"
capture a serve-02-dashboard

# 3. the client killed mid-run; a new session lists the runs.
kill -9 "$($tm display-message -p -t a '#{pane_pid}')"
ssh_session b
wait_screen b "Choose the base model"
$tm send-keys -t b r
wait_screen b "● training"
capture b serve-03-runs

# 4. that session follows the run to its end.
$tm send-keys -t b Enter
wait_screen b "✓ finished"
capture b serve-04-summary
$tm send-keys -t b q

# 5. a detached run of the tiny model, followed by whet attach.
cat > "$box/remote.yaml" <<YAML
name: remote
model: $box/models/tiny-llama
backend: cpu
runs_dir: $box/runs
lora: {r: 4, alpha: 8}
data: {path: $box/tiny-chat.jsonl, max_length: 64, packing: true, seed: 1}
train: {max_steps: 400, lr: 0.002, seed: 1, eval_every: 50, save_every: 100}
YAML
(cd "$box" && "$tmp/whet" train -c remote.yaml --detach > /dev/null)
$tm new-session -d -s c -x "$cols" -y "$rows" -c "$box" "$tmp/whet attach remote; sleep 600"
wait_screen c "quit viewer"
wait_screen c "step 1"
capture c attach-01-dashboard
wait_screen c "✓ finished"
capture c attach-02-summary
echo "drive-remote.sh: screens in $out"
