#!/usr/bin/env bash
# decode-next (issue 21: batch-1 decoding of Llama-3.2-1B bf16 at >= 60 % of the bandwidth bound,
# Llama-3.1-8B NF4 >= 250 tok/s). The opt-in switches written since decode-fast / decode-attn,
# never run on a GPU before this batch:
#   WHET_DECODE_ARGMAX=1  the greedy argmax folded into the LM head's GEMV (kernels/gemv.cu
#                         gemv_bf16_argmax: one 64-bit atomic max a block, the last block writes
#                         the id; the one-block argmax took 56 us a token)
#   WHET_DECODE_GEMV=rr   round-parallel bf16 GEMVs (kernels/gemv.cu gemv_rr*: each row's rounds of
#                         four 16-byte pieces spread over warps, weights loaded before the wait and
#                         the norm/SwiGLU prologue; the same bits as the four-piece kernels)
#                         WHET_DECODE_RR_WARPS=N tunes the block (rows a block = N / rounds)
#   WHET_DECODE_FUSE=1    now also on NF4 weights (kernels/nf4.cu matvec_nf4_split_add_norm: o with
#                         the residual and, by the last block, the MLP's RMSNorm; matvec_nf4_split_add:
#                         down with the residual, no copy; matvec_nf4_split_swiglu: gate/up with
#                         SwiGLU in the epilogue, g and u never written): 10 nodes a layer become 6
#   WHET_DECODE_ATTN=v3   v2's decode attention with its loads pipelined (the first step's k/v rows before
#                         the rotary work, each step's next rows before its own use): v2's bits
# with the earlier ones: WHET_DECODE_ATTN=v2 (decode attention), WHET_DECODE_FUSE=1 (norms, SwiGLU,
# residual adds inside the GEMVs), WHET_CUDA_PDL=1 with WHET_NVRTC_DEFINES=GEMV_PREFETCH=0.
# 1. the new kernels' tests (TestMatVecArgmax, TestGEMVRR, TestNF4FusedKernels: bit for bit against
#    the unfused ops; TestDecodeFusedNF4Generate: fused NF4 tokens equal unfused;
#    TestDecodeSwitchesKeepTokens: at hidden 1024 / heads of 64 and 128, bf16 and NF4, fuse, argmax
#    and rr each and together give the tokens without them exactly),
#    then the decoding tests with every switch on; a failure reruns with WHET_CUDA_SYNC=1;
# 2. whet bench --decode 256 --seq 128 graph mode, Llama-3.2-1B bf16: none, v2, v2+fuse,
#    v2+fuse+argmax+rr, all with PDL, the same with v3 attention; Llama-3.1-8B NF4 (qlora) with all;
#    then each new switch alone over v2+fuse, PDL over v2+fuse;
# 3. a per-kernel profile (WHET_CUDA_PROFILE=1, device mode) with v2+fuse+argmax+rr, and
#    BenchmarkAttentionDecode (v1, v2, v3); then as time allows 8B NF4 with v2+fuse and without,
#    rr at 16 warps, v3 without PDL.
# summary.txt's table: tok/s, bound, % of the bound, and whether the greedy tokens (greedy_fnv) equal
# those of the row they must equal (argmax, rr, fuse and PDL keep the bits; v2 attention may not).
# Runs from the repository root; writes only under $OUT/decode-next.
set -u
O=$OUT/decode-next; mkdir -p $O
B=$PWD/.dev/gpu/common
S=$O/summary.txt
export XDG_CACHE_HOME=$O/xdg TMPDIR=$O/tmp; mkdir -p $XDG_CACHE_HOME $TMPDIR
step() { echo "== $(date -u +%T) $*" | tee -a $S; }
step start
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.memory --format=csv,noheader | tee $O/gpu.txt >>$S
cat $B/COMMIT >>$S 2>/dev/null
ALL="WHET_DECODE_ATTN=v2 WHET_DECODE_FUSE=1 WHET_DECODE_ARGMAX=1 WHET_DECODE_GEMV=rr WHET_CUDA_PDL=1 WHET_NVRTC_DEFINES=GEMV_PREFETCH=0"
tests() { # name, seconds, pattern, env...
  local name=$1 secs=$2 pat=$3; shift 3
  step "tests $name"
  (cd engine/cuda && env "$@" WHET_CUDA_REQUIRE=1 timeout $secs $B/cuda.test -test.run "$pat" -test.v -test.count=1) >$O/tests-$name.log 2>&1
  local rc=$?
  echo "cuda.test $name rc=$rc" >>$S
  grep -E "^(--- |ok|FAIL|PASS|panic)|^    --- FAIL|agree on" $O/tests-$name.log >>$S
  grep -E -A8 -- "--- FAIL|panic" $O/tests-$name.log | head -40 >>$S
  if [ $rc -ne 0 ] && [ $rc -ne 124 ]; then
    step "tests $name again with WHET_CUDA_SYNC=1"
    # Only the tests that failed, within 40 s.
    local failed
    failed=$(grep -oE -- "^--- FAIL: Test[A-Za-z0-9_]+" $O/tests-$name.log | sed 's/--- FAIL: //' | sort -u | paste -sd'|')
    [ -n "$failed" ] && pat="^($failed)\$"
    (cd engine/cuda && env "$@" WHET_CUDA_SYNC=1 WHET_CUDA_REQUIRE=1 timeout 40 $B/cuda.test -test.run "$pat" -test.v -test.count=1) >$O/tests-$name-sync.log 2>&1
    echo "cuda.test $name sync rc=$?" >>$S
    grep -E "^(--- FAIL|panic)|^    --- FAIL" $O/tests-$name-sync.log >>$S
    grep -E -B2 -A8 "CUDA_ERROR|illegal|misaligned|fault" $O/tests-$name-sync.log | head -30 >>$S
  fi
}
tests kernels 60 'TestMatVecArgmax|TestGEMVRR|TestDecodeHeadArgmaxGenerate|TestNF4FusedKernels|TestDecodeFusedNF4Generate|TestDecodeSwitchesKeepTokens|TestDecodeFusedKernels|TestMatVecKernels|TestPDLKernelsWaitFirst'
tests all 60 'TestDecodeFused|TestDecodeSwitchesKeepTokens|TestAttentionDecodeV2MatchesCPU|TestGenerateGraphEqualsPlain|TestGenerateMatchesCPU|TestFamilyGenerateMatchesCPU|TestGenerateNF4V2' $ALL
W=$B/whet
bench() { # label, seconds, model, method, env...
  local label=$1 secs=$2 model=$3 method=$4; shift 4
  if [ $SECONDS -gt $((196 - secs)) ]; then echo "bench $label skipped: ${SECONDS}s of 200 used" >>$S; return; fi
  step "bench $label"
  env "$@" timeout $secs $W bench --backend cuda --json --model $model --method $method --decode 256 --seq 128 \
    --decode-modes graph >$O/bench-$label.jsonl 2>$O/bench-$label.err
  echo "bench $label rc=$?" >>$S
  cat $O/bench-$label.jsonl >>$S
  tail -3 $O/bench-$label.err >>$S
}
V2="WHET_DECODE_ATTN=v2"
F="WHET_DECODE_ATTN=v2 WHET_DECODE_FUSE=1"
P="WHET_CUDA_PDL=1 WHET_NVRTC_DEFINES=GEMV_PREFETCH=0"
bench 1b-a-none 30 llama-3.2-1b lora X=0
bench 1b-b-v2 25 llama-3.2-1b lora $V2
bench 1b-c-v2-fuse 25 llama-3.2-1b lora $F
bench 1b-g-v2-fuse-argmax-rr 25 llama-3.2-1b lora $F WHET_DECODE_ARGMAX=1 WHET_DECODE_GEMV=rr
bench 1b-h-all-pdl 30 llama-3.2-1b lora $ALL
bench 8b-nf4-all 60 llama-3.1-8b qlora $ALL
bench 1b-k-v3-all-pdl 30 llama-3.2-1b lora $ALL WHET_DECODE_ATTN=v3
bench 1b-e-v2-fuse-argmax 25 llama-3.2-1b lora $F WHET_DECODE_ARGMAX=1
bench 1b-f-v2-fuse-rr 25 llama-3.2-1b lora $F WHET_DECODE_GEMV=rr
bench 1b-d-v2-fuse-pdl 25 llama-3.2-1b lora $F $P
step profile
[ $SECONDS -lt 150 ] && env WHET_CUDA_PROFILE=1 $F WHET_DECODE_ARGMAX=1 WHET_DECODE_GEMV=rr timeout 20 $W bench --backend cuda --model llama-3.2-1b \
  --method lora --decode 16 --seq 128 --decode-modes device >$O/profile-device-new.txt 2>&1; echo "profile device rc=$?" >>$S
