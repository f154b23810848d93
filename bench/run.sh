#!/usr/bin/env bash
# The ucp-reshard benchmark, end to end, on the current machine:
#   1. builds ucp-reshard and the bench tools (unless --no-build), installs python3-matplotlib for the
#      plot if it is missing (unless --no-install);
#   2. generates the DeepSpeed checkpoints to convert (ucp-bench-gen; cached in the work dir);
#   3. measures the floor: memcpy and sequential read/write bandwidth of the work dir's filesystem,
#      page cache warm and cold (ucp-bench-floor);
#   4. runs every command of the table below that this ucp-reshard supports at each rank count,
#      --reps times each (plus one --dry-run per case for the planned bytes), with --timings;
#   5. bench/report.py writes results.json, results.md and results.png to --results.
#
# Defaults reproduce bench/results/: `bench/run.sh`. Smoke test: `bench/run.sh --smoke ...`.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)

# ------------------------------------------------------------------ what is measured
# One line per measured command: name | ucp-reshard subcommand | extra arguments. Each runs as
#   mpirun -np N ucp-reshard <subcommand> CHECKPOINT OUT <extra> --timings
# and is skipped when `ucp-reshard <subcommand> --help` does not show its usage (not in this build).
COMMANDS=(
  "to-fp32:safetensors|to-fp32|--format safetensors"
  "to-fp32:torch|to-fp32|--format torch"
  "to-universal|to-universal|"
  "reshard:dp3|reshard|--target-dp 3"
)

PARAMS=505M
CONFIGS="z2_bf16_dp4 z3_bf16_dp4"   # z<stage>_<fp32|fp16|bf16>[_bf16opt]_dp<N>
RANKS="1 2 4"
REPS=3
CACHE=warm                          # warm | cold | both
FLOOR_SIZE=2GiB
ONLY=""                             # restrict to these command names (space separated)
BUILD_DIR=$REPO/build
WORK_DIR=${TMPDIR:-/tmp}/ucp-bench
RESULTS=$REPO/bench/results
BUILD=1
INSTALL=1
SMOKE=0

usage() {
  cat <<EOF
usage: bench/run.sh [options]
  --params N          parameters of the generated checkpoints (default $PARAMS)
  --configs "C ..."   checkpoint configs, z<stage>_<precision>[_bf16opt]_dp<N> (default "$CONFIGS")
  --ranks "N ..."     rank counts (default "$RANKS")
  --reps K            repetitions per case; the report takes the median (default $REPS)
  --cache MODE        warm, cold (checkpoint evicted from the page cache before each run) or both
                      (default $CACHE)
  --commands "C ..."  only these command names from the table in this script
  --floor-size S      bytes written/read by the floor measurement (default $FLOOR_SIZE)
  --build-dir DIR     build directory (default $BUILD_DIR)
  --work-dir DIR      scratch: checkpoints, outputs, logs (default $WORK_DIR)
  --results DIR       where results.{json,md,png} go (default $RESULTS)
  --no-build          use the binaries already in --build-dir
  --no-install        never apt-get (the plot is skipped if matplotlib is missing)
  --smoke             tiny: 1M params, z2_bf16_dp2, ranks "1 2", 1 rep, to-fp32 only, 64 MiB floor
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --params) PARAMS=$2; shift 2 ;;
    --configs) CONFIGS=$2; shift 2 ;;
    --ranks) RANKS=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --cache) CACHE=$2; shift 2 ;;
    --commands) ONLY=$2; shift 2 ;;
    --floor-size) FLOOR_SIZE=$2; shift 2 ;;
    --build-dir) BUILD_DIR=$(realpath -m "$2"); shift 2 ;;
    --work-dir) WORK_DIR=$(realpath -m "$2"); shift 2 ;;
    --results) RESULTS=$(realpath -m "$2"); shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --no-install) INSTALL=0; shift ;;
    --smoke) SMOKE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
if [ "$SMOKE" = 1 ]; then
  PARAMS=1M; CONFIGS=z2_bf16_dp2; RANKS="1 2"; REPS=1; CACHE=warm; FLOOR_SIZE=64MiB
  [ -n "$ONLY" ] || ONLY="to-fp32:safetensors to-fp32:torch"
fi
case "$CACHE" in warm) MODES="warm" ;; cold) MODES="cold" ;; both) MODES="warm cold" ;;
  *) echo "run.sh: --cache must be warm, cold or both" >&2; exit 2 ;; esac

