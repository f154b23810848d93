#!/usr/bin/env bash
# Runs every command on every fixture with one ucp-reshard binary, into OUTROOT/<set>/<fixture>/<case>.
# Run it with the previous build and with the new one, then `diff -r` the two roots: a refactor that
# changes no behaviour leaves every output byte-identical (and every refusal's message the same).
#   tools/compare/run_all_commands.sh BINARY OUTROOT [MPIRUN_NP]
# ONLY=REGEX limits the fixtures (their folder names) to those matching it.
set -uo pipefail
bin=$(realpath "$1"); root=$2; np=${3:-1}
golden=$(cd "$(dirname "$0")/../../tests/golden" && pwd)
launch=()
[ "$np" -gt 1 ] && launch=(mpirun -np "$np" --allow-run-as-root --oversubscribe --bind-to none)
rm -rf "$root"; mkdir -p "$root"

run() {  # run CASE_DIR ARGS...: output folder CASE_DIR/out, messages in CASE_DIR/log (timings stripped)
  local dir=$1; shift
  mkdir -p "$dir"
  "${launch[@]}" "$bin" "$@" --no-progress >"$dir/stdout" 2>"$dir/log"
  echo "exit $?" >>"$dir/log"
}

for set in deepspeed deepspeed-0.19; do
  for fx in "$golden/$set"/*/; do
    fx=${fx%/}; name=$(basename "$fx"); [ -d "$fx/checkpoint" ] || continue
    [[ "$name" =~ ${ONLY:-.} ]] || continue
    d=$root/$set/$name; ck=$fx/checkpoint
    run "$d/fp32-safetensors" to-fp32 "$ck" "$d/fp32-safetensors/out"
    run "$d/fp32-torch" to-fp32 "$ck" "$d/fp32-torch/out" --format torch --max-shard-size 200KB
    run "$d/fp32-bf16" to-fp32 "$ck" "$d/fp32-bf16/out" --dtype bf16 --exclude-frozen
    run "$d/fp32-hdf5" to-fp32 "$ck" "$d/fp32-hdf5/out" --format hdf5 --with-optimizer
    run "$d/universal" to-universal "$ck" "$d/universal/out"
    run "$d/reshard3" reshard "$ck" "$d/reshard3/out" --target-dp 3
    run "$d/reshard-from-universal" reshard "$d/universal/out" "$d/reshard-from-universal/out" --target-dp 2
    run "$d/reshard-from-hdf5" reshard "$d/fp32-hdf5/out" "$d/reshard-from-hdf5/out" --target-dp 1
    run "$d/dry-run" to-fp32 "$ck" "$d/dry-run/out" --dry-run
  done
done
for fx in "$golden"/frameworks/*/; do
  fx=${fx%/}; name=$(basename "$fx"); d=$root/frameworks/$name
  [[ "$name" =~ ${ONLY:-.} ]] || continue
  src=$(ls -d "$fx"/checkpoint-* "$fx"/*.ckpt 2>/dev/null | head -1)
  run "$d/fp32" to-fp32 "$src" "$d/fp32/out"
  run "$d/lightning" to-fp32 "$src" "$d/lightning/out" --format lightning
  run "$d/reshard3" reshard "$src" "$d/reshard3/out" --target-dp 3
done
# Paths of the temporary folders and mpirun's job ids differ between runs; nothing else may.
find "$root" -name log -exec sed -i -E "s#$root#ROOT#g; s#\\.ucp-tmp-[0-9]+-[0-9a-f]+#.ucp-tmp#g; s#\\[\\[[0-9]+,#[[JOB,#g; /Process name: /d" {} +
