#!/usr/bin/env bash
# linux/arm64 (DGX Spark's Grace CPU, other arm64 servers) checked from an
# x86-64 machine, as tools/test.sh does in CI:
#   1. whet builds for GOARCH=arm64 with CGO_ENABLED=0 and with cgo (the
#      Debian cross compiler), and both binaries start under qemu-aarch64;
#   2. the CPU tests of the packages whose results could depend on the
#      architecture (the float32 reference against transformers, whose
#      sums the arm64 compiler fuses into FMAs; tokenizers and templates;
#      GGUF quantizers; the presets; purego calls into C, which pass
#      arguments differently on arm64) run under qemu-aarch64.
# tools/setup/arm64.sh installs qemu-user and the cross compiler. Emulation
# runs CPU-bound Go code 15-30x slower than native; the package list, the
# engine filter and -short keep this to about 7 minutes on a 2-core machine
# with a cold build cache (docs/arm64.md has the measurements). On an arm64 machine
# it returns at once: tools/test.sh's go test ./... runs everything natively.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
case "$(uname -m)" in
  aarch64|arm64) echo "arm64/test.sh: this machine is arm64; go test ./... already ran natively"; exit 0 ;;
esac
sysroot=/usr/aarch64-linux-gnu
for tool in qemu-aarch64 aarch64-linux-gnu-gcc; do
  command -v "$tool" >/dev/null || { echo "arm64/test.sh: $tool is missing: run tools/setup/arm64.sh" >&2; exit 1; }
done
[ -e "$sysroot/lib/ld-linux-aarch64.so.1" ] || { echo "arm64/test.sh: the arm64 C library is missing under $sysroot: run tools/setup/arm64.sh" >&2; exit 1; }
export QEMU_LD_PREFIX=$sysroot # where qemu-aarch64 finds the arm64 loader and libc
stamp() { echo "arm64/test.sh: $* ($(date -u +%H:%M:%S))"; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
stamp "building whet for linux/arm64 without cgo"
GOARCH=arm64 CGO_ENABLED=0 go build -o "$out/whet-nocgo" .
stamp "building whet for linux/arm64 with cgo (CC=aarch64-linux-gnu-gcc)"
GOARCH=arm64 CGO_ENABLED=1 CC=aarch64-linux-gnu-gcc go build -o "$out/whet-cgo" .
for b in whet-nocgo whet-cgo; do
  v=$(qemu-aarch64 "$out/$b" --version)
  case "$v" in
    *linux/arm64*) echo "$b: $v" ;;
    *) echo "arm64/test.sh: $b --version under qemu-aarch64 said: $v" >&2; exit 1 ;;
  esac
done

# The test binaries run under qemu-aarch64 in their package folders, as go
# test runs them natively. CC is the cross compiler for the tests that
# build fake driver libraries (engine/gpuinfo, engine/cuda).
arm64test() {
  GOARCH=arm64 CGO_ENABLED=0 CC=aarch64-linux-gnu-gcc go test -exec qemu-aarch64 -short -count=1 -timeout 20m "$@"
}
stamp "tests under qemu-aarch64"
# TestHostileTemplatesStopAtLimits bounds wall-clock time (5 s for a
# template to hit its limit), which emulation on a busy 2-core machine
# exceeds though the limit is hit; it says nothing about arm64.
arm64test -skip '^TestHostileTemplatesStopAtLimits$' \
  ./presets/... ./datasets/... ./engine/export/... ./engine/gpuinfo/... ./engine/cuda/...
stamp "engine's reference tests under qemu-aarch64"
arm64test -run '^TestReference|FiniteDiff$' ./engine

# The whole program on arm64: the tiny LoRA run of testdata/runs (12 steps
# on the CPU, with evals, a sample, a checkpoint and the adapter written)
# must end at the eval loss the native amd64 binary reaches, within 1e-4.
stamp "testdata/runs/tiny-lora.yaml: arm64 under qemu-aarch64 against amd64 native"
go build -o "$out/whet-native" .
final_eval() { grep -o '"eval_loss":[-0-9.eE+]*' "$1/runs/tiny-lora/metrics.jsonl" | tail -1 | cut -d: -f2; }
mkdir -p "$out/run-arm64" "$out/run-amd64"
(cd "$out/run-arm64" && qemu-aarch64 "$out/whet-nocgo" train -c "$repo/testdata/runs/tiny-lora.yaml" > log 2>&1) ||
  { cat "$out/run-arm64/log" >&2; echo "arm64/test.sh: the arm64 run failed" >&2; exit 1; }
(cd "$out/run-amd64" && "$out/whet-native" train -c "$repo/testdata/runs/tiny-lora.yaml" > log 2>&1) ||
  { cat "$out/run-amd64/log" >&2; echo "arm64/test.sh: the amd64 run failed" >&2; exit 1; }
a=$(final_eval "$out/run-arm64") n=$(final_eval "$out/run-amd64")
echo "final eval loss: arm64 $a, amd64 $n"
awk -v a="$a" -v n="$n" 'BEGIN { d = a - n; if (d < 0) d = -d; exit !(a != "" && n != "" && d <= 1e-4 * (n < 0 ? -n : n)) }' ||
  { echo "arm64/test.sh: the arm64 run's final eval loss $a is not within 1e-4 of amd64's $n" >&2; exit 1; }
stamp "done"
