#!/usr/bin/env bash
# Fetch the wheels the device machine lacks (scripts/gpu/device_requirements.txt) into .whl/ (ignored):
# CPython 3.12 on x86-64, no dependencies resolved (the list is complete). connection-pool 0.0.3 has no
# wheel on PyPI, so it is built here from its source (pure Python).
#   bash scripts/gpu/download_wheels.sh            # needs PyPI
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${PYTHON:-.venv/bin/python}
dest=${1:-.whl}
mkdir -p "$dest"
mapfile -t pins < <(grep -v '^#' scripts/gpu/device_requirements.txt | grep -v '^connection-pool==' | grep .)
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 -d "$dest" "${pins[@]}"
"$python" -m pip wheel -q --no-deps -w "$dest" "$(grep '^connection-pool==' scripts/gpu/device_requirements.txt)"
ls "$dest"/*.whl | wc -l
du -ch "$dest"/*.whl | tail -1
