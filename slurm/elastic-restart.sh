#!/usr/bin/env bash
# Elastic restart: resume training from a DeepSpeed ZeRO checkpoint on an allocation of a different
# size. Reads the checkpoint's data-parallel (DP) size, compares it with the new run's, reshards
# only when they differ, then hands over to the training command:
#   slurm/elastic-restart.sh [options] CKPT -- TRAIN_CMD [ARGS...]
# Handover: TRAIN_CMD runs (exec) with the checkpoint to load substituted for every `{ckpt}` in its
# arguments and exported as UCP_CHECKPOINT (plus UCP_CHECKPOINT_TAG, UCP_CHECKPOINT_DP,
# UCP_CHECKPOINT_RESHARDED=0|1). Run it inside the job script of the new allocation, e.g.
#   slurm/elastic-restart.sh /ckpt/run1 -- srun python train.py --deepspeed --load_dir {ckpt}
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: elastic-restart.sh [options] CKPT -- TRAIN_CMD [ARGS...]
  --target-dp M   DP size of the new run (default: $UCP_TARGET_DP, else the allocation's GPUs:
                  SLURM_GPUS, else SLURM_GPUS_PER_NODE x SLURM_JOB_NUM_NODES, else SLURM_NTASKS)
  --out DIR       where the resharded checkpoint goes (default: CKPT-dpM next to CKPT); if it
                  already holds the same tag at dp M (a requeued job), it is used as is
  --tag T         tag to restart from (default: the one in CKPT/latest)
  -n N            ranks for the reshard step (default: the allocation's tasks; see ucp-reshard-run)
  --dry-run       print the decision and the commands; run nothing
In TRAIN_CMD, {ckpt} becomes the checkpoint to load; it is also exported as UCP_CHECKPOINT.
USAGE
}

say() { echo "elastic-restart: $*" >&2; }
die() { say "error: $1"; exit "${2:-2}"; }
# `ucp-reshard X --help` exits 0 even for an unknown X (the root help answers), so look for the
# command in the root help's "Subcommands:" list instead.
has_command() { "$UCP_RESHARD" --help 2>/dev/null | grep -qE "^  $1( |\$)"; }

