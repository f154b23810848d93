#!/usr/bin/env bash
# Newcomer command 2 (and CI): install dependencies, build, run the whole test suite
# (unit, MPI at 1-4 ranks, torch/numpy/libtorch oracles on DeepSpeed 0.14.5 + torch 1.13 and on
# DeepSpeed 0.19 + torch 2.x), then build the libFuzzer targets with
# clang and run each for a bounded time.
set -euo pipefail
cd "$(dirname "$0")/.."
./launch/install-deps.sh --slurm   # tests/slurm start a real one-node Slurm cluster
# Today's stack from PyPI (torch 2.x, DeepSpeed 0.19, transformers, accelerate, Lightning), pinned in
# tests/oracle-env/, in a venv outside the clone that is reused while the locks are unchanged.
oracle_python=$(./launch/oracle-env.sh | tail -n 1)
./launch/build.sh -DUCP_ORACLE_PYTHON_CURRENT="$oracle_python"
(cd build && ctest --output-on-failure -j"${JOBS:-$(nproc)}" --timeout 900)

# Fuzzers: a separate clang build of base+format only.
cmake -G Ninja -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUCP_BUILD_FUZZERS=ON \
  -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
  -DUCP_FUZZ_SECONDS="${UCP_FUZZ_SECONDS:-45}" >/dev/null
ninja -C build-fuzz -j"${JOBS:-$(nproc)}"
(cd build-fuzz && ctest --output-on-failure -j"${JOBS:-$(nproc)}")
