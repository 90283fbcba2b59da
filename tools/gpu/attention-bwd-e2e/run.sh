#!/usr/bin/env bash
# attention-bwd-e2e: after attention-bwd in the same call (go.sh
# attention-bwd attention-bwd-e2e): whet bench Llama-3.2-1B LoRA 4x2048
# (random weights, 5 timed steps after 2 warm-up) with the default split
# backward, then with the fastest fused variant that passed there
# (best.env in $OUT/attention-bwd.tgz; without it WHET_ATTN_BWD_FUSED=1,
# the would-be default). The JSON's attn_bwd_fused counts the fused
# backward's launches (absent: the split kernels ran). Writes only under
# $OUT/attention-bwd-e2e.
set -u
O=$OUT/attention-bwd-e2e; mkdir -p $O
B=$PWD/.dev/gpu/common
S=$O/summary.txt
step() { echo "== $(date -u +%T) $*" >>$S; }
step start; cat .dev/gpu/common/COMMIT >>$S 2>/dev/null
best=$(tar -xzOf $OUT/attention-bwd.tgz attention-bwd/best.env 2>/dev/null | head -1)
if [ -z "$best" ]; then
	echo "no best.env from attention-bwd (not run, or no variant passed): using WHET_ATTN_BWD_FUSED=1" >>$S
	best="WHET_ATTN_BWD_FUSED=1"
fi
for v in "default|WHET_ATTN_BWD_FUSED=0" "fused|$best"; do
	name=${v%%|*} e=${v#*|}
	step "1b-lora $name"
	env $e timeout 70 $B/whet bench --backend cuda --json --model llama-3.2-1b --method lora --batch 4 --seq 2048 --steps 5 --warmup 2 >$O/1b-lora-$name.json 2>$O/1b-lora-$name.err
	echo "1b-lora $name [$e] rc=$?" >>$S; tail -1 $O/1b-lora-$name.json >>$S; tail -3 $O/1b-lora-$name.err >>$S
done
step end
