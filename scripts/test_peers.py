"""Tests of scripts/peers.py that need no GPU: its grid, op table and parameters are the Rust
bench's (read from benches/ and src/decoder.rs, so the two cannot drift apart), its names and
byte counts are the bench's, and without a GPU it skips. With PyTorch installed, its --check
mode runs too (CPU only).

    python3 -m unittest scripts/test_peers.py
"""

import ctypes
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import unittest
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import flashinfer_kernels  # noqa: E402
import peers  # noqa: E402

REPO = peers.REPO
HAVE_TORCH = importlib.util.find_spec("torch") is not None


def source(path):
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
        return f.read()


def fn_body(src, name):
    """The text of `fn name` up to the next `fn` (enough for the literals inside it)."""
    start = src.index(f"fn {name}(")
    end = re.compile(r"\n\s*(pub(\(crate\))? )?(const )?fn ").search(src, start + 1)
    return src[start:end.start() if end else len(src)]


def usizes(text):
    return [int(x) for x in re.findall(r"\d+", text)]


def rust_const(src, name):
    m = re.search(rf"const {name}: \w+ = ([^;]+);", src)
    assert m, f"const {name} not found"
    expr = m.group(1).replace("_", "")
    shift = re.fullmatch(r"(\d+) << (\d+)", expr)
    return int(shift.group(1)) << int(shift.group(2)) if shift else float(expr)


def run_peers(*args):
    return subprocess.run([sys.executable, os.path.join(REPO, "scripts", "peers.py"), *args],
                          capture_output=True, text=True, timeout=600)


class PeersMatchTheRustBench(unittest.TestCase):
    def test_grid_and_timing_constants_are_the_rust_bench_ones(self):
        common = source("benches/common/mod.rs")
        full, quick = fn_body(common, "full"), fn_body(common, "quick")
        vec = lambda body, field: usizes(re.search(rf"{field}: vec!\[([^\]]*)\]", body).group(1))  # noqa: E731
        self.assertEqual(peers.VOCABS, vec(full, "vocabs"))
        self.assertEqual(peers.BATCHES, vec(full, "batches"))
        self.assertEqual(peers.QUICK["vocabs"], vec(quick, "vocabs"))
        self.assertEqual(peers.QUICK["batches"], vec(quick, "batches"))
        for name in ["COLD_VOCAB", "COLD_BATCH", "FLUSH_BYTES", "WARMUP", "RUNS", "MAX_PADS"]:
            self.assertEqual(getattr(peers, name), rust_const(common, name), name)
        self.assertIn("COLD_DIST: Dist = Dist::Normal(1.0)", common)
        self.assertEqual(peers.COLD_DIST, "normal1")
        bench = source("benches/sampling.rs")
        for name in ["TOP_K", "TOP_P", "MIN_P", "TEMPERATURE"]:
            self.assertEqual(getattr(peers, name), rust_const(bench, name), name)

    def test_op_table_is_the_rust_bench_one(self):
        bench = source("benches/sampling.rs")
        start = bench.index("const OPS: &[OpSpec]")
        table = bench[start:bench.index("];", start)]
        rust_ops = re.findall(
            r'op\(\s*"(\w+)",\s*"(\w+)",\s*"([^"]*)",\s*Kind::(\w+)(?:\((\d+)\))?,?\s*\)', table)
        self.assertEqual(len(rust_ops), len(peers.OPS))
        sampling_body = fn_body(bench, "is_sampling")
        sampling_kinds = set(re.findall(r"Kind::(\w+)", sampling_body))
        for (name, label, params, kind, k), py in zip(rust_ops, peers.OPS):
            self.assertEqual((name, label, params), py[:3])
            self.assertEqual(kind in sampling_kinds, py[3], f"{label}: sampling op?")
            self.assertEqual(int(k) if k else None, py[4], f"{label}: selection k")

    def test_bok_parameters_are_the_crate_defaults(self):
        decoder = source("src/decoder.rs")
        block = decoder[decoder.index("pub const DEFAULT: Bok = Bok {"):]
        block = block[:block.index("};")]
        field = lambda f: float(re.search(rf"\b{f}: ([\d.]+)", block).group(1))  # noqa: E731
        b = peers.BOK
        self.assertEqual((b["tau"], b["k"], b["beta"], b["lam"], b["eta"], b["T"]),
                         (field("temperature"), field("k"), field("beta"), field("lambda"),
                          field("eta"), field("iterations")))
        self.assertIn("weights: BokWeights::Prob", block)

    def test_file_names_and_byte_counts_are_the_rust_bench_ones(self):
        # The cases of benches/common/mod.rs's self_check.
        self.assertEqual(peers.sanitize_gpu("NVIDIA H100 80GB HBM3"), "nvidia-h100-80gb-hbm3")
        self.assertEqual(peers.sanitize_gpu("  A100-SXM4 (40GB) "), "a100-sxm4-40gb")
        self.assertEqual(peers.sanitize_gpu("???"), "unknown-gpu")
        # benches/sampling.rs, Kind::bytes: dense f32 outputs, k pairs of 8 bytes, or tokens.
        self.assertEqual(peers.out_bytes("softmax", None, 8, 1000), 8 * 1000 * 4)
        self.assertEqual(peers.out_bytes("bok", None, 8, 1000), 8 * 1000 * 4)
        self.assertEqual(peers.out_bytes("top_k_select", 1024, 8, 1000), 8 * 1000 * 8)
        self.assertEqual(peers.out_bytes("top_k_select", 50, 8, 1000), 8 * 50 * 8)
        self.assertEqual(peers.out_bytes("sample_top_p", None, 8, 1000), 8 * 4)


