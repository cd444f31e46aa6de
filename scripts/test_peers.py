"""Tests of scripts/peers.py that need no GPU: its grid, op table and parameters are the Rust
bench's (read from benches/ and src/decoder.rs, so the two cannot drift apart), its names and
byte counts are the bench's, and without a GPU it skips. With PyTorch installed, its --check
mode runs too (CPU only).

    python3 -m unittest scripts/test_peers.py
"""

import importlib.util
import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
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


if __name__ == "__main__":
    unittest.main()
