#!/usr/bin/env bash
# Preemption (issue 19): what the journal, the durable commit and a resume cost. On one checkpoint,
# 1 rank as a plain process, page cache warmed and `sync` before every run; `wall_s` from --timings.
#   bench/preemption.sh OLD_BINARY NEW_BINARY CHECKPOINT [PAIRS]
# Per command, in alternating triples: OLD (the build before the journal), NEW --no-sync (journal,
# no syncs) and NEW (journal + durable commit, the default). Then the resume: NEW killed (SIGKILL,
# the test-only hook UCP_TEST_FAIL_AT) when it records the middle round, and the same command run
# again: its wall_s, the rounds it skipped and the tensor bytes it still read.
set -euo pipefail
old=$(realpath "$1"); new=$(realpath "$2"); ckpt=$(realpath "$3"); pairs=${4:-3}
work=${TMPDIR:-/tmp}/ucp-preempt-bench; mkdir -p "$work"
commands=("to-fp32" "to-universal" "reshard --target-dp 3")

clean() { rm -rf "$work/out" "$work"/.out.ucp-* "$work/latest_universal"; }
warm() { cat "$ckpt"/*/* >/dev/null; sync; }
field() { grep -o "\"$1\": *[0-9.e+-]*" | head -1 | sed 's/.*: *//'; }

one_run() {  # BINARY COMMAND... -> wall_s
  local bin=$1; shift
  clean; warm
  "$bin" $1 "$ckpt" "$work/out" ${@:2} --timings --no-progress 2>&1 | field wall_s
}

echo "| command | old (s) | new --no-sync (s) | new, durable (s) | journal: no-sync/old | durable: new/no-sync |"
echo "|---|---|---|---|---|---|"
for c in "${commands[@]}"; do
  o=(); n=(); d=()
  for ((i = 0; i < pairs; i++)); do
    o+=("$(one_run "$old" $c)"); n+=("$(one_run "$new" $c --no-sync)"); d+=("$(one_run "$new" $c)")
  done
  ratios=$(python3 - "${o[*]}" "${n[*]}" "${d[*]}" <<'PY'
import statistics, sys
o, n, d = ([float(x) for x in a.split()] for a in sys.argv[1:4])
print(f"{statistics.median(b / a for a, b in zip(o, n)):.2f} | {statistics.median(b / a for a, b in zip(n, d)):.2f}")
PY
)
  echo "| $c | ${o[*]} | ${n[*]} | ${d[*]} | $ratios |"
done

echo
echo "| command | rounds | killed after round | uninterrupted (s) | resume (s) | rounds skipped | tensor bytes read: resume / full |"
echo "|---|---|---|---|---|---|---|"
for c in "${commands[@]}"; do
  rounds=$("$new" $c "$ckpt" "$work/out" --dry-run 2>/dev/null | grep -o '[0-9]* round(s)' | grep -o '^[0-9]*')
  k=$(( rounds / 2 ))
  clean; warm
  full=$("$new" $c "$ckpt" "$work/out" --timings --no-progress 2>&1)
  clean; warm
  UCP_TEST_FAIL_AT="transfer:$k:0" "$new" $c "$ckpt" "$work/out" --no-progress >/dev/null 2>&1 || true
  warm
  resumed=$("$new" $c "$ckpt" "$work/out" --timings --no-progress 2>&1)
  echo "| $c | $rounds | $k | $(echo "$full" | field wall_s) | $(echo "$resumed" | field wall_s) |" \
       "$(echo "$resumed" | field resumed_rounds) | $(echo "$resumed" | field tensor_bytes_read) / $(echo "$full" | field tensor_bytes_read) |"
done
clean
