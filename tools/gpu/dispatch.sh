#!/usr/bin/env bash
# Prepares one device call on the development machine: copies the named check
# folders of tools/gpu into .dev/gpu (git-ignored), builds the whet binary and
# the engine/cuda and engine/dist test binaries from the working tree into
# .dev/gpu/common (stripped and gzipped: the device call carries at most 64 MiB
# with the tree), and prints the carry list and the command for the device
# tool's run. Usage, from the repository root:
#
#   tools/gpu/dispatch.sh all-checks decoding        # then run what it prints
#
# NOBUILD=1 keeps the binaries already built.
set -eu
cd "$(git rev-parse --show-toplevel)"
mkdir -p .dev/gpu/common
for n in "$@"; do
	[ -d tools/gpu/$n ] || { echo "tools/gpu/$n: no such check (see tools/gpu/README.md)" >&2; exit 1; }
	rm -rf .dev/gpu/$n && cp -r tools/gpu/$n .dev/gpu/$n
done
cp tools/gpu/go.sh tools/gpu/lib.sh .dev/gpu/common/ # lib.sh: functions the run.sh files source
if [ "${NOBUILD:-0}" != 1 ]; then
	rm -f .dev/gpu/common/*.gz
	CGO_ENABLED=0 go build -ldflags="-s -w" -o .dev/gpu/common/whet .
	CGO_ENABLED=0 go test -c -ldflags="-s -w" -o .dev/gpu/common/cuda.test ./engine/cuda
	CGO_ENABLED=0 go test -c -ldflags="-s -w" -o .dev/gpu/common/dist.test ./engine/dist
	gzip -f .dev/gpu/common/whet .dev/gpu/common/cuda.test .dev/gpu/common/dist.test
fi
[ "${NOBUILD:-0}" = 1 ] || git log --oneline -1 >.dev/gpu/common/COMMIT # the commit the binaries were built from
du -sh .dev/gpu/common "${@/#/.dev/gpu/}"
echo "carry:   .dev/gpu/common ${*/#/.dev/gpu/}"
echo "command: bash .dev/gpu/common/go.sh $*"
