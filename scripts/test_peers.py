"""Tests of scripts/peers.py that need no GPU: its grid, op tables (logits and probabilities)
and parameters are the Rust bench's (read from benches/ and src/decoder.rs, so the two cannot
drift apart), its names and byte counts are the bench's, and without a GPU it skips. With
PyTorch installed, its --check mode, the probability ops' input builder and their timed loop
(with a stand-in timer) run too (CPU only).

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


class ProbOpsMatchTheRustBench(unittest.TestCase):
    def test_prob_op_table_is_the_rust_one(self):
        src = source("benches/probs/mod.rs")
        m = re.search(r"const OPS: &\[\(&str, &str\)\] = &\[(.*?)\];", src, re.S)
        self.assertIsNotNone(m, "benches/probs/mod.rs: const OPS not found")
        rust = re.findall(r'\(\s*"(\w+)",\s*"([^"]*)"\s*\)', m.group(1))
        self.assertGreater(len(rust), 0)
        self.assertEqual(peers.PROB_OPS, rust)
        for op, params in peers.PROB_OPS:
            self.assertIn(op, peers.OP_NAMES)
            peers.prob_params(params)  # parses
            peers.prob_bytes(op, params, 2, 10)  # and is one of its op's points

    def test_prob_params_labels_and_seed(self):
        self.assertEqual(peers.prob_params(""), (None, None, False))
        self.assertEqual(peers.prob_params("n=4"), (4, None, False))
        self.assertEqual(peers.prob_params("n=8,accept=none"), (8, False, False))
        self.assertEqual(peers.prob_params("n=4,accept=all"), (4, True, False))
        self.assertEqual(peers.prob_params("n=4,accept=none,draft=tokens"), (4, False, True))
        # target=logits: a flag of its own, the 3-tuple unchanged.
        self.assertEqual(peers.prob_params("n=4,accept=all,target=logits"), (4, True, False))
        self.assertEqual(peers.prob_params("n=4,accept=none,draft=tokens,target=logits"),
                         (4, False, True))
        self.assertTrue(peers.target_logits("n=4,accept=all,target=logits"))
        self.assertTrue(peers.target_logits("n=4,accept=none,draft=tokens,target=logits"))
        self.assertFalse(peers.target_logits("n=4,accept=all"))
        self.assertFalse(peers.target_logits(""))
        for bad in ["n=0", "n=x", "accept=some", "k=50", "draft=probs", "n=4,draft=tokens",
                    "n=4,accept=all,draft=tokens", "target=probs", "n=4,accept=all,target=p",
                    "target=logits", "n=4,target=logits"]:
            with self.assertRaises(ValueError):
                peers.prob_params(bad)
            with self.assertRaises(ValueError):
                peers.target_logits(bad)
        # benches/probs's Spec::label
        self.assertEqual(peers.prob_label("verify_draft", "n=4,accept=all"),
                         "verify_draft_n4_accept_all")
        self.assertEqual(peers.prob_label("verify_draft", "n=4,accept=none,draft=tokens"),
                         "verify_draft_n4_accept_none_draft_tokens")
        self.assertEqual(peers.prob_label("sample_from_probs", ""), "sample_from_probs")
        self.assertEqual(peers.prob_label("verify_draft", "n=4,accept=all,target=logits"),
                         "verify_draft_n4_accept_all_target_logits")
        self.assertEqual(
            peers.prob_label("verify_draft", "n=4,accept=none,draft=tokens,target=logits"),
            "verify_draft_n4_accept_none_draft_tokens_target_logits")
        # P's logits are the main loop's normal1 logits at that vocab
        self.assertEqual(peers.prob_seed(32000), 0x5A3D + 1000 * peers.DISTS.index("normal1")
                         + 32000)

    def test_prob_byte_counts(self):
        b, v = 8, 1000
        row = b * v * 4
        self.assertEqual(peers.prob_bytes("sample_from_probs", "", b, v), row + b * 4)
        self.assertEqual(peers.prob_bytes("sample_from_probs_n", "n=4", b, v), row + b * 4 * 4)
        for n in (4, 8):
            tail = b * n * 4 + b * (n + 1) * 4 + b * 4
            self.assertEqual(peers.prob_bytes("verify_draft", f"n={n},accept=all", b, v),
                             row + tail)
            self.assertEqual(peers.prob_bytes("verify_draft", f"n={n},accept=none", b, v),
                             2 * row + tail)
            # one-hot drafts: p_0 alone
            self.assertEqual(peers.prob_bytes("verify_draft", f"n={n},accept=none,draft=tokens",
                                              b, v), row + tail)
            # target=logits: every target row once (n + 1), and q_0 when given
            logits = lambda p: peers.prob_bytes(  # noqa: E731
                "verify_draft", p + ",target=logits", b, v)
            self.assertEqual(logits(f"n={n},accept=all"), (n + 1) * row + tail)
            self.assertEqual(logits(f"n={n},accept=none"), (n + 2) * row + tail)
            self.assertEqual(logits(f"n={n},accept=none,draft=tokens"), (n + 1) * row + tail)
        # benches/probs/mod.rs's self_check cases
        self.assertEqual(peers.prob_bytes("verify_draft", "n=4,accept=none", 2, 10),
                         2 * 2 * 10 * 4 + 2 * 4 * 4 + 2 * 5 * 4 + 2 * 4)
        self.assertEqual(peers.prob_bytes("verify_draft", "n=4,accept=none,draft=tokens,"
                                          "target=logits", 2, 10),
                         5 * 2 * 10 * 4 + 2 * 4 * 4 + 2 * 5 * 4 + 2 * 4)
        self.assertEqual(peers.prob_bytes("verify_draft", "n=4,accept=none,target=logits", 2, 10),
                         6 * 2 * 10 * 4 + 2 * 4 * 4 + 2 * 5 * 4 + 2 * 4)
        with self.assertRaises(ValueError):
            peers.prob_bytes("sample", "", b, v)
        with self.assertRaises(ValueError):  # verify_draft's param on a sampling op
            peers.prob_bytes("sample_from_probs_n", "n=4,accept=all,target=logits", b, v)


class FakeTimer:
    """Timer's interface: runs each function once and says it took 2 us."""
    host_bound_batches = 0

    def __init__(self):
        self.calls = []

    def time(self, runs, cold, fn):
        self.calls.append((runs, cold))
        fn()
        return [2.0] * runs


