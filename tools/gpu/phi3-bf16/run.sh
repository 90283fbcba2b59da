#!/usr/bin/env bash
# phi3-bf16: why Phi-3's bf16 logits differ more from the CPU's (4.5% on 2026-12-07).
# 1) engine/cuda's TestFamilyGenerateMatchesCPU (with the CPU bf16 emulation and
#    per-position check) + TestPRoundAttention, dumping the CPU-trained models;
# 2) transformers f32/bf16 on the same models (hf_bf16.py): logits per position
#    and per-layer hidden states, against whet's CPU f32, GPU bf16 and emu.
set -u
O=$OUT/phi3-bf16; mkdir -p $O
D=$PWD/.dev/gpu/phi3-bf16
echo "== $(date -u +%T) start"; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
T=/tmp/phi3bf16.cuda.test
if [ -f $D/cuda.test.gz ]; then gunzip -c $D/cuda.test.gz >$T; else cp .dev/gpu/common/cuda.test $T; fi
chmod +x $T
rm -rf /tmp/phi3dump
echo "== $(date -u +%T) cuda.test"
(cd engine/cuda && WHET_CUDA_REQUIRE=1 WHET_FAMILY_DUMP=/tmp/phi3dump timeout 62 $T -test.run 'TestFamilyGenerateMatchesCPU|TestPRoundAttention' -test.v -test.count=1) >$O/generate.log 2>&1
echo "cuda.test rc=$?"
grep -E "^(--- |    --- |ok|FAIL|PASS)" $O/generate.log
echo "== $(date -u +%T) transformers"
timeout 50 python3 $D/hf_bf16.py /tmp/phi3dump $O/hf_summary.json >$O/hf.log 2>&1
echo "hf rc=$?"
tar -C /tmp -czf $O/dump.tgz phi3dump 2>/dev/null
echo "== $(date -u +%T) end"
