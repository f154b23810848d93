#!/usr/bin/env bash
# Newcomer command 1: install, build, and run ucp-reshard's main job on the sample DeepSpeed
# checkpoint shipped in the repo (a real ZeRO-2 bf16 checkpoint written by DeepSpeed 0.14.5 on 2
# ranks): inspect it, consolidate it to fp32 safetensors with 2 MPI ranks, and compare the result
# with DeepSpeed's own zero_to_fp32 output.
set -euo pipefail
cd "$(dirname "$0")/.."
./launch/install-deps.sh
./launch/build.sh
SAMPLE=tests/golden/deepspeed/gpt_z2_bf16_ws2
OUT=out/quickstart
MPIRUN=(mpirun -np 2 --oversubscribe --bind-to none)
[ "$(id -u)" -eq 0 ] && MPIRUN+=(--allow-run-as-root)
run() { echo "+ $*"; "$@"; }
run build/ucp-reshard inspect "$SAMPLE/checkpoint"
run "${MPIRUN[@]}" build/ucp-reshard to-fp32 "$SAMPLE/checkpoint" "$OUT" --overwrite --timings
run build/ucp-reshard inspect "$OUT/model.safetensors" --max-items 8
# DeepSpeed's zero_to_fp32 turns the bool causal mask into float32; we keep bool. All else is bitwise equal.
echo "+ build/ucp-reshard diff $OUT $SAMPLE/fp32_reference.pt"
build/ucp-reshard diff "$OUT" "$SAMPLE/fp32_reference.pt" || true
echo "# expected: one dtype difference, causal_mask (zero_to_fp32 turns bool buffers into float32; we keep bool)"
