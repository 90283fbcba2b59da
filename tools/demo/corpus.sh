#!/usr/bin/env bash
# Builds the demo model's pretraining corpus from freely licensed English
# text that Debian packages ship (docs/demo.md records the licences):
#   - Jane Austen's six novels (public-domain texts) from r-cran-janeaustenr,
#     read out with R because the package stores them as R data;
#   - the definitions and example sentences of WordNet 3.0 (wordnet-base),
#     which give the corpus plain modern vocabulary that Austen lacks.
# Output: one paragraph or one dictionary entry per line, UTF-8, and the
# same lines as whet's "text" dataset format ({"text": ...} per line) next
# to it, with the extension .jsonl.
#
# usage: tools/demo/corpus.sh [OUT]   (default .cache/demo/corpus.txt)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/.cache/demo/corpus.txt}
mkdir -p "$(dirname "$out")"

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
pkgs=(r-base-core r-cran-janeaustenr wordnet-base jq)
if ! dpkg -s "${pkgs[@]}" >/dev/null 2>&1; then
	# The package lists may be missing or stale on a fresh machine.
	$sudo apt-get install -y --no-install-recommends "${pkgs[@]}" ||
		{ $sudo apt-get update && $sudo apt-get install -y --no-install-recommends "${pkgs[@]}"; }
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Austen: the package keeps each printed line of the Gutenberg text as one
# string, with empty strings between paragraphs. Join each paragraph onto
# one line, drop the _underscores_ that mark italics and the double spaces
# after full stops, and skip headings (paragraphs with no lower-case
# letter: titles, "CHAPTER 12", "(1811)").
Rscript -e 'writeLines(janeaustenr::austen_books()$text)' >"$tmp/austen.raw"
awk '
function flush() {
	if (p != "") {
		gsub(/_/, "", p)
		gsub(/  +/, " ", p)
		if (p ~ /[a-z]/) print p
		p = ""
	}
}
/^[ \t]*$/ { flush(); next }
{
	sub(/^[ \t]+/, ""); sub(/[ \t]+$/, "")
	p = (p == "" ? $0 : p " " $0)
}
END { flush() }
' "$tmp/austen.raw" >"$tmp/austen.txt"

# WordNet: each synset line of data.{noun,verb,adj,adv} reads
#   offset lexfile pos w_cnt(hex) word lex_id ... ptr... | gloss
# where the gloss is a definition followed by quoted examples separated by
# "; ". Write "word, other word: definition." and each example as a
# sentence. Lines that start with two spaces are the licence header.
awk '
function hex(s,    i, n) {
	n = 0
	for (i = 1; i <= length(s); i++) n = n * 16 + index("0123456789abcdef", tolower(substr(s, i, 1))) - 1
	return n
}
function sentence(s) {
	sub(/^[ ;]+/, "", s); sub(/[ ;]+$/, "", s)
	if (s == "") return ""
	s = toupper(substr(s, 1, 1)) substr(s, 2)
	if (s !~ /[.!?]$/) s = s "."
	return s
}
/^  / { next }
{
	bar = index($0, " | ")
	if (bar == 0) next
	gloss = substr($0, bar + 3)
	sub(/[ \t]+$/, "", gloss)
	n = hex($4)
	words = ""
	for (k = 0; k < n; k++) {
		w = $(5 + 2 * k)
		gsub(/_/, " ", w)
		sub(/\([a-z]+\)$/, "", w) # adjective position markers: (a), (p), (ip)
		words = words (k ? ", " : "") w
	}
	q = index(gloss, "\"")
	def = (q ? substr(gloss, 1, q - 1) : gloss)
	rest = (q ? substr(gloss, q) : "")
	sub(/[ ;]+$/, "", def)
	line = words
	if (def != "") line = line ": " def "."
	else line = line ":"
	while (match(rest, /"[^"]*"/)) {
		ex = sentence(substr(rest, RSTART + 1, RLENGTH - 2))
		if (ex != "") line = line " " ex
		rest = substr(rest, RSTART + RLENGTH)
	}
	print line
}
' /usr/share/wordnet/data.noun /usr/share/wordnet/data.verb \
	/usr/share/wordnet/data.adj /usr/share/wordnet/data.adv >"$tmp/wordnet.txt"

cat "$tmp/austen.txt" "$tmp/wordnet.txt" >"$out"
jq -R -c '{text: .}' "$out" >"${out%.*}.jsonl"
printf '%s: %s bytes, %s lines (austen %s bytes, wordnet %s bytes)\n' "$out" \
	"$(wc -c <"$out")" "$(wc -l <"$out")" "$(wc -c <"$tmp/austen.txt")" "$(wc -c <"$tmp/wordnet.txt")"
