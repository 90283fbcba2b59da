#!/usr/bin/env bash
# decode-fast (issue 21, batch-1 decoding overhead): the opt-in switches that cut the per-token
# overhead of graph decoding, checked and timed on the GPU:
#   WHET_CUDA_PDL=1     programmatic dependent launch of the decode kernels on sm_90+
#                       (engine/cuda/pdl.go, PDL_WAIT/PDL_TRIGGER in kernels/common.cuh)
#   WHET_DECODE_FUSE=1  fused decode ops (engine.FusedMatVecs, kernels/gemv.cu): the RMSNorm
#                       inside the q/k/v and gate/up GEMVs, SwiGLU inside the down GEMV, the
#                       residual adds inside the o and down GEMVs (10 launches a layer -> 5)
#   WHET_DECODE_STEPS=8 eight greedy tokens a graph replay (engine/generate.go decodeChunk): one
#                       host round trip (graph launch + wait for the ids) per 8 tokens
# First the decoding tests with all three on (WHET_DECODE_STEPS=4; a failure names the test:
# TestDecodeFused* are the fusion's; in TestGenerateGraphEqualsPlain graph mode then replays
# 4-step chunks and must equal device mode), then
# whet bench --decode for Llama-3.2-1B bf16 in graph mode with none, each, PDL+fuse and all, then a
# per-kernel profile of one step (device mode with WHET_CUDA_PROFILE=1), then, as the 200 s
# allow, nsys over the graph (when the device has it) and the GEMV prefetch's share.
# The 8B rows are tools/gpu/decode-fast-8b.
# Runs from the repository root; writes only under $OUT/decode-fast.
set -u
O=$OUT/decode-fast; mkdir -p $O
B=$PWD/.dev/gpu/common
S=$O/summary.txt
# Kernel caches and temporary files stay under $O (removed at the end).
export XDG_CACHE_HOME=$O/xdg TMPDIR=$O/tmp; mkdir -p $XDG_CACHE_HOME $TMPDIR
step() { echo "== $(date -u +%T) $*" | tee -a $S; }
step start
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.memory --format=csv,noheader | tee $O/gpu.txt >>$S
cat $B/COMMIT >>$S 2>/dev/null
TESTS='TestPDL|TestLaunchConfigLayout|TestDecodeFused|TestMatVecKernels|TestMatVecsMatchesMatMul|TestArgmaxAndAdvance|TestAttentionDecodeMatchesCPU|TestGenerateGraphEqualsPlain|TestGenerateMatchesCPU|TestFamilyGenerateMatchesCPU|TestNF4MatVecV2|TestGenerateNF4V2'
tests() { # name, env...
  local name=$1; shift
  step "tests $name"
  (cd engine/cuda && env "$@" WHET_CUDA_REQUIRE=1 timeout 70 $B/cuda.test -test.run "$TESTS" -test.v -test.count=1) >$O/tests-$name.log 2>&1
  local rc=$?
  echo "cuda.test $name rc=$rc" >>$S
  grep -E "^(--- |ok|FAIL|PASS|panic)|^    --- FAIL|graph and plain agree|fused" $O/tests-$name.log >>$S
  grep -E -A8 -- "--- FAIL|panic" $O/tests-$name.log | head -40 >>$S
  return $rc
}
tests all WHET_CUDA_PDL=1 WHET_DECODE_FUSE=1 WHET_DECODE_STEPS=4
W=$B/whet
bench() { # label, seconds, model, method, env...
  local label=$1 secs=$2 model=$3 method=$4; shift 4
  if [ $SECONDS -gt $((195 - secs)) ]; then echo "bench $label skipped: ${SECONDS}s of 200 used" >>$S; return; fi
  step "bench $label"
  env "$@" timeout $secs $W bench --backend cuda --json --model $model --method $method --decode 256 --seq 128 \
    --decode-modes graph >$O/bench-$label.jsonl 2>$O/bench-$label.err
  echo "bench $label rc=$?" >>$S
  cat $O/bench-$label.jsonl >>$S
  tail -3 $O/bench-$label.err >>$S
}
bench 1b-base 30 llama-3.2-1b lora X=0
bench 1b-pdl 30 llama-3.2-1b lora WHET_CUDA_PDL=1
bench 1b-fuse 30 llama-3.2-1b lora WHET_DECODE_FUSE=1
bench 1b-both 30 llama-3.2-1b lora WHET_CUDA_PDL=1 WHET_DECODE_FUSE=1
bench 1b-steps 30 llama-3.2-1b lora WHET_DECODE_STEPS=8
bench 1b-all 30 llama-3.2-1b lora WHET_CUDA_PDL=1 WHET_DECODE_FUSE=1 WHET_DECODE_STEPS=8
table() {
step table
python3 - $O/bench-*.jsonl <<'PY' | tee -a $S
import json, sys, os
name = open(os.path.join(os.path.dirname(sys.argv[1]), "gpu.txt")).readline()
card = 4.8e12 if "H200" in name else 3.35e12
for f in sorted(sys.argv[1:]):
    for line in open(f):
        try:
            r = json.loads(line)
        except Exception:
            continue
        wb = r.get("weight_bytes_per_token", 0)
        tps = r.get("decode_tokens_per_sec", 0)
        bound = card / wb if wb else 0
        print(f'{os.path.basename(f):32s} {tps:8.1f} tok/s  bound {bound:7.1f}  {100*tps/bound if bound else 0:5.1f}%  '
              f'{r.get("decode_mode")} {r.get("fallback","")}')
PY
}
step profile
# Per-kernel times of one decoding step without the graph (CUDA events around each launch).
[ $SECONDS -lt 150 ] && WHET_CUDA_PROFILE=1 timeout 20 $W bench --backend cuda --model llama-3.2-1b --method lora --decode 16 --seq 128 \
  --decode-modes device >$O/profile-device.txt 2>&1; echo "profile device rc=$?" >>$S
