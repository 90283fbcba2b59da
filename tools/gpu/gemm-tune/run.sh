#!/usr/bin/env bash
# gemm-tune: cuBLASLt algorithms chosen by timing (engine/cuda/gemmtune.go),
# opt-in with WHET_GEMM_TUNE=1 (cuda.Options.TuneGEMM), aimed at the thin
# LoRA products of the 1B row (issue 20). Runs from the repo root on the GPU
# machine; writes only under $OUT/gemm-tune. Read summary.txt first (see
# tools/gpu/README.md).
set -u
O=$OUT/gemm-tune; mkdir -p $O
B=$PWD/.dev/gpu/common; W=$B/whet
S=$O/summary.txt
step() { echo "== $(date -u +%T) $*" >>$S; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >$O/gpu.txt 2>&1
cat $B/COMMIT >>$O/gpu.txt 2>/dev/null
step start; cat $O/gpu.txt >>$S

# 1. TestGEMMTuneMatchesReference (LoRA's thin products, scaled down, on a
#    tuning backend against float64 sums; beta-1 products run twice from a
#    filled output; logs the tuning table), then every op's conformance with
#    tuning on: each product shape of the suite is tuned on its first call,
#    so a candidate computing a wrong product (or one the timing runs
#    disturbed) fails its case here.
step conformance
(cd engine/cuda && WHET_GEMM_TUNE=1 WHET_CUDA_REQUIRE=1 timeout 20 $B/cuda.test -test.run '^(TestGEMMTuneMatchesReference|TestConformance|TestConformanceF32)$' -test.v -test.count=1) >$O/conformance.log 2>&1
echo "TestGEMMTuneMatchesReference, TestConformance(F32) (WHET_GEMM_TUNE=1) rc=$?" >>$S
grep -E "^(--- |ok|FAIL|panic)|^    --- (FAIL|PASS: TestGEMMTune)|worst error" $O/conformance.log | head -24 >>$S
sed -n '/gemm tuning/,/^---/p' $O/conformance.log | head -12 >>$S

# 2. LoRA against the CPU with tuning on: stacked adapters' gradients and
#    40-step curve, then the LoRA/QLoRA training curves (plain and stacked
#    storage).
step lora-tests
(cd engine/cuda && WHET_GEMM_TUNE=1 WHET_CUDA_REQUIRE=1 timeout 25 $B/cuda.test -test.run 'TestLoRAStackedMatchesCPU' -test.v -test.count=1) >$O/stacked.log 2>&1
echo "TestLoRAStackedMatchesCPU (WHET_GEMM_TUNE=1) rc=$?" >>$S
grep -E "^(--- |ok|FAIL|PASS|panic)|^    --- |relative|loss cpu" $O/stacked.log | head -30 >>$S
(cd engine/cuda && WHET_GEMM_TUNE=1 WHET_CUDA_REQUIRE=1 timeout 40 $B/cuda.test -test.run '^(TestFamilyTrainingMatchesCPU|TestTrainingMatchesCPU)$/^(.*_lora|lora_llama|lora_qwen2|qlora_llama|lora_qwen3)$' -test.v -test.count=1) >$O/curves.log 2>&1
echo "training curves (WHET_GEMM_TUNE=1) rc=$?" >>$S
grep -E "^(--- |ok|FAIL|PASS|panic)|^    --- |largest difference" $O/curves.log | head -30 >>$S

# 3. Llama-3.2-1B LoRA r16 4x2048 (docs/performance.md's row): plain, tuned,
#    and tuned with the stacked adapters (WHET_LORA_FUSED=1, also opt-in),
#    same card, one JSON line each (gemm_tuned, lora_fused say which). The
#    losses must agree to bf16 noise (same seed and weights).
step bench
BENCH="bench --backend cuda --json --model llama-3.2-1b --method lora --batch 4 --seq 2048"
echo "cmd: [WHET_LORA_FUSED=1] [WHET_GEMM_TUNE=1] whet $BENCH --steps 5 --warmup 2" >>$S
timeout 25 $W $BENCH --steps 5 --warmup 2 >$O/bench.jsonl 2>$O/bench-plain.err
echo "bench plain rc=$?" >>$S
WHET_GEMM_TUNE=1 timeout 25 $W $BENCH --steps 5 --warmup 2 >>$O/bench.jsonl 2>$O/bench-tuned.err
echo "bench tuned rc=$?" >>$S
WHET_LORA_FUSED=1 WHET_GEMM_TUNE=1 timeout 25 $W $BENCH --steps 5 --warmup 2 >>$O/bench.jsonl 2>$O/bench-fused-tuned.err
echo "bench stacked+tuned rc=$?" >>$S
while read -r l; do echo "$l" | grep -o '"lora_fused":true\|"gemm_tuned":true\|"tokens_per_sec":[0-9.]*\|"step_s":[0-9.]*\|"peak_bytes":[0-9]*\|"loss":[0-9.]*' | paste -sd' '; done <$O/bench.jsonl >>$S
for f in bench-plain bench-tuned bench-fused-tuned; do echo "-- $f.err (last lines):" >>$S; tail -n 3 $O/$f.err >>$S; done

# 4. Per-kernel profiles of 2 timed steps each (WHET_CUDA_PROFILE=1; the
#    table goes to standard error; with tuning on it ends with the tuned
#    products: the heuristic's first choice against the chosen one, in µs).
step profiles
WHET_CUDA_PROFILE=1 timeout 18 $W $BENCH --steps 2 --warmup 1 >$O/profile.jsonl 2>$O/profile-plain.txt
echo "profile plain rc=$?" >>$S
WHET_CUDA_PROFILE=1 WHET_GEMM_TUNE=1 timeout 18 $W $BENCH --steps 2 --warmup 1 >>$O/profile.jsonl 2>$O/profile-tuned.txt
echo "profile tuned rc=$?" >>$S
for f in profile-plain profile-tuned; do
	echo "-- $f.txt: products and total" >>$S
	sed '/^gemm tuning/,$d' $O/$f.txt | grep -E "^gemm [0-9]+x[0-9]+x16 |^gemm 16x|^gemm [0-9]+x16x|^total device time" | head -24 >>$S
done
echo "-- tuned products, largest saving first:" >>$S
sed -n '/^gemm tuning/,$p' $O/profile-tuned.txt | grep -E '^(gemm|product)' | head -30 >>$S
step end
