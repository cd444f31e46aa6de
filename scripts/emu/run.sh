#!/usr/bin/env bash
# Runs a command against the CPU emulator instead of a GPU:
#   scripts/emu/run.sh cargo test --test gpu_softmax
# builds the emulator (build.sh) and puts its libcuda first on LD_LIBRARY_PATH, so cudarc, the
# wrappers and the GPU tests run unchanged on one emulated device ("samplex CPU emulator").
# The tests know the emulator by its device name (tests/common::emulated) and shrink their
# largest workloads there.
# The device is an sm_90 with 132 SMs; SAMPLEX_EMU_CC=80|86|89 and SAMPLEX_EMU_SMS=N change that
# (driver.cpp).
set -euo pipefail
dir="$(bash "$(dirname "$0")/build.sh")"
export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$@"