[ $SECONDS -lt 165 ] && WHET_CUDA_PROFILE=1 WHET_DECODE_FUSE=1 timeout 20 $W bench --backend cuda --model llama-3.2-1b --method lora --decode 16 --seq 128 \
  --decode-modes device >$O/profile-device-fuse.txt 2>&1; echo "profile device fuse rc=$?" >>$S
if [ $SECONDS -lt 115 ]; then
  bench 1b-all-noprefetch 30 llama-3.2-1b lora WHET_CUDA_PDL=1 WHET_DECODE_FUSE=1 WHET_DECODE_STEPS=8 WHET_NVRTC_DEFINES=GEMV_PREFETCH=0
fi
if [ $SECONDS -lt 140 ] && command -v nsys >/dev/null; then
  for v in base both; do
    e=X=0; [ $v = both ] && e="WHET_CUDA_PDL=1 WHET_DECODE_FUSE=1"
    [ $SECONDS -lt 160 ] || break
    env $e timeout 30 nsys profile -t cuda --cuda-graph-trace=node -o $O/nsys-$v -f true \
      $W bench --backend cuda --json --model llama-3.2-1b --method lora --decode 64 --seq 128 --decode-modes graph >$O/nsys-$v.out 2>&1
    echo "nsys $v rc=$?" >>$S
    timeout 15 nsys stats -r cuda_gpu_kern_sum -f csv -o $O/nsys-$v $O/nsys-$v.nsys-rep >>$O/nsys-$v.out 2>&1
    head -25 $O/nsys-${v}_cuda_gpu_kern_sum.csv >>$S 2>/dev/null
    rm -f $O/nsys-$v.sqlite $O/nsys-$v.nsys-rep
  done
else
  echo "nsys skipped (none on the device, or no time left: ${SECONDS}s)" >>$S
fi
table
rm -rf $O/xdg $O/tmp
step end
