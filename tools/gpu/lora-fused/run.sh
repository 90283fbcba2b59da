#!/usr/bin/env bash
# lora-fused: the stacked LoRA adapters (engine/lorafuse.go), opt-in with
# WHET_LORA_FUSED=1 (LoRAOptions.Fused). Runs from the repo root on the GPU
# machine; writes only under $OUT/lora-fused. Read summary.txt first (see
# tools/gpu/README.md).
set -u
O=$OUT/lora-fused; mkdir -p $O
B=$PWD/.dev/gpu/common; W=$B/whet
S=$O/summary.txt
step() { echo "== $(date -u +%T) $*" >>$S; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >$O/gpu.txt 2>&1
cat $B/COMMIT >>$O/gpu.txt 2>/dev/null
step start; cat $O/gpu.txt >>$S

# 1. Llama-3.2-1B LoRA r16 4x2048 (docs/performance.md's row), unstacked then
#    stacked on the same card. The JSON lines say lora_fused; the two losses
#    must agree to bf16 noise (same seed and weights).
step bench
echo "cmd: [WHET_LORA_FUSED=1] whet bench --backend cuda --json --peak-tflops 989 --model llama-3.2-1b --method lora --batch 4 --seq 2048 --steps 5" >>$S
timeout 30 $W bench --backend cuda --json --peak-tflops 989 --model llama-3.2-1b --method lora --batch 4 --seq 2048 --steps 5 >$O/bench.jsonl 2>$O/bench-plain.err
echo "bench unstacked rc=$?" >>$S
WHET_LORA_FUSED=1 timeout 30 $W bench --backend cuda --json --peak-tflops 989 --model llama-3.2-1b --method lora --batch 4 --seq 2048 --steps 5 >>$O/bench.jsonl 2>$O/bench-fused.err
echo "bench stacked rc=$?" >>$S
grep -o '"lora_fused":true\|"tokens_per_sec":[0-9.]*\|"peak_bytes":[0-9]*\|"loss":[0-9.]*' $O/bench.jsonl | paste -sd' ' >>$S
for f in bench-plain bench-fused; do echo "-- $f.err (last lines):" >>$S; tail -n 3 $O/$f.err >>$S; done

# 2. The stacked adapters against the CPU without dropout (so training
#    passes run them stacked): one backward's adapter gradients, stacked and
#    unstacked, against the CPU's, then 40 steps' loss curve within 1%.
step stacked-test
(cd engine/cuda && WHET_CUDA_REQUIRE=1 timeout 30 $B/cuda.test -test.run 'TestLoRAStackedMatchesCPU' -test.v -test.count=1) >$O/stacked.log 2>&1
echo "TestLoRAStackedMatchesCPU rc=$?" >>$S
grep -E "^(--- |ok|FAIL|PASS|panic)|^    --- |relative|loss cpu|leaves|stacked products" $O/stacked.log | head -40 >>$S

# 3. The LoRA training-curve tests with WHET_LORA_FUSED=1 (their adapters
#    use dropout 0.05, so training runs the groups unstacked over the stacked
#    storage: views of the stacks as weights, gradients and AdamW sets).
step curves-env
(cd engine/cuda && WHET_LORA_FUSED=1 WHET_CUDA_REQUIRE=1 timeout 55 $B/cuda.test -test.run '^(TestFamilyTrainingMatchesCPU|TestTrainingMatchesCPU)$/^(.*_lora|lora_llama|lora_qwen2|qlora_llama|lora_qwen3)$' -test.v -test.count=1) >$O/curves.log 2>&1
echo "training curves (WHET_LORA_FUSED=1) rc=$?" >>$S
grep -E "^(--- |ok|FAIL|PASS|panic)|^    --- |largest difference|leaves" $O/curves.log | head -40 >>$S
step end