log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# ------------------------------------------------------------------ 1. build + plot dependency
if [ "$BUILD" = 1 ]; then
  if [ "$INSTALL" = 1 ]; then "$REPO/launch/install-deps.sh" >&2; fi
  log "building ucp-reshard, ucp-bench-gen, ucp-bench-floor in $BUILD_DIR"
  cmake -G Ninja -S "$REPO" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  ninja -C "$BUILD_DIR" -j"${JOBS:-$(nproc)}" ucp-reshard ucp-bench-gen ucp-bench-floor >&2
fi
UCP=$BUILD_DIR/ucp-reshard
GEN=$BUILD_DIR/ucp-bench-gen
FLOOR=$BUILD_DIR/ucp-bench-floor
for b in "$UCP" "$GEN" "$FLOOR"; do
  [ -x "$b" ] || { echo "run.sh: $b is missing (build it, or drop --no-build)" >&2; exit 1; }
done
PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || PYTHON=python3
if ! "$PYTHON" -c "import matplotlib" 2>/dev/null; then
  if [ "$INSTALL" = 1 ]; then
    log "installing python3-matplotlib for the plot"
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-matplotlib; } >&2 \
      || log "could not install python3-matplotlib: the plot will be skipped"
  else
    log "matplotlib missing and --no-install given: the plot will be skipped"
  fi
fi

MPI=(mpirun --oversubscribe --bind-to none)
[ "$(id -u)" -ne 0 ] || MPI+=(--allow-run-as-root)

mkdir -p "$WORK_DIR" "$RESULTS"
RUN_DIR=$WORK_DIR/run
rm -rf "$RUN_DIR"
mkdir -p "$RUN_DIR/logs"
RAW=$RUN_DIR/runs.jsonl
: >"$RAW"

# ------------------------------------------------------------------ machine description
json_str() { "$PYTHON" -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }
{
  echo "{"
  echo "  \"date\": $(json_str "$(date -u +%Y-%m-%dT%H:%M:%SZ)"),"
  echo "  \"host_cpu\": $(json_str "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"),"
  echo "  \"cores\": $(nproc),"
  echo "  \"mem_total_bytes\": $(awk '/MemTotal/ {print $2 * 1024}' /proc/meminfo),"
  echo "  \"kernel\": $(json_str "$(uname -sr)"),"
  echo "  \"filesystem\": $(json_str "$(df -PT "$WORK_DIR" | awk 'NR==2 {print $2 " on " $1 " (" $7 ")"}')"),"
  echo "  \"ucp_reshard\": $(json_str "$("$UCP" --version 2>&1 | head -1)"),"
  echo "  \"mpi\": $(json_str "$(mpirun --version 2>&1 | head -1)"),"
  echo "  \"git\": $(json_str "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo none)"),"
  echo "  \"load_before\": $(json_str "$(cut -d' ' -f1-3 /proc/loadavg)"),"
  echo "  \"params_requested\": $(json_str "$PARAMS"), \"reps\": $REPS, \"ranks\": $(json_str "$RANKS"),"
  echo "  \"cache_modes\": $(json_str "$MODES"), \"smoke\": $SMOKE"
  echo "}"
} >"$RUN_DIR/machine.json"

