#!/usr/bin/env bash
# decoding (issue 21, decoding): GPU tests of the graph/device decoding path and its kernels,
# then whet bench --decode for llama-3.2-1b bf16, llama-3.1-8b bf16 and llama-3.1-8b NF4
# (qlora) with the fast path on and off, and transformers' generate() for llama-3.2-1b.
# Runs from the repository root; writes only under $OUT/decoding.
set -u
O=$OUT/decoding; mkdir -p $O
B=$PWD/.dev/gpu/common
S=$O/summary.txt
# Kernel caches and temporary files stay under $O (removed at the end).
export XDG_CACHE_HOME=$O/xdg TMPDIR=$O/tmp; mkdir -p $XDG_CACHE_HOME $TMPDIR
step() { echo "== $(date -u +%T) $*" | tee -a $S; }
step start
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.memory --format=csv,noheader | tee $O/gpu.txt >>$S
python3 -c "import torch,transformers;print('torch',torch.__version__,'transformers',transformers.__version__)" >>$O/gpu.txt 2>&1
git log -1 --format='main %H %s' >>$S 2>/dev/null || true
ls -la $B >>$S
# The card's memory-bandwidth bound: H100 SXM 3.35 TB/s, H200 4.8 TB/s (by nvidia-smi's name).
NAME=$(head -1 $O/gpu.txt)
case "$NAME" in
  *H200*) BW=4.8e12 ;;
  *H100*PCIe*) BW=2.0e12 ;;
  *H100*) BW=3.35e12 ;;
  *) BW=0 ;;
esac
echo "bandwidth_bytes_per_s=$BW ($NAME)" | tee -a $S
# Warm the kernel cache for whet (NVRTC takes ~20 s for the files the decode path uses) on the
# CPU while the tests run, and check the graph path end to end on the tiny model.
step warm
timeout 60 $B/whet bench --backend cuda --json --peak-tflops 989 --model testdata/tiny-llama --method lora,qlora --decode 8 --seq 8 \
  --decode-modes graph,device,plain+cublas >$O/warm.jsonl 2>$O/warm.err &
WARM=$!
step cuda.test
(cd engine/cuda && WHET_CUDA_REQUIRE=1 timeout 50 $B/cuda.test -test.run 'TestAttentionDecodeMatchesCPU|TestArgmaxAndAdvance|TestMatVecKernels|TestMatVecsMatchesMatMul|TestRecordRefusesHostWork|TestGenerateGraphEqualsPlain|TestGenerateMatchesCPU|TestFamilyGenerateMatchesCPU|TestLaunchedKernelsExist' -test.v -test.count=1) >$O/cuda-tests.log 2>&1; echo "cuda.test rc=$?" >>$S
grep -E "^(--- |ok|FAIL|PASS)|graph and plain agree" $O/cuda-tests.log >>$S
W=$B/whet
wait $WARM; echo "warm rc=$?" >>$S; cat $O/warm.jsonl >>$S
step bench-1b
# plain+cublas is the path before this work (host round trips, cuBLASLt at M=1).
timeout 30 $W bench --backend cuda --json --peak-tflops 989 --model llama-3.2-1b --method lora --decode 256 --seq 128 \
  --decode-modes graph,graph+cublas,device,plain+cublas >$O/bench-1b.jsonl 2>$O/bench-1b.err; echo "bench-1b rc=$?" >>$S
cat $O/bench-1b.jsonl >>$S
step reference-1b
timeout 25 python3 tools/bench/generate_reference.py --model llama-3.2-1b --prompt 128 --new 128 >$O/ref-1b.jsonl 2>$O/ref-1b.err; echo "ref-1b rc=$?" >>$S
tail -1 $O/ref-1b.jsonl >>$S
step bench-8b
timeout 70 $W bench --backend cuda --json --peak-tflops 989 --model llama-3.1-8b --method lora,qlora --decode 256 --seq 128 \
  --decode-modes graph,plain+cublas >$O/bench-8b.jsonl 2>$O/bench-8b.err; echo "bench-8b rc=$?" >>$S
cat $O/bench-8b.jsonl >>$S
step bound
python3 - "$BW" $O/bench-1b.jsonl $O/bench-8b.jsonl <<'PY' | tee -a $S
import json, sys
bw = float(sys.argv[1])
for f in sys.argv[2:]:
    for line in open(f):
        try:
            r = json.loads(line)
        except Exception:
            continue
        wb = r.get("weight_bytes_per_token", 0)
        bound = bw / wb if bw and wb else 0
        frac = r["decode_tokens_per_sec"] / bound if bound else 0
        print(f'{r["model"]:14s} {r["method"]:5s} {r["decode_mode"]:6s} gemv={r.get("gemv_kernel")} '
              f'{r["decode_tokens_per_sec"]:8.1f} tok/s  weights {wb/1e9:.3f} GB/token  bound {bound:7.1f} tok/s  '
              f'{100*frac:5.1f}% of bound  prefill {r["prefill_s"]*1e3:.1f} ms  {r.get("fallback","")}')
PY
rm -rf $O/xdg $O/tmp
step end
