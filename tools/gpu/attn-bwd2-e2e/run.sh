#!/usr/bin/env bash
# attn-bwd2-e2e: after attn-bwd2 in the same call (go.sh attn-bwd2
# attn-bwd2-e2e): whet bench Llama-3.2-1B LoRA 4x2048 (random weights, 5
# timed steps after 2 warm-up) with today's default backward, then with
# attn-bwd2's best.env (its variant fastest at d64, when faster than the
# default and passing its tests). The JSON's attn_bwd_fused counts the
# fused backward's launches. Writes only under $OUT/attn-bwd2-e2e.
set -u
. $PWD/.dev/gpu/common/lib.sh || exit 1
batch_start attn-bwd2-e2e
best=$(tar -xzOf $OUT/attn-bwd2.tgz attn-bwd2/best.env 2>/dev/null | head -1)
if [ -z "$best" ]; then
	echo "no best.env from attn-bwd2 (not run, no variant passed, or none beat the default at d64): nothing to compare" >>$S
	step end
	exit 0
fi
echo "best.env: $best" >>$S
for v in "default|WHET_ATTN_BWD_FUSED=1" "best|$best"; do
	name=${v%%|*} e=${v#*|}
	step "1b-lora $name"
	# 110 s: the best row's define set compiles every kernel file first (untimed, cold cache).
	env $e timeout 110 $B/whet bench --backend cuda --json --model llama-3.2-1b --method lora --batch 4 --seq 2048 --steps 5 --warmup 2 >$O/1b-lora-$name.json 2>$O/1b-lora-$name.err
	echo "1b-lora $name [$e] rc=$?" >>$S; tail -1 $O/1b-lora-$name.json >>$S; tail -3 $O/1b-lora-$name.err >>$S
done
step end