head -16 $O/profile-device-new.txt >>$S 2>/dev/null
if [ $SECONDS -lt 170 ]; then
  step "micro-benchmark"
  (cd engine/cuda && timeout 15 $B/cuda.test -test.run '^$' -test.bench 'BenchmarkAttentionDecode$' -test.benchtime 300x) >$O/bench-kernel.txt 2>&1
  echo "benchmark rc=$?" >>$S
  grep -E "^Benchmark|^(ok|FAIL)" $O/bench-kernel.txt >>$S
fi
bench 8b-nf4-v2-fuse 60 llama-3.1-8b qlora $F
bench 1b-i-rr-warps16 25 llama-3.2-1b lora $F WHET_DECODE_ARGMAX=1 WHET_DECODE_GEMV=rr WHET_DECODE_RR_WARPS=16
bench 1b-j-v3-fuse-argmax-rr 25 llama-3.2-1b lora $F WHET_DECODE_ARGMAX=1 WHET_DECODE_GEMV=rr WHET_DECODE_ATTN=v3
bench 8b-nf4-none 60 llama-3.1-8b qlora X=0
step table
python3 - $O/bench-*.jsonl <<'PY' | tee -a $S
import json, sys, os
name = open(os.path.join(os.path.dirname(sys.argv[1]), "gpu.txt")).readline()
card = 4.8e12 if "H200" in name else 3.35e12
rows = {}
for f in sorted(sys.argv[1:]):
    label = os.path.basename(f)[len("bench-"):-len(".jsonl")]
    for line in open(f):
        try:
            rows[label] = json.loads(line)
        except Exception:
            pass
