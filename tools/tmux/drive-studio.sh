#!/usr/bin/env bash
# Drives the whet studio in a real terminal (tmux) from the first wizard
# page to a started run, watches the dashboard, stops the run (which
# checkpoints first) and quits, saving a capture of every screen.
#
#   tools/tmux/drive-studio.sh [--out DIR] [--size 80x24] [--steps N]
#       [--model TEXT] [--data TEXT] [--set 'LABEL=VALUE']... [--fake] [--runs DIR]
#       [-- STUDIO_ARGS...]
#
# --model and --data pick the first list row containing TEXT (default: the
# first row); each --set types VALUE into the run-settings field whose label
# starts with LABEL (e.g. --set 'Epochs=4' --set 'Learning rate=0.004'). --fake uses the scripted engine. A real CPU run of the tiny
# test model:
#   tools/tmux/drive-studio.sh --model tiny-llama --data mentor.jsonl --steps 8 -- --models-dir testdata
# The runs go to DIR/runs (or --runs, relative to the repository); after a real run the script checks that the
# last loss on the summary screen is the last loss in metrics.jsonl.
# Captures: DIR/NN-name.txt (plain) and DIR/NN-name.ansi (with colours).
# The script fails (exit 1) when an expected screen does not appear.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
out="$root/.dev/screens"
size="80x24"
watch_steps=20
pick_model=""
pick_data=""
fake=0
sets=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --model) pick_model="$2"; shift 2 ;;
    --data) pick_data="$2"; shift 2 ;;
    --fake) fake=1; shift ;;
    --runs) runs="$2"; shift 2 ;;
    --set) sets+=("$2"); shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    --steps) watch_steps="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "drive-studio: unknown argument $1" >&2; exit 2 ;;
  esac
done
studio_args=("$@")
if [[ $fake == 1 ]]; then
  studio_args=(--fake --fake-steps 400 --fake-delay 50ms "${studio_args[@]}")
fi
runs="${runs:-$out/runs}"
studio_args+=(--runs "$runs")
cols=${size%x*}
rows=${size#*x}

command -v tmux >/dev/null || { echo "drive-studio: tmux is not installed" >&2; exit 1; }
mkdir -p "$out" "$root/.dev"
# WHET_BIN runs a binary built elsewhere instead of building the tree.
whet="${WHET_BIN:-$root/.dev/whet}"
if [[ -z ${WHET_BIN:-} ]]; then (cd "$root" && go build -o .dev/whet .); fi

session="whet-drive-$$"
# A private tmux server: nothing here touches the user's own sessions, and
# a `tmux kill-server` elsewhere does not end this one.
tmux() { command tmux -L "$session" "$@"; }
cleanup() { tmux kill-server 2>/dev/null || true; }
trap cleanup EXIT
# The shell stays after whet exits so the exit status can be read.
tmux new-session -d -s "$session" -x "$cols" -y "$rows" \
  "cd '$root' && '$whet' studio $(printf '%q ' "${studio_args[@]}"); echo \"whet exited with status \$?\"; sleep 600"

n=0
capture() { # capture NAME: save the current screen
  n=$((n + 1))
  local base
  base=$(printf '%s/%02d-%s' "$out" "$n" "$1")
  tmux capture-pane -p -t "$session" > "$base.txt"
  tmux capture-pane -p -e -t "$session" > "$base.ansi"
  echo "captured $base.txt"
}
wait_for() { # wait_for REGEX [SECONDS]: poll the screen until it matches
  local re="$1" limit="${2:-10}" i
  for ((i = 0; i < limit * 10; i++)); do
    local screen
    screen=$(tmux capture-pane -p -t "$session") || { echo "drive-studio: the tmux session ended" >&2; exit 1; }
    if grep -Eq -- "$re" <<<"$screen"; then return 0; fi
    sleep 0.1
  done
  echo "drive-studio: timed out waiting for /$re/; the screen was:" >&2
  tmux capture-pane -p -t "$session" >&2
  exit 1
}
wait_steps() { # wait_steps N [SECONDS]: until the dashboard shows step >= N (or the run ended)
  local want="$1" limit="${2:-60}" i screen step
  for ((i = 0; i < limit * 10; i++)); do
    screen=$(tmux capture-pane -p -t "$session") || { echo "drive-studio: the tmux session ended" >&2; exit 1; }
    step=$(grep -Eo 'step [0-9]+/' <<<"$screen" | head -1 | grep -Eo '[0-9]+' || true)
    if [[ -n $step && $step -ge $want ]] || grep -Eq 'checkpoint saved|✓ finished|✗ failed' <<<"$screen"; then return 0; fi
    sleep 0.1
  done
  echo "drive-studio: timed out waiting for step $want; the screen was:" >&2
  echo "$screen" >&2
  exit 1
}
keys() { tmux send-keys -t "$session" "$@"; sleep 0.2; }
pick() { # pick TEXT: move the list cursor (›) down to the row containing TEXT
  local text="$1" i
  [[ -z $text ]] && return 0
  for ((i = 0; i < 200; i++)); do
    if tmux capture-pane -p -t "$session" | grep -E '^› ' | grep -qF -- "$text"; then return 0; fi
    keys Down
  done
  echo "drive-studio: no list row contains '$text'" >&2
  tmux capture-pane -p -t "$session" >&2
  exit 1
}

wait_for 'Choose the base model'
pick "$pick_model"
capture model
keys Enter
wait_for 'How should it learn'
capture method
keys Enter
wait_for 'Choose the training data'
pick "$pick_data"
# A model may come with its dataset, already selected and previewing.
if ! tmux capture-pane -p -t "$session" | grep -Eq '^format [^ ]+ · [0-9]+ rows|✗|^reading '; then keys Enter; fi
wait_for '^format [^ ]+ · [0-9]+ rows|✗' 60
capture data
keys Enter
wait_for 'Run settings'
for kv in "${sets[@]}"; do
  pick "${kv%%=*}"
  keys C-u
  tmux send-keys -t "$session" -l -- "${kv#*=}"
  sleep 0.2
done
capture settings
keys Enter
wait_for 'Will it fit'
wait_for 'Fits|fits|not fit|not available|fit check failed' 60
capture fit
keys Enter
wait_for 'Review'
capture review
keys Enter
wait_for "step [0-9]+/[0-9]+" 60
wait_steps "$watch_steps" 600
capture dashboard
keys s
wait_for 'Stop the run\?'
keys y
wait_for 'stopped, checkpoint saved|✓ finished|✗ failed' 300
capture summary
shown=$(tmux capture-pane -p -t "$session" | grep -Eo 'last loss [0-9.]+' | head -1 | awk '{print $3}' || true)
keys q
wait_for 'whet exited with status 0' 30
metrics=$(cd "$root" && ls -t "$runs"/*/metrics.jsonl 2>/dev/null | head -1 || true)
if [[ -n $metrics ]]; then
  logged=$(cd "$root" && grep '"loss"' "$metrics" | tail -1 | sed -E 's/.*"loss":([-0-9.eE+]+).*/\1/')
  logged=$(printf '%.4f' "$logged")
  if [[ "$shown" != "$logged" ]]; then
    echo "drive-studio: the summary shows last loss $shown but $metrics ends with $logged" >&2
    exit 1
  fi
  echo "drive-studio: summary loss $shown matches $metrics"
fi
echo "drive-studio: done; screens in $out"