@unittest.skipUnless(HAVE_TORCH, "PyTorch is not installed")
class ProbOpsOnTheCpu(unittest.TestCase):
    def setUp(self):
        import torch
        self.torch = torch
        patcher = mock.patch.object(peers, "DEVICE", "cpu")
        patcher.start()
        self.addCleanup(patcher.stop)

    def test_verify_inputs_are_built_as_the_rust_bench_builds_them(self):
        torch = self.torch
        m, v, b = 5, 300, 7
        probs = peers.source_probs(torch, m, v, seed=3)
        self.assertEqual(probs.dtype, torch.float32)
        probs[1, :2] = probs[1].min()  # a tie at the least likely value: the lowest index wins
        for n in (4, 8):
            src = [[(r * (n + 1) + i) % m for i in range(n + 1)] for r in range(b)]
            full_all = peers.VerifyInputs(torch, probs, b, n, True)
            full_none = peers.VerifyInputs(torch, probs, b, n, False,
                                           target=full_all.target_probs)
            for d in (full_all, full_none):
                self.assertEqual(tuple(d.target_probs.shape), (b, n + 1, v))
                self.assertEqual(tuple(d.draft_probs.shape), (b, n, v))
                self.assertEqual((tuple(d.draft_ids.shape), d.draft_ids.dtype),
                                 ((b, n), torch.int32))
            for r in range(b):
                for i in range(n + 1):
                    self.assertTrue(torch.equal(full_all.target_probs[r, i], probs[src[r][i]]))
                for i in range(n):
                    p = probs[src[r][i]]
                    # accept=all: q = p, the draft its most likely token
                    self.assertTrue(torch.equal(full_all.draft_probs[r, i], p))
                    self.assertEqual(int(full_all.draft_ids[r, i]), int(p.argmax()))
                    # accept=none: q one-hot at the least likely token (lowest index of a tie)
                    x = int(full_none.draft_ids[r, i])
                    self.assertEqual(x, min(j for j in range(v) if p[j] == p.min()))
                    want = torch.zeros(v)
                    want[x] = 1.0
                    self.assertTrue(torch.equal(full_none.draft_probs[r, i], want))
            # draft=tokens: the accept=none drafts, their tokens alone.
            tokens = peers.VerifyInputs(torch, probs, b, n, False, one_hot=True)
            self.assertIsNone(tokens.draft_probs)
            self.assertTrue(torch.equal(tokens.draft_ids, full_none.draft_ids))
            self.assertTrue(torch.equal(tokens.target_probs, full_none.target_probs))
            self.assertIsNone(tokens.prefix(3).draft_probs)
            # A prefix of rows is the smaller batch's input.
            small = peers.VerifyInputs(torch, probs, 3, n, False)
            pre = full_none.prefix(3)
            for f in ("target_probs", "draft_probs", "draft_ids"):
                self.assertTrue(torch.equal(getattr(pre, f), getattr(small, f)), f)
            self.assertEqual((pre.n, pre.accept_all), (n, False))
        self.assertEqual(probs[1].argmin().item(), 0)

    def test_verify_inputs_on_logits_read_the_logits_rows(self):
        torch = self.torch
        m, v, b, n = 5, 300, 7, 4
        logits = peers.source_logits(torch, m, v, seed=3)
        probs = peers.source_probs(torch, m, v, seed=3)
        self.assertTrue(torch.equal(probs, torch.softmax(logits, dim=-1)))  # P = softmax(L)
        for accept_all, one_hot in ((True, False), (False, False), (False, True)):
            plain = peers.VerifyInputs(torch, probs, b, n, accept_all, one_hot=one_hot)
            fused = peers.VerifyInputs(torch, probs, b, n, accept_all, one_hot=one_hot,
                                       logits=logits)
            self.assertIsNone(fused.target_probs)
            self.assertIsNone(plain.target_logits)
            self.assertIs(fused.target, fused.target_logits)
            self.assertIs(plain.target, plain.target_probs)
            self.assertEqual(tuple(fused.target_logits.shape), (b, n + 1, v))
            for r in range(b):
                for i in range(n + 1):
                    self.assertTrue(torch.equal(fused.target_logits[r, i],
                                                logits[(r * (n + 1) + i) % m]))
            # The drafts are the probability target's.
            self.assertTrue(torch.equal(fused.draft_ids, plain.draft_ids))
            if one_hot:
                self.assertIsNone(fused.draft_probs)
            else:
                self.assertTrue(torch.equal(fused.draft_probs, plain.draft_probs))
            # The check's view of the target: the softmax of those rows.
            self.assertTrue(torch.allclose(fused.target_at(n), plain.target_at(n), atol=1e-9))
            # A prefix keeps the logits; a shared target is reused as given.
            pre = fused.prefix(3)
            self.assertIsNone(pre.target_probs)
            self.assertTrue(torch.equal(pre.target_logits, fused.target_logits[:3]))
            again = peers.VerifyInputs(torch, probs, b, n, accept_all, fused.target,
                                       one_hot=one_hot, logits=logits)
            self.assertIs(again.target_logits, fused.target_logits)

    def test_path_error_says_when_rows_take_another_path(self):
        torch = self.torch
        probs = peers.source_probs(torch, 3, 100, seed=1)
        d_all = peers.VerifyInputs(torch, probs, 200, 4, True)
        d_none = peers.VerifyInputs(torch, probs, 200, 4, False)
        self.assertIsNone(d_all.path_error(torch.full((200,), 4)))
        self.assertIn("1 of 200 rows", d_all.path_error(torch.tensor([4] * 199 + [3])))
        self.assertIsNone(d_none.path_error(torch.tensor([0] * 198 + [1, 2])))  # 1%
        self.assertIsNotNone(d_none.path_error(torch.tensor([0] * 197 + [1, 1, 1])))

    def test_run_prob_ops_writes_the_rust_bench_points(self):
        torch = self.torch
        grid = {"vocabs": [300, 500], "batches": [1, 6]}
        table = peers.torch_ops(torch)
        broken = dict(table)
        broken["sample_from_probs_n"] = lambda p, n: (lambda: 1 / 0)
        # A peer whose rows do not take the path the bytes assume: its points are not written.
        broken["verify_draft"] = lambda d, n: (
            lambda: (torch.zeros((d.draft_ids.shape[0], n + 1)),
                     torch.full((d.draft_ids.shape[0],), 1)))
        impls = {"torch": table, "broken": broken}
        timer = FakeTimer()
        skipped = set()
        meta = {"roof": 1000.0, "device": "cpu test", "git": "abc"}
        builds = []
        real = peers.VerifyInputs

        def recorded(torch_, probs, batch, n, accept_all, target=None, one_hot=False,
                     logits=None):
            builds.append((probs.shape[1], batch, n, accept_all, target is not None, one_hot,
                           logits is not None))
            if logits is not None:  # L of the same seed as P: P is their softmax
                self.assertTrue(torch.equal(torch.softmax(logits, dim=-1), probs))
            return real(torch_, probs, batch, n, accept_all, target, one_hot, logits)
        with tempfile.TemporaryDirectory() as tmp, \
                mock.patch.object(peers, "VerifyInputs", recorded), \
                mock.patch.dict(peers.VERSIONS, {"torch": "t1", "broken": "b1"}):
            out = os.path.join(tmp, "r.jsonl")
            with open(out, "w", encoding="utf-8") as f, \
                    mock.patch("sys.stdout", new_callable=__import__("io").StringIO) as log:
                written = peers.run_prob_ops(torch, f, impls, peers.PROB_OPS, grid, timer,
                                             50, meta, skipped)
            with open(out, encoding="utf-8") as f:
                lines = [__import__("json").loads(x) for x in f]
        self.assertEqual(written, len(lines))
        # torch: every (vocab, op, batch); broken: sample_from_probs only.
        want = [(v, "torch", op, params, b) for v in grid["vocabs"]
                for op, params in peers.PROB_OPS for b in grid["batches"]]
        want += [(v, "broken", "sample_from_probs", "", b) for v in grid["vocabs"]
                 for b in grid["batches"]]
        got = [(x["vocab"], x["impl"], x["op"], x["params"], x["batch"]) for x in lines]
        self.assertEqual(sorted(got), sorted(want))
        # Order: vocab, then op as in PROB_OPS, then impl, then batch.
        order = [(x["vocab"], [o for o, _ in peers.PROB_OPS].index(x["op"])) for x in lines]
        self.assertEqual(order, sorted(order))
        for x in lines:
            self.assertEqual((x["dtype"], x["dist"], x["per_row"]), ("f32", "normal1", False))
            self.assertEqual((x["median_us"], x["roof_gbps"], x["device"], x["git"]),
                             (2.0, 1000.0, "cpu test", "abc"))
            self.assertEqual(x["impl_version"], {"torch": "t1", "broken": "b1"}[x["impl"]])
            nbytes = peers.prob_bytes(x["op"], x["params"], x["batch"], x["vocab"])
            self.assertEqual(x["gbps"], round(nbytes / 2.0 / 1e3, 2))
        self.assertEqual(skipped, {("broken", "sample_from_probs_n", "n=4")}
                         | {("broken", "verify_draft", p) for o, p in peers.PROB_OPS
                            if o == "verify_draft"})
        self.assertIn("do not take the path", log.getvalue())
        # Inputs once per (vocab, params) at the largest batch; a second point set of the same
        # n and target kind reuses the target (draft=tokens, after n=8, builds its own; the
        # first logits target does, after a probability target of the same n).
        self.assertEqual(builds, [b for v in grid["vocabs"]
                                  for b in [(v, 6, n, a, not a, False, False) for n in (4, 8)
                                            for a in (True, False)]
                                  + [(v, 6, 4, False, False, True, False),
                                     (v, 6, 4, True, False, False, True),
                                     (v, 6, 4, False, True, True, True)]])
        self.assertTrue(all(c == (50, False) for c in timer.calls))  # warm L2 only

    def test_run_prob_ops_makes_the_logits_rows_only_for_a_logits_target(self):
        torch = self.torch
        grid = {"vocabs": [300, 500], "batches": [1, 6]}
        impls = {"torch": peers.torch_ops(torch)}
        meta = {"roof": 1000.0, "device": "cpu test", "git": "abc"}
        plain = [o for o in peers.PROB_OPS if not peers.target_logits(o[1])]
        fused = [o for o in peers.PROB_OPS if peers.target_logits(o[1])]
        self.assertEqual(len(fused), 2)
        # Per vocab: source_probs' logits (it makes them through source_logits), then L only
        # where a target=logits point runs.
        for ops, per_vocab in ((plain, 1), (fused, 2)):
            made = []
            real = peers.source_logits

            def recorded(torch_, rows, vocab, seed, made=made, real=real):
                made.append((rows, vocab))
                return real(torch_, rows, vocab, seed)
            with mock.patch.object(peers, "source_logits", recorded), \
                    mock.patch("sys.stdout", new_callable=__import__("io").StringIO), \
                    open(os.devnull, "w", encoding="utf-8") as f:
                written = peers.run_prob_ops(torch, f, impls, ops, grid, FakeTimer(), 50, meta,
                                             set())
            self.assertEqual(written, len(ops) * 4)
            self.assertEqual(made, [(6, v) for v in grid["vocabs"] for _ in range(per_vocab)])

    def test_the_timed_run_times_the_logit_ops_then_the_probability_ops(self):
        # main() past its GPU check, on the CPU: a stand-in GPU name, timer and roof.
        torch = self.torch
        small = {"vocabs": [500], "batches": [1, 4], "dists": ["normal1"], "dtypes": ["f32"]}
        with tempfile.TemporaryDirectory() as tmp, \
                mock.patch.dict(peers.QUICK, small), \
                mock.patch.object(torch.cuda, "is_available", return_value=True), \
                mock.patch.object(torch.cuda, "get_device_name", return_value="Test GPU"), \
                mock.patch.object(peers, "Timer", lambda t: FakeTimer()), \
                mock.patch.object(peers, "copy_roof", return_value=1000.0), \
                mock.patch("sys.stdout", new_callable=__import__("io").StringIO) as log:
            out = os.path.join(tmp, "r.jsonl")
            args = ["--quick", "--impls", "torch", "--out", out]
            rc = peers.main(args + ["--ops", "greedy,sample_from_probs"])
            self.assertEqual(rc, 0, log.getvalue())
            rc = peers.main(args + ["--only", "probs", "--ops", "greedy,verify_draft"])
            self.assertEqual(rc, 0, log.getvalue())
            with open(out, encoding="utf-8") as f:
                lines = [__import__("json").loads(x) for x in f]
        got = [(x["op"], x["params"], x["vocab"], x["batch"]) for x in lines]
        cold = ("greedy", "l2=cold", peers.COLD_VOCAB, peers.COLD_BATCH)
        verify = [("verify_draft", p, 500, b) for o, p in peers.PROB_OPS if o == "verify_draft"
                  for b in (1, 4)]
        self.assertEqual(got, [("greedy", "", 500, 1), ("greedy", "", 500, 4), cold,
                               ("sample_from_probs", "", 500, 1),
                               ("sample_from_probs", "", 500, 4)] + verify)
        self.assertEqual({x["device"] for x in lines}, {"Test GPU"})
        self.assertIn("done: 5 points written", log.getvalue())
        self.assertIn(f"done: {len(verify)} points written", log.getvalue())

    def test_the_torch_verify_draft_follows_the_rejection_rule(self):
        torch = self.torch
        torch.manual_seed(0)
        v, n, b = 6, 2, 4000
        p = torch.tensor([[0.5, 0.3, 0.2, 0, 0, 0]] * (n + 1))
        q = torch.tensor([[0.1, 0.1, 0.8, 0, 0, 0]] * n)
        d = peers.VerifyInputs.__new__(peers.VerifyInputs)
        d.target_probs = p.expand(b, n + 1, v).contiguous()
        d.draft_probs = q.expand(b, n, v).contiguous()
        d.draft_ids = torch.full((b, n), 2, dtype=torch.int32)  # p/q = 1/4
        tokens, e = peers.torch_ops(torch)["verify_draft"](d, n)()
        self.assertEqual(tuple(tokens.shape), (b, n + 1))
        self.assertAlmostEqual(float((e >= 1).double().mean()), 0.25, delta=0.03)
        self.assertAlmostEqual(float((e == 2).double().mean()), 0.0625, delta=0.015)
        first = tokens[e == 0, 0]
        # The residual max(p - q, 0) = (0.4, 0.2, 0): tokens 0 and 1 at 2 : 1, never 2.
        self.assertTrue(bool((first != 2).all()))
        self.assertAlmostEqual(float((first == 0).double().mean()), 2 / 3, delta=0.04)
        self.assertTrue(bool((tokens[e == 0, 1:] == -1).all()))
        # After a full accept the bonus token comes from p_n (tokens 0, 1, 2).
        self.assertTrue(bool((tokens[e == 2, :2] == 2).all()))

    def test_the_torch_verify_draft_on_logits_is_the_one_on_their_softmax(self):
        torch = self.torch
        m, v, b, n = 3, 200, 64, 4
        logits = peers.source_logits(torch, m, v, seed=4)
        # A cut target, so that the residual draw's support shows which rows were read.
        logits[:, 50:] = float("-inf")
        probs = torch.softmax(logits, dim=-1)
        verify = peers.torch_ops(torch)["verify_draft"]
        for accept_all, one_hot in ((True, False), (False, False), (False, True)):
            plain = peers.VerifyInputs(torch, probs, b, n, accept_all, one_hot=one_hot)
            fused = peers.VerifyInputs(torch, probs, b, n, accept_all, one_hot=one_hot,
                                       logits=logits)
            outs = []
            for d in (plain, fused):
                run = verify(d, n)
                torch.manual_seed(7)
                outs.append(run())
            (t1, e1), (t2, e2) = outs
            self.assertTrue(torch.equal(e1, e2), (accept_all, one_hot))
            self.assertTrue(torch.equal(t1, t2), (accept_all, one_hot))
            self.assertTrue(bool((e1 == (n if accept_all else 0)).all()))

    def test_flashinfer_gets_the_softmax_of_logits_targets(self):
        torch = self.torch
        logits = peers.source_logits(torch, 3, 200, seed=2)
        probs = torch.softmax(logits, dim=-1)
        seen = []
        fs = mock.Mock()
        fs.chain_speculative_sampling.side_effect = lambda q, x, p: seen.append((q, x, p))
        fs.softmax.side_effect = lambda x: torch.softmax(x, dim=-1)
        for one_hot in (False, True):
            plain = peers.VerifyInputs(torch, probs, 5, 4, False, one_hot=one_hot)
            fused = peers.VerifyInputs(torch, probs, 5, 4, False, one_hot=one_hot,
                                       logits=logits)
            run = peers._fi_verify(torch, fs, fused)
            fs.softmax.assert_not_called()  # in the timed call, not before it
            run()
            # One call on the (b*(n+1), V) rows, as FlashInfer's softmax takes them.
            self.assertEqual(tuple(fs.softmax.call_args.args[0].shape), (5 * 5, 200))
            fs.softmax.reset_mock()
            peers._fi_verify(torch, fs, plain)()
            (q1, x1, p1), (q2, x2, p2) = seen
            del seen[:]
            self.assertEqual(tuple(p1.shape), (5, 5, 200))
            self.assertTrue(torch.allclose(p1, p2, rtol=1e-5, atol=0))
            self.assertTrue(torch.equal(q1, q2) and torch.equal(x1, x2))

    def test_flashinfer_gets_one_hot_drafts_as_their_one_hot_rows(self):
        torch = self.torch
        probs = peers.source_probs(torch, 3, 200, seed=2)
        tokens = peers.VerifyInputs(torch, probs, 5, 4, False, one_hot=True)
        rows = peers.VerifyInputs(torch, probs, 5, 4, False)
        seen = []
        fs = mock.Mock()
        fs.chain_speculative_sampling.side_effect = lambda q, x, p: seen.append((q, x, p))
        for d in (tokens, rows):
            peers._fi_verify(torch, fs, d)()
        (q1, x1, p1), (q2, x2, p2) = seen
        self.assertTrue(torch.equal(q1, q2))  # the rows accept=none builds
        self.assertTrue(torch.equal(x1, x2) and torch.equal(p1, p2))

    def test_the_torch_verify_draft_of_one_hot_drafts_follows_the_rejection_rule(self):
        torch = self.torch
        torch.manual_seed(1)
        v, n, b = 6, 2, 4000
        p = torch.tensor([[0.5, 0.3, 0.2, 0, 0, 0]] * (n + 1))
        d = peers.VerifyInputs.__new__(peers.VerifyInputs)
        d.target_probs = p.expand(b, n + 1, v).contiguous()
        d.draft_probs = None
        d.draft_ids = torch.full((b, n), 1, dtype=torch.int32)  # kept with chance p(1) = 0.3
        tokens, e = peers.torch_ops(torch)["verify_draft"](d, n)()
        self.assertEqual(tuple(tokens.shape), (b, n + 1))
        self.assertAlmostEqual(float((e >= 1).double().mean()), 0.3, delta=0.03)
        self.assertAlmostEqual(float((e == 2).double().mean()), 0.09, delta=0.015)
        first = tokens[e == 0, 0]
        # The residual is p without token 1: (0.5, 0, 0.2), tokens 0 and 2 at 5 : 2.
        self.assertTrue(bool((first != 1).all()))
        self.assertAlmostEqual(float((first == 0).double().mean()), 5 / 7, delta=0.04)
        self.assertTrue(bool((tokens[e == 0, 1:] == -1).all()))
        self.assertTrue(bool((tokens[e == 2, :2] == 1).all()))
        # The first token follows p whatever the draft: 0.5, 0.3, 0.2.
        for t, want in enumerate([0.5, 0.3, 0.2]):
            self.assertAlmostEqual(float((tokens[:, 0] == t).double().mean()), want, delta=0.03)


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
        for op, params in peers.PROB_OPS:  # the probability ops were checked too
            self.assertIn(f"ok      torch {op} {params or '-'} f32 top50", r.stdout)

    def test_the_op_groups_select_and_an_empty_selection_skips(self):
        r = run_peers("--only", "probs", "--ops", "greedy", "--out", os.devnull)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("SKIPPED: no op that takes probs among greedy", r.stdout)
        r = run_peers("--only", "sideways")
        self.assertEqual(r.returncode, 2)
        if not HAVE_TORCH:  # the probability ops' names are known: it gets as far as torch
            r = run_peers("--ops", "verify_draft,sample_from_probs_n", "--out", os.devnull)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("SKIPPED: no PyTorch", r.stdout)


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

    def int(self):
        return FakeTensor(self.shape, "int32")

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

    def test_the_probability_functions_call_the_glue_as_flashinfer_does(self):
        torch, k = fake_kernels(stream=99)
        zeros = []
        empty = torch.empty
        torch.zeros = lambda *a, **kw: zeros.append(empty(*a, **kw)) or zeros[-1]  # noqa: E731
        b, n, v = 5, 4, 3000
        p = FakeTensor((b, v), "float32")
        samples = k.sampling_from_probs(p)
        draft = FakeTensor((b, n, v), "float32")
        ids = FakeTensor((b, n), "int64")
        target = FakeTensor((b, n + 1, v), "float32")
        tokens, accepted, emitted = k.chain_speculative_sampling(draft, ids, target)
        k.sampling_from_probs(p)
        (s1, a1), (s2, a2), (s3, a3) = k.lib.calls
        self.assertEqual((s1, s2, s3), ("sxfi_sampling_from_probs",
                                        "sxfi_chain_speculative_sampling",
                                        "sxfi_sampling_from_probs"))
        # sampling_from_probs: int32 tokens and a bool valid of its own, b rows of V.
        self.assertEqual((a1["batch"], a1["vocab"], a1["stream"].value), (b, v, 99))
        self.assertEqual(a1["out"], samples.ptr)
        self.assertEqual((samples.shape, samples.dtype), ((b,), "int32"))
        self.assertNotIn(a1["valid"], (None, samples.ptr))
        # chain_speculative_sampling: the converted inputs (.float(), .int()), fresh zeroed
        # int32 counts (its kernel adds to them), (b, n+1) int32 tokens.
        self.assertEqual((a2["batch"], a2["num_speculate_tokens"], a2["vocab"]), (b, n, v))
        self.assertEqual(a2["stream"].value, 99)
        self.assertNotEqual(a2["draft_token_ids"], ids.ptr)  # int64 -> int32 first
        self.assertEqual(a2["output_token_ids"], tokens.ptr)
        self.assertEqual((tokens.shape, tokens.dtype), ((b, n + 1), "int32"))
        self.assertEqual([z.ptr for z in zeros], [accepted.ptr, emitted.ptr])
        self.assertEqual([(z.shape, z.dtype) for z in zeros], [((b,), "int32")] * 2)
        self.assertEqual((a2["output_accepted_token_num"], a2["output_emitted_draft_token_num"]),
                         (accepted.ptr, emitted.ptr))
        # get_seed_and_offset: b for sampling_from_probs, b*(n+2) for the chain, each rounded
        # up to 4; one seed.
        steps = [b, b * (n + 2)]
        self.assertEqual([a["offset"] for a in (a1, a2, a3)],
                         [0, (steps[0] + 3) // 4 * 4,
                          (steps[0] + 3) // 4 * 4 + (steps[1] + 3) // 4 * 4])
        self.assertEqual(len({a["seed"] for a in (a1, a2, a3)}), 1)
        with self.assertRaisesRegex(ValueError, "shapes"):
            k.chain_speculative_sampling(draft, FakeTensor((b, n + 1)), target)

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