target="${UCP_TARGET_DP:-}" target_from="UCP_TARGET_DP" out="" tag="" ranks="" dry_run=0
while [ $# -gt 0 ]; do
  case "$1" in
    --target-dp) [ $# -ge 2 ] || die "$1 needs a value"; target=$2; target_from="--target-dp"; shift 2 ;;
    --out) [ $# -ge 2 ] || die "$1 needs a value"; out=$2; shift 2 ;;
    --tag) [ $# -ge 2 ] || die "$1 needs a value"; tag=$2; shift 2 ;;
    -n) [ $# -ge 2 ] || die "$1 needs a value"; ranks=$2; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) die "missing CKPT before --" ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { usage >&2; exit 2; }
ckpt=$1
shift
[ "${1:-}" = "--" ] || die "expected '--' and the training command after CKPT"
shift
[ $# -ge 1 ] || die "no training command after '--'"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
run_tool="$here/../launch/ucp-reshard-run"
if [ -z "${UCP_RESHARD:-}" ]; then
  if [ -x "$here/../build/ucp-reshard" ]; then UCP_RESHARD=$(cd "$here/../build" && pwd)/ucp-reshard
  elif command -v ucp-reshard >/dev/null; then UCP_RESHARD=$(command -v ucp-reshard)
  else die "ucp-reshard not found: put it on PATH or set UCP_RESHARD"
  fi
fi
export UCP_RESHARD

# --- DP size and tag of the checkpoint (inspect checks every rank file is there)
tag_args=()
[ -n "$tag" ] && tag_args=(--tag "$tag")
json_field() { sed -n "s/^  \"$1\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p" <<<"$2" | head -1; }
info=$("$UCP_RESHARD" inspect "$ckpt" --json "${tag_args[@]}") || die "cannot read checkpoint '$ckpt' (ucp-reshard inspect failed)" $?
src_dp=$(json_field dp_world_size "$info")
src_tag=$(json_field tag "$info")
[[ "$src_dp" =~ ^[0-9]+$ ]] || die "'$ckpt' is not a DeepSpeed checkpoint (no dp_world_size in ucp-reshard inspect --json)"

# --- DP size of the new run
gpu_count() {  # SLURM_GPUS is "4", "a100:4" or "a100:2,v100:2"
  local total=0 part
  IFS=, read -ra parts <<<"$1"
  for part in "${parts[@]}"; do
    part=${part##*:}
    [[ "$part" =~ ^[0-9]+$ ]] || return 1
    total=$((total + part))
  done
  echo "$total"
}
if [ -z "$target" ]; then
  if [ -n "${SLURM_GPUS:-}" ] && target=$(gpu_count "$SLURM_GPUS"); then
    target_from="SLURM_GPUS"
  elif [ -n "${SLURM_GPUS_PER_NODE:-}" ] && [ -n "${SLURM_JOB_NUM_NODES:-}" ] && g=$(gpu_count "$SLURM_GPUS_PER_NODE"); then
    target=$((g * SLURM_JOB_NUM_NODES)) target_from="SLURM_GPUS_PER_NODE x SLURM_JOB_NUM_NODES"
  elif [ -n "${SLURM_NTASKS:-}" ]; then
    target=$SLURM_NTASKS target_from="SLURM_NTASKS"
  else
    die "cannot tell the new DP size: run inside a Slurm allocation, or pass --target-dp M (or UCP_TARGET_DP)"
  fi
fi
[[ "$target" =~ ^[1-9][0-9]*$ ]] || die "new DP size from $target_from: expected a positive integer, got '$target'"

resharded=0
if [ "$src_dp" = "$target" ]; then
  say "checkpoint $ckpt (tag $src_tag) has dp $src_dp = new dp $target ($target_from): no reshard needed"
  use=$ckpt
else
  use=${out:-${ckpt%/}-dp$target}
  resharded=1
  say "checkpoint $ckpt (tag $src_tag) has dp $src_dp, new dp is $target ($target_from): resharding into $use"
fi
if [ "$resharded" = 1 ] && [ -e "$use" ]; then
  # A requeued job finds the copy an earlier attempt made (reshard renames it into place only
  # once complete): reuse it if it is this tag at this DP size, refuse anything else.
  existing=$("$UCP_RESHARD" inspect "$use" --json 2>/dev/null) || existing=""
  if [ "$(json_field dp_world_size "$existing")" = "$target" ] && [ "$(json_field tag "$existing")" = "$src_tag" ]; then
    say "$use already holds tag $src_tag at dp $target (an earlier restart): using it"
    resharded=2
  else
    die "'$use' exists but is not tag $src_tag at dp $target; remove it or pass --out DIR" 6
  fi
fi
if [ "$resharded" = 1 ]; then
  cmd=("$run_tool")
  [ -n "$ranks" ] && cmd+=(-n "$ranks")
  [ "$dry_run" = 1 ] && cmd+=(--dry-run)
  cmd+=(-- reshard "$ckpt" "$use" --target-dp "$target" --tag "$src_tag")
  if [ "$dry_run" = 0 ] && ! has_command reshard; then
    die "this ucp-reshard ($UCP_RESHARD) has no 'reshard' command; update it" 5
  fi
  printf -v shown ' %q' "${cmd[@]}"
  say "+$shown"
  "${cmd[@]}" || die "reshard failed (exit $?); the original checkpoint is untouched" $?
fi
[ "$resharded" = 2 ] && resharded=1

# --- hand over
export UCP_CHECKPOINT="$use" UCP_CHECKPOINT_TAG="$src_tag" UCP_CHECKPOINT_DP="$target" UCP_CHECKPOINT_RESHARDED="$resharded"
train=()
for a in "$@"; do train+=("${a//\{ckpt\}/$use}"); done
printf -v shown ' %q' "${train[@]}"
say "$([ "$dry_run" = 1 ] && echo "would hand over" || echo "handing over"): UCP_CHECKPOINT=$use:$shown"
[ "$dry_run" = 1 ] && exit 0
exec "${train[@]}"