class PeersRun(unittest.TestCase):
    def test_an_unknown_op_is_refused(self):
        r = run_peers("--ops", "no_such_op")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown op", r.stderr)

    def test_without_torch_or_a_gpu_it_skips_and_succeeds(self):
        if HAVE_TORCH:
            import torch
            if torch.cuda.is_available():
                self.skipTest("a GPU is present: this would run the benchmark")
        r = run_peers("--ops", "greedy", "--out", os.devnull)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"SKIPPED: no (PyTorch|CUDA driver/GPU)")

    @unittest.skipUnless(HAVE_TORCH, "PyTorch is not installed")
    def test_check_mode_finds_every_torch_op_correct(self):
        r = run_peers("--check", "--impls", "torch")
        self.assertEqual(r.returncode, 0, r.stdout[-3000:] + r.stderr[-3000:])
        self.assertIn("done: check passed", r.stdout)
        self.assertNotIn("FAILED", r.stdout)


# glue.cu's C parameter types -> the ctypes type flashinfer_kernels must declare for each.
C_TO_CTYPES = {"float *": "c_void_p", "int32_t *": "c_void_p", "bool *": "c_void_p",
               "void *": "c_void_p", "uint32_t": "c_uint32", "uint64_t": "c_uint64",
               "float": "c_float", "size_t": "c_size_t", "int": "c_int"}


def glue_parameters():
    """{name: [(C type, parameter name)]} for glue.cu's `int sxfi_*(...)` functions."""
    src = source("scripts/flashinfer/glue.cu")
    out = {}
    for name, params in re.findall(r"\nint (sxfi_\w+)\(([^)]*)\)", src):
        pairs = []
        for p in params.split(","):
            p = " ".join(p.split())
            pname = re.search(r"(\w+)$", p).group(1)
            ctype = p[:-len(pname)].replace("*", " *").replace("  ", " ").strip()
            pairs.append((ctype, pname))
        out[name] = pairs
    return out


def glue_functions():
    """{name: [ctypes type name per parameter]} for glue.cu's `int sxfi_*(...)` functions."""
    return {n: [C_TO_CTYPES[t] for t, _ in ps] for n, ps in glue_parameters().items()}


class FakeTensor:
    """What flashinfer_kernels touches of a torch tensor: shape, data_ptr, float(), to()."""
    count = 0

    def __init__(self, shape, dtype="float32"):
        FakeTensor.count += 1
        self.shape, self.dtype, self.ptr = tuple(shape), dtype, 0x1000 * FakeTensor.count

    def data_ptr(self):
        return self.ptr

    def float(self):
        return FakeTensor(self.shape, "float32")

    def to(self, dtype):
        return FakeTensor(self.shape, dtype)

    def long(self):
        return FakeTensor(self.shape, "int64")

    device = "cuda"


class FakeLib:
    """Records each call of an sxfi_* function as {parameter name: value}."""

    def __init__(self, path):
        self.calls = []
        params = glue_parameters()
        for name in params:
            def fn(*args, _name=name):
                self.calls.append((_name, dict(zip([p for _, p in params[_name]], args))))
                return 0
            setattr(self, name, mock.Mock(side_effect=fn))
        self.sxfi_version = mock.Mock(return_value=b"0.0-test")
        self.sxfi_error_string = mock.Mock(return_value=b"test error")


