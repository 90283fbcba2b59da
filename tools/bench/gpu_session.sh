#!/usr/bin/env bash
# The GPU measurements recorded in docs/performance.md and docs/fit.md, run on
# the GPU machine from the repository root with the whet binary and the CUDA
# test binary built on the development machine:
#
#   CGO_ENABLED=0 go build -o .dev-demo/whet . && CGO_ENABLED=0 go test -c -o .dev-demo/cuda.test ./engine/cuda
#   tools/bench/gpu_session.sh small OUTDIR    # tests, 1B training (with a per-kernel profile) and decoding, PyTorch references
#   tools/bench/gpu_session.sh large OUTDIR    # 8B LoRA and QLoRA, PyTorch reference
# WHET_BIN_DIR names another folder holding whet and cuda.test.
set -u
part=$1 out=$2
BIN=${WHET_BIN_DIR:-.dev-demo}
W=$BIN/whet
bench() { timeout 300 $W bench --backend cuda --json "$@" 2>>"$out/bench.err"; }
ref() { timeout 300 python3 tools/bench/reference.py "$@" 2>>"$out/ref.err" | tail -1; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$out/gpu-$part.txt"
case $part in
small)
	(cd engine/cuda && timeout 300 ../../$BIN/cuda.test -test.run 'TestCompileAllKernels|TestConformance|TestAttentionMatchesCPU|TestOutOfMemory|TestGenerateMatchesCPU|TestTrainingMatchesCPU|TestReferenceDPOOnGPU' -test.v) >"$out/cuda-tests.log" 2>&1
	grep -E "^(--- |ok|FAIL|PASS)" "$out/cuda-tests.log"
	WHET_CUDA_PROFILE=1 timeout 200 $W bench --backend cuda --model llama-3.2-1b --method lora --batch 4 --seq 2048 --steps 3 --warmup 1 >/dev/null 2>"$out/profile-1b-lora.txt"
	{
		bench --model llama-3.2-1b --method lora --batch 4 --seq 2048 --steps 5
		bench --model llama-3.2-1b --method lora --batch 4 --seq 2048 --steps 5 --checkpointing
		bench --model llama-3.2-1b --method full --batch 4 --seq 1024 --steps 5
		bench --model llama-3.2-1b --method full --batch 4 --seq 1024 --steps 5 --checkpointing
		bench --model llama-3.2-1b --method full --batch 4 --seq 2048 --steps 5
		bench --model llama-3.2-1b --method full --batch 4 --seq 2048 --steps 5 --master-weights bf16
		ref --model llama-3.2-1b --method lora --batch 4 --seq 2048 --steps 5
		ref --model llama-3.2-1b --method lora --batch 4 --seq 2048 --steps 5 --checkpointing
		ref --model llama-3.2-1b --method full --batch 4 --seq 1024 --steps 5
		ref --model llama-3.2-1b --method full --batch 4 --seq 2048 --steps 5
		ref --model llama-3.2-1b --method full --batch 4 --seq 2048 --steps 5 --pure-bf16
		timeout 200 $W bench --backend cuda --model llama-3.2-1b --decode 256 --seq 128 2>>"$out/bench.err"
		timeout 200 python3 tools/bench/generate_reference.py --model llama-3.2-1b --prompt 128 --new 256 2>>"$out/ref.err" | tail -1
	} | tee "$out/results-small.jsonl"
	;;
large)
	(cd engine/cuda && timeout 120 ../../$BIN/cuda.test -test.run 'TestGenerateMatchesCPU' -test.v) >"$out/cuda-generate.log" 2>&1
	grep -E "^(--- |ok|FAIL|PASS)|bf16:" "$out/cuda-generate.log"
	{
		bench --model llama-3.1-8b --method lora --batch 2 --seq 2048 --steps 3 --warmup 1 --checkpointing
		bench --model llama-3.1-8b --method qlora --batch 2 --seq 2048 --steps 3 --warmup 1 --checkpointing
		bench --model llama-3.1-8b --method lora --batch 1 --seq 4096 --steps 3 --warmup 1 --checkpointing
		ref --model llama-3.1-8b --method lora --batch 2 --seq 2048 --steps 3 --warmup 1 --checkpointing
	} | tee "$out/results-large.jsonl"
	;;
esac
tail -5 "$out/bench.err" "$out/ref.err" 2>/dev/null
