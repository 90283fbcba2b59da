#!/usr/bin/env bash
# long-bg (issue 21): a long-context run that needs more than one device call (a 350,000-token
# Llama-3.1-8B QLoRA step is extrapolated to ~612 s on an H100, 2026-12-07, and a command may run
# at most 600 s). The device keeps a process that started its own session (setsid) running
# between calls while the machine stays warm (it goes back 30 s after a call), so:
#   call 1: starts tools/gpu/long-context/run.sh with LONG_SEQ (default 350,000) under setsid,
#           writing to /root/long-bg (not $OUT, which each call empties), then waits as long as
#           the call allows and copies what there is;
#   call 2..: issued at once after the previous returns (carry only .dev/gpu/long-bg: the
#           binaries in .dev/gpu/common must not be replaced under the running process), waits
#           for the run to end and copies its output into $OUT/long-bg.
# Each call's summary.txt says "running" or "done" and the run's own summary so far. Device time
# is spent all the while (a held machine counts idle or busy): a step of ~612 s plus setup costs
# ~700 s of a session's 1,800. LONG_STEPS=2 runs two steps (the issue asks for a few).
#   NOBUILD=1 tools/gpu/dispatch.sh long-bg; run: bash .dev/gpu/common/go.sh long-bg (twice)
set -u
D=${LONG_BG_DIR:-/root/long-bg} # LONG_BG_DIR: elsewhere for a smoke test on the CPU
O=$OUT/long-bg; mkdir -p $O
S=$O/summary.txt
T0=$(date +%s); LIMIT=${LIMIT:-560}
if [ ! -e $D/started ]; then
  rm -rf $D; mkdir -p $D/out
  date -u +%FT%TZ >$D/started
  echo "starting: SEQ=${LONG_SEQ:-350000} STEPS=${LONG_STEPS:-1} CAP=${CAP:-80GB}" >>$S
  setsid bash -c "OUT=$D/out N=long-bg CAP=${CAP:-80GB} SEQ=${LONG_SEQ:-350000} STEPS=${LONG_STEPS:-1} WARMUP=0 LONGMAX=100000 EXTRA=0 LIMIT=${LONG_TOTAL:-2400} bash tools/gpu/long-context/run.sh; echo \$? >$D/done" \
    </dev/null >$D/run.log 2>&1 &
else
  echo "already started at $(cat $D/started)" >>$S
fi
while [ ! -e $D/done ] && [ $(( LIMIT - 15 - ($(date +%s) - T0) )) -gt 0 ]; do sleep 5; done
if [ -e $D/done ]; then echo "done: rc $(cat $D/done) at $(date -u +%FT%TZ)" >>$S; else echo "running at $(date -u +%FT%TZ)" >>$S; fi
cp -r $D/out/long-bg $O/run 2>/dev/null; cp $D/run.log $O/ 2>/dev/null
[ -f $O/run/summary.txt ] && { echo "-- the run's summary so far:"; cat $O/run/summary.txt; } >>$S
nvidia-smi --query-gpu=memory.used --format=csv,noheader >>$S 2>/dev/null
exit 0
