"""FlashInfer's sampling kernels without the flashinfer package, for scripts/peers.py.

A GPU host here has PyTorch and no network, and FlashInfer's wheel (~100 MB, and an import that
pulls in attention, GEMM, MoE and CUTLASS-DSL modules) does not travel in a 64 MiB bundle. So
scripts/flashinfer/build.sh compiles FlashInfer's own host launchers (sampling.cuh, from the
pinned wheel's headers) behind a small C ABI (scripts/flashinfer/glue.cu) into
libsamplex_flashinfer.so, and this module calls them the way FlashInfer's Python wrappers do:

- the same kernels, template arguments, block sizes and split-row (cluster) dispatch;
- the same conversions before the call: logits and probabilities ``.float()`` (a bf16 input
  costs FlashInfer that conversion too), per-row top-k as int32, top-p / min-p /
  temperature as f32;
- the same outputs: int32 tokens, and for the ``*_from_probs`` kernels a bool ``valid`` per row;
  for ``chain_speculative_sampling`` (b, n+1) int32 tokens and two int32 counts per row, zeroed
  per call (its kernel adds to them);
- ``deterministic=True`` (FlashInfer's default), a scalar seed and offset advanced per call as
  its ``get_seed_and_offset`` does, PDL on where the device supports it (compute capability
  >= 9, as its ``device_support_pdl``), and softmax's 1 MiB workspace buffer.

Mirrored: ``softmax``, ``sampling_from_logits``, ``sampling_from_probs``,
``chain_speculative_sampling``, ``top_k_sampling_from_probs``,
``top_p_sampling_from_probs``, ``min_p_sampling_from_probs``, ``top_k`` (its radix path, the one
``sorted=True`` takes below compute capability 10: radix top-k, then ``torch.sort`` + gather),
``top_k_mask_logits`` and ``top_k_top_p_sampling_from_logits`` (its default ``top_k_first``
order: for k <= 256 and vocab >= 65536 the fast path of a deterministic sorted radix top-k,
``torch.softmax`` over the k values and top-p sampling among them; else top-k masking,
``torch.softmax`` and top-p sampling from the probabilities). FlashInfer chooses other routes
on compute capability 10 (Blackwell softmax and cluster top-k), which are not mirrored: there
``load`` refuses.

``load(torch)`` returns the module's functions bound to the library, or raises ImportError
saying why not (no library, or no GPU).
"""

import ctypes
import os

HERE = os.path.dirname(os.path.abspath(__file__))
LIB_NAME = "libsamplex_flashinfer.so"
WORKSPACE_BYTES = 1024 * 1024  # flashinfer.sampling.softmax's cached workspace
ROW_STATES_BYTES = 1024 * 1024  # flashinfer.topk's _ROW_STATES_NBYTES (zeroed once, cached)
TOP_K_FIRST_MAX_K = 256  # flashinfer.sampling's _TOP_K_FIRST_FAST_PATH_MAX_K
TOP_K_FIRST_MIN_VOCAB = 65536  # ... _TOP_K_FIRST_FAST_PATH_MIN_VOCAB


def library_path():
    """$SAMPLEX_FLASHINFER_LIB, else the library beside this file (the bundle) or in
    scripts/flashinfer/ (a build in the repo); None when there is none."""
    env = os.environ.get("SAMPLEX_FLASHINFER_LIB", "")
    for p in ([env] if env else []) + [os.path.join(HERE, LIB_NAME),
                                        os.path.join(HERE, "flashinfer", LIB_NAME)]:
        if os.path.isfile(p):
            return p
    return None


