#!/usr/bin/env bash
# Device side: unpack the common binaries, run the named batches within TOTAL seconds (default
# 570; the device allows 600 s a command), leave one $OUT/<batch>.tgz per batch and
# $OUT/dispatch.txt (the device returns at most 8 files: name at most 7 batches a call).
#
#   go.sh A B C            A, then B, then C, each within its LIM (less if TOTAL runs short)
#   go.sh A+B+C D A        the untimed test steps of A, B and C side by side (each run.sh with
#                          PHASE=tests, within TESTS_LIM s, default 240), then D alone, then A's
#                          timed steps (PHASE=bench) in the folder its tests left. Nothing is timed
#                          while a group runs: only batches whose run.sh reads PHASE may join one.
#   go.sh A:X=1:Y=2        A with X=1 and Y=2 in its environment (A:PHASE=bench skips A's tests)
# A batch that ran in a group and is not named again is packed at the end.
set -u
cd "$(dirname "$0")/../../.."
for f in .dev/gpu/common/*.gz; do [ -e "$f" ] && gunzip -f "$f"; done
chmod +x .dev/gpu/common/* 2>/dev/null
T0=$(date +%s); TOTAL=${TOTAL:-570}
left() { echo $(( TOTAL - ($(date +%s) - T0) )); }
log() { echo "$*" | tee -a $OUT/dispatch.txt; }
pack() { [ -d $OUT/$1 ] && tar -C $OUT -czf $OUT/$1.tgz $1 && rm -rf $OUT/$1; }
# run NAME LIMIT LOG ENV...: .dev/gpu/NAME/run.sh within LIMIT seconds, stdout and stderr into LOG.
run() {
  local n=$1 lim=$2 lg=$3; shift 3
  mkdir -p $OUT/$n
  env "$@" LIMIT=$lim timeout -k 5 $lim bash .dev/gpu/$n/run.sh >>$lg 2>&1 # LIMIT: the seconds it got
}
PACK="" # batches of a group not named again yet
for arg in "$@"; do
  if [[ $arg == *+* ]]; then
    lim=${TESTS_LIM:-240}; [ $(left) -lt $lim ] && lim=$(left)
    if [ $lim -lt 30 ]; then log "$arg skipped: no time left"; continue; fi
    s=$(date +%s); pids=()
    IFS=+ read -ra members <<<"$arg"
    for m in "${members[@]}"; do
      IFS=: read -ra parts <<<"$m"; n=${parts[0]}
      if ! grep -q 'PHASE' .dev/gpu/$n/run.sh 2>/dev/null; then
        log "$n: its run.sh has no PHASE (test steps apart from timed ones): not run in a group; name it alone"
        continue
      fi
      mkdir -p $OUT/$n
      ( run $n $lim $OUT/$n/run-tests.log PHASE=tests "${parts[@]:1}"
        log "$n (tests) rc=$? took $(( $(date +%s) - s ))s (limit $lim)" ) &
      pids+=($!)
      PACK="$PACK $n"
    done
    for p in "${pids[@]}"; do wait $p; done
    log "group $arg took $(( $(date +%s) - s ))s"
    continue
  fi
  IFS=: read -ra parts <<<"$arg"; n=${parts[0]}
  lim=$(cat .dev/gpu/$n/LIM 2>/dev/null || echo 120)
  [ $(left) -lt $lim ] && lim=$(left)
  if [ $lim -lt 20 ]; then log "$n skipped: no time left"; continue; fi
  phase=()
  [[ " $PACK " == *" $n "* ]] && phase=(PHASE=bench) # its tests ran in a group of this call
  s=$(date +%s)
  run $n $lim $OUT/$n/run.log "${phase[@]}" "${parts[@]:1}"
  log "$n rc=$? took $(( $(date +%s) - s ))s (limit $lim)"
  pack $n
  PACK=$(echo " $PACK " | sed "s/ $n / /g")
done
for n in $PACK; do pack $n; done
