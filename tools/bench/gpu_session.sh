#!/usr/bin/env bash
# The GPU measurements recorded in docs/performance.md and docs/fit.md (issue 20's and issue 21's
# tables), run on the GPU machine from the repository root with the whet binary and the CUDA
# test binary built on the development machine; every row runs whet and its PyTorch reference
# (tools/bench/reference.py, generate_reference.py, attention_reference.py) side by side with
# the same arguments on the same card:
#
#   CGO_ENABLED=0 go build -o .dev-demo/whet . && CGO_ENABLED=0 go test -c -o .dev-demo/cuda.test ./engine/cuda
#   tools/bench/gpu_session.sh small OUTDIR     # tests (default and deterministic kernels), the 1B-scale rows, 1B decoding
#   tools/bench/gpu_session.sh attention OUTDIR # the attention rows: head dims 64 and 128, forward and backward
#   tools/bench/gpu_session.sh large OUTDIR     # the 8B rows: LoRA 2x2048 checkpointed, 1x4096 without, 8B decoding bf16 and NF4
#   tools/bench/gpu_session.sh long OUTDIR      # issue 21's long context: 80,000 tokens under 24 GB, 350,000 under 80 GB (~20 min)
#
# WHET_BIN_DIR names another folder holding whet and cuda.test (tools/gpu/dispatch.sh's
# .dev/gpu/common, once unpacked, serves). Each part prints its JSON lines and keeps them in
# OUTDIR/results-PART.jsonl.
set -u
part=${1:?part: small, attention, large or long} out=${2:?output folder}
mkdir -p "$out"
BIN=$(cd "${WHET_BIN_DIR:-.dev-demo}" && pwd) || exit 1
W=$BIN/whet
bench() { timeout 300 $W bench --backend cuda --json "$@" 2>>"$out/bench.err"; }
ref() { timeout 300 python3 tools/bench/reference.py "$@" 2>>"$out/ref.err" | tail -1; }
row() { bench "$@"; ref "$@"; } # whet, then PyTorch with the same arguments
decode() { # whet's graph decoding and transformers' generate, 256 tokens after 128
	bench --model "$1" --method "$2" --decode 256 --seq 128 --decode-modes graph
	[ "$2" = qlora ] || timeout 300 python3 tools/bench/generate_reference.py --model "$1" --prompt 128 --new 256 2>>"$out/ref.err" | tail -1
}
tests() { # name env...: the conformance suite, the training curves and the references on the GPU
	(cd engine/cuda && env "${@:2}" WHET_CUDA_REQUIRE=1 timeout 400 $BIN/cuda.test -test.run '^(TestCompileAllKernels|TestConformance|TestConformanceF32|TestAttentionMatchesCPU|TestOutOfMemory|TestGenerateMatchesCPU|TestTrainingMatchesCPU|TestFamilyTrainingMatchesCPU|TestReferenceOnGPU|TestReferenceDPOOnGPU)$' -test.v -test.count=1) >"$out/cuda-tests-$1.log" 2>&1
	echo "cuda.test ($1) rc=$?"
	grep -E "^(--- |ok|FAIL|PASS)" "$out/cuda-tests-$1.log"
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$out/gpu-$part.txt"
case $part in
small)
	# issue 20's done-when: the suite and the training curves with the fast and the deterministic kernels
	tests default X=0
	tests deterministic WHET_DETERMINISTIC=1
	WHET_CUDA_PROFILE=1 timeout 200 $W bench --backend cuda --model llama-3.2-1b --method lora --batch 4 --seq 2048 --steps 3 --warmup 1 >/dev/null 2>"$out/profile-1b-lora.txt"
	WHET_CUDA_PROFILE=1 timeout 200 $W bench --backend cuda --model llama-3.2-1b --method full --batch 4 --seq 2048 --steps 2 --warmup 1 >/dev/null 2>"$out/profile-1b-full.txt"
	{
		row --model llama-3.2-1b --method lora --batch 4 --seq 2048 --steps 5
		row --model llama-3.2-1b --method lora --batch 4 --seq 2048 --steps 5 --checkpointing
		row --model llama-3.2-1b --method full --batch 4 --seq 1024 --steps 5
		bench --model llama-3.2-1b --method full --batch 4 --seq 1024 --steps 5 --checkpointing
		F="--model llama-3.2-1b --method full --batch 4 --seq 2048 --steps 5"
		bench $F --master-weights fp32
		bench $F --master-weights bf16
		ref $F             # fp32 masters under bf16 autocast
		ref $F --pure-bf16 # PyTorch's fastest full fine-tuning
		row --model qwen2.5-0.5b --method lora --batch 8 --seq 2048 --steps 5
		row --model qwen3-1.7b --method lora --batch 4 --seq 2048 --steps 5
		row --model gemma-3-1b --method lora --batch 4 --seq 2048 --steps 5
		decode llama-3.2-1b lora
	} | tee "$out/results-small.jsonl"
	;;
attention)
	# whet's kernels (BenchmarkAttention*: the default defines) and PyTorch's SDPA at the same shapes
	(cd engine/cuda && WHET_CUDA_REQUIRE=1 timeout 120 $BIN/cuda.test -test.run '^$' -test.bench '^BenchmarkAttention(Forward|Backward)(D128)?$' -test.benchtime 20x -test.count=1) >"$out/attention-bench.log" 2>&1
	{
		grep -E "^BenchmarkAttention.*TFLOP" "$out/attention-bench.log" |
			awk '{printf "{\"impl\": \"whet\", \"benchmark\": \"%s\", \"tflops\": %s}\n", $1, $(NF-1)}'
		timeout 120 python3 tools/bench/attention_reference.py 2>>"$out/ref.err"
	} | tee "$out/results-attention.jsonl"
	;;
large)
	(cd engine/cuda && WHET_CUDA_REQUIRE=1 timeout 120 $BIN/cuda.test -test.run 'TestGenerateMatchesCPU' -test.v) >"$out/cuda-generate.log" 2>&1
	grep -E "^(--- |ok|FAIL|PASS)|bf16:" "$out/cuda-generate.log"
	{
		row --model llama-3.1-8b --method lora --batch 2 --seq 2048 --steps 3 --warmup 1 --checkpointing
		bench --model llama-3.1-8b --method qlora --batch 2 --seq 2048 --steps 3 --warmup 1 --checkpointing
		row --model llama-3.1-8b --method lora --batch 1 --seq 4096 --steps 3 --warmup 1 # no checkpointing (goal: >= 15,000 tok/s)
		decode llama-3.1-8b lora
		decode llama-3.1-8b qlora
	} | tee "$out/results-large.jsonl"
	;;
long)
	# Llama-3.1-8B QLoRA r32, batch 1, checkpoints offloaded: whet fit --max-seq, a short run's
	# prefix losses, the long run (tools/gpu/long-context/run.sh: its summary.txt and report).
	OUT=$out N=long-24gb CAP=24GB SEQ=80000 B=$BIN LIMIT=900 bash tools/gpu/long-context/run.sh
	OUT=$out N=long-80gb CAP=80GB SEQ=350000 STEPS=1 WARMUP=0 LONGMAX=100000 EXTRA=0 B=$BIN LIMIT=2400 bash tools/gpu/long-context/run.sh
	cat "$out/long-24gb/summary.txt" "$out/long-80gb/summary.txt" | tee "$out/results-long.txt"
	;;
*)
	echo "gpu_session.sh: unknown part $part (small, attention, large, long)" >&2
	exit 2
	;;
esac
tail -5 "$out/bench.err" "$out/ref.err" 2>/dev/null || true
