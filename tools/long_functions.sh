#!/usr/bin/env bash
# Functions longer than N lines (default 80) in src/, longest first (Universal Ctags' line and end
# fields). Issue 16's rule: none outside the pickle opcode switch and the zip/safetensors validators.
#   tools/long_functions.sh [N]
limit=${1:-80}
cd "$(dirname "$0")/.." || exit 1
ctags -R --languages=C++ --c++-kinds=f --fields=+ne -o - src |
  awk -F'\t' -v limit="$limit" '{
      line = ""; end = ""; scope = "";
      for (i = 4; i <= NF; i++) {
        if ($i ~ /^line:/) line = substr($i, 6);
        if ($i ~ /^end:/) end = substr($i, 5);
      }
      if (line != "" && end != "" && end - line + 1 > limit && $1 !~ /^__anon/)
        printf "%5d  %s:%s  %s\n", end - line + 1, $2, line, $1
    }' | sort -rn
