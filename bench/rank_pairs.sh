#!/usr/bin/env bash
# Do ranks help? One binary, one checkpoint: each command run at 1 rank (a plain process) and at N
# ranks (mpirun) alternately, PAIRS times, page cache warmed and `sync` before every run. Prints one
# Markdown row per command with the tool's own wall time (--timings wall_s), in run order, and the
# median ratio N ranks / 1 rank of the same pairs.
#   bench/rank_pairs.sh BINARY CHECKPOINT [N] [PAIRS]
set -euo pipefail
bin=$(realpath "$1"); ckpt=$(realpath "$2"); ranks=${3:-2}; pairs=${4:-3}
work=${TMPDIR:-/tmp}/ucp-rank-pairs; mkdir -p "$work"
commands=("to-fp32" "to-fp32 --format torch" "to-universal" "reshard --target-dp 3")

one_run() {  # RANKS COMMAND -> wall_s
  local n=$1; shift
  local launch=()
  [ "$n" -gt 1 ] && launch=(mpirun -np "$n" --allow-run-as-root --oversubscribe --bind-to none)
  rm -rf "$work/out" "$work/latest_universal"
  cat "$ckpt"/*/* >/dev/null; sync
  "${launch[@]}" "$bin" $1 "$ckpt" "$work/out" --timings --no-progress 2>&1 |
    grep -o '"wall_s": *[0-9.]*' | head -1 | grep -o '[0-9.]*$'
}

echo "| command | 1 rank (s), in run order | $ranks ranks (s), in run order | median ratio |"
echo "|---|---|---|---|"
for c in "${commands[@]}"; do
  one=(); many=(); ratios=()
  for ((i = 0; i < pairs; i++)); do
    a=$(one_run 1 "$c"); b=$(one_run "$ranks" "$c")
    one+=("$a"); many+=("$b"); ratios+=("$(awk -v a="$a" -v b="$b" 'BEGIN { print b / a }')")
  done
  median=$(printf '%s\n' "${ratios[@]}" | sort -g | awk '{v[NR]=$1} END {printf "%.2f", NR % 2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}')
  echo "| $c | ${one[*]} | ${many[*]} | $median |"
done
rm -rf "$work/out" "$work/latest_universal"
