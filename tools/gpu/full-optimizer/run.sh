#!/usr/bin/env bash
# full-optimizer (issue 20, full fine-tuning): the fused AdamW pass (clipping's
# scale folded into the update, 16-byte accesses) and bf16 master weights
# with stochastic rounding, on the GPU: the AdamW conformance cases and the
# full-fine-tuning training-vs-CPU cases, then Llama-3.2-1B full 4x2048 with
# fp32 and bf16 masters against PyTorch (fp32 masters under autocast, and
# pure bf16), then a per-kernel profile of the full step. Runs from the repo
# root; writes only under $OUT/full-optimizer.
set -u
O=$OUT/full-optimizer; mkdir -p $O
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
FULL="--model llama-3.2-1b --method full --batch 4 --seq 2048"
step "bench fp32 masters: whet bench --backend cuda --json $FULL --steps 5"
timeout 45 $W bench --backend cuda --json $FULL --steps 5 --master-weights fp32 >$O/bench-fp32.jsonl 2>$O/bench-fp32.err; echo "rc=$?" >>$S
cat $O/bench-fp32.jsonl >>$S
if ! grep -q tokens_per_sec $O/bench-fp32.jsonl && grep -qi "memory" $O/bench-fp32.err; then
  step "fp32 masters did not fit: again with --checkpointing"
  timeout 45 $W bench --backend cuda --json $FULL --steps 5 --master-weights fp32 --checkpointing >$O/bench-fp32-ckpt.jsonl 2>>$O/bench-fp32.err; echo "rc=$?" >>$S
  cat $O/bench-fp32-ckpt.jsonl >>$S
fi
step "bench fp32 masters, fused AdamW: WHET_CUDA_FUSED_ADAMW=1 whet bench --backend cuda --json $FULL --steps 5"
WHET_CUDA_FUSED_ADAMW=1 timeout 40 $W bench --backend cuda --json $FULL --steps 5 --master-weights fp32 >$O/bench-fp32-fused.jsonl 2>$O/bench-fp32-fused.err; echo "rc=$?" >>$S
cat $O/bench-fp32-fused.jsonl >>$S
step "bench bf16 masters: whet bench --backend cuda --json $FULL --steps 5 --master-weights bf16"
timeout 40 $W bench --backend cuda --json $FULL --steps 5 --master-weights bf16 >$O/bench-bf16.jsonl 2>$O/bench-bf16.err; echo "rc=$?" >>$S
cat $O/bench-bf16.jsonl >>$S
step "reference: python3 tools/bench/reference.py $FULL --steps 5 (fp32 weights, bf16 autocast)"
timeout 45 python3 tools/bench/reference.py $FULL --steps 5 >$O/ref-autocast.jsonl 2>$O/ref-autocast.err; echo "rc=$?" >>$S
tail -1 $O/ref-autocast.jsonl >>$S
step "reference: python3 tools/bench/reference.py $FULL --steps 5 --pure-bf16"
timeout 40 python3 tools/bench/reference.py $FULL --steps 5 --pure-bf16 >$O/ref-purebf16.jsonl 2>$O/ref-purebf16.err; echo "rc=$?" >>$S
tail -1 $O/ref-purebf16.jsonl >>$S
step "cuda.test: AdamW conformance (bf16 and f32 suites) and TestTrainingMatchesCPU full cases"
(cd engine/cuda && WHET_CUDA_REQUIRE=1 timeout 25 $B/cuda.test -test.run '^(TestConformance|TestConformanceF32)$/AdamW' -test.v -test.count=1) >$O/cuda-conformance.log 2>&1; echo "conformance rc=$?" >>$S
grep -E "^ *(--- |ok|FAIL|PASS)|rounded|one bf16 step" $O/cuda-conformance.log >>$S
(cd engine/cuda && WHET_CUDA_REQUIRE=1 timeout 40 $B/cuda.test -test.run '^TestTrainingMatchesCPU$/^full_' -test.v -test.count=1) >$O/cuda-training.log 2>&1; echo "training rc=$?" >>$S
grep -E "^ *(--- |ok|FAIL|PASS)|worst|peak" $O/cuda-training.log >>$S
(cd engine/cuda && WHET_CUDA_FUSED_ADAMW=1 WHET_CUDA_REQUIRE=1 timeout 30 $B/cuda.test -test.run '^TestTrainingMatchesCPU$/^(full_llama|lora_llama)$' -test.v -test.count=1) >$O/cuda-training-fused.log 2>&1; echo "training (fused AdamW) rc=$?" >>$S
grep -E "^ *(--- |ok|FAIL|PASS)|worst|peak" $O/cuda-training-fused.log >>$S
step "profile: WHET_CUDA_PROFILE=1 whet bench --backend cuda $FULL --steps 2 --warmup 1 (fp32 masters)"
WHET_CUDA_PROFILE=1 timeout 30 $W bench --backend cuda $FULL --steps 2 --warmup 1 >$O/profile-1b-full.out 2>$O/profile-1b-full.txt; echo "rc=$?" >>$S
step end
