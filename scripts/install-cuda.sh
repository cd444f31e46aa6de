#!/usr/bin/env bash
# Installs NVIDIA's CUDA 13.0 compiler (nvcc) and NVRTC from PyPI into a cache folder.
# No GPU and no root needed; idempotent (a second run only checks). Prints the venv path.
#
#   SAMPLEX_CUDA_CACHE   where the venv goes (default: ~/.cache/samplex/cuda-13.0)
#
# Afterwards:  nvcc   = $venv/lib/python3.11/site-packages/nvidia/cu13/bin/nvcc
#              nvrtc  = $venv/lib/python3.11/site-packages/nvidia/cu13/lib/libnvrtc.so.13
set -euo pipefail

venv="${SAMPLEX_CUDA_CACHE:-${HOME}/.cache/samplex/cuda-13.0}"
python="${PYTHON:-python3}"

# The pins: CUDA 13.0 matches the GPU hosts' driver. Bump them together.
pkgs=(
  "nvidia-cuda-nvcc==13.0.88"
  "nvidia-nvvm==13.0.*"
  "nvidia-cuda-runtime==13.0.*"
  "nvidia-cuda-crt==13.0.*"
  "nvidia-cuda-cccl==13.0.*"
  "nvidia-cuda-nvrtc==13.0.*"
)
stamp="$venv/.samplex-pins"
want="$(printf '%s\n' "${pkgs[@]}")"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$venv"
  exit 0
fi

"$python" -m venv "$venv" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pkgs[@]}" >&2

pyver="$("$venv/bin/python" -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')"
cu="$venv/lib/$pyver/site-packages/nvidia/cu13"
[ -x "$cu/bin/nvcc" ] || { echo "install-cuda: nvcc missing at $cu/bin/nvcc" >&2; exit 1; }
ls "$cu"/lib/libnvrtc.so* >/dev/null 2>&1 || { echo "install-cuda: libnvrtc missing in $cu/lib" >&2; exit 1; }
# Stable paths for callers that don't want to know the Python version.
ln -sfn "$cu" "$venv/cu13"
printf '%s\n' "$want" >"$stamp"
echo "$venv"
