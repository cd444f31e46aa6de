#!/usr/bin/env bash
# Builds libsamplex_flashinfer.so: FlashInfer's own sampling kernels and host launchers
# (include/flashinfer/sampling.cuh) behind glue.cu's C ABI, for scripts/flashinfer_kernels.py,
# which scripts/peers.py uses where the flashinfer package cannot be installed (a GPU host with
# no network, and a wheel too large to carry). No GPU needed:
#
#   bash scripts/flashinfer/build.sh [OUT.so]   # default: scripts/flashinfer/libsamplex_flashinfer.so
#
# - nvcc: the pinned CUDA 13.0 of scripts/install-cuda.sh (the GPU hosts' driver runs it).
# - FlashInfer's headers: from the pinned flashinfer-python wheel on PyPI (~100 MB download,
#   once; only include/flashinfer/ is kept, in the cache folder).
# - cuRAND's headers (FlashInfer's kernels draw with curand's Philox): CUDA 13.0's
#   nvidia-curand wheel.
# - Flags: those FlashInfer's JIT builds its sampling module with (-O3 -use_fast_math
#   --expt-relaxed-constexpr, C++17, its F16/BF16 defines), one SASS per target; the CUDA
#   runtime is linked statically, so the library needs only libstdc++ and glibc >= 2.34.
#
#   SAMPLEX_FLASHINFER_ARCHS  SASS targets (default "90a 80": H100/H200 as FlashInfer's JIT
#                             targets them, and A100)
#   SAMPLEX_CUDA_CACHE        honoured by scripts/install-cuda.sh; the headers go beside it
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$here/libsamplex_flashinfer.so}"

# The pins. FlashInfer's version is also what each result line's impl_version names.
flashinfer_version="0.7.4"
curand_version="10.4.0.35" # CUDA 13.0's cuRAND

venv="$(bash "$root/scripts/install-cuda.sh")"
nvcc="$venv/cu13/bin/nvcc"
cache="$(dirname "$venv")/flashinfer-$flashinfer_version"
stamp="$cache/.headers"

if [ ! -f "$stamp" ]; then
  echo "== FlashInfer $flashinfer_version and cuRAND $curand_version headers -> $cache" >&2
  rm -rf "$cache"
  mkdir -p "$cache/wheels" "$cache/include"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    -d "$cache/wheels" "flashinfer-python==$flashinfer_version" "nvidia-curand==$curand_version" >&2
  # Only the headers: include/flashinfer/** from FlashInfer, include/curand*.h from cuRAND.
  python3 - "$cache" <<'PY'
import glob, os, sys, zipfile
cache = sys.argv[1]
wanted = {"flashinfer_python": "flashinfer/data/include/", "nvidia_curand": "nvidia/cu13/include/"}
for whl in glob.glob(os.path.join(cache, "wheels", "*.whl")):
    prefix = next(p for k, p in wanted.items() if os.path.basename(whl).startswith(k))
    with zipfile.ZipFile(whl) as z:
        names = [n for n in z.namelist() if n.startswith(prefix) and not n.endswith("/")]
        if not names:
            sys.exit(f"{whl}: nothing under {prefix}")
        for n in names:
            dest = os.path.join(cache, "include", n[len(prefix):])
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with z.open(n) as src, open(dest, "wb") as dst:
                dst.write(src.read())
PY
  rm -rf "$cache/wheels"
  [ -f "$cache/include/flashinfer/sampling.cuh" ] && [ -f "$cache/include/curand_kernel.h" ] ||
    { echo "flashinfer/build.sh: headers missing after extraction" >&2; exit 1; }
  touch "$stamp"
fi

gencode=()
for a in ${SAMPLEX_FLASHINFER_ARCHS:-90a 80}; do
  gencode+=("-gencode=arch=compute_$a,code=sm_$a")
done

echo "== nvcc glue.cu (${SAMPLEX_FLASHINFER_ARCHS:-90a 80}) -> $out" >&2
mkdir -p "$(dirname "$out")"
# -diag-suppress: unused-variable warnings inside FlashInfer's headers.
"$nvcc" -std=c++17 -O3 -use_fast_math --expt-relaxed-constexpr -diag-suppress 177,550 \
  -DFLASHINFER_ENABLE_F16 -DFLASHINFER_ENABLE_BF16 -DSXFI_VERSION="\"$flashinfer_version\"" \
  --threads 0 -Xcompiler -fPIC -shared "${gencode[@]}" \
  -I "$cache/include" -L "$venv/cu13/lib" -o "$out" "$here/glue.cu"

# The library loads and names its version (no GPU needed for that).
python3 -c '
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
lib.sxfi_version.restype = ctypes.c_char_p
print(f"{sys.argv[1]}: FlashInfer {lib.sxfi_version().decode()} kernels")
' "$out"
