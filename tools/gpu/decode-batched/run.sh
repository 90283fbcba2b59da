#!/usr/bin/env bash
# decode-batched (issue 21, batched generation and the paged KV cache): the CUDA generation tests
# with the batched generator's paths (TestGenerateManyPagedMatchesCPU: GenerateMany over the
# paged cache, blocks viewed in place and gathered, f32 against the CPU, bf16 against the
# contiguous cache), then whet bench --decode-batch 8 for llama-3.2-1b (random bf16 weights at the
# real shape): 8 prompts of 128 down to 72 tokens, 128 new tokens each, one after another on the
# one-sequence generator (plain path; then the graph path, the default, which training samples
# took before they were batched) against all 8 in one GenerateMany call; then 3 prompts on the
# graph path. If batched is slower than graph one by one, WHET_SAMPLES_BATCH=0 (or a change of
# default in engine/sampler.go) keeps samples sequential. Runs from the repository root; writes only under $OUT/decode-batched.
set -u
O=$OUT/decode-batched; mkdir -p $O
B=$PWD/.dev/gpu/common
S=$O/summary.txt
export XDG_CACHE_HOME=$O/xdg TMPDIR=$O/tmp; mkdir -p $XDG_CACHE_HOME $TMPDIR
step() { echo "== $(date -u +%T) $*" | tee -a $S; }
step start
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $O/gpu.txt >>$S
git log -1 --format='main %H %s' >>$S 2>/dev/null || true
step cuda.test
(cd engine/cuda && WHET_CUDA_REQUIRE=1 timeout 40 $B/cuda.test -test.run 'TestGenerateManyPagedMatchesCPU|TestGenerateMatchesCPU' -test.v -test.count=1) >$O/cuda-tests.log 2>&1; echo "cuda.test rc=$?" >>$S
grep -E "^(--- |ok|FAIL|PASS)|agree on|differs|paged" $O/cuda-tests.log >>$S
step bench-plain
# One line for the plain decode of one prompt, then the batch line: sequential_tokens_per_sec,
# batched_tokens_per_sec, speedup, greedy_same (and where they first differ).
timeout 30 $B/whet bench --backend cuda --json --peak-tflops 989 --model llama-3.2-1b --method lora --decode 128 --seq 128 \
  --decode-modes plain --decode-batch 8 >$O/bench-plain.jsonl 2>$O/bench-plain.err; echo "bench-plain rc=$?" >>$S
cat $O/bench-plain.jsonl >>$S
step bench-graph
timeout 25 $B/whet bench --backend cuda --json --peak-tflops 989 --model llama-3.2-1b --method lora --decode 128 --seq 128 \
  --decode-modes graph --decode-batch 8 >$O/bench-graph.jsonl 2>$O/bench-graph.err; echo "bench-graph rc=$?" >>$S
cat $O/bench-graph.jsonl >>$S
step bench-graph-3
# Three prompts: what training samples have by default (the first three eval prompts).
timeout 20 $B/whet bench --backend cuda --json --peak-tflops 989 --model llama-3.2-1b --method lora --decode 96 --seq 128 \
  --decode-modes graph --decode-batch 3 >$O/bench-graph-3.jsonl 2>$O/bench-graph-3.err; echo "bench-graph-3 rc=$?" >>$S
cat $O/bench-graph-3.jsonl >>$S
rm -rf $O/xdg $O/tmp
step end
