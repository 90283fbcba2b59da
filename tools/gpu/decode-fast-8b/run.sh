#!/usr/bin/env bash
# decode-fast-8b (issue 21): the 8B half of tools/gpu/decode-fast: Llama-3.1-8B decoding (graph
# mode, 256 new tokens after 128) in bf16 and in NF4 (qlora) with WHET_CUDA_PDL=1,
# WHET_DECODE_FUSE=1 and WHET_DECODE_STEPS=8, then bf16 without them as the time allows (making the 8B random model
# takes ~30 s a run). Runs from the repository root; writes only under $OUT/decode-fast-8b.
set -u
O=$OUT/decode-fast-8b; mkdir -p $O
B=$PWD/.dev/gpu/common
S=$O/summary.txt
export XDG_CACHE_HOME=$O/xdg TMPDIR=$O/tmp; mkdir -p $XDG_CACHE_HOME $TMPDIR
step() { echo "== $(date -u +%T) $*" | tee -a $S; }
step start
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.memory --format=csv,noheader | tee $O/gpu.txt >>$S
cat $B/COMMIT >>$S 2>/dev/null
W=$B/whet
bench() { # label, method, env...
  local label=$1 method=$2; shift 2
  step "bench $label"
  env "$@" timeout 60 $W bench --backend cuda --json --model llama-3.1-8b --method $method --decode 256 --seq 128 \
    --decode-modes graph >$O/bench-$label.jsonl 2>$O/bench-$label.err
  echo "bench $label rc=$?" >>$S
  cat $O/bench-$label.jsonl >>$S
  tail -3 $O/bench-$label.err >>$S
}
bench 8b-both lora WHET_CUDA_PDL=1 WHET_DECODE_FUSE=1 WHET_DECODE_STEPS=8
bench 8b-qlora-both qlora WHET_CUDA_PDL=1 WHET_DECODE_FUSE=1 WHET_DECODE_STEPS=8
[ $SECONDS -lt 135 ] && bench 8b-base lora X=0
rm -rf $O/xdg $O/tmp
step end
