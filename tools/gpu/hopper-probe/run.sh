#!/usr/bin/env bash
# hopper-probe: the cheap half of attention-hopper, for a call with little time: the sm_90a
# compile log (registers, spills, errors) of kernels/attention_hopper.cu and the wgmma probe
# (S = Q K^T and O = P V alone; its errors say where each wrong value belongs).
set -u
O=$OUT/hopper-probe; mkdir -p $O
B=$PWD/.dev/gpu/common
S=$O/summary.txt
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >>$S 2>&1
cat $B/COMMIT >>$S 2>/dev/null
(cd engine/cuda && WHET_CUDA_REQUIRE=1 timeout 50 $B/cuda.test -test.run '^TestHopperAttentionCompiles$' -test.v -test.count=1) >$O/compile.log 2>&1
echo "compile rc=$?" >>$S; cat $O/compile.log >>$S
(cd engine/cuda && WHET_ATTN_HOPPER=1 WHET_CUDA_REQUIRE=1 timeout 20 $B/cuda.test -test.run 'TestHopperWgmmaProbe' -test.v -test.count=1) >$O/probe.log 2>&1
echo "probe rc=$?" >>$S; head -80 $O/probe.log >>$S