# ------------------------------------------------------------------ 2. checkpoints
: >"$RUN_DIR/checkpoints.jsonl"
for cfg in $CONFIGS; do
  if ! [[ $cfg =~ ^z([123])_(fp32|fp16|bf16)(_bf16opt)?_dp([0-9]+)$ ]]; then
    echo "run.sh: bad config '$cfg' (expected e.g. z2_bf16_dp4 or z1_bf16_bf16opt_dp2)" >&2; exit 2
  fi
  args=(--params "$PARAMS" --stage "${BASH_REMATCH[1]}" --precision "${BASH_REMATCH[2]}" --dp "${BASH_REMATCH[4]}")
  [ -z "${BASH_REMATCH[3]}" ] || args+=(--bf16-optimizer)
  dir=$WORK_DIR/ckpt/${cfg}_$PARAMS
  stamp="$(md5sum <"$GEN" | cut -c1-16) ${args[*]}"  # regenerate when the generator changes
  if [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$stamp" ] && [ -f "$dir/gen.json" ]; then
    log "checkpoint $cfg ($PARAMS) already generated in $dir"
  else
    log "generating $cfg ($PARAMS params) in $dir"
    rm -rf "$dir"
    mkdir -p "$dir"
    "$GEN" --out "$dir" "${args[@]}" >"$dir/gen.json"
    echo "$stamp" >"$dir/.stamp"
  fi
  "$PYTHON" -c 'import json,sys; d=json.load(open(sys.argv[1])); d["config"]=sys.argv[2]; d["path"]=sys.argv[3]; print(json.dumps(d))' \
    "$dir/gen.json" "$cfg" "$dir" >>"$RUN_DIR/checkpoints.jsonl"
done

# ------------------------------------------------------------------ 3. floor
# Dirty pages left by the generator (or anything else) would be written back during the
# measurements and throttle their writes: every measurement starts with a sync.
sync
log "measuring the floor in $WORK_DIR ($FLOOR_SIZE)"
"$FLOOR" measure --dir "$WORK_DIR" --size "$FLOOR_SIZE" >"$RUN_DIR/floor.json"
cat "$RUN_DIR/floor.json" >&2

# ------------------------------------------------------------------ 4. runs
selected() {  # is command name $1 selected by --commands?
  [ -z "$ONLY" ] && return 0
  local c
  for c in $ONLY; do [ "$c" = "$1" ] && return 0; done
  return 1
}
OUT=$WORK_DIR/out
# One rank runs as a plain process, the way one runs it by hand (and the way ds_to_universal.py,
# the reference, runs): mpirun's own start-up is ~0.5 s here. More ranks run under mpirun.
launcher() {
  if [ "$1" = 1 ]; then LAUNCH=(); else LAUNCH=("${MPI[@]}" -np "$1"); fi
}
for entry in "${COMMANDS[@]}"; do
  IFS='|' read -r name sub extra <<<"$entry"
  selected "$name" || continue
  # (CLI11 answers `--help` after an unknown subcommand with the top-level help and status 0, so
  # the usage line must name the subcommand too.)
  if ! help=$("$UCP" "$sub" --help 2>&1) || ! grep -q "^Usage: .* $sub " <<<"$help"; then
    log "skipping $name: 'ucp-reshard $sub' is not available in this build"
    echo "{\"skipped\": true, \"command\": \"$name\", \"subcommand\": \"$sub\"}" >>"$RAW"
    continue
  fi
  read -r -a extra_args <<<"$extra"
  for cfg in $CONFIGS; do
    ckpt=$WORK_DIR/ckpt/${cfg}_$PARAMS
    for n in $RANKS; do
      tag="${name//:/_}.$cfg.n$n"
      rm -rf "$OUT"
      launcher "$n"
      "${LAUNCH[@]}" "$UCP" "$sub" "$ckpt" "$OUT" "${extra_args[@]}" --dry-run \
        >"$RUN_DIR/logs/$tag.dryrun.txt" 2>&1 || log "dry run of $name at $n ranks failed (see $RUN_DIR/logs/$tag.dryrun.txt)"
      for mode in $MODES; do
        for rep in $(seq 1 "$REPS"); do
          rm -rf "$OUT"
          sync
          # Warm: the checkpoint is read into the page cache first (the previous case's checkpoint
          # or output may have pushed it out); cold: it is dropped from it.
          if [ "$mode" = cold ]; then "$FLOOR" evict "$ckpt" || log "could not evict $ckpt from the page cache"
          else find "$ckpt" -type f -exec cat {} + >/dev/null; fi
          log "$name $cfg n=$n $mode rep $rep/$REPS"
          t0=$(date +%s.%N)
          rc=0
          "${LAUNCH[@]}" "$UCP" "$sub" "$ckpt" "$OUT" "${extra_args[@]}" --timings \
            >"$RUN_DIR/logs/$tag.$mode.$rep.txt" 2>&1 || rc=$?
          t1=$(date +%s.%N)
          timings=$(grep -m1 '^timings: ' "$RUN_DIR/logs/$tag.$mode.$rep.txt" | sed 's/^timings: //' || true)
          [ -n "$timings" ] || timings=null
          [ "$rc" = 0 ] || log "$name $cfg n=$n failed with exit code $rc (see $RUN_DIR/logs/$tag.$mode.$rep.txt)"
          out_bytes=$(du -sb "$OUT" 2>/dev/null | cut -f1 || echo 0)
          printf '{"command": "%s", "subcommand": "%s", "args": "%s", "config": "%s", "ranks": %d, "cache": "%s", "rep": %d, "rc": %d, "external_wall_s": %s, "output_bytes": %s, "dryrun_log": "%s", "timings": %s}\n' \
            "$name" "$sub" "$extra" "$cfg" "$n" "$mode" "$rep" "$rc" "$(awk "BEGIN {printf \"%.3f\", $t1 - $t0}")" "${out_bytes:-0}" \
            "$RUN_DIR/logs/$tag.dryrun.txt" "$timings" >>"$RAW"
        done
      done
    done
  done
done
rm -rf "$OUT"
cut -d' ' -f1-3 /proc/loadavg >"$RUN_DIR/load_after.txt"

# ------------------------------------------------------------------ 5. report
"$PYTHON" "$REPO/bench/report.py" --run-dir "$RUN_DIR" --results "$RESULTS"
