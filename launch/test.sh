#!/usr/bin/env bash
# Newcomer command 2 (and CI): install dependencies, build, run the whole test suite
# (unit, MPI at 1-4 ranks, torch/numpy/libtorch oracles), then build the libFuzzer targets with
# clang and run each for a bounded time.
set -euo pipefail
cd "$(dirname "$0")/.."
./launch/install-deps.sh --slurm   # tests/slurm start a real one-node Slurm cluster
./launch/build.sh
(cd build && ctest --output-on-failure -j"${JOBS:-$(nproc)}" --timeout 900)

# Fuzzers: a separate clang build of base+format only.
cmake -G Ninja -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUCP_BUILD_FUZZERS=ON \
  -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
  -DUCP_FUZZ_SECONDS="${UCP_FUZZ_SECONDS:-45}" >/dev/null
ninja -C build-fuzz -j"${JOBS:-$(nproc)}"
(cd build-fuzz && ctest --output-on-failure -j"${JOBS:-$(nproc)}")