_SIGNATURES = {
    # name: argument types after the pointers' ints (c_void_p) — in declaration order
    "sxfi_softmax": [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32,
                     ctypes.c_void_p, ctypes.c_float, ctypes.c_void_p, ctypes.c_size_t,
                     ctypes.c_int, ctypes.c_void_p],
    "sxfi_sampling_from_logits": [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32,
                                  ctypes.c_uint32, ctypes.c_uint64, ctypes.c_uint64,
                                  ctypes.c_void_p],
    "sxfi_sampling_from_probs": [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                 ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint64,
                                 ctypes.c_uint64, ctypes.c_void_p],
    "sxfi_chain_speculative_sampling": [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                        ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                        ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32,
                                        ctypes.c_uint64, ctypes.c_uint64, ctypes.c_void_p],
    "sxfi_top_k_sampling_from_probs": [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                       ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32,
                                       ctypes.c_uint32, ctypes.c_uint64, ctypes.c_uint64,
                                       ctypes.c_void_p],
    "sxfi_top_p_sampling_from_probs": [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                       ctypes.c_void_p, ctypes.c_uint32, ctypes.c_float,
                                       ctypes.c_uint32, ctypes.c_uint64, ctypes.c_uint64,
                                       ctypes.c_void_p],
    "sxfi_min_p_sampling_from_probs": [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                       ctypes.c_void_p, ctypes.c_uint32, ctypes.c_float,
                                       ctypes.c_uint32, ctypes.c_uint64, ctypes.c_uint64,
                                       ctypes.c_void_p],
}
_TOP_K = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32,
          ctypes.c_uint32, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
_MASK = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32,
         ctypes.c_uint32, ctypes.c_void_p, ctypes.c_void_p]
for _dt in ("f32", "bf16"):
    _SIGNATURES[f"sxfi_top_k_{_dt}"] = _TOP_K
    _SIGNATURES[f"sxfi_top_k_mask_logits_{_dt}"] = _MASK


