#!/usr/bin/env bash
# Installs everything ucp-reshard builds and tests with, from Debian's own repositories.
# Idempotent and quick when everything is already there.
set -euo pipefail

packages=(
  cmake ninja-build g++ pkg-config zlib1g-dev
  libzstd-dev                         # DCP items saved with torch's ZStandard extension
  openmpi-bin libopenmpi-dev          # MPI: the CPU transport and the launcher
  nlohmann-json3-dev libcli11-dev     # JSON, command line
  googletest libgtest-dev libgmock-dev
  libhdf5-openmpi-dev                 # parallel HDF5 output
  clang-14 libclang-rt-14-dev         # libFuzzer targets
  python3-torch python3-numpy python3-h5py   # test oracles only (Debian's python3, /usr/bin/python3)
  python3-venv                        # the current-stack oracle venv (launch/oracle-env.sh)
  libtorch-dev                        # C++ oracle: torch::pickle_load reads our .bin files
)

# --slurm: also Slurm and munge, for the tests that start a real one-node cluster (tests/slurm).
# Kept optional: a workstation that only converts checkpoints does not need Slurm's daemons.
if [ "${1:-}" = "--slurm" ]; then
  packages+=(slurm-wlm munge)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
# Packages must not start daemons (munge, slurmd, slurmctld would on a machine without a
# policy-rc.d): the tests start their own under a temp dir and leave nothing running.
policy=/usr/sbin/policy-rc.d
added_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null && $SUDO chmod +x "$policy" && added_policy=1
fi
trap 'if [ "$added_policy" = 1 ]; then $SUDO rm -f "$policy"; fi' EXIT
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
