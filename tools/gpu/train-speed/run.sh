#!/usr/bin/env bash
# train-speed (issue 20, the training rows other than attention): the
# two-stage RMSNorm weight gradient (WHET_RMSNORM_BWD_V2=1) and the one
# fused into the input gradient's pass (WHET_RMSNORM_BWD_V2=2), and the
# gradient norm without atomics (WHET_SUMSQ_V2=1, with =2 throughout),
# all opt-in and never run on a GPU, and the new defaults: fused AdamW for fp32 masters
# (clipping folded in, no scale_multi; off: WHET_CUDA_FUSED_ADAMW=0),
# stacked LoRA adapters (off: WHET_LORA_FUSED=0) and tuned GEMMs (off:
# WHET_GEMM_TUNE=0). Tests first, then whet bench rows with and without,
# then per-kernel profiles of the full step. Runs from the repository root
# on the GPU machine; writes only under $OUT/train-speed. Read summary.txt
# first.
# Since 0f8086b (18:12 UTC) WHET_RMSNORM_BWD_V2=2 and WHET_SUMSQ_V2=1 are the
# defaults: the "v22" rows are the default rows, and the "off" rows set both
# to 0 (with the other switches they name). PHASE (go.sh sets it; unset: both
# in turn): tests = step 1 (untimed), bench = steps 2 and 3 alone. The tests
# of step 1 are all in tools/gpu/rows's suite at the defaults, so a call that
# runs that suite runs this batch as train-speed:PHASE=bench. TS_DEFAULT_ROWS=0
# leaves out the default rows that tools/gpu/rows times in the same call
# (1B full fp32 and bf16 masters, 1B LoRA, Qwen2.5-0.5B LoRA).
set -u
. $PWD/.dev/gpu/common/lib.sh || exit 1
PHASE=${PHASE:-all}
batch_start train-speed
echo "PHASE=$PHASE" >>$S
W=$B/whet
T0=$(date +%s); LIMIT=${LIMIT:-200}
left() { echo $(( LIMIT - ($(date +%s) - T0) )); }
# run_bench NAME ENV... -- ARGS: one whet bench --json line into NAME.jsonl, its key fields into the summary.
run_bench() {
	local name=$1; shift
	local envs=()
	while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
	local to=$BT
	if [ "${TS_DEFAULT_ROWS:-1}" = 0 ] && [[ " $DEFAULT_ROWS " == *" $name "* ]]; then echo "$name: left out (TS_DEFAULT_ROWS=0: tools/gpu/rows times it)" >>$S; return; fi
	if [ $(left) -lt $((to + 5)) ]; then echo "$name: skipped, $(left) s left" >>$S; return; fi
	env "${envs[@]}" timeout $to $W bench --backend cuda --json "$@" >$O/$name.jsonl 2>$O/$name.err
	local rc=$?
	echo "$name [${envs[*]}] rc=$rc: $(grep -o '"master_weights":"[a-z0-9]*"\|"lora_fused":true\|"gemm_tuned":true\|"logits_chunk":[0-9]*\|"tokens_per_sec":[0-9.]*\|"peak_bytes":[0-9]*\|"loss":[0-9.]*' $O/$name.jsonl | paste -sd' ')" >>$S
	[ $rc -ne 0 ] && tail -n 3 $O/$name.err >>$S
	BT=25
}

# 1. Tests. TestRMSNormBackwardV2 (=1 and =2 against the one-stage kernel
#    on another backend: 1B's shape in bf16/f32, partial tiles, the scalar
#    path, QK-norm's 65536x128; run-to-run bit equality; times logged),
#    then the RMSNorm cases (8192x2048 among them), QK-norm and AdamW of
#    both conformance suites with =2 (=1 is checked against the one-stage
#    kernel by TestRMSNormBackwardV2).
DEFAULT_ROWS="full-fp32-v22 full-bf16-v22 lora1b-v22 qwen-v22"
if [ $PHASE = bench ]; then
	echo "tests: not run here (PHASE=bench; tools/gpu/rows's suite runs them at the defaults)" >>$S
