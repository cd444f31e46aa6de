#!/usr/bin/env bash
# Runs a command against the CPU emulator instead of a GPU:
#   scripts/emu/run.sh cargo test --test gpu_softmax
# builds the emulator (build.sh) and puts its libcuda first on LD_LIBRARY_PATH, so cudarc, the
# wrappers and the GPU tests run unchanged on one emulated device ("samplex CPU emulator").
# The tests know the emulator by its device name (tests/common::emulated) and shrink their
# largest workloads there.
# The device is an sm_90 with 132 SMs; SAMPLEX_EMU_CC=80|86|89 and SAMPLEX_EMU_SMS=N change that
# (driver.cpp).
#
# SAMPLEX_EMU_TSAN=1 adds a race check: the kernels are built with ThreadSanitizer, and cargo's
# test binaries (and `cargo run`) start with its runtime preloaded (a cargo target runner; a
# binary run by hand needs LD_PRELOAD="$(g++ -print-file-name=libtsan.so)" itself). Two CUDA
# threads that touch the same memory with nothing ordering them (a barrier, __syncwarp, fences
# around an atomic, as in the CUDA memory model; threads of different blocks too) are reported,
# and the process exits with 66. One TSan thread per warp by default;
# SAMPLEX_EMU_TSAN_GRAIN=thread sees races between the lanes of a warp too, more slowly.
set -euo pipefail
dir="$(bash "$(dirname "$0")/build.sh")"
export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [ "${SAMPLEX_EMU_TSAN:-0}" = 1 ]; then
  libtsan="$("${CXX:-g++}" -print-file-name=libtsan.so)"
  [ -e "$libtsan" ] || { echo "emu/run.sh: no libtsan.so for ${CXX:-g++}" >&2; exit 1; }
  libtsan="$(readlink -f "$libtsan")"
  export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="env LD_PRELOAD=$libtsan"
  # Only the kernels are instrumented: accesses by the test binary, the driver and libstdc++
  # (which TSan cannot order: Rust's locks are futexes it does not see) are not checked.
  export TSAN_OPTIONS="ignore_noninstrumented_modules=1 exitcode=66 report_signal_unsafe=0 ${TSAN_OPTIONS:-}"
fi
exec "$@"
