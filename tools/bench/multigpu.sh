#!/usr/bin/env bash
# The multi-GPU measurements of docs/multi-gpu.md (issue 25), run on a machine
# with 2, 4 or 8 GPUs from the repository root, with binaries built on the
# development machine:
#
#   CGO_ENABLED=0 go build -o .dev-demo/whet . && CGO_ENABLED=0 go test -c -o .dev-demo/dist.test ./engine/dist
#   tools/bench/multigpu.sh tests OUTDIR      # the CUDA data-parallel tests (NCCL, 1 rank and 2+ ranks)
#   tools/bench/multigpu.sh lora OUTDIR       # whet: Llama-3.1-8B LoRA, 2×2048 per GPU, checkpointing
#   tools/bench/multigpu.sh ddp-lora OUTDIR   # the same with PyTorch DDP (torchrun)
#   tools/bench/multigpu.sh full OUTDIR       # whet: Llama-3.2-1B full, 4×1024 per GPU
#   tools/bench/multigpu.sh ddp-full OUTDIR   # the same with PyTorch DDP
#   tools/bench/multigpu.sh table OUTDIR      # both implementations side by side, per workload
#
# Each part fits a 10-minute command. The GPU counts are 1 2 4 8, as many as
# the machine has (COUNTS="1 2" picks others). whet bench measures every count
# in one invocation (--gpus 1,2,4), so its lines carry the scaling efficiency
# against its own 1-GPU line; torchrun runs once per count. Results are JSON
# lines, one file per part: OUTDIR/PART.jsonl.
# WHET_BIN_DIR names another folder holding whet and dist.test.
set -u
part=$1 out=$2
mkdir -p "$out"
BIN=${WHET_BIN_DIR:-.dev-demo}
W=$BIN/whet
ngpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | wc -l)
if [ -z "${COUNTS:-}" ]; then
	COUNTS=""
	for n in 1 2 4 8; do [ "$n" -le "$ngpu" ] && COUNTS="$COUNTS $n"; done
fi
list=$(echo $COUNTS | tr ' ' ',')
nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader >"$out/gpus.txt"
nvidia-smi topo -m >"$out/topology.txt" 2>&1

LORA="--model llama-3.1-8b --method lora --batch 2 --seq 2048 --checkpointing --steps 5 --warmup 2"
FULL="--model llama-3.2-1b --method full --batch 4 --seq 1024 --steps 5 --warmup 2"
whet() { timeout 500 $W bench --backend cuda --json --gpus "$list" "$@" 2>>"$out/bench.err"; }
ddp() {
	for n in $COUNTS; do
		timeout $((500 / $(echo $COUNTS | wc -w))) torchrun --standalone --nproc_per_node "$n" tools/bench/ddp_reference.py "$@" 2>>"$out/ddp.err" | tail -1
	done
}

case $part in
tests)
	# TestNCCLRanksEqualOneGPU and TestNCCLCheckpointResumesOnOneGPU need 2+ GPUs; the others run on one.
	(cd engine/dist && timeout 500 ../../$BIN/dist.test -test.run 'TestNCCL' -test.v) >"$out/dist-tests.log" 2>&1
	grep -E "^(\s*--- |ok|FAIL|PASS)" "$out/dist-tests.log"
	;;
lora) whet $LORA | tee "$out/lora.jsonl" ;;
full) whet $FULL | tee "$out/full.jsonl" ;;
ddp-lora) ddp $LORA | tee "$out/ddp-lora.jsonl" ;;
ddp-full) ddp $FULL | tee "$out/ddp-full.jsonl" ;;
table)
	for w in lora full; do
		echo "== $w"
		files=$(ls "$out/$w.jsonl" "$out/ddp-$w.jsonl" 2>/dev/null)
		[ -n "$files" ] && python3 tools/bench/multigpu_table.py $files
	done
	exit 0
	;;
*)
	echo "usage: $0 tests|lora|ddp-lora|full|ddp-full|table OUTDIR" >&2
	exit 2
	;;
esac
tail -5 "$out/bench.err" "$out/ddp.err" 2>/dev/null || true
