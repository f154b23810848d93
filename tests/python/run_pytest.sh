#!/bin/bash
# Builds the wheel from this clone (`pip wheel`, as a user's `pip install .` would), installs it into
# a folder outside the clone (no venv is modified) and runs tests/python with the current-stack
# venv's python, whose DeepSpeed 0.19 is the oracle.
#   run_pytest.sh PYTHON [pytest args...]
# Env: UCP_PY_WORK (default ~/.cache/ucp-reshard/python-wheel), CMAKE_BUILD_PARALLEL_LEVEL (default 2),
#      UCP_GOLDEN_DIR, UCP_BUILD_DIR (passed to the tests).
set -euo pipefail
PY=$1; shift
SRC=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${UCP_PY_WORK:-$HOME/.cache/ucp-reshard/python-wheel}
export DS_ACCELERATOR=${DS_ACCELERATOR:-cpu}
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2}
mkdir -p "$WORK"
# Keyed by the sources the wheel holds: an unchanged tree reuses its wheel and install.
KEY=$(cd "$SRC" && cat pyproject.toml CMakeLists.txt $(find python src include cmake -type f -not -name '*.pyc' | sort) \
      2>/dev/null | sha256sum | cut -c1-16)
TARGET=$WORK/site-$KEY
if [ ! -f "$TARGET/.complete" ]; then
  rm -rf "$WORK"/site-* "$WORK/wheels" "$WORK/build"
  mkdir -p "$WORK/wheels"
  # A copy of what the wheel is built from, so its build folder (pyproject: build/) lands outside the clone.
  rm -rf "$WORK/src" && mkdir -p "$WORK/src"
  if git -C "$SRC" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$SRC" && git ls-files -co --exclude-standard -z -- pyproject.toml CMakeLists.txt README.md cmake include src python \
       | xargs -0 tar cf -) | (cd "$WORK/src" && tar xf -)
  else
    (cd "$SRC" && tar cf - pyproject.toml CMakeLists.txt README.md cmake include src python) | (cd "$WORK/src" && tar xf -)
  fi
  "$PY" -m pip wheel --no-deps -w "$WORK/wheels" "$WORK/src" 2>&1 | tail -20
  "$PY" -m pip install --no-deps --target "$TARGET" "$WORK"/wheels/ucp_reshard-*.whl 2>&1 | tail -3
  # pytest (not in the oracle venv) beside it, pinned.
  "$PY" -m pip install --no-deps --target "$TARGET" pytest==8.4.2 pluggy==1.6.0 iniconfig==2.1.0 2>&1 | tail -1
  touch "$TARGET/.complete"
fi
export PYTHONPATH=$TARGET${PYTHONPATH:+:$PYTHONPATH}
export PATH=$TARGET/bin:$PATH
cd "$SRC/tests/python"
exec "$PY" -m pytest -q -p no:cacheprovider "$@" .
