#!/usr/bin/env bash
# Installs Debian's OpenSSH client (ssh, ssh-keygen), which the whet serve
# tests drive against a server on 127.0.0.1, and tmux, the terminal those
# tests read the sessions' screens from. Idempotent: returns at once when
# all three are already there.
set -euo pipefail
if command -v ssh >/dev/null && command -v ssh-keygen >/dev/null && command -v tmux >/dev/null; then
  exit 0
fi
command -v apt-get >/dev/null || { echo "openssh.sh: install an OpenSSH client (ssh, ssh-keygen) and tmux; apt-get is not available here" >&2; exit 1; }
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends openssh-client tmux
