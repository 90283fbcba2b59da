#!/usr/bin/env bash
# chat-both (issue 21, batched side-by-side chat): the base and the tuned answer in one batch on
# the GPU (chat.Session.GenerateBoth: GenerateMany over the paged cache, the LoRA adapter's B
# product on the tuned row only). It passed on an H100 (2026-12-07), so the studio's chat and
# whet chat --compare answer both sides together on a GPU by default; WHET_CHAT_BATCH=0 turns it off.
#   1. cuda.test TestChatBothMatchesAlone (tiny-llama, a random non-zero adapter, greedy, two
#      questions each side with its own history: f32 together must equal each side alone on the
#      GPU; bf16 agreement logged) with TestGenerateManyPagedMatchesCPU as the control; a failure
#      reruns with WHET_CUDA_SYNC=1 (names a faulting launch).
#   2. whet chat --compare on CUDA, one side at a time (WHET_CHAT_BATCH=0) and together (=1), for a
#      3-step LoRA run of tiny-llama trained on the device's CPU: both outputs, the tok/s figures
#      masked, and whether they are equal (bf16: may part where two logits are within rounding).
# Runs from the repository root; writes only under $OUT/chat-both. About 30 s.
set -u
O=$OUT/chat-both; mkdir -p $O
B=$PWD/.dev/gpu/common
S=$O/summary.txt
export XDG_CACHE_HOME=$O/xdg TMPDIR=$O/tmp; mkdir -p $XDG_CACHE_HOME $TMPDIR
step() { echo "== $(date -u +%T) $*" | tee -a $S; }
step start
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $O/gpu.txt >>$S
git log -1 --format='main %H %s' >>$S 2>/dev/null || true
step cuda.test
(cd engine/cuda && WHET_CUDA_REQUIRE=1 timeout 60 $B/cuda.test -test.run '^(TestChatBothMatchesAlone|TestGenerateManyPagedMatchesCPU)$' -test.v -test.count=1) >$O/cuda-tests.log 2>&1
rc=$?; echo "cuda.test rc=$rc" >>$S
grep -E "^(--- |ok|FAIL|PASS)|together|chat_both_test" $O/cuda-tests.log >>$S
if [ $rc != 0 ]; then
  step sync-rerun
  (cd engine/cuda && WHET_CUDA_REQUIRE=1 WHET_CUDA_SYNC=1 timeout 40 $B/cuda.test -test.run '^TestChatBothMatchesAlone$' -test.v -test.count=1) >$O/cuda-tests-sync.log 2>&1; echo "sync rc=$?" >>$S
  grep -E "^(--- |ok|FAIL|PASS)|together|chat_both_test|cuda" $O/cuda-tests-sync.log | tail -20 >>$S
fi
step train
cp testdata/datasets/tiny-chat.jsonl $O/data.jsonl
cat >$O/run.yaml <<YAML
name: both
model: $PWD/testdata/tiny-llama
method: lora
backend: cpu
runs_dir: $O/runs
lora: {r: 4, alpha: 8}
data: {path: $O/data.jsonl, max_length: 64, packing: true, seed: 1}
train: {max_steps: 3, micro_batch: 1, lr: 0.01, seed: 1}
YAML
timeout 30 $B/whet train -c $O/run.yaml >$O/train.log 2>&1; echo "train rc=$?" >>$S
step chat
for mode in 0 1; do
  WHET_CHAT_BATCH=$mode timeout 30 $B/whet chat --run $O/runs/both --backend cuda --template chatml --compare \
    --temperature 0 --max-new-tokens 48 --prompt "Why do leaves fall?" >$O/chat-$mode.out 2>$O/chat-$mode.err
  echo "chat WHET_CHAT_BATCH=$mode rc=$?" >>$S
  sed -E 's/[0-9.]+ tok\/s/N tok\/s/' $O/chat-$mode.out >$O/chat-$mode.masked
done
if cmp -s $O/chat-0.masked $O/chat-1.masked; then echo "chat: together = one at a time" >>$S; else echo "chat: together differs from one at a time" >>$S; diff $O/chat-0.masked $O/chat-1.masked >>$S; fi
cat $O/chat-1.out >>$S
rm -rf $O/xdg $O/tmp
step end