# Rows whose greedy tokens must equal another's: the switches that keep the bits.
same = {"1b-c-v2-fuse": "1b-b-v2", "1b-d-v2-fuse-pdl": "1b-b-v2", "1b-e-v2-fuse-argmax": "1b-b-v2",
        "1b-f-v2-fuse-rr": "1b-b-v2", "1b-g-v2-fuse-argmax-rr": "1b-b-v2", "1b-h-all-pdl": "1b-b-v2",
        "1b-i-rr-warps16": "1b-b-v2", "1b-j-v3-fuse-argmax-rr": "1b-b-v2", "1b-k-v3-all-pdl": "1b-b-v2",
        "8b-nf4-all": "8b-nf4-v2-fuse"}
print(f'{"row":26s} {"tok/s":>8s} {"bound":>8s} {"of bound":>8s}  greedy_fnv        same as')
for label, r in rows.items():
    wb, tps = r.get("weight_bytes_per_token", 0), r.get("decode_tokens_per_sec", 0)
    bound = card / wb if wb else 0
    ref = same.get(label)
    eq = ""
    if ref and ref in rows:
        eq = f'{ref}: {"yes" if rows[ref].get("greedy_fnv") == r.get("greedy_fnv") else "NO"}'
    print(f'{label:26s} {tps:8.1f} {bound:8.1f} {100*tps/bound if bound else 0:7.1f}%  {r.get("greedy_fnv","")}  {eq} '
          f'{r.get("decode_mode")} {r.get("fallback","")}')
if "1b-a-none" in rows and "1b-b-v2" in rows:
    same = rows["1b-a-none"].get("greedy_fnv") == rows["1b-b-v2"].get("greedy_fnv")
    print(f'1b greedy with v2 attention: {"same as without" if same else "differs from without (its sums run in another order)"}')
if "8b-nf4-all" in rows and "8b-nf4-none" in rows:
    a, n = rows["8b-nf4-all"], rows["8b-nf4-none"]
    print(f'8b NF4 greedy with the switches: {"same as without" if a.get("greedy_fnv") == n.get("greedy_fnv") else "differs (v2 attention sums otherwise)"}')
PY
rm -rf $O/xdg $O/tmp
step end