else
step "tests: TestRMSNormBackwardV2, TestSumSquaresV2, conformance RMSNorm/QKNorm/AdamW/SumSquares (WHET_RMSNORM_BWD_V2=2 WHET_SUMSQ_V2=1)"
(cd engine/cuda && WHET_RMSNORM_BWD_V2=2 WHET_SUMSQ_V2=1 WHET_CUDA_REQUIRE=1 timeout 50 $B/cuda.test -test.run '^(TestRMSNormBackwardV2|TestSumSquaresV2|TestConformance|TestConformanceF32)$/^(RMSNorm|RMSNormBackward|QKNorm|SumSquares|AdamW|AdamWAll|AdamWBF16Master|AdamWAllBF16Master|mode.*)$' -test.v -test.count=1) >$O/conformance.log 2>&1
echo "TestRMSNormBackwardV2 + TestSumSquaresV2 + conformance rc=$?" >>$S
grep -E "^(--- |ok|FAIL|panic)|^    --- FAIL|^        --- FAIL|^            --- FAIL|µs|differs|sum of squares" $O/conformance.log | head -30 >>$S
#    Training against the CPU at the new defaults (fused AdamW, stacked
#    adapters, tuned GEMMs) with the fused weight gradient on (=2), and
#    TestGEMMTuneMatchesReference.
step "tests: TestTrainingMatchesCPU, TestFamilyTrainingMatchesCPU, TestLoRAStackedMatchesCPU, TestGEMMTuneMatchesReference (defaults + WHET_RMSNORM_BWD_V2=2 WHET_SUMSQ_V2=1)"
(cd engine/cuda && WHET_RMSNORM_BWD_V2=2 WHET_SUMSQ_V2=1 WHET_CUDA_REQUIRE=1 timeout 70 $B/cuda.test -test.run '^(TestTrainingMatchesCPU|TestFamilyTrainingMatchesCPU|TestLoRAStackedMatchesCPU|TestGEMMTuneMatchesReference)$' -test.v -test.count=1) >$O/training.log 2>&1
rc=$?
echo "training tests rc=$rc" >>$S
grep -E "^(--- |ok|FAIL|panic)|^    --- FAIL" $O/training.log | head -30 >>$S
if [ $rc -ne 0 ] && [ $(left) -gt 110 ]; then
	step "the training tests again with WHET_RMSNORM_BWD_V2 and WHET_SUMSQ_V2 off (defaults only)"
	(cd engine/cuda && WHET_CUDA_REQUIRE=1 timeout 40 $B/cuda.test -test.run '^(TestTrainingMatchesCPU|TestFamilyTrainingMatchesCPU|TestLoRAStackedMatchesCPU)$' -test.v -test.count=1) >$O/training-v1.log 2>&1
	echo "training tests, one-stage rc=$?" >>$S
	grep -E "^(--- |ok|FAIL|panic)|^    --- FAIL" $O/training-v1.log | head -20 >>$S
fi

fi
[ $PHASE = tests ] && { step end; exit 0; }

# 2. whet bench rows (5 timed steps after 2 warm-up). v2: WHET_RMSNORM_BWD_V2=1, v22: =2 with WHET_SUMSQ_V2=1.
step "bench (tok/s, peak, loss; same seed and data in each row: the losses must agree to bf16 noise)"
FULL="--model llama-3.2-1b --method full --batch 4 --seq 2048 --steps 5 --warmup 2"
LORA1B="--model llama-3.2-1b --method lora --batch 4 --seq 2048 --steps 5 --warmup 2"
QWEN="--model qwen2.5-0.5b --method lora --batch 8 --seq 2048 --steps 5 --warmup 2"
BT=60 # the first run may compile kernels the tests did not
run_bench full-fp32-v22 WHET_RMSNORM_BWD_V2=2 WHET_SUMSQ_V2=1 -- $FULL --master-weights fp32
run_bench full-fp32-v2 WHET_RMSNORM_BWD_V2=1 -- $FULL --master-weights fp32
run_bench full-fp32-off WHET_RMSNORM_BWD_V2=0 WHET_SUMSQ_V2=0 -- $FULL --master-weights fp32
run_bench full-bf16-v22 WHET_RMSNORM_BWD_V2=2 WHET_SUMSQ_V2=1 -- $FULL --master-weights bf16
run_bench lora1b-v22 WHET_RMSNORM_BWD_V2=2 WHET_SUMSQ_V2=1 -- $LORA1B
run_bench lora1b-off WHET_RMSNORM_BWD_V2=0 WHET_SUMSQ_V2=0 WHET_LORA_FUSED=0 WHET_GEMM_TUNE=0 -- $LORA1B
run_bench qwen-v22 WHET_RMSNORM_BWD_V2=2 WHET_SUMSQ_V2=1 -- $QWEN
run_bench qwen-off WHET_RMSNORM_BWD_V2=0 WHET_SUMSQ_V2=0 WHET_LORA_FUSED=0 WHET_GEMM_TUNE=0 -- $QWEN
#    The LM head's weight gradient (f32, 128256x2048, 1 GB) is accumulated
#    once per logits chunk (523 rows at 4x2048: 15 times a step, 31 ms of
#    the profile); a 2048-row chunk does it 4 times.
run_bench full-fp32-v22-chunk2048 WHET_RMSNORM_BWD_V2=2 WHET_SUMSQ_V2=1 -- $FULL --master-weights fp32 --logits-chunk 2048

# 3. Per-kernel profiles of 2 steps of the full step (fp32 masters) with
#    the fused weight gradient (=2) and WHET_SUMSQ_V2=1, then the
#    two-stage one (=1) and sum_squares_multi; the one-stage kernel's were
#    223 us a call (full-optimizer, 2026-12-07).
step "profiles (WHET_CUDA_PROFILE=1, 2 steps after 1 warm-up, 1B full fp32 masters)"
for v in 2 1; do
	if [ $(left) -lt 25 ]; then echo "profile V2=$v: skipped, $(left) s left" >>$S; continue; fi
	sq=0; [ $v = 2 ] && sq=1
	WHET_RMSNORM_BWD_V2=$v WHET_SUMSQ_V2=$sq WHET_CUDA_PROFILE=1 timeout 22 $W bench --backend cuda --model llama-3.2-1b --method full --batch 4 --seq 2048 --steps 2 --warmup 1 >$O/profile-v2$v.out 2>$O/profile-v2$v.txt
	echo "-- profile WHET_RMSNORM_BWD_V2=$v WHET_SUMSQ_V2=$sq rc=$?: optimizer, norms, total" >>$S
	grep -E "rmsnorm|adamw|scale_multi|sum_squares|fill_multi|^total" $O/profile-v2$v.txt | head -14 >>$S
done
step end
