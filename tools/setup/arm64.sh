#!/usr/bin/env bash
# Installs what tools/arm64/test.sh needs to build whet for linux/arm64 and
# run its CPU tests under emulation on an x86-64 machine, from Debian:
#   - qemu-user: qemu-aarch64 runs one arm64 Linux process on this CPU;
#   - gcc-aarch64-linux-gnu: the cross C compiler for the cgo build and for
#     the fake driver libraries some tests compile, which brings the arm64
#     C library and loader (libc6-arm64-cross, under /usr/aarch64-linux-gnu):
#     purego makes even CGO_ENABLED=0 binaries dynamically linked, so
#     qemu-aarch64 needs that loader (-L /usr/aarch64-linux-gnu).
# On an arm64 machine nothing is needed (the tests run natively) and it
# returns at once, as it does when both are already installed.
set -euo pipefail
case "$(uname -m)" in
  aarch64|arm64) exit 0 ;;
esac
if command -v qemu-aarch64 >/dev/null && command -v aarch64-linux-gnu-gcc >/dev/null &&
  [ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ]; then
  exit 0
fi
command -v apt-get >/dev/null || { echo "arm64.sh: install qemu-user (qemu-aarch64) and an aarch64-linux-gnu cross gcc; apt-get is not available here" >&2; exit 1; }
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross
