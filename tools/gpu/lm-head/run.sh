#!/usr/bin/env bash
# lm-head: the fused soft-cap cross-entropy (kernels/crossentropy.cu) and the
# chunked LM head (engine.LogitsChunk, train.logits_chunk) on the GPU:
# conformance and training tests that run the kernel, then whet bench and
# the PyTorch reference for Qwen2.5-0.5B LoRA 8x2048 and Llama-3.2-1B LoRA
# 4x2048 (random weights, same card, same run). Runs from the repo root.
set -u
O=$OUT/lm-head; mkdir -p $O
B=$PWD/.dev/gpu/common
W=$B/whet
S=$O/summary.txt
step() { echo "== $(date -u +%FT%TZ) $*" | tee -a $S; }
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import torch,transformers;print('torch',torch.__version__,'cuda',torch.version.cuda,'transformers',transformers.__version__)" 2>&1
  echo "common build: $(cat $B/COMMIT 2>/dev/null)"
} >$O/gpu.txt
step start; cat $O/gpu.txt >>$S

step "conformance: cross-entropy (plain, into bf16, soft-capped) and soft-cap"
(cd engine/cuda && WHET_CUDA_REQUIRE=1 timeout 45 $B/cuda.test -test.run 'TestConformance(F32)?$/(SoftmaxCrossEntropy|SoftCap)' -test.v -test.count=1) >$O/conformance.log 2>&1
echo "conformance rc=$?" >>$S; grep -E "^\s*--- (PASS|FAIL|SKIP)|^(ok|FAIL|PASS)" $O/conformance.log >>$S

run_bench() { # name batch
  local cmd="$W bench --backend cuda --json --model $1 --method lora --batch $2 --seq 2048 --steps 5 --warmup 2"
  step "$cmd"; echo "$cmd" >>$O/commands.txt
  timeout 35 $cmd >>$O/whet.jsonl 2>>$O/whet.err; echo "whet bench $1 rc=$?" >>$S
}
run_ref() { # name batch
  local cmd="python3 tools/bench/reference.py --model $1 --method lora --batch $2 --seq 2048 --steps 5 --warmup 2"
  step "$cmd"; echo "$cmd" >>$O/commands.txt
  timeout 40 $cmd >$O/ref-$1.out 2>$O/ref-$1.err; echo "reference $1 rc=$?" >>$S
  tail -1 $O/ref-$1.out >>$O/reference.jsonl
}
run_bench qwen2.5-0.5b 8
run_bench llama-3.2-1b 4
run_ref qwen2.5-0.5b 8
run_ref llama-3.2-1b 4
cat $O/whet.jsonl $O/reference.jsonl >>$S

step "training tests on the GPU against the CPU and transformers (Gemma 2 runs the soft-capped loss)"
(cd engine/cuda && WHET_CUDA_REQUIRE=1 timeout 70 $B/cuda.test -test.run 'TestReferenceOnGPU|TestFamilyTrainingMatchesCPU|TestTrainingMatchesCPU|TestReferenceDPOOnGPU|TestGenerateMatchesCPU' -test.v -test.count=1) >$O/training.log 2>&1
echo "training tests rc=$?" >>$S; grep -E "^\s*--- (PASS|FAIL|SKIP)|^(ok|FAIL|PASS)" $O/training.log >>$S
# Last and optional (killed by LIM if time is short): the same Qwen run
# with the LM head in chunks of 128 rows instead of the default 441.
cmd="$W bench --backend cuda --json --model qwen2.5-0.5b --method lora --batch 8 --seq 2048 --steps 5 --warmup 2 --logits-chunk 128"
step "$cmd"; echo "$cmd" >>$O/commands.txt
timeout 30 $cmd >>$O/whet-chunk128.jsonl 2>>$O/whet.err; echo "whet bench chunk 128 rc=$?" >>$S
cat $O/whet-chunk128.jsonl >>$S
step end