class Kernels:
    """FlashInfer's sampling functions (the subset above) on the current CUDA stream."""

    def __init__(self, torch, path):
        self.torch = torch
        self.lib = ctypes.CDLL(path)
        for name, args in _SIGNATURES.items():
            fn = getattr(self.lib, name)
            fn.argtypes = args
            fn.restype = ctypes.c_int
        self.lib.sxfi_version.restype = ctypes.c_char_p
        self.lib.sxfi_error_string.restype = ctypes.c_char_p
        self.lib.sxfi_error_string.argtypes = [ctypes.c_int]
        self.version = self.lib.sxfi_version().decode()
        self.path = path
        major, _ = torch.cuda.get_device_capability()
        self.pdl = 1 if major >= 9 else 0
        self.workspace = torch.empty(WORKSPACE_BYTES, dtype=torch.uint8, device="cuda")
        # One zeroed row-state buffer per FlashInfer cache name (its kernels leave them zeroed).
        self.row_states = {n: torch.zeros(ROW_STATES_BYTES, dtype=torch.uint8, device="cuda")
                           for n in ("radix_topk", "top_k_mask_logits")}
        self.seed = 0x5A3D
        self.offset = 0

    # --- what FlashInfer's wrappers do around each launch -----------------------------------
    def _stream(self):
        return ctypes.c_void_p(self.torch.cuda.current_stream().cuda_stream)

    def _seed_offset(self, increment):
        """get_seed_and_offset: the offset moves by the increment rounded up to 4."""
        seed, offset = self.seed, self.offset
        self.offset += (increment + 3) // 4 * 4
        return seed, offset

    def _check(self, name, status):
        if status != 0:
            raise RuntimeError(f"FlashInfer {name} failed: "
                               f"{self.lib.sxfi_error_string(status).decode()} ({status})")

    @staticmethod
    def _param(v, dtype):
        """(tensor converted to dtype, 0) for a per-row tensor, (None, v) for a scalar."""
        if hasattr(v, "data_ptr"):
            return v.to(dtype), 0
        return None, v

    @staticmethod
    def _ptr(t):
        return None if t is None else t.data_ptr()

    def _dtype_suffix(self, x):
        if x.dtype == self.torch.float32:
            return "f32"
        if x.dtype == self.torch.bfloat16:
            return "bf16"
        raise NotImplementedError(f"the glue has FlashInfer's top-k for f32 and bf16, not {x.dtype}")

    # --- the functions ----------------------------------------------------------------------
    def softmax(self, logits, temperature=None):
        torch = self.torch
        logits = logits.float()
        probs = torch.empty_like(logits)
        if temperature is None:
            arr, val = None, 1.0
        else:
            arr, val = self._param(temperature, torch.float32)
            val = float(val) if arr is None else 0.0
        b, v = logits.shape
        self._check("softmax", self.lib.sxfi_softmax(
            logits.data_ptr(), probs.data_ptr(), b, v, self._ptr(arr), val,
            self.workspace.data_ptr(), WORKSPACE_BYTES, self.pdl, self._stream()))
        return probs

    def sampling_from_logits(self, logits):
        torch = self.torch
        logits = logits.float()
        b, v = logits.shape
        samples = torch.empty(b, dtype=torch.int32, device=logits.device)
        seed, offset = self._seed_offset(b * v)
        self._check("sampling_from_logits", self.lib.sxfi_sampling_from_logits(
            logits.data_ptr(), samples.data_ptr(), b, v, seed, offset, self._stream()))
        return samples

    def sampling_from_probs(self, probs):
        torch = self.torch
        probs = probs.float()
        b, v = probs.shape
        samples = torch.empty(b, dtype=torch.int32, device=probs.device)
        valid = torch.empty(b, dtype=torch.bool, device=probs.device)
        seed, offset = self._seed_offset(b)
        self._check("sampling_from_probs", self.lib.sxfi_sampling_from_probs(
            probs.data_ptr(), samples.data_ptr(), valid.data_ptr(), b, v, seed, offset,
            self._stream()))
        return samples

    def chain_speculative_sampling(self, draft_probs, draft_token_ids, target_probs):
        """(output_token_ids, accepted_num, emitted_num), with the wrapper's defaults: fresh
        zeroed counts, deterministic, the generator's seed and offset."""
        torch = self.torch
        b = draft_probs.shape[0]
        dev = draft_probs.device
        accepted = torch.zeros(b, dtype=torch.int32, device=dev)
        emitted = torch.zeros(b, dtype=torch.int32, device=dev)
        draft_probs = draft_probs.float()
        draft_token_ids = draft_token_ids.int()
        target_probs = target_probs.float()
        _, n, v = draft_probs.shape
        # The binding's checks: the kernel indexes all three by these sizes, unchecked.
        if (tuple(draft_token_ids.shape) != (b, n)
                or tuple(target_probs.shape) != (b, n + 1, v)):
            raise ValueError(f"chain_speculative_sampling: shapes {tuple(draft_probs.shape)}, "
                             f"{tuple(draft_token_ids.shape)}, {tuple(target_probs.shape)}")
        out = torch.empty((b, n + 1), dtype=torch.int32, device=dev)
        seed, offset = self._seed_offset(b * (n + 2))
        self._check("chain_speculative_sampling", self.lib.sxfi_chain_speculative_sampling(
            draft_probs.data_ptr(), draft_token_ids.data_ptr(), target_probs.data_ptr(),
            out.data_ptr(), accepted.data_ptr(), emitted.data_ptr(), b, n, v, seed, offset,
            self._stream()))
        return out, accepted, emitted

    def _from_probs(self, name, probs, param, dtype, increment):
        torch = self.torch
        probs = probs.float()
        b, v = probs.shape
        arr, val = self._param(param, dtype)
        samples = torch.empty(b, dtype=torch.int32, device=probs.device)
        valid = torch.empty(b, dtype=torch.bool, device=probs.device)
        seed, offset = self._seed_offset(increment(b))
        fn = getattr(self.lib, f"sxfi_{name}")
        self._check(name, fn(probs.data_ptr(), samples.data_ptr(), valid.data_ptr(),
                             self._ptr(arr), b, val, v, seed, offset, self._stream()))
        return samples

    def top_k_sampling_from_probs(self, probs, top_k):
        return self._from_probs("top_k_sampling_from_probs", probs, top_k, self.torch.int32,
                                lambda b: b * 32)

    def top_p_sampling_from_probs(self, probs, top_p):
        return self._from_probs("top_p_sampling_from_probs", probs, top_p, self.torch.float32,
                                lambda b: b * 32)

    def min_p_sampling_from_probs(self, probs, min_p):
        return self._from_probs("min_p_sampling_from_probs", probs, min_p, self.torch.float32,
                                lambda b: b)

    def _radix_top_k(self, x, k, sorted_output, deterministic):
        """radix_topk: (values in x's dtype, int32 indices), sorted only if asked."""
        torch = self.torch
        b, v = x.shape
        values = torch.empty((b, k), dtype=x.dtype, device=x.device)
        indices = torch.empty((b, k), dtype=torch.int32, device=x.device)
        fn = getattr(self.lib, f"sxfi_top_k_{self._dtype_suffix(x)}")
        self._check("top_k", fn(x.data_ptr(), indices.data_ptr(), values.data_ptr(), b, k, v,
                                self.row_states["radix_topk"].data_ptr(), int(sorted_output),
                                int(deterministic), self._stream()))
        return values, indices

    def top_k(self, x, k, sorted=False, deterministic=False):
        """flashinfer.top_k below compute capability 10, where sorted=True takes the radix path
        (its CUB path never sorts; its cluster path is Blackwell's)."""
        torch = self.torch
        if not sorted and not deterministic:
            raise NotImplementedError("unsorted top_k may take FlashInfer's CUB path: not mirrored")
        sorted_cuda = sorted and deterministic and k <= 2048
        values, indices = self._radix_top_k(x, k, sorted_cuda, deterministic)
        indices = indices.long()
        if sorted and not sorted_cuda:
            values, order = torch.sort(values, dim=-1, descending=True, stable=deterministic)
            indices = torch.gather(indices, dim=-1, index=order)
        return values, indices

    def top_k_mask_logits(self, logits, top_k):
        torch = self.torch
        arr, val = self._param(top_k, torch.int32)
        masked = torch.empty_like(logits)
        b, v = logits.shape
        fn = getattr(self.lib, f"sxfi_top_k_mask_logits_{self._dtype_suffix(logits)}")
        self._check("top_k_mask_logits", fn(
            logits.data_ptr(), masked.data_ptr(), self._ptr(arr), b, val, v,
            self.row_states["top_k_mask_logits"].data_ptr(), self._stream()))
        return masked

    def top_k_top_p_sampling_from_logits(self, logits, top_k, top_p, top_k_max=None):
        """The default filter_apply_order="top_k_first", deterministic=True."""
        torch = self.torch
        b, v = logits.shape
        per_row_k = hasattr(top_k, "data_ptr")
        select_k = top_k_max if per_row_k else top_k
        fast = (select_k is not None and 0 < select_k <= TOP_K_FIRST_MAX_K
                and v >= TOP_K_FIRST_MIN_VOCAB and select_k < v
                and (not per_row_k or tuple(top_k.shape) == (b,)))
        if not fast:
            probs = torch.softmax(self.top_k_mask_logits(logits, top_k), dim=-1)
            return self.top_p_sampling_from_probs(probs, top_p)
        values, gathered = self.top_k(logits, select_k, sorted=True, deterministic=True)
        values = values.float()
        if per_row_k:
            k = top_k.int()
            row_k = torch.where(k < 0, select_k, k.clamp(min=1)).unsqueeze(-1)
            cols = torch.arange(select_k, device=logits.device)
            values = values.masked_fill(cols >= row_k, float("-inf"))
        local = self.top_p_sampling_from_probs(torch.softmax(values, dim=-1), top_p)
        return gathered.gather(1, local.view(-1, 1).long()).squeeze(1).to(torch.int32)


def load(torch):
    """Kernels bound to the library; ImportError (saying why) when it cannot be used here."""
    path = library_path()
    if path is None:
        raise ImportError(f"no {LIB_NAME} (scripts/flashinfer/build.sh makes it; "
                          "or set SAMPLEX_FLASHINFER_LIB)")
    if not torch.cuda.is_available():
        raise ImportError("FlashInfer's kernels need a GPU")
    if torch.cuda.get_device_capability()[0] >= 10:
        raise ImportError("FlashInfer takes other routes on compute capability >= 10 "
                          "(Blackwell softmax, cluster top-k); the glue mirrors those below 10")
    torch.cuda.init()  # the primary context exists before the library's runtime looks for it
    try:
        return Kernels(torch, path)
    except (OSError, AttributeError) as e:
        raise ImportError(f"{path}: {e}") from e
