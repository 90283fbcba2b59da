#!/usr/bin/env bash
# Syntax- and type-checks every kernel file with clang's CUDA front end
# (device side only, PTX to /dev/null), on a machine with no CUDA toolkit
# and no GPU: catches compile errors before a GPU session. It does not
# check the inline PTX itself, nor run anything; the conformance tests on
# a GPU remain the test. Needs clang (Debian: apt-get install clang-14).
set -eu
cd "$(dirname "$0")/../.."
CLANG=${CLANG:-$(command -v clang-14 || command -v clang)}
status=0
for f in kernels/*.cu; do
	if ! "$CLANG" -x cuda --cuda-device-only --cuda-gpu-arch=sm_80 -nocudainc -nocudalib -std=c++17 \
		-include tools/kernels/clang-prelude.h -Ikernels -S -o /dev/null "$f"; then
		echo "FAIL $f"
		status=1
	fi
done
exit $status
