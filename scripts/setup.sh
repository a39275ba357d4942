#!/usr/bin/env bash
# Create a virtual environment (default .venv) and install vist3a with its first-party plugins.
#   bash scripts/setup.sh          # library + CLI
#   bash scripts/setup.sh --test   # also the test extra and the example plugin the tests use
# torch: an already installed torch is kept. Otherwise a machine with an NVIDIA GPU gets PyPI's default (CUDA)
# build and any other machine gets torch==$VIST3A_TORCH (default 2.13.0, the CPU wheel on our CPU machines;
# elsewhere install the CPU build you want into the venv first, e.g. from the PyTorch CPU index).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VIST3A_VENV:-.venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        "${pip[@]}" torch
    else
        "${pip[@]}" "torch==${VIST3A_TORCH:-2.13.0}"
    fi
fi
if [ "${1:-}" = "--test" ]; then
    "${pip[@]}" -e ".[test]" -e docs/examples/vist3a-example
else
    "${pip[@]}" -e .
fi
echo "vist3a installed in $venv (activate with: . $venv/bin/activate)" >&2
