#!/usr/bin/env bash
# Alternating A/B pairs: the old and the new binary run one after the other, PAIRS times, on one
# checkpoint, 1 rank as a plain process or N ranks under mpirun, page cache warmed and `sync` before
# every run. Prints one Markdown row per command with the tool's own wall time (--timings wall_s),
# in run order. Series medians on a VM drift more than most changes, so changes are judged by pairs.
#   bench/ab_pairs.sh OLD_BINARY NEW_BINARY CHECKPOINT [RANKS] [PAIRS]
set -euo pipefail
old=$(realpath "$1"); new=$(realpath "$2"); ckpt=$(realpath "$3"); ranks=${4:-1}; pairs=${5:-4}
work=${TMPDIR:-/tmp}/ucp-ab; mkdir -p "$work"
launch=()
[ "$ranks" -gt 1 ] && launch=(mpirun -np "$ranks" --allow-run-as-root --oversubscribe --bind-to none)
commands=("to-fp32" "to-fp32 --format torch" "to-universal" "reshard --target-dp 3")

one_run() {  # BINARY COMMAND... -> wall_s
  local bin=$1; shift
  rm -rf "$work/out" "$work/latest_universal"
  cat "$ckpt"/*/* >/dev/null; sync
  "${launch[@]}" "$bin" $1 "$ckpt" "$work/out" ${@:2} --timings --no-progress 2>&1 |
    grep -o '"wall_s": *[0-9.]*' | head -1 | grep -o '[0-9.]*$'
}

echo "| command | ranks | old (s), in run order | new (s), in run order |"
echo "|---|---|---|---|"
for c in "${commands[@]}"; do
  o=(); n=()
  for ((i = 0; i < pairs; i++)); do
    o+=("$(one_run "$old" $c)"); n+=("$(one_run "$new" $c)")
  done
  echo "| $c | $ranks | ${o[*]} | ${n[*]} |"
done
rm -rf "$work/out" "$work/latest_universal"
