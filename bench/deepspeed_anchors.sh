#!/usr/bin/env bash
# Times DeepSpeed's own converters (zero_to_fp32, ds_to_universal) from the current-stack venv
# (launch/oracle-env.sh: DeepSpeed 0.19, torch 2.x) next to ucp-reshard, same checkpoint, same
# machine, same sitting, and writes bench/results/deepspeed-0.19-anchors.{json,md}.
#
#   bench/deepspeed_anchors.sh [--params 505M] [--configs "z2_bf16_dp4 z3_bf16_dp4"] [--work DIR]
#
# Checkpoints come from ucp-bench-gen (DeepSpeed's exact layout, see bench/README.md), cached in the
# work dir like bench/run.sh's. Each tool runs once per config, page cache warm (the checkpoint is
# read once first), its output deleted between runs; wall time is start to exit, peak RSS from
# /usr/bin/time. DeepSpeed's zero_to_fp32 writes one file (--max_shard_size 1000GB) of torch.save.
set -euo pipefail
cd "$(dirname "$0")/.."
PARAMS=505M
CONFIGS="z2_bf16_dp4 z3_bf16_dp4"
WORK=${TMPDIR:-/tmp}/ucp-bench
while [ $# -gt 0 ]; do
  case $1 in
    --params) PARAMS=$2; shift 2 ;;
    --configs) CONFIGS=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    *) echo "usage: $0 [--params N] [--configs LIST] [--work DIR]" >&2; exit 2 ;;
  esac
done
PY=$(./launch/oracle-env.sh | tail -n 1)
BUILD_DIR=${BUILD_DIR:-build}
ninja -C "$BUILD_DIR" ucp-reshard ucp-bench-gen >&2
UCP=$BUILD_DIR/ucp-reshard
GEN=$BUILD_DIR/ucp-bench-gen
command -v /usr/bin/time >/dev/null || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 2; }
OUT_JSON=bench/results/deepspeed-0.19-anchors.json
mkdir -p "$WORK/ckpt" "$WORK/out"
versions=$("$PY" -c 'import torch, deepspeed; print(f"DeepSpeed {deepspeed.__version__}, torch {torch.__version__}")' 2>/dev/null | tail -n 1)

# timed NAME CMD...: one JSON line {name, wall_s, peak_rss_kb, rc}
timed() {
  local name=$1; shift
  local t0 t1 rc=0
  t0=$(date +%s.%N)
  /usr/bin/time -f '%M' -o "$WORK/rss" "$@" >"$WORK/out/$name.log" 2>&1 || rc=$?
  t1=$(date +%s.%N)
  printf '{"name": "%s", "wall_s": %.2f, "peak_rss_kb": %s, "rc": %d}\n' "$name" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" \
    "$(tail -n 1 "$WORK/rss")" "$rc"
}

: >"$OUT_JSON.tmp"
for cfg in $CONFIGS; do
  [[ $cfg =~ ^z([123])_(fp32|fp16|bf16)_dp([0-9]+)$ ]] || { echo "bad config $cfg" >&2; exit 2; }
  dir=$WORK/ckpt/${cfg}_$PARAMS
  if [ ! -f "$dir/gen.json" ]; then
    rm -rf "$dir"; mkdir -p "$dir"
    "$GEN" --out "$dir" --params "$PARAMS" --stage "${BASH_REMATCH[1]}" --precision "${BASH_REMATCH[2]}" \
      --dp "${BASH_REMATCH[3]}" >"$dir/gen.json"
  fi
  tag=$(cat "$dir/latest")
  cat "$dir/$tag"/*.pt >/dev/null  # warm page cache
  for tool in ucp-to-fp32 ds-zero_to_fp32 ucp-to-universal ds-ds_to_universal; do
    out=$WORK/out/$tool
    rm -rf "$out"; sync
    case $tool in
      ucp-to-fp32) cmd=("$UCP" to-fp32 "$dir" "$out" --format torch --no-progress) ;;
      ucp-to-universal) cmd=("$UCP" to-universal "$dir" "$out" --no-progress) ;;
      ds-zero_to_fp32) cmd=(env DS_ACCELERATOR=cpu "$PY" -m deepspeed.utils.zero_to_fp32 "$dir" "$out" --max_shard_size 1000GB) ;;
      ds-ds_to_universal) cmd=(env DS_ACCELERATOR=cpu "$PY" -m deepspeed.checkpoint.ds_to_universal --input_folder "$dir/$tag"
                               --output_folder "$out" --inject_missing_state --num_extract_workers 2 --num_merge_workers 2) ;;
    esac
    line=$(timed "${cfg}_$tool" "${cmd[@]}")
    echo "$line" | tee -a "$OUT_JSON.tmp" >&2
    rm -rf "$out"
  done
done
"$PY" - "$OUT_JSON.tmp" "$OUT_JSON" "$versions" "$PARAMS" <<'EOF'
import json, sys, platform, os
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
doc = {"versions": sys.argv[3], "params": sys.argv[4], "cpus": os.cpu_count(), "machine": platform.machine(), "runs": rows}
json.dump(doc, open(sys.argv[2], "w"), indent=1)
md = [f"# DeepSpeed 0.19 anchors ({sys.argv[3]}, {sys.argv[4]} params, {os.cpu_count()} CPUs)", "",
      "Produced by `bench/deepspeed_anchors.sh`: each tool once, same checkpoint, same sitting, page cache warm; "
      "wall time start to exit; peak RSS of the process tree's largest process.", "",
      "| config / tool | wall (s) | peak RSS | exit |", "|---|---|---|---|"]
for r in rows:
    md.append(f"| {r['name']} | {r['wall_s']:.2f} | {r['peak_rss_kb'] / 1e6:.2f} GB | {r['rc']} |")
open(sys.argv[2][:-5] + ".md", "w").write("\n".join(md) + "\n")
EOF
rm -f "$OUT_JSON.tmp"
echo "wrote $OUT_JSON and ${OUT_JSON%.json}.md" >&2
