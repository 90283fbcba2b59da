#!/usr/bin/env bash
# decode-early (issue 21: Llama-3.2-1B bf16 decoding at >= 60 % of the bandwidth bound; 917 tok/s =
# 47 % on the H200 at today's defaults: v2 attention, fused one-row ops, argmax in the head).
# H100 730 and H200 864 tok/s with v2 alone fit t = 0.66 ms + 2.36 GB / bandwidth per token: the
# bytes stream at about the card's bandwidth, and ~0.6 ms a token is time no kernel overlaps (kernel
# boundaries, latency-bound tails, attention). decode-next: PDL slowed the default kernels (888 ->
# 860) but sped the round-parallel ones, which load their weights before the wait, by 6 % (831 ->
# 885). So, opt-in, never run on a GPU before this batch:
#   WHET_NVRTC_DEFINES=GEMV_EARLY=1  the fused decode GEMVs (kernels/gemv.cu gemv_bf16_norm_multi,
#                         gemv_bf16_add, gemv_bf16_swiglu_add) and the head's gemv_bf16_argmax load
#                         each lane's first round of its row before PDL_WAIT() and the norm/SwiGLU
#                         prologue (gemv_dot_early: the same sums in the same order)
# 1. the fused kernels' tests with it and PDL on (bits against the unfused ops, tokens), a
#    WHET_CUDA_SYNC=1 rerun of what fails;
# 2. whet bench --decode 256 --seq 128 graph mode, Llama-3.2-1B bf16 at the defaults: PDL +
#    GEMV_EARLY (no prefetch), with rr, none, PDL alone, none and PDL + GEMV_EARLY again (run-to-run
#    spread), GEMV_EARLY alone; then 8B NF4 with PDL + GEMV_EARLY as time allows.
# summary.txt's table: tok/s, bound, % of the bound per row.
# PHASE (go.sh sets it; unset: both in turn): tests = step 1 and a tiny whet bench --decode per
# define set (PDL + early, PDL alone, early alone, none) that compiles the kernels the rows use
# into whet's kernel cache (untimed: may share the machine with other batches' tests);
# bench = step 2 and the table, alone. Without the tests phase each new define set's first row
# compiles every kernel file it uses (~30 s, outside the timed decode).
# Runs from the repository root; writes only under $OUT/decode-early.
set -u
O=$OUT/decode-early; mkdir -p $O
B=$PWD/.dev/gpu/common
S=$O/summary.txt
PHASE=${PHASE:-all}; LIMIT=${LIMIT:-200}
step() { echo "== $(date -u +%T) $*" | tee -a $S; }
step "start (PHASE=$PHASE)"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.memory --format=csv,noheader | tee $O/gpu.txt >>$S
cat $B/COMMIT >>$S 2>/dev/null
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
EARLY="WHET_NVRTC_DEFINES=GEMV_EARLY=1"
P="WHET_CUDA_PDL=1 WHET_NVRTC_DEFINES=GEMV_PREFETCH=0"
PE="WHET_CUDA_PDL=1 WHET_NVRTC_DEFINES=GEMV_EARLY=1,GEMV_PREFETCH=0"
W=$B/whet
if [ $PHASE != bench ]; then
tests early ${TESTS_T:-$([ $PHASE = tests ] && echo 120 || echo 60)} 'TestDecodeFusedKernels|TestMatVecArgmax|TestDecodeSwitchesKeepTokens|TestDecodeFusedGenerate|TestDecodeHeadArgmaxGenerate|TestPDLKernelsWaitFirst|TestGenerateGraphEqualsPlain' $PE
step "warm whet's kernel cache for each define set (tiny decodes, 1B bf16 and NF4)"
for e in "$PE" "$P" "$EARLY" "X=0"; do
  for m in lora qlora; do
    [ $SECONDS -lt $((LIMIT - 40)) ] || { echo "warm [$e] $m skipped: ${SECONDS}s of $LIMIT used" >>$S; continue; }
    env $e timeout 60 $W bench --backend cuda --json --model llama-3.2-1b --method $m --decode 8 --seq 16 --decode-modes graph >/dev/null 2>>$O/warm.err
    echo "warm [$e] $m rc=$?" >>$S
  done
done
touch $O/tests.done
fi
[ $PHASE = tests ] && { step end; exit 0; }
bench() { # label, seconds, model, method, env...
  local label=$1 secs=$2 model=$3 method=$4; shift 4
  if [ $SECONDS -gt $((LIMIT - 4 - secs)) ]; then echo "bench $label skipped: ${SECONDS}s of $LIMIT used" >>$S; return; fi
  step "bench $label"
  env "$@" timeout $secs $W bench --backend cuda --json --model $model --method $method --decode 256 --seq 128 \
    --decode-modes graph >$O/bench-$label.jsonl 2>$O/bench-$label.err
  echo "bench $label rc=$?" >>$S
  cat $O/bench-$label.jsonl >>$S
  tail -3 $O/bench-$label.err >>$S
}
# The tests phase compiled each define set's kernels into whet's cache (the tests' own cache is
# private to their process); without it a set's first row compiles them (~30 s, untimed, within
# the row's timeout). rr's kernels are compiled by its row.
bench 1b-d-pdl-early 25 llama-3.2-1b lora $PE
bench 1b-e-pdl-early-rr 25 llama-3.2-1b lora $PE WHET_DECODE_GEMV=rr
bench 1b-a-default 50 llama-3.2-1b lora X=0
bench 1b-c-pdl 45 llama-3.2-1b lora $P
bench 1b-f-default-again 15 llama-3.2-1b lora X=0
bench 1b-g-pdl-early-again 15 llama-3.2-1b lora $PE
bench 1b-b-early 45 llama-3.2-1b lora $EARLY
bench 8b-nf4-pdl-early 60 llama-3.1-8b qlora $PE
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
# greedy_fnv is logged only: whet bench's prefill GEMMs are tuned by timing in each process
# (WHET_GEMM_TUNE), so tokens may differ between processes; the tests compare in one process.
same = {}
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
PY
step end
