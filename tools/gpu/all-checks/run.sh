#!/usr/bin/env bash
# all-checks: every GPU test of engine/cuda once, then the measurements the other batches make in part.
set -u
O=$OUT/all-checks; mkdir -p $O
B=$PWD/.dev/gpu/common; W=$B/whet
S=$O/summary.txt
step() { echo "== $(date -u +%T) $*" >>$S; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >$O/gpu.txt; cat $O/gpu.txt >>$S
cat $B/COMMIT >>$S
NAME=$(head -1 $O/gpu.txt)
# CPU-only work in the background.
for v in gemma3-vision-reference mllama-reference; do
  (mkdir -p $OUT/$v; timeout 110 bash .dev/gpu/$v/run.sh >$OUT/$v/run.log 2>&1; echo "$v rc=$?" >>$O/bg.txt; tar -C $OUT -czf $OUT/$v.tgz $v && rm -rf $OUT/$v) &
done
(timeout 150 python3 tools/reference/bf16_error.py . >$O/bf16-error.jsonl 2>$O/bf16-error.err; echo "bf16_error rc=$?" >>$O/bg.txt) &
(cd engine/cuda && WHET_CUDA_REQUIRE=1 timeout 240 $B/cuda.test -test.run 'TestKernelsCompileForEveryArch' -test.v -test.count=1 >$O/cuda-arch.log 2>&1; echo "arch rc=$?" >>$O/bg.txt) &
step cuda.test-all
rm -rf /tmp/phi3dump
(cd engine/cuda && WHET_CUDA_REQUIRE=1 WHET_FAMILY_DUMP=/tmp/phi3dump timeout 170 $B/cuda.test -test.skip 'TestKernelsCompileForEveryArch' -test.v -test.count=1) >$O/cuda-tests.log 2>&1; echo "cuda.test rc=$?" >>$S
grep -E "^(--- |ok|FAIL|PASS)" $O/cuda-tests.log >>$S
(timeout 60 python3 .dev/gpu/phi3-bf16/hf_bf16.py /tmp/phi3dump $O/hf_summary.json >$O/hf.log 2>&1; echo "hf rc=$?" >>$O/bg.txt; tar -C /tmp -czf $O/phi3dump.tgz phi3dump) &
step decode
timeout 30 $W bench --backend cuda --json --peak-tflops 989 --model llama-3.2-1b --method lora --decode 256 --seq 128 --decode-modes graph,graph+cublas,device,plain+cublas >$O/decode-1b.jsonl 2>$O/decode-1b.err; echo "decode-1b rc=$?" >>$S
timeout 25 python3 tools/bench/generate_reference.py --model llama-3.2-1b --prompt 128 --new 128 2>$O/ref-1b.err | tail -1 >$O/ref-1b.jsonl; echo "ref-1b rc=$?" >>$S
timeout 70 $W bench --backend cuda --json --peak-tflops 989 --model llama-3.1-8b --method lora,qlora --decode 256 --seq 128 --decode-modes graph,plain+cublas >$O/decode-8b.jsonl 2>$O/decode-8b.err; echo "decode-8b rc=$?" >>$S
step gemma
timeout 70 $W bench --backend cuda --json --model gemma-3-1b,gemma-2-2b --method lora --batch 4 --seq 2048 --steps 5 >$O/gemma.jsonl 2>$O/gemma.err; echo "gemma rc=$?" >>$S
case "$NAME" in *H200*) timeout 45 python3 tools/bench/reference.py --model gemma-3-1b --method lora --batch 4 --seq 2048 --steps 5 | tail -1 >>$O/gemma.jsonl 2>>$O/gemma.err ;; esac
step lmhead
timeout 35 $W bench --backend cuda --json --model qwen2.5-0.5b --method lora --batch 8 --seq 2048 --steps 5 --warmup 2 >$O/qwen05.jsonl 2>$O/qwen05.err; echo "qwen05 rc=$?" >>$S
timeout 40 python3 tools/bench/reference.py --model qwen2.5-0.5b --method lora --batch 8 --seq 2048 --steps 5 --warmup 2 2>>$O/qwen05.err | tail -1 >>$O/qwen05.jsonl; echo "qwen05 ref rc=$?" >>$S
step optim
timeout 45 $W bench --backend cuda --json --model llama-3.2-1b --method full --batch 4 --seq 2048 --steps 5 --master-weights fp32 >$O/full.jsonl 2>$O/full.err; echo "full fp32 rc=$?" >>$S
timeout 40 $W bench --backend cuda --json --model llama-3.2-1b --method full --batch 4 --seq 2048 --steps 5 --master-weights bf16 >>$O/full.jsonl 2>>$O/full.err; echo "full bf16 rc=$?" >>$S
timeout 45 python3 tools/bench/reference.py --model llama-3.2-1b --method full --batch 4 --seq 2048 --steps 5 --pure-bf16 2>>$O/full.err | tail -1 >>$O/full.jsonl; echo "full ref pure-bf16 rc=$?" >>$S
step wait-bg
wait; cat $O/bg.txt >>$S; grep -E "^(--- |ok|FAIL|PASS)" $O/cuda-arch.log >>$S
step end
