#!/usr/bin/env bash
# Prepares one device call on the development machine: copies the named check
# folders of tools/gpu into .dev/gpu (git-ignored), builds the whet binary and
# the engine/cuda test binary (and engine/dist's, where a named batch uses
# dist.test) from the working tree into .dev/gpu/common (stripped and gzipped:
# the device call carries at most 64 MiB with the tree), and prints the carry
# list and the command for the device tool's run. It takes go.sh's arguments
# (A+B groups, A:X=1 environments). Usage, from the repository root:
#
#   tools/gpu/dispatch.sh all-checks decoding        # then run what it prints
#   tools/gpu/dispatch.sh rows+attn-bwd2 attn-bwd2 rows:ROWS_COLD=0
#
# NOBUILD=1 keeps the binaries already built. The device takes at most 8 carry
# paths: with more than 7 batches the carry is .dev/gpu (batch folders of
# earlier dispatches are removed from it first).
set -eu
cd "$(git rev-parse --show-toplevel)"
mkdir -p .dev/gpu/common
names=$(printf '%s\n' "$@" | tr '+' '\n' | cut -d: -f1 | awk 'NF && !seen[$0]++')
for n in $names; do
	[ -d tools/gpu/$n ] || { echo "tools/gpu/$n: no such check (see tools/gpu/README.md)" >&2; exit 1; }
done
nb=$(echo $names | wc -w)
if [ $nb -gt 7 ]; then
	for d in .dev/gpu/*/; do
		d=$(basename $d)
		[ $d = common ] || echo " $names " | tr '\n' ' ' | grep -q " $d " || rm -rf .dev/gpu/$d
	done
fi
for n in $names; do rm -rf .dev/gpu/$n && cp -r tools/gpu/$n .dev/gpu/$n; done
cp tools/gpu/go.sh tools/gpu/lib.sh .dev/gpu/common/ # lib.sh: functions the run.sh files source
if [ "${NOBUILD:-0}" != 1 ]; then
	rm -f .dev/gpu/common/*.gz .dev/gpu/common/whet .dev/gpu/common/cuda.test .dev/gpu/common/dist.test
	CGO_ENABLED=0 go build -ldflags="-s -w" -o .dev/gpu/common/whet .
	CGO_ENABLED=0 go test -c -ldflags="-s -w" -o .dev/gpu/common/cuda.test ./engine/cuda
	bins=".dev/gpu/common/whet .dev/gpu/common/cuda.test"
	if [ "${BUILD_DIST:-0}" = 1 ] || grep -l 'dist\.test' $(for n in $names; do echo tools/gpu/$n/run.sh; done) >/dev/null 2>&1; then
		CGO_ENABLED=0 go test -c -ldflags="-s -w" -o .dev/gpu/common/dist.test ./engine/dist
		bins="$bins .dev/gpu/common/dist.test"
	fi
	gzip -f $bins
fi
[ "${NOBUILD:-0}" = 1 ] || git log --oneline -1 >.dev/gpu/common/COMMIT # the commit the binaries were built from
du -sh .dev/gpu/common $(for n in $names; do echo .dev/gpu/$n; done)
if [ $nb -gt 7 ]; then
	echo "carry:   .dev/gpu"
else
	echo "carry:   .dev/gpu/common $(for n in $names; do printf '.dev/gpu/%s ' $n; done)"
fi
echo "command: bash .dev/gpu/common/go.sh $*"
