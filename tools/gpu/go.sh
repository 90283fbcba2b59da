#!/usr/bin/env bash
# Device side: unpack the common binaries, run each named batch with its time limit, tar each output.
set -u
cd "$(dirname "$0")/../../.."
for f in .dev/gpu/common/*.gz; do gunzip -f "$f"; done
chmod +x .dev/gpu/common/* 2>/dev/null
T0=$(date +%s); TOTAL=${TOTAL:-570} # the device allows 600 s a command
for n in "$@"; do
  lim=$(cat .dev/gpu/$n/LIM 2>/dev/null || echo 120)
  left=$(( TOTAL - ($(date +%s) - T0) ))
  [ $left -lt $lim ] && lim=$left
  if [ $lim -lt 20 ]; then echo "$n skipped: no time left" | tee -a $OUT/dispatch.txt; continue; fi
  mkdir -p $OUT/$n
  s=$(date +%s)
  LIMIT=$lim timeout -k 5 $lim bash .dev/gpu/$n/run.sh >$OUT/$n/run.log 2>&1 # LIMIT: the seconds it got
  echo "$n rc=$? took $(( $(date +%s) - s ))s (limit $lim)" | tee -a $OUT/dispatch.txt
  tar -C $OUT -czf $OUT/$n.tgz $n && rm -rf $OUT/$n
done