def fake_kernels(stream):
    """(a torch stand-in, flashinfer_kernels.Kernels over a FakeLib) on a compute-capability 9
    device whose current stream is `stream`."""
    torch = mock.Mock()
    torch.float32, torch.bfloat16, torch.int32, torch.bool = "float32", "bfloat16", "int32", "bool"
    torch.cuda.get_device_capability.return_value = (9, 0)
    torch.cuda.current_stream.return_value.cuda_stream = stream
    torch.empty = lambda *shape, dtype="float32", device=None: FakeTensor(  # noqa: E731
        shape if not isinstance(shape[0], tuple) else shape[0], dtype)
    torch.empty_like = lambda t: FakeTensor(t.shape, t.dtype)  # noqa: E731
    torch.zeros = torch.empty
    torch.softmax = lambda t, dim: FakeTensor(t.shape, t.dtype)  # noqa: E731
    with mock.patch.object(flashinfer_kernels.ctypes, "CDLL", FakeLib):
        return torch, flashinfer_kernels.Kernels(torch, "/fake.so")


class FlashInferKernels(unittest.TestCase):
    def test_ctypes_signatures_are_the_glue_ones(self):
        glue = glue_functions()
        self.assertGreaterEqual(len(glue), 5)
        # Compared as ctypes objects: c_uint32 is c_uint here, and its __name__ says so.
        want = {n: [getattr(ctypes, t) for t in ts] for n, ts in glue.items()}
        self.assertEqual(flashinfer_kernels._SIGNATURES, want)

    def test_the_library_is_found_through_the_environment_first(self):
        with tempfile.NamedTemporaryFile(suffix=".so") as f:
            with mock.patch.dict(os.environ, {"SAMPLEX_FLASHINFER_LIB": f.name}):
                self.assertEqual(flashinfer_kernels.library_path(), f.name)

    def test_load_says_why_it_cannot_run(self):
        fake_torch = mock.Mock()
        fake_torch.cuda.is_available.return_value = False
        with mock.patch.object(flashinfer_kernels, "library_path", return_value=None):
            with self.assertRaisesRegex(ImportError, "build.sh"):
                flashinfer_kernels.load(fake_torch)
        with mock.patch.object(flashinfer_kernels, "library_path", return_value="/x.so"):
            with self.assertRaisesRegex(ImportError, "need a GPU"):
                flashinfer_kernels.load(fake_torch)

    def test_each_function_passes_its_values_in_the_glue_order(self):
        torch, k = fake_kernels(stream=777)
        b, v = 3, 3000
        x = FakeTensor((b, v), "bfloat16")
        k.softmax(x)
        k.softmax(x, temperature=FakeTensor((b,)))
        k.sampling_from_logits(x)
        k.top_k_sampling_from_probs(x, 50)
        k.top_k_sampling_from_probs(x, FakeTensor((b,), "int64"))
        k.top_p_sampling_from_probs(x, 0.9)
        k.min_p_sampling_from_probs(x, FakeTensor((b,)))
        calls = k.lib.calls
        self.assertEqual([n for n, _ in calls],
                         ["sxfi_softmax", "sxfi_softmax", "sxfi_sampling_from_logits"]
                         + ["sxfi_top_k_sampling_from_probs"] * 2
                         + ["sxfi_top_p_sampling_from_probs", "sxfi_min_p_sampling_from_probs"])
        for name, a in calls:
            self.assertEqual((a["batch"], a["vocab"]), (b, v), name)
            self.assertEqual(a["stream"].value, 777, name)
        soft, soft_t, logits, top_k, top_k_t, top_p, min_p = (a for _, a in calls)
        self.assertEqual((soft["temperature_arr"], soft["temperature_val"]), (None, 1.0))
        self.assertIsNotNone(soft_t["temperature_arr"])
        self.assertEqual(soft_t["temperature_val"], 0.0)
        self.assertEqual((soft["workspace_bytes"], soft["enable_pdl"]), (1 << 20, 1))
        self.assertNotEqual(soft["logits"], x.ptr)  # bf16 is converted first, as FlashInfer does
        self.assertEqual((top_k["top_k_arr"], top_k["top_k_val"]), (None, 50))
        self.assertEqual(top_k_t["top_k_val"], 0)
        self.assertIsNotNone(top_k_t["top_k_arr"])
        self.assertEqual((top_p["top_p_arr"], top_p["top_p_val"]), (None, 0.9))
        self.assertIsNotNone(min_p["min_p_arr"])
        # get_seed_and_offset's steps: b*v for logits, b*32 for top-k/top-p, b for min-p,
        # each rounded up to a multiple of 4.
        offsets = [a["offset"] for _, a in calls[2:]]
        steps = [b * v, b * 32, b * 32, b * 32]
        want = [0]
        for s in steps:
            want.append(want[-1] + (s + 3) // 4 * 4)
        self.assertEqual(offsets, want)

    def test_top_k_and_its_use_in_top_k_top_p_follow_flashinfer(self):
        torch, k = fake_kernels(stream=5)
        x = FakeTensor((4, 3000), "bfloat16")
        values, indices = k.top_k(x, 50, sorted=True, deterministic=True)
        name, a = k.lib.calls[-1]
        self.assertEqual(name, "sxfi_top_k_bf16")
        self.assertEqual((a["rows"], a["k"], a["d"], a["sorted_output"], a["deterministic"]),
                         (4, 50, 3000, 1, 1))
        self.assertEqual(a["row_states"], k.row_states["radix_topk"].ptr)
        self.assertEqual((values.shape, values.dtype, indices.dtype),
                         ((4, 50), "bfloat16", "int64"))
        k.top_k(x, 50, sorted=False, deterministic=True)
        self.assertEqual((k.lib.calls[-1][1]["sorted_output"], k.lib.calls[-1][1]["deterministic"]),
                         (0, 1))
        torch.sort.return_value = (FakeTensor((4, 50)), FakeTensor((4, 50), "int64"))
        k.top_k(x, 50, sorted=True)  # radix unsorted, then torch.sort + gather
        self.assertEqual((k.lib.calls[-1][1]["sorted_output"], k.lib.calls[-1][1]["deterministic"]),
                         (0, 0))
        self.assertEqual(torch.sort.call_args.kwargs, {"dim": -1, "descending": True,
                                                       "stable": False})
        torch.gather.assert_called_once()
        with self.assertRaises(NotImplementedError):  # FlashInfer's CUB route: not mirrored
            k.top_k(x, 50)
        # Vocab below 65536: top-k masking, softmax, top-p sampling from the probabilities.
        del k.lib.calls[:]
        k.top_k_top_p_sampling_from_logits(FakeTensor((4, 3000)), 50, 0.9)
        self.assertEqual([n for n, _ in k.lib.calls],
                         ["sxfi_top_k_mask_logits_f32", "sxfi_top_p_sampling_from_probs"])
        self.assertEqual(k.lib.calls[0][1]["top_k_val"], 50)
        # 65536 and more with k <= 256: the fast path (a sorted deterministic top-k first).
        with mock.patch.object(k, "top_k", side_effect=RuntimeError("fast path")) as top_k:
            with self.assertRaisesRegex(RuntimeError, "fast path"):
                k.top_k_top_p_sampling_from_logits(FakeTensor((4, 65536)), 50, 0.9)
            top_k.assert_called_once()
            self.assertEqual(top_k.call_args.kwargs, {"sorted": True, "deterministic": True})
            with self.assertRaisesRegex(RuntimeError, "fast path"):
                k.top_k_top_p_sampling_from_logits(FakeTensor((4, 65536)), FakeTensor((4,)), 0.9,
                                                   top_k_max=50)
        # Blackwell takes other routes: refused there.
        torch.cuda.is_available.return_value = True
        torch.cuda.get_device_capability.return_value = (10, 0)
        with mock.patch.object(flashinfer_kernels, "library_path", return_value="/x.so"):
            with self.assertRaisesRegex(ImportError, "compute capability"):
                flashinfer_kernels.load(torch)

    def test_a_built_library_exports_the_glue_and_names_the_pinned_version(self):
        path = os.path.join(REPO, "scripts", "flashinfer", flashinfer_kernels.LIB_NAME)
        if not os.path.isfile(path):
            self.skipTest("SKIPPED: scripts/flashinfer/build.sh has not been run here")
        lib = ctypes.CDLL(path)
        for name in glue_functions():
            self.assertTrue(hasattr(lib, name), name)
        lib.sxfi_version.restype = ctypes.c_char_p
        pin = re.search(r'flashinfer_version="([^"]+)"', source("scripts/flashinfer/build.sh"))
        self.assertEqual(lib.sxfi_version().decode(), pin.group(1))


if __name__ == "__main__":
    unittest.main()
