// samplex CPU emulator — the kernel table: for each extern "C" entry, a function that unpacks
// cuLaunchKernel's `void **params` (one pointer per argument, as the driver receives them) into
// a typed call. build.sh lists the entries (from the preprocessed kernels) as SAMPLEX_EMU_KERNEL
// lines; the argument types come from the declarations, so nothing is written twice.
#pragma once

#include <cstddef>
#include <type_traits>
#include <utility>

namespace samplex_emu {
struct KernelEntry {
  const char *name;
  void (*call)(void *fn, void **params);
  void *fn;
  int num_params;
  const size_t *param_sizes;
};

template <typename F> struct Trampoline;
template <typename... A> struct Trampoline<void (*)(A...)> {
  static constexpr size_t sizes[sizeof...(A)] = {sizeof(typename std::decay<A>::type)...};
  template <size_t... I> static void invoke(void *fn, void **params, std::index_sequence<I...>) {
    reinterpret_cast<void (*)(A...)>(fn)(*static_cast<typename std::decay<A>::type *>(params[I])...);
  }
  static void call(void *fn, void **params) { invoke(fn, params, std::index_sequence_for<A...>{}); }
};
template <typename... A> constexpr size_t Trampoline<void (*)(A...)>::sizes[sizeof...(A)];
}  // namespace samplex_emu

#define SAMPLEX_EMU_KERNEL(f)                                                                 \
  {#f, &samplex_emu::Trampoline<decltype(&f)>::call, reinterpret_cast<void *>(&f),             \
   (int)(sizeof(samplex_emu::Trampoline<decltype(&f)>::sizes) / sizeof(size_t)),              \
   samplex_emu::Trampoline<decltype(&f)>::sizes},
