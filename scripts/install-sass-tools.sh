#!/usr/bin/env bash
# Installs cuobjdump and nvdisasm (which cuobjdump -sass runs) from PyPI into a cache folder, for
# scripts/sass_audit.py. No GPU and no root needed; idempotent. Prints the folder of the tools.
#
#   SAMPLEX_SASS_CACHE   where the venv goes (default: ~/.cache/samplex/sass-13.2)
#
# CUDA 13.2's: PyPI has no 13.0 build of either, and 13.2's read the cubins that the pinned 13.0
# nvcc (scripts/install-cuda.sh) writes. They only read binaries; nothing is built with them.
set -euo pipefail

venv="${SAMPLEX_SASS_CACHE:-${HOME}/.cache/samplex/sass-13.2}"
python="${PYTHON:-python3}"
pkgs=(
  "nvidia-cuda-cuobjdump==13.2.51"
  "nvidia-cuda-nvdisasm==13.2.51"
)
stamp="$venv/.samplex-pins"
want="$(printf '%s\n' "${pkgs[@]}")"

if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  "$python" -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pkgs[@]}" >&2
  pyver="$("$venv/bin/python" -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')"
  cu="$venv/lib/$pyver/site-packages/nvidia/cu13"
  [ -x "$cu/bin/cuobjdump" ] || { echo "install-sass-tools: cuobjdump missing at $cu/bin" >&2; exit 1; }
  [ -x "$cu/bin/nvdisasm" ] || { echo "install-sass-tools: nvdisasm missing at $cu/bin" >&2; exit 1; }
  ln -sfn "$cu" "$venv/cu13"
  printf '%s\n' "$want" >"$stamp"
fi
echo "$venv/cu13/bin"
