#!/usr/bin/env bash
# decode-attn (issue 21, batch-1 decoding at >= 60 % of the bandwidth bound): the opt-in decode
# attention WHET_DECODE_ATTN=v2 (kernels/decode.cu attention_decode_v2_d{64,128,256}; never run on
# a GPU before this batch). attention_decode took ~23 us a layer over ~143 keys, 16 % of a
# Llama-3.2-1B step (docs/bench/profile-decode-1b-2026-12-07.txt).
# 1. the tests with it on: TestAttentionDecodeV2MatchesCPU (v2 against the CPU and attention_decode
#    at cache lengths 1, 15, 16, 17, 143, 4097, GQA, dims 64/128/256, window, soft-cap, f32/bf16),
#    the old kernel's test, the PDL layout test and the generation tests (graph equals plain);
# 2. BenchmarkAttentionDecode: v1 against v2, 1B and 8B head shapes, 143 and 4097 keys (us/op);
# 3. whet bench --decode 256 --seq 128 graph mode, Llama-3.2-1B without and with v2;
# 4. a per-kernel profile of a device-mode step with v2 (WHET_CUDA_PROFILE=1);
# 5. as the 150 s allow, Llama-3.1-8B bf16 with and without v2 (~30 s to make the model each).
# Runs from the repository root; writes only under $OUT/decode-attn.
set -u
O=$OUT/decode-attn; mkdir -p $O
B=$PWD/.dev/gpu/common
S=$O/summary.txt
export XDG_CACHE_HOME=$O/xdg TMPDIR=$O/tmp; mkdir -p $XDG_CACHE_HOME $TMPDIR
step() { echo "== $(date -u +%T) $*" | tee -a $S; }
step start
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.memory --format=csv,noheader | tee $O/gpu.txt >>$S
cat $B/COMMIT >>$S 2>/dev/null
TESTS='TestAttentionDecodeV2MatchesCPU|TestAttentionDecodeMatchesCPU|TestDecodeSplitsV2|TestPDLKernelsWaitFirst|TestGenerateGraphEqualsPlain|TestGenerateMatchesCPU|TestFamilyGenerateMatchesCPU'
step "tests v2"
(cd engine/cuda && WHET_DECODE_ATTN=v2 WHET_CUDA_REQUIRE=1 timeout 45 $B/cuda.test -test.run "$TESTS" -test.v -test.count=1) >$O/tests-v2.log 2>&1
echo "cuda.test v2 rc=$?" >>$S
grep -E "^(--- |ok|FAIL|PASS|panic)|^    --- FAIL" $O/tests-v2.log >>$S
grep -E -A8 -- "--- FAIL|panic" $O/tests-v2.log | head -40 >>$S
step "micro-benchmark"
(cd engine/cuda && timeout 20 $B/cuda.test -test.run '^$' -test.bench 'BenchmarkAttentionDecode$' -test.benchtime 300x) >$O/bench-kernel.txt 2>&1
echo "benchmark rc=$?" >>$S
grep -E "^Benchmark|^(ok|FAIL)" $O/bench-kernel.txt >>$S
W=$B/whet
bench() { # label, seconds, model, env...
  local label=$1 secs=$2 model=$3; shift 3
  if [ $SECONDS -gt $((148 - secs)) ]; then echo "bench $label skipped: ${SECONDS}s of 150 used" >>$S; return; fi
  step "bench $label"
  env "$@" timeout $secs $W bench --backend cuda --json --model $model --method lora --decode 256 --seq 128 \
    --decode-modes graph >$O/bench-$label.jsonl 2>$O/bench-$label.err
  echo "bench $label rc=$?" >>$S
  cat $O/bench-$label.jsonl >>$S
  tail -3 $O/bench-$label.err >>$S
}
bench 1b-v1 25 llama-3.2-1b X=0
bench 1b-v2 25 llama-3.2-1b WHET_DECODE_ATTN=v2
step profile
[ $SECONDS -lt 125 ] && WHET_CUDA_PROFILE=1 WHET_DECODE_ATTN=v2 timeout 20 $W bench --backend cuda --model llama-3.2-1b --method lora \
  --decode 16 --seq 128 --decode-modes device >$O/profile-device-v2.txt 2>&1; echo "profile device v2 rc=$?" >>$S
head -8 $O/profile-device-v2.txt >>$S 2>/dev/null
bench 8b-v2 45 llama-3.1-8b WHET_DECODE_ATTN=v2
bench 8b-v1 45 llama-3.1-8b X=0
step table
python3 - $O/bench-*.jsonl <<'PY' | tee -a $S
import json, sys, os
name = open(os.path.join(os.path.dirname(sys.argv[1]), "gpu.txt")).readline()
card = 4.8e12 if "H200" in name else 3.35e12
for f in sorted(sys.argv[1:]):
    for line in open(f):
        try:
            r = json.loads(line)
        except Exception:
            continue
        wb = r.get("weight_bytes_per_token", 0)
        tps = r.get("decode_tokens_per_sec", 0)
        bound = card / wb if wb else 0
        print(f'{os.path.basename(f):24s} {tps:8.1f} tok/s  bound {bound:7.1f}  {100*tps/bound if bound else 0:5.1f}%  '
              f'{r.get("decode_mode")} {r.get("fallback","")}')
PY
rm -rf $O/xdg $O/tmp
step end
