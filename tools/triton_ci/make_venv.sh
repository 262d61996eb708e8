#!/usr/bin/env bash
# CI stand-in server environment: the `tritonserver` binary of the nvidia-pytriton wheel (python backend
# only) with numpy<2 (numpy 2 made the python backend return empty outputs) and onnxruntime for
# tools/triton_ci/onnxruntime/model.py. A separate venv, cached in .venv-triton/.
# Never fails `make test`: when the install fails, .venv-triton/.failed holds the reason the tests print.
set -u
VENV="${1:-.venv-triton}"
PYTHON="${PYTHON:-python3}"
test -f "$VENV/.installed" && exit 0
rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
if log=$($PYTHON -m venv "$VENV" 2>&1 && "$VENV/bin/python" -m pip install --quiet "nvidia-pytriton==0.7.0" "numpy<2" onnxruntime 2>&1); then
  touch "$VENV/.installed"
else
  mkdir -p "$VENV"
  printf 'installing nvidia-pytriton==0.7.0 into %s failed: %s\n' "$VENV" "$(printf '%s' "$log" | grep -v '^WARNING: Location' | tail -n 3)" > "$VENV/.failed"
  cat "$VENV/.failed" >&2
fi
exit 0
