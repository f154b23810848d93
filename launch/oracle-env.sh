#!/usr/bin/env bash
# Installs the current-stack oracle environment (torch 2.x, DeepSpeed 0.19, transformers, accelerate,
# Lightning, safetensors, numpy, h5py from PyPI, pinned in tests/oracle-env/*.lock) into a venv
# outside the clone, and prints the path of its python on the last line of stdout.
#
#   launch/oracle-env.sh            install if needed, print the python
#
# The venv lives in ${UCP_ORACLE_VENV:-$HOME/.cache/ucp-reshard/oracle-venv} and is reused as long as
# the lock files have not changed (their sha256 is recorded in it); a changed lock rebuilds it from
# scratch. A first install downloads ~4 GB (PyPI's torch is the CUDA build; it runs on the CPU) and
# takes 5-8 minutes; the venv is ~5.7 GB on disk.
set -euo pipefail
cd "$(dirname "$0")/.."
LOCK_DIR=tests/oracle-env
VENV=${UCP_ORACLE_VENV:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/ucp-reshard/oracle-venv}
# Debian's python3 (its venv module is python3-venv, from launch/install-deps.sh), not whichever
# python3 is first on PATH: the venv must not depend on a user's own interpreter.
BASE_PYTHON=${UCP_ORACLE_BASE_PYTHON:-/usr/bin/python3}

digest=$(cat "$LOCK_DIR/requirements.lock" "$LOCK_DIR/deepspeed.lock" | sha256sum | cut -d' ' -f1)
stamp="$VENV/.ucp-lock-sha256"
if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$digest" ]; then
  echo "oracle-env: $VENV is up to date" >&2
  echo "$VENV/bin/python"
  exit 0
fi

echo "oracle-env: building $VENV from $LOCK_DIR (first time: ~4 GB download, several minutes)" >&2
rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
"$BASE_PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check --no-input -q)
# Build tools first (deepspeed's sdist builds in the venv); then the lock, exactly, with no resolver;
# then deepspeed, whose setup.py imports torch. DS_BUILD_OPS=0: no CUDA/C++ ops are compiled.
"${pip[@]}" install --upgrade 'pip==26.3' 'setuptools==84.2.1' 'wheel==0.48.0' >&2
"${pip[@]}" install --no-deps -r "$LOCK_DIR/requirements.lock" >&2
DS_BUILD_OPS=0 "${pip[@]}" install --no-deps --no-build-isolation -r "$LOCK_DIR/deepspeed.lock" >&2
# Fail here, not in the middle of a test run, if the environment cannot import what the tests use.
"$VENV/bin/python" - >&2 <<'EOF'
import importlib, sys
mods = ["torch", "deepspeed", "transformers", "accelerate", "lightning", "safetensors", "numpy", "h5py"]
for m in mods:
    importlib.import_module(m)
import torch, deepspeed
print(f"oracle-env: torch {torch.__version__}, deepspeed {deepspeed.__version__}, python {sys.version.split()[0]}")
EOF
echo "$digest" > "$stamp"
echo "$VENV/bin/python"
