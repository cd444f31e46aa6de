#!/usr/bin/env python3
"""The peers of BENCH.md, timed like benches/sampling.rs, on the same grid, into the same file.

    python3 scripts/peers.py [--quick] [--ops sample_top_p,greedy] [--only logits|probs]
                             [--out FILE]
    python3 scripts/peers.py --check     # no timing: each op once, checked (CPU without a GPU)

Runs on a GPU host with PyTorch (no network needed). Peers:

- ``torch``: the PyTorch path a serving stack falls back to. Temperature by division
  (skipped at a batch-wide tau = 1, as a stack would), softmax in f32, top-k by ``torch.topk``
  threshold, top-p by sort + softmax + cumsum + mask + scatter, min-p by softmax + max + mask,
  then softmax + ``torch.multinomial``; ``torch.argmax``; ``torch.topk`` for selection;
  sparsemax by sort + cumsum + threshold; BoK by ``bok_torch`` from scripts/bok_torch.py
  (imported lazily; skipped when missing) followed by ``torch.multinomial`` for sample_bok.
  From probabilities: ``torch.multinomial(p, 1)``, ``torch.multinomial(p, n, replacement=True)``
  and, for verify_draft, a vectorised rejection sampler (gather p and q at the drafts, accept
  iff u*q < p, the accepted prefix by cumprod, one ``torch.multinomial`` from the residual
  max(p_e - q_e, 0), p_n after a full accept, p_e where the residual has no mass; for one-hot
  drafts given by their tokens alone, as vLLM's n-gram path: q = 1, the residual p_e without
  x_e).
- ``flashinfer``: ``flashinfer.sampling.softmax``, ``sampling_from_logits``,
  ``top_k/top_p/min_p_sampling_from_probs`` (after ``flashinfer.sampling.softmax``),
  ``top_k_top_p_sampling_from_logits`` (per row: with ``top_k_max`` = 50 where it exists) and
  ``flashinfer.top_k`` (``sorted=True`` where it exists: samplex's output is sorted);
  ``sampling_from_probs`` and ``chain_speculative_sampling`` (its defaults) for the probability
  ops (FlashInfer has no n draws per row: no sample_from_probs_n; its chain kernel takes draft
  distributions only, so for ``draft=tokens`` it gets the one-hot rows, built outside the
  timing). Each call
  is guarded: an API that moved or changed skips only that op. Where the package is not
  importable (its wheel is about 100 MB, too large to carry in a 64 MiB bundle), FlashInfer's
  own kernels run through scripts/flashinfer_kernels.py (built by scripts/flashinfer/build.sh),
  which makes the same calls as these functions. Each line's ``impl_version`` says which (a
  package version, or "<version> kernels via scripts/flashinfer/glue.cu").

Inputs: the same four distributions by the same formulas as benches/common/mod.rs
(N(0,1), N(0,25), log(-log U)/beta with U uniform in [eps, 1), beta = 0.1 and 1), generated on
the GPU by torch's generator from a fixed seed. The values are NOT bit-identical to the Rust
bench's (different generators); the distributions are the same.

Timing (as in the Rust bench): CUDA events around each run on the current stream, the stream
padded with memsets so that the host's launch latency is not timed, the median of 60 runs after
3 warm-up calls; one cold-L2 point per op and dtype (vocab 128256, batch 32, normal1, a 256 MiB
buffer written before each run, ``l2=cold`` at the end of ``params``); the roof is a 1 GiB
device-to-device copy timed the same way in this process. Bytes per op: the logits read once
plus the outputs written, counted exactly as for samplex (so GB/s compare point by point).

The ops that take probabilities (PROB_OPS, benches/probs/mod.rs's table) run after those, on a
grid of their own: the grid's vocabs and batches, f32, normal1, batch-wide parameters, warm L2
only. Per vocab V the source rows are P = softmax(normal1 logits) of M = max batch rows.
sample_from_probs and sample_from_probs_n (n = 4) read P[:b]. verify_draft with draft length n
gives draft position i <= n of row r the source row s(r, i) = (r*(n+1) + i) mod M: the target's
p_i = P[s(r, i)]; ``accept=all`` sets q_i = p_i and the draft token to its argmax (every draft
accepted, the bonus token drawn from p_n), ``accept=none`` sets q_i one-hot at p_i's argmin
(draft 0 rejected, the draw from max(p_0 - q_0, 0)); ``draft=tokens`` passes those one-hot
drafts as their tokens alone (no draft_probs; the draw from p_0 without x_0). ``target=logits``
gives the target as the logits rows L[s(r, i)] that P is the softmax of (tau = 1), the drafts
unchanged: samplex's verify_draft_logits fuses the softmax into the verification, and each peer
runs its softmax (``torch.softmax``, ``flashinfer.sampling.softmax``) then its verification,
both in the timed call. Inputs are built once per vocab (and params) for the largest batch; a
batch reads their first b rows. Bytes: b*V*4 + b*4 (sample_from_probs), b*V*4 + b*n*4
(sample_from_probs_n), rows*b*V*4 + b*n*4 + b*(n+1)*4 + b*4 (verify_draft; rows = 2 for
accept=none with draft distributions, else 1; n + 1 more for target=logits, the logits rows
replacing the draw's row). A verify_draft point whose accepted counts are not the ones its
inputs were built for is not written.

``--check`` times nothing and writes no line: it runs every peer op once per distribution, dtype
and per-row setting on a 3 x 3000 batch and checks the output against a float64 reference of
BENCH.md's definition (softmax and sparsemax values, BoK against bok_torch's NumPy reference,
top-k values and indices, greedy's argmax, each drawn token inside its op's support), and the
four input distributions' mean and standard deviation; the probability ops on the same
construction from 3 source rows (and from the same rows cut to their 50 most likely tokens, so
that "drawn where p > 0" can fail): draws inside the support, verify_draft's accepted counts,
kept drafts, bonus or residual token and -1 padding. FlashInfer is checked only on a GPU.

Each point becomes one JSON line (BENCH.md's fields, ``impl`` = torch or flashinfer) appended
to ``--out`` (default: $SAMPLEX_BENCH_OUT, else benches/results/<YYYY-MM-DD>-<gpu>.jsonl).
Without torch or a GPU it prints SKIPPED and exits 0.
"""

import argparse
import datetime
import inspect
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# --- the grid (benches/common/mod.rs) -------------------------------------------------------
VOCABS = [32000, 128256, 151936, 262144]
BATCHES = [1, 8, 32, 128, 512]
DISTS = ["normal1", "normal5", "gumbel0.1", "gumbel1"]
DTYPES = ["f32", "bf16"]
QUICK = {"vocabs": [128256], "batches": [1, 128], "dists": ["normal1"], "dtypes": ["f32", "bf16"]}
COLD_VOCAB, COLD_BATCH, COLD_DIST = 128256, 32, "normal1"
FLUSH_BYTES = 256 << 20
WARMUP = 3
RUNS = 60
MAX_PADS = 512
DEVICE = "cuda"  # where inputs and parameters live; --check without a GPU sets "cpu"

TEMPERATURE = 1.0
TOP_K = 50
TOP_P = 0.9
MIN_P = 0.1
BOK = {"k": 8, "beta": 1.0, "lam": 1.0, "eta": 0.2, "T": 5, "tau": 1.0}

# (op, label, params, sampling op?, selection k) — the same table as benches/sampling.rs.
OPS = [
    ("softmax", "softmax", "t=1", False, None),
    ("sample", "sample", "t=1", True, None),
    ("greedy", "greedy", "", False, None),
    ("sample_top_k", "sample_top_k", "k=50", True, None),
    ("sample_top_p", "sample_top_p", "p=0.9", True, None),
    ("sample_min_p", "sample_min_p", "min_p=0.1", True, None),
    ("sample_top_k_top_p", "sample_top_k_top_p", "k=50,p=0.9", True, None),
    ("top_k_select", "top_k_select_k50", "k=50", False, 50),
    ("top_k_select", "top_k_select_k1024", "k=1024", False, 1024),
    ("sparsemax", "sparsemax", "t=1", False, None),
    ("sample_sparsemax", "sample_sparsemax", "t=1", True, None),
    ("bok", "bok", "T=5,K=8", False, None),
    ("sample_bok", "sample_bok", "T=5,K=8", True, None),
]
# (op, params) of the ops that take probabilities — the same table as benches/probs/mod.rs,
# in its order (the whole table runs on f32 normal1 only, warm L2, batch-wide).
PROB_OPS = [
    ("sample_from_probs", ""),
    ("sample_from_probs_n", "n=4"),
    ("verify_draft", "n=4,accept=all"),
    ("verify_draft", "n=4,accept=none"),
    ("verify_draft", "n=8,accept=all"),
    ("verify_draft", "n=8,accept=none"),
    ("verify_draft", "n=4,accept=none,draft=tokens"),
    ("verify_draft", "n=4,accept=all,target=logits"),
    ("verify_draft", "n=4,accept=none,draft=tokens,target=logits"),
]
PROB_DIST = "normal1"
OP_NAMES = sorted({o[0] for o in OPS} | {o[0] for o in PROB_OPS})
# impl -> the version its result lines carry as "impl_version" (filled in by make_impls).
VERSIONS = {}


def sanitize_gpu(name):
    """Lower-case; every run of characters outside [a-z0-9] becomes one '-' (as in Rust)."""
    s = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return s or "unknown-gpu"


def git_commit():
    g = os.environ.get("SAMPLEX_GIT", "").strip()
    if g:
        return g
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                             capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def default_out(device):
    env = os.environ.get("SAMPLEX_BENCH_OUT", "")
    if env:
        return env
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    return os.path.join(REPO, "benches", "results", f"{date}-{sanitize_gpu(device)}.jsonl")


def out_bytes(op, k, batch, vocab):
    """Bytes written: f32 dense outputs, b*k*8 for selection, else one u32 token per row."""
    if op in ("softmax", "sparsemax", "bok"):
        return batch * vocab * 4
    if op == "top_k_select":
        return batch * min(k, vocab) * 8
    return batch * 4


def _parse_prob_params(params):
    """(n, accept_all, one_hot, logits) of a PROB_OPS params string (prob_params)."""
    n = accept = None
    one_hot = logits = False
    for kv in [p for p in params.split(",") if p]:
        key, _, value = kv.partition("=")
        if key == "n" and value.isdigit() and int(value) > 0:
            n = int(value)
        elif key == "accept" and value in ("all", "none"):
            accept = value == "all"
        elif kv == "draft=tokens":
            one_hot = True
        elif kv == "target=logits":
            logits = True
        else:
            raise ValueError(f"unknown param {kv!r} in {params!r}")
    if one_hot and accept is not False:
        raise ValueError(f"draft=tokens needs accept=none in {params!r}")
    # accept= is verify_draft's alone: this keeps target=logits off the sampling ops.
    if logits and accept is None:
        raise ValueError(f"target=logits needs accept= (a verify_draft point) in {params!r}")
    return n, accept, one_hot, logits


def prob_params(params):
    """(n, accept_all, one_hot) of a PROB_OPS params string: n=None without "n=",
    accept_all=None without "accept=", one_hot for "draft=tokens" (one-hot drafts given by their
    tokens alone; never with accept=all, which one-hot drafts cannot be built to give).
    "target=logits" is allowed with "accept=" (see target_logits). ValueError for anything
    else."""
    return _parse_prob_params(params)[:3]


def target_logits(params):
    """Whether a PROB_OPS params string gives verify_draft's target as logits ("target=logits":
    samplex's verify_draft_logits, the softmax fused into the verification)."""
    return _parse_prob_params(params)[3]


def prob_bytes(op, params, batch, vocab):
    """benches/probs/mod.rs's Kind::bytes: the rows read plus tokens, draft ids and counts."""
    n, accept_all, one_hot, logits = _parse_prob_params(params)
    row = batch * vocab * 4
    if logits and op != "verify_draft":
        raise ValueError(f"target=logits is verify_draft's, not {op}'s")
    if op == "sample_from_probs":
        return row + batch * 4
    if op == "sample_from_probs_n":
        return row + batch * n * 4
    if op == "verify_draft":
        # The draw's row, or every target row once for logits (their softmax reads them all);
        # plus q_0 when the draft gives distributions and is rejected.
        target = n + 1 if logits else 1
        rows = target if accept_all or one_hot else target + 1
        return rows * row + batch * n * 4 + batch * (n + 1) * 4 + batch * 4
    raise ValueError(f"{op} is not a probability op")


def median(xs):
    return statistics.median(xs) if xs else float("nan")


# --- device timing ---------------------------------------------------------------------------
class Timer:
    """CUDA-event timing as in benches/common/mod.rs: runs queued behind padding memsets, each
    between two events; a run whose start event already completed when it was queued means the
    device waited for the host, and the batch is timed again with twice the padding."""

    def __init__(self, torch):
        self.torch = torch
        self.pad = torch.zeros(FLUSH_BYTES, dtype=torch.uint8, device=DEVICE)
        self.events = []
        self.pad_us = 100.0
        self.host_bound_batches = 0
        scratch = torch.zeros(FLUSH_BYTES, dtype=torch.uint8, device=DEVICE)
        self.pad_us = max(1.0, median(self._time_raw(9, False, 4, scratch.zero_)))

    def _ensure(self, n):
        while len(self.events) < n:
            self.events.append(self.torch.cuda.Event(enable_timing=True))

    def time(self, runs, cold, fn):
        host = float("inf")
        for _ in range(WARMUP):
            t = time.perf_counter()
            fn()
            host = min(host, (time.perf_counter() - t) * 1e6)
        self.torch.cuda.synchronize()
        pads = math.ceil((runs * (host + 4.0) * 1.5 + 200.0) / self.pad_us)
        return self._time_raw(runs, cold, max(1, min(pads, MAX_PADS)), fn)

    def _time_raw(self, runs, cold, pads, fn):
        self._ensure(2 * runs)
        ev = self.events
        for attempt in range(4):
            for _ in range(pads):
                self.pad.zero_()
            if not cold:
                fn()
            waited = 0
            for i in range(runs):
                if cold:
                    self.pad.zero_()
                ev[2 * i].record()
                fn()
                ev[2 * i + 1].record()
                if ev[2 * i].query():
                    waited += 1
            self.torch.cuda.synchronize()
            times = [ev[2 * i].elapsed_time(ev[2 * i + 1]) * 1e3 for i in range(runs)]
            if waited == 0:
                return times
            if attempt == 3 or pads >= MAX_PADS:
                self.host_bound_batches += 1
                return times
            pads = min(2 * pads, MAX_PADS)
        return times


def copy_roof(torch, timer):
    n = 1 << 30
    src = torch.zeros(n, dtype=torch.uint8, device=DEVICE)
    dst = torch.empty_like(src)
    times = timer.time(RUNS, False, lambda: dst.copy_(src))
    return 2 * n / median(times) / 1e3


# --- inputs ----------------------------------------------------------------------------------
def make_logits(torch, dist, batch, vocab, seed):
    """batch x vocab f32 logits on the GPU: N(0, sigma^2) or log(-log U)/beta, U in [eps, 1)."""
    g = torch.Generator(device=DEVICE)
    g.manual_seed(seed)
    if dist.startswith("normal"):
        sigma = float(dist[len("normal"):])
        return torch.randn((batch, vocab), generator=g, device=DEVICE, dtype=torch.float32) * sigma
    beta = float(dist[len("gumbel"):])
    eps = torch.finfo(torch.float32).eps
    u = torch.rand((batch, vocab), generator=g, device=DEVICE, dtype=torch.float32)
    u = eps + (1.0 - eps) * u
    return torch.log(-torch.log(u)) / beta


def prob_seed(vocab):
    """The main loop's seed of normal1 logits at `vocab` (so P's logits are the grid's)."""
    return 0x5A3D + 1000 * DISTS.index(PROB_DIST) + vocab


def source_logits(torch, rows, vocab, seed):
    """The logits rows L of the probability ops' source rows (target=logits reads them)."""
    return make_logits(torch, PROB_DIST, rows, vocab, seed)


def source_probs(torch, rows, vocab, seed):
    """The probability ops' source rows P: softmax in f32 of `rows` normal1 logits rows."""
    return torch.softmax(source_logits(torch, rows, vocab, seed), dim=-1)


def one_hot_rows(torch, ids, vocab, dtype):
    """(b, n, vocab) rows one-hot at ids (b, n): the distributions of one-hot drafts."""
    q = torch.zeros((*ids.shape, vocab), dtype=dtype, device=ids.device)
    return q.scatter_(-1, ids.long()[..., None], 1.0)


class VerifyInputs:
    """verify_draft's inputs for `batch` rows and draft length n, built from the source rows P
    (M x V): target_probs (batch, n+1, V), draft_probs (batch, n, V; None for one-hot drafts
    given by their tokens alone), draft_ids (batch, n) int32. Row r's draft position i reads
    P[(r*(n+1) + i) mod M]; each row is built from r alone, so a prefix of rows is a smaller
    batch's input (``prefix``). With `logits` (the M x V rows L that P is the softmax of,
    target=logits) the target is target_logits, the rows L[(r*(n+1) + i) mod M], and
    target_probs is None; the drafts are the same. `target` reuses a target (``target``) built
    for the same rows, batch and n (every verify point of that n and target kind shares it)."""

    target_logits = None  # a probability target unless built from logits

    def __init__(self, torch, probs, batch, n, accept_all, target=None, one_hot=False,
                 logits=None):
        m, v = probs.shape
        dev = probs.device
        r = torch.arange(batch, device=dev)[:, None]
        i = torch.arange(n + 1, device=dev)[None, :]
        src = (r * (n + 1) + i) % m  # (batch, n+1) source rows
        self.n, self.accept_all = n, accept_all
        given = probs if logits is None else logits
        rows = given[src] if target is None else target
        self.target_probs, self.target_logits = (rows, None) if logits is None else (None, rows)
        drafts = src[:, :n]
        if accept_all:
            # q = p: u*q < p holds for every u < 1, so every draft is accepted.
            self.draft_probs = probs[drafts]
            ids = probs.argmax(dim=-1)[drafts]
        else:
            # q one-hot at p's least likely token (argmin: the lowest index among ties): the
            # target gives it ~1e-7 or 0, so draft 0 is rejected.
            ids = probs.argmin(dim=-1)[drafts]
            self.draft_probs = None if one_hot else one_hot_rows(torch, ids, v, probs.dtype)
        self.draft_ids = ids.to(torch.int32)

    @property
    def target(self):
        """The target's rows (batch, n+1, V): target_logits when given, else target_probs."""
        return self.target_probs if self.target_logits is None else self.target_logits

    def target_at(self, i):
        """The target's distribution at draft position i, (batch, V) in f64: its probabilities,
        or the softmax of its logits (0 exactly where a logit is -inf)."""
        if self.target_logits is None:
            return self.target_probs[:, i].double()
        return self.target_logits[:, i].double().softmax(dim=-1)

    def prefix(self, batch):
        """The first `batch` rows (views: no copy)."""
        rows = lambda t: None if t is None else t[:batch]  # noqa: E731
        view = object.__new__(type(self))
        view.n, view.accept_all = self.n, self.accept_all
        view.target_probs, view.target_logits = rows(self.target_probs), rows(self.target_logits)
        view.draft_probs = rows(self.draft_probs)
        view.draft_ids = self.draft_ids[:batch]
        return view

    def path_error(self, accepted):
        """None when the accepted-prefix lengths (one per row) are the ones these inputs were
        built for (n everywhere for accept=all; 0 for all but 1% of rows for accept=none: each
        first draft keeps a ~1e-7 chance), else what came out."""
        want = self.n if self.accept_all else 0
        accepted = accepted.reshape(-1).long()
        off = int((accepted != want).sum())
        if off > (0 if self.accept_all else accepted.numel() // 100):
            return (f"{off} of {accepted.numel()} rows accepted other than {want} drafts "
                    f"(mean {float(accepted.double().mean()):.3f})")
        return None


# --- the peers -------------------------------------------------------------------------------
class Params:
    """Batch-wide scalars, or per-row tensors holding the same values."""

    def __init__(self, torch, batch, per_row):
        self.per_row = per_row
        if per_row:
            full = lambda v, dt: torch.full((batch,), v, dtype=dt, device=DEVICE)  # noqa: E731
            self.t = full(TEMPERATURE, torch.float32)
            self.k = full(TOP_K, torch.int32)
            self.p = full(TOP_P, torch.float32)
            self.min_p = full(MIN_P, torch.float32)
        else:
            self.t, self.k, self.p, self.min_p = TEMPERATURE, TOP_K, TOP_P, MIN_P

    def col(self, v):
        """v as a (batch, 1) column when per row, else the scalar."""
        return v[:, None] if self.per_row else v


def torch_ops(torch):
    """op -> builder(x, prm, k) -> zero-argument callable, for the PyTorch path."""
    f32 = torch.float32

    def scaled(x, prm):
        # A stack divides by the temperature unless it is 1 for the whole batch.
        if not prm.per_row and prm.t == 1.0:
            return x
        return x.float() / prm.col(prm.t)

    def probs_of(z):
        return torch.softmax(z, dim=-1, dtype=f32)

    def top_k_mask(z, prm):
        if prm.per_row:
            kmax = TOP_K  # every row's k; a stack passes the host-side max
            vals = torch.topk(z, kmax, dim=-1).values
            thr = vals.gather(-1, (prm.k.long() - 1)[:, None])
        else:
            thr = torch.topk(z, prm.k, dim=-1).values[:, -1:]
        return z.masked_fill(z < thr, float("-inf"))

    def top_p_mask(z, prm):
        sorted_z, idx = torch.sort(z, dim=-1, descending=False)
        cum = torch.softmax(sorted_z, dim=-1, dtype=f32).cumsum(dim=-1)
        drop = cum <= (1.0 - prm.col(prm.p))
        drop[:, -1] = False
        drop = drop.scatter(-1, idx, drop)
        return z.masked_fill(drop, float("-inf"))

    def min_p_mask(z, prm):
        p = probs_of(z)
        top = p.amax(dim=-1, keepdim=True)
        return z.masked_fill(p < prm.col(prm.min_p) * top, float("-inf"))

    def draw(p):
        return torch.multinomial(p, 1)

    def sparsemax(z):
        z = z.float()
        zs = torch.sort(z, dim=-1, descending=True).values
        cs = zs.cumsum(dim=-1)
        r = torch.arange(1, z.shape[-1] + 1, device=z.device, dtype=f32)
        k = ((1.0 + r * zs) > cs).sum(dim=-1, keepdim=True)
        tau = (cs.gather(-1, k - 1) - 1.0) / k.to(f32)
        return torch.clamp(z - tau, min=0.0)

    def bok(x, prm):
        try:
            from bok_torch import bok_torch  # scripts/bok_torch.py, another engineer's
        except ImportError as e:
            raise NotImplementedError(f"scripts/bok_torch.py: {e}") from e
        b = BOK
        if prm.per_row:
            # The columns are made here, not in the timed call (a stack keeps them on the device).
            col = lambda v: torch.full((x.shape[0], 1), v, dtype=f32, device=x.device)  # noqa: E731
            k, beta, lam, eta = col(b["k"]), col(b["beta"]), col(b["lam"]), col(b["eta"])
            return lambda: bok_torch(x, k, beta, lam, eta, b["T"], prm.col(prm.t), weights="prob")
        return lambda: bok_torch(x, b["k"], b["beta"], b["lam"], b["eta"], b["T"], b["tau"],
                                 weights="prob")

    def sample_bok(x, prm):
        q = bok(x, prm)
        return lambda: draw(q())

    def verify_draft(d):
        """Rejection sampling as a PyTorch stack writes it: (tokens (b, n+1) with the accepted
        prefix, the drawn token, then -1; accepted prefix length per row). One-hot drafts
        (no draft_probs): q(x) = 1, and the residual is p_e with x_e zeroed, as vLLM's
        n-gram path has it. A logits target: torch.softmax first, in the timed call."""
        sample = rejection_sampler(d)
        target = target_probs_of(d, lambda x: torch.softmax(x, dim=-1))
        return lambda: sample(target())

    def rejection_sampler(d):
        """verify_draft's sampler for d's drafts: target probabilities (b, n+1, V) -> its
        output."""
        b, n = d.draft_ids.shape
        dev = d.draft_ids.device
        one_hot = d.draft_probs is None
        ids = d.draft_ids.long()  # gather's index type, converted once (not timed)
        rows = torch.arange(b, device=dev)
        cols = torch.arange(n, device=dev)
        pad = torch.full((b, 1), -1, dtype=torch.int64, device=dev)
        ids_pad = torch.cat([ids, pad], dim=1)  # x_e for e < n; -1 after a full accept
        vocab = torch.arange(d.target.shape[-1], device=dev)

        def run(target_probs):
            p = target_probs[:, :n].gather(-1, ids[..., None]).squeeze(-1)
            u = torch.rand((b, n), device=dev)
            if not one_hot:
                u = u * d.draft_probs.gather(-1, ids[..., None]).squeeze(-1)  # u*q < p
            accept = u < p
            e = accept.long().cumprod(dim=-1).sum(dim=-1)  # the accepted prefix
            p_e = target_probs[rows, e]
            if one_hot:
                x_e = ids_pad[rows, e]
                residual = p_e.masked_fill((x_e >= 0)[:, None] & (vocab == x_e[:, None]), 0.0)
            else:
                # No draft at e = n: the residual is p_n itself.
                q_e = d.draft_probs[rows, e.clamp(max=n - 1)] * (e < n)[:, None]
                residual = (p_e - q_e).clamp(min=0.0)
            residual = torch.where(residual.sum(dim=-1, keepdim=True) > 0, residual, p_e)
            token = torch.multinomial(residual, 1)
            out = torch.cat([ids.masked_fill(cols >= e[:, None], -1), pad], dim=1)
            return out.scatter_(1, e[:, None], token), e
        return run

    return {
        "softmax": lambda x, prm, k: (lambda: probs_of(scaled(x, prm))),
        "sample": lambda x, prm, k: (lambda: draw(probs_of(scaled(x, prm)))),
        "greedy": lambda x, prm, k: (lambda: torch.argmax(x, dim=-1)),
        "sample_top_k": lambda x, prm, k: (lambda: draw(probs_of(top_k_mask(scaled(x, prm), prm)))),
        "sample_top_p": lambda x, prm, k: (lambda: draw(probs_of(top_p_mask(scaled(x, prm), prm)))),
        "sample_min_p": lambda x, prm, k: (lambda: draw(probs_of(min_p_mask(scaled(x, prm), prm)))),
        "sample_top_k_top_p": lambda x, prm, k: (
            lambda: draw(probs_of(top_p_mask(top_k_mask(scaled(x, prm), prm), prm)))),
        "top_k_select": lambda x, prm, k: (lambda: torch.topk(x, k, dim=-1)),
        "sparsemax": lambda x, prm, k: (lambda: sparsemax(scaled(x, prm))),
        "sample_sparsemax": lambda x, prm, k: (lambda: draw(sparsemax(scaled(x, prm)))),
        "bok": lambda x, prm, k: bok(x, prm),
        "sample_bok": lambda x, prm, k: sample_bok(x, prm),
        # The probability ops' builders take (inputs, n): P[:b], or VerifyInputs.
        "sample_from_probs": lambda p, n: (lambda: torch.multinomial(p, 1)),
        "sample_from_probs_n": lambda p, n: (lambda: torch.multinomial(p, n, replacement=True)),
        "verify_draft": lambda d, n: verify_draft(d),
    }


def flashinfer_ops(torch):
    """(op -> builder, version) for FlashInfer: its package when importable, else its kernels
    through scripts/flashinfer_kernels.py; ({}, None) when neither can run here."""
    try:
        import flashinfer as fi
        import flashinfer.sampling as fs
        version = getattr(fi, "__version__", "unknown")
    except Exception as e:  # ImportError, or a broken build/JIT environment
        try:
            import flashinfer_kernels  # scripts/flashinfer_kernels.py
            fi = fs = flashinfer_kernels.load(torch)
        except ImportError as e2:
            print(f"SKIPPED flashinfer: not importable ({type(e).__name__}: {e}); "
                  f"its kernels: {e2}")
            return {}, None
        version = f"{fs.version} kernels via scripts/flashinfer/glue.cu"
        print(f"flashinfer: the package is not importable ({type(e).__name__}); "
              f"timing FlashInfer {fs.version}'s kernels from {fs.path}")

    def scaled(x, prm):
        if not prm.per_row and prm.t == 1.0:
            return x
        return x.float() / prm.col(prm.t)

    def probs_of(x, prm):
        # FlashInfer's softmax takes the temperature (a scalar or a per-row tensor).
        if not prm.per_row and prm.t == 1.0:
            return fs.softmax(x)
        return fs.softmax(x, temperature=prm.t)

    def accepts(fn, name):
        """Whether this FlashInfer version's `fn` takes the keyword `name`."""
        try:
            return name in inspect.signature(fn).parameters
        except (TypeError, ValueError):
            return False

    # Per-row k: pass the host-side bound where FlashInfer takes one, as the torch peer's
    # torch.topk(z, max k) does (a stack knows its largest k).
    kmax = {"top_k_max": TOP_K} if accepts(fs.top_k_top_p_sampling_from_logits, "top_k_max") else {}

    ops = {
        "softmax": lambda x, prm, k: (lambda: probs_of(x, prm)),
        "sample": lambda x, prm, k: (lambda: fs.sampling_from_logits(scaled(x, prm))),
        "sample_top_k": lambda x, prm, k: (
            lambda: fs.top_k_sampling_from_probs(probs_of(x, prm), prm.k)),
        "sample_top_p": lambda x, prm, k: (
            lambda: fs.top_p_sampling_from_probs(probs_of(x, prm), prm.p)),
        "sample_min_p": lambda x, prm, k: (
            lambda: fs.min_p_sampling_from_probs(probs_of(x, prm), prm.min_p)),
        "sample_top_k_top_p": lambda x, prm, k: (
            lambda: fs.top_k_top_p_sampling_from_logits(
                scaled(x, prm), prm.k, prm.p, **(kmax if prm.per_row else {}))),
    }
    if hasattr(fi, "top_k"):
        # samplex and torch.topk return the k pairs sorted; ask FlashInfer for the same where
        # its version can (its default, unsorted, does less work).
        kw = {"sorted": True} if accepts(fi.top_k, "sorted") else {}
        ops["top_k_select"] = lambda x, prm, k: (lambda: fi.top_k(x, k, **kw))
    # The probability ops (builders take (inputs, n)); no sample_from_probs_n: FlashInfer has
    # no n draws per row.
    if hasattr(fs, "sampling_from_probs"):
        ops["sample_from_probs"] = lambda p, n: (lambda: fs.sampling_from_probs(p))
    if hasattr(fs, "chain_speculative_sampling"):
        ops["verify_draft"] = lambda d, n: _fi_verify(torch, fs, d)
    return ops, version


def _fi_verify(torch, fs, d):
    """FlashInfer's chain_speculative_sampling on verify_draft's inputs. It takes draft
    distributions only: for one-hot drafts given by their tokens alone (draft=tokens) it gets
    their one-hot rows, built here, outside the timed call (a stack would build them every
    step: a b*n*V write this leaves out, in FlashInfer's favour). A logits target: fs.softmax
    first, in the timed call."""
    q = d.draft_probs
    if q is None:
        q = one_hot_rows(torch, d.draft_ids, d.target.shape[-1], d.target.dtype)
    target = target_probs_of(d, fs.softmax)
    return lambda: fs.chain_speculative_sampling(q, d.draft_ids, target())


def target_probs_of(d, softmax):
    """A zero-argument callable giving verify_draft's target probabilities (b, n+1, V):
    d.target_probs, or `softmax` (rows of a 2-d tensor, as FlashInfer's takes them) of
    d.target_logits' (b*(n+1), V) view, for the peer to call inside its timed call."""
    if d.target_logits is None:
        return lambda: d.target_probs
    shape = d.target_logits.shape
    rows = d.target_logits.reshape(-1, shape[-1])  # a view: prefixes are contiguous
    return lambda: softmax(rows).view(shape)


# --- --check: every peer op once, outputs against a float64 reference -----------------------
CHECK_BATCH, CHECK_VOCAB = 3, 3000
# On a GPU the check runs a second vocab too: at 65536 and more, FlashInfer's top-k + top-p
# takes another route (its top-k-first fast path) than at 3000.
CHECK_VOCAB_GPU = 65536
# Draws per row in a sampling check (the rows repeated, one call): a support one token too wide
# (top-k with k = 51) still puts a draw outside it with probability ~0.98 over 3 x 64 draws.
CHECK_DRAWS = 64


def _kept_sets(torch, z, op):
    """SPEC's support of `op` per row of z (float64, tau = 1), as a bool mask."""
    p = torch.softmax(z, dim=-1)
    keep = torch.ones_like(z, dtype=torch.bool)
    if op in ("sample_top_k", "sample_top_k_top_p"):
        kth = torch.topk(z, TOP_K, dim=-1).values[:, -1:]
        keep &= z >= kth  # ties at the boundary are kept
    if op in ("sample_top_p", "sample_top_k_top_p"):
        q = torch.where(keep, p, torch.zeros_like(p))
        q = q / q.sum(dim=-1, keepdim=True)
        s, _ = torch.sort(q, dim=-1, descending=True)
        reached = (s.cumsum(dim=-1) >= TOP_P * (1 - 1e-9)).to(torch.int64)
        t = s.gather(-1, reached.argmax(dim=-1, keepdim=True))  # the first value reaching p
        keep &= q >= t  # ties at t are kept
    if op == "sample_min_p":
        keep &= p >= MIN_P * p.amax(dim=-1, keepdim=True)
    return keep


def _sparsemax_ref(torch, z):
    """SPEC's sort-and-threshold in float64, row by row."""
    out = torch.zeros_like(z)
    for r in range(z.shape[0]):
        u, _ = torch.sort(z[r], descending=True)
        cs = u.cumsum(0)
        ks = torch.arange(1, len(u) + 1, dtype=z.dtype, device=z.device)
        k = int(((1 + ks * u) > cs).nonzero().max()) + 1
        out[r] = torch.clamp(z[r] - (cs[k - 1] - 1) / k, min=0)
    return out


def _bok_ref(torch, z):
    """bok_torch's own float64 reference (NumPy), or None without NumPy."""
    try:
        import numpy  # noqa: F401
        from bok_torch import _bok_numpy
    except ImportError:
        return None
    b = BOK
    q = _bok_numpy(z.cpu().numpy(), b["k"], b["beta"], b["lam"], b["eta"], b["T"], b["tau"])
    return torch.from_numpy(q).to(z.device)


def _tokens(out):
    """Token ids as a flat int64 tensor, whatever shape or tuple a peer returns."""
    if isinstance(out, (tuple, list)):
        out = out[0]
    return out.reshape(-1).long()


def check_dists(torch):
    """make_logits draws BENCH.md's four distributions: mean and std of a large sample."""
    gamma = 0.5772156649015329  # E[log(-log U)] = -gamma; its std is pi / sqrt(6)
    want = {"normal1": (0.0, 1.0), "normal5": (0.0, 5.0),
            "gumbel0.1": (-gamma / 0.1, math.pi / math.sqrt(6) / 0.1),
            "gumbel1": (-gamma, math.pi / math.sqrt(6))}
    bad = 0
    for dist in DISTS:
        x = make_logits(torch, dist, 4, 250_000, seed=11).double()
        mean, std = float(x.mean()), float(x.std())
        m0, s0 = want[dist]
        ok = abs(mean - m0) < 0.01 * s0 and abs(std / s0 - 1) < 0.01
        ok = ok and bool(torch.isfinite(x).all())
        bad += not ok
        print(f"{'ok' if ok else 'FAILED':7} inputs {dist:9} mean {mean:+.4f} (want {m0:+.4f}) "
              f"std {std:.4f} (want {s0:.4f})")
    return bad


def check(torch, impls, ops):
    """Each of `ops` of each peer once per (dist, dtype, per_row) on a small batch (a sampling
    op's rows repeated CHECK_DRAWS times), its output checked against a float64 reference of
    BENCH.md's definition. Returns the number of failures."""
    bad = check_dists(torch)
    vocabs = [CHECK_VOCAB] + ([CHECK_VOCAB_GPU] if DEVICE == "cuda" else [])
    for impl, table in impls.items():
        for dist, vocab in [(d, v) for v in vocabs for d in DISTS]:
            base = make_logits(torch, dist, CHECK_BATCH, vocab, seed=5)
            for dtype in DTYPES:
                one = base if dtype == "f32" else base.to(torch.bfloat16)
                for op, label, _params, sampling, k in ops:
                    if op not in table:
                        continue
                    x = one.repeat(CHECK_DRAWS, 1) if sampling else one
                    z = x.double()  # the values the peer saw, widened
                    p = torch.softmax(z, dim=-1)
                    for per_row in ([False, True] if sampling else [False]):
                        what = f"{impl} {label} {dtype} {dist} v{vocab} per_row={per_row}"
                        bad += _checked(what, lambda: _check_output(
                            torch, op, k, z, p,
                            table[op](x, Params(torch, x.shape[0], per_row), k)()))
    return bad


def _checked(what, run):
    """Runs one check (`run` returns None or what is wrong) and prints ok, FAILED or SKIPPED
    (a peer without that op) for `what`; 1 for a failure, else 0."""
    try:
        problem = run()
    except NotImplementedError as e:
        print(f"SKIPPED {what}: {e}")
        return 0
    except Exception as e:  # a peer that breaks is what --check is for
        problem = f"{type(e).__name__}: {e}"
    print(f"{'ok' if problem is None else 'FAILED':7} {what}"
          + (f": {problem}" if problem else ""))
    return int(problem is not None)


def _check_output(torch, op, k, z, p, out):
    """None when `out` is what `op` must give for logits z (probabilities p), else why not."""
    b, v = z.shape
    tol = 1e-4  # f32 arithmetic against float64 (bok_torch's own self-check uses the same)
    if op in ("softmax", "sparsemax", "bok"):
        q = out.double()
        if q.shape != (b, v):
            return f"shape {tuple(q.shape)}"
        ref = {"softmax": lambda: p, "sparsemax": lambda: _sparsemax_ref(torch, z),
               "bok": lambda: _bok_ref(torch, z)}[op]()
        if ref is None:
            ones = torch.ones(b, dtype=q.dtype, device=q.device)
            return None if torch.allclose(q.sum(-1), ones, atol=tol) else "rows do not sum to 1"
        err = float((q - ref).abs().max())
        return None if err < tol else f"max |q - reference| = {err:.2e}"
    if op == "top_k_select":
        values, indices = out
        want = torch.topk(z, k, dim=-1).values
        if values.shape != (b, k):
            return f"shape {tuple(values.shape)}"
        if not torch.equal(values.double(), want):
            return "values are not the k largest, sorted descending"
        if not torch.equal(z.gather(-1, indices.long()), values.double()):
            return "indices do not point at the values"
        return None
    tokens = _tokens(out)
    if tokens.shape != (b,) or not bool(((tokens >= 0) & (tokens < v)).all()):
        return f"tokens {tokens.tolist()[:8]}... are not one id in [0, {v}) per row"
    if op == "greedy":
        return None if torch.equal(tokens, z.argmax(-1)) else "not the argmax"
    if op in ("sample", "sample_bok"):
        support = p > 0
    elif op == "sample_sparsemax":
        support = _sparsemax_ref(torch, z) > 0
    else:
        support = _kept_sets(torch, z, op)
    inside = support.gather(-1, tokens[:, None]).reshape(-1)
    outside = (~inside).nonzero().reshape(-1).tolist()
    return None if not outside else \
        f"{len(outside)} of {b} draws outside the support (rows {outside[:8]})"


# The probability ops' check also runs on P cut to each row's CHECK_TOP most likely tokens
# (renormalised; the softmax of the logits with the others set to -inf, which target=logits
# reads): on the plain softmax every p > 0, and "drawn where p > 0" could not fail.
CHECK_TOP = 50


def _verify_out(out):
    """(tokens (b, n+1), accepted prefix per row), both int64, of a verify_draft peer: torch's
    (tokens, e) or FlashInfer's (tokens, accepted_num, emitted_num), whose emitted_num is the
    prefix (its accepted_num counts the drafts that pass on their own)."""
    return out[0].long(), out[-1].reshape(-1).long()


def check_probs(torch, impls, prob_ops):
    """Each of `prob_ops` of each peer once per vocab and source set, built as the timed run
    builds them from CHECK_BATCH source rows for CHECK_BATCH x CHECK_DRAWS rows. Returns the
    number of failures."""
    bad = 0
    vocabs = [CHECK_VOCAB] + ([CHECK_VOCAB_GPU] if DEVICE == "cuda" else [])
    batch = CHECK_BATCH * CHECK_DRAWS
    for impl, table in impls.items():
        for vocab in vocabs:
            dense = source_logits(torch, CHECK_BATCH, vocab, seed=5)
            kth = torch.topk(dense, CHECK_TOP, dim=-1).values[:, -1:]
            cut = dense.masked_fill(dense < kth, float("-inf"))  # softmax: 0 outside the top
            for rows, logits in ((PROB_DIST, dense), (f"top{CHECK_TOP}", cut)):
                probs = torch.softmax(logits, dim=-1)
                for op, params in prob_ops:
                    if op not in table:
                        continue
                    n, accept_all, one_hot = prob_params(params)
                    given = logits if target_logits(params) else None
                    what = f"{impl} {op} {params or '-'} f32 {rows} v{vocab}"

                    def run(op=op, n=n, accept_all=accept_all, one_hot=one_hot, probs=probs,
                            given=given):
                        if op == "verify_draft":
                            inp = VerifyInputs(torch, probs, batch, n, accept_all,
                                               one_hot=one_hot, logits=given)
                        else:
                            inp = probs.repeat(CHECK_DRAWS, 1)
                        return _check_prob_output(torch, op, n, inp, table[op](inp, n)())
                    bad += _checked(what, run)
    return bad


def _in_support(torch, p, tokens):
    """None when every token is an id in [0, V) where p > 0 (row by row), else why not."""
    v = p.shape[-1]
    if not bool(((tokens >= 0) & (tokens < v)).all()):
        return f"tokens {tokens.reshape(-1).tolist()[:8]}... are not ids in [0, {v})"
    outside = (p.gather(-1, tokens) <= 0).any(dim=-1).nonzero().reshape(-1).tolist()
    return None if not outside else \
        f"{len(outside)} of {p.shape[0]} rows drew where p = 0 (rows {outside[:8]})"


def _check_prob_output(torch, op, n, inp, out):
    """None when `out` is what probability op `op` must give for its inputs `inp`, else why."""
    if op in ("sample_from_probs", "sample_from_probs_n"):
        b = inp.shape[0]
        per_row = 1 if op == "sample_from_probs" else n
        tokens = _tokens(out)
        if tokens.numel() != b * per_row:
            return f"{tokens.numel()} tokens for {b} rows of {per_row}"
        return _in_support(torch, inp.double(), tokens.reshape(b, per_row))
    tokens, accepted = _verify_out(out)
    b = inp.draft_ids.shape[0]
    if tuple(tokens.shape) != (b, n + 1) or tuple(accepted.shape) != (b,):
        return f"shapes {tuple(tokens.shape)} and {tuple(accepted.shape)}"
    wrong = inp.path_error(accepted)
    if wrong:
        return wrong
    ids = inp.draft_ids.long()
    if inp.accept_all:
        if not torch.equal(tokens[:, :n], ids):
            return "the accepted tokens are not the drafts"
        return _in_support(torch, inp.target_at(n), tokens[:, n:])
    rejected = accepted == 0  # every row but a rare one (see path_error)
    t0 = tokens[rejected, :1]
    if bool((t0 == ids[rejected, :1]).any()):
        return "a rejected draft was emitted"
    if not bool((tokens[rejected, 1:] == -1).all()):
        return "the tokens after the first rejection are not -1"
    return _in_support(torch, inp.target_at(0)[rejected], t0)


# --- the run ---------------------------------------------------------------------------------
def make_impls(torch, names, gpu):
    """{impl: op table} for the comma-separated `names`; FlashInfer only with a GPU (its kernels
    run nowhere else) and when importable. Raises ValueError for an unknown name."""
    impls = {}
    for name in [n.strip() for n in names.split(",") if n.strip()]:
        if name == "torch":
            impls["torch"] = torch_ops(torch)
            VERSIONS["torch"] = torch.__version__
        elif name == "flashinfer":
            table, version = flashinfer_ops(torch) if gpu else ({}, None)
            if table:
                impls["flashinfer"] = table
                VERSIONS["flashinfer"] = version
        else:
            raise ValueError(f"unknown impl {name!r}; known: torch,flashinfer")
    return impls


def prob_label(op, params):
    """benches/probs's label (Spec::label): the op, then n=4 as n4 and any other param with '_'
    for its '=' (verify_draft_n4_accept_all)."""
    parts = [kv.replace("=", "") if kv.startswith("n=") else kv.replace("=", "_")
             for kv in params.split(",") if kv]
    return "_".join([op] + parts)


def run_prob_ops(torch, f, impls, prob_ops, grid, timer, runs, meta, skipped):
    """Times `prob_ops` of each peer on the probability grid (the module docstring), one line
    per point into the open file `f`; `meta` gives roof, device and git; a failed (impl, op,
    params) joins `skipped`. Returns the number of lines written, None when CUDA is unusable."""
    if not prob_ops:
        return 0
    m = max(grid["batches"])
    written = 0

    def wanted(op, params):  # some peer runs it
        return any(op in table and (impl, op, params) not in skipped
                   for impl, table in impls.items())

    for vocab in grid["vocabs"]:
        probs = source_probs(torch, m, vocab, prob_seed(vocab))
        # L, whose softmax P is, only where a target=logits point runs (512 MiB at the largest).
        logits = source_logits(torch, m, vocab, prob_seed(vocab)) if any(
            wanted(op, params) and target_logits(params) for op, params in prob_ops) else None
        # ((n, target=logits?), target rows): the verify points of one n and target kind share
        # the target rows.
        target = None
        inp = fn = full = None
        for op, params in prob_ops:
            # The last op's inputs go before the next are built (at V = 262144 and n = 8,
            # target and draft are 4.8 and 4.3 GB).
            inp = fn = full = None
            n, accept_all, one_hot = prob_params(params)
            label = prob_label(op, params)
            if not wanted(op, params):
                continue
            if op == "verify_draft":
                key = (n, target_logits(params))
                if target is not None and target[0] != key:
                    target = None
                try:
                    full = VerifyInputs(torch, probs, m, n, accept_all,
                                        target[1] if target else None, one_hot=one_hot,
                                        logits=logits if key[1] else None)
                except Exception as e:  # OOM at the largest vocab
                    print(f"SKIPPED {label} v{vocab}: its inputs: {type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}")
                    target = None
                    torch.cuda.empty_cache()
                    continue
                target = (key, full.target)
            for impl, table in impls.items():
                if op not in table:
                    continue
                key = (impl, op, params)
                for batch in grid["batches"]:
                    if key in skipped:
                        break
                    inp = full.prefix(batch) if full is not None else probs[:batch]
                    try:
                        fn = table[op](inp, n)
                        if full is not None:
                            # As the Rust bench: a point whose rows take another path than
                            # its bytes assume is an error, not a point.
                            wrong = inp.path_error(_verify_out(fn())[1])
                            if wrong:
                                raise RuntimeError(f"the inputs do not take the path the "
                                                   f"bytes assume: {wrong}")
                        times = timer.time(runs, False, fn)
                    except Exception as e:  # API drift, OOM, a wrong path
                        print(f"SKIPPED {impl} {label} f32: {type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}")
                        skipped.add(key)
                        try:  # a failed kernel can leave the context broken
                            if DEVICE == "cuda":
                                torch.cuda.synchronize()
                                torch.cuda.empty_cache()
                        except Exception as e2:
                            print(f"ERROR: CUDA unusable after that ({e2}); stopping")
                            return None
                        continue
                    us = median(times)
                    gbps = prob_bytes(op, params, batch, vocab) / max(us, 1e-3) / 1e3
                    line = {"op": op, "impl": impl, "dtype": "f32", "dist": PROB_DIST,
                            "batch": batch, "vocab": vocab, "params": params,
                            "per_row": False, "median_us": round(us, 3),
                            "gbps": round(gbps, 2), "roof_gbps": round(meta["roof"], 2),
                            "device": meta["device"], "git": meta["git"],
                            "impl_version": VERSIONS.get(impl, "unknown")}
                    f.write(json.dumps(line) + "\n")
                    f.flush()
                    written += 1
                    pid = f"f32/{PROB_DIST}/b{batch}/v{vocab}"
                    print(f"{impl:<10} {label:<26} {pid:<30} {us:>10.2f} us  "
                          f"{gbps:>8.1f} GB/s  {gbps / meta['roof']:.3f} of roof")
        del probs, logits, target, inp, fn, full
        torch.cuda.empty_cache()
    return written


def run_check(torch, impls, ops, prob_ops):
    print(f"check on {DEVICE}, torch {torch.__version__}, impls {list(impls)}, "
          f"batch {CHECK_BATCH}, vocab {CHECK_VOCAB}"
          + (f" and {CHECK_VOCAB_GPU}" if DEVICE == "cuda" else ""))
    bad = check(torch, impls, ops)
    bad += check_probs(torch, impls, prob_ops)
    print(f"done: check {'passed' if bad == 0 else f'FAILED ({bad} failures)'}")
    return 1 if bad else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="vocab 128256, batch 1 and 128, normal1, f32 and bf16")
    ap.add_argument("--ops", default="", help="comma-separated op names (default: all)")
    ap.add_argument("--only", choices=["logits", "probs"], default=None,
                    help="only the ops that take logits (BENCH.md's grid) or probabilities "
                         "(PROB_OPS); with --ops, the ops both select")
    ap.add_argument("--impls", default="torch,flashinfer", help="comma-separated peers")
    ap.add_argument("--out", default="", help="results file (default: see above)")
    ap.add_argument("--runs", type=int, default=RUNS, help="timed runs per point (>= 50)")
    ap.add_argument("--check", action="store_true",
                    help="time nothing, write nothing: run each peer op once on a small batch "
                         "(on the CPU without a GPU) and check its output")
    args = ap.parse_args(argv)
    if args.quick or os.environ.get("SAMPLEX_BENCH_QUICK", "") not in ("", "0"):
        args.quick = True

    ops_wanted = [o.strip() for o in (args.ops or os.environ.get("SAMPLEX_BENCH_OPS", "")).split(",")
                  if o.strip()]
    unknown = [o for o in ops_wanted if o not in OP_NAMES]
    if unknown:
        print(f"unknown op(s) {unknown}; known: {','.join(OP_NAMES)}", file=sys.stderr)
        return 2
    ops = [o for o in OPS if not ops_wanted or o[0] in ops_wanted]
    prob_ops = [o for o in PROB_OPS if not ops_wanted or o[0] in ops_wanted]
    if args.only == "probs":
        ops = []
    elif args.only == "logits":
        prob_ops = []
    if not ops and not prob_ops:
        print(f"SKIPPED: no op that takes {args.only} among {','.join(ops_wanted)}")
        return 0

    try:
        import torch
    except ImportError:
        print("SKIPPED: no PyTorch")
        return 0
    gpu = torch.cuda.is_available()
    if not gpu and not args.check:
        print("SKIPPED: no CUDA driver/GPU")
        return 0
    if not gpu:  # --check on the CPU
        global DEVICE
        DEVICE = "cpu"
    sys.path.insert(0, HERE)  # for bok_torch
    try:
        impls = make_impls(torch, args.impls, gpu)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    if not impls:
        print(f"SKIPPED: no usable peer among {args.impls!r} here")
        return 0
    if args.check:
        return run_check(torch, impls, ops, prob_ops)

    device = torch.cuda.get_device_name(0)
    git = git_commit()
    out = args.out or default_out(device)
    if os.path.dirname(out):
        os.makedirs(os.path.dirname(out), exist_ok=True)
    grid = QUICK if args.quick else {"vocabs": VOCABS, "batches": BATCHES, "dists": DISTS,
                                     "dtypes": DTYPES}
    runs = max(50, args.runs)

    print(f"peers on {device}, torch {torch.__version__}, impls {VERSIONS}, git {git}, "
          f"{'quick' if args.quick else 'full'} grid, {len(ops)} logit ops, "
          f"{len(prob_ops)} probability ops")
    timer = Timer(torch)
    roof = copy_roof(torch, timer)
    print(f"roof: {roof:.1f} GB/s (1 GiB device-to-device copy, read + written)")
    print(f"results: {out}")

    # No logit op selected: no logits made either.
    pairs = [(v, d) for v in grid["vocabs"] for d in grid["dists"]] if ops else []
    if ops and (COLD_VOCAB, COLD_DIST) not in pairs:
        pairs.append((COLD_VOCAB, COLD_DIST))
    max_batch = max(grid["batches"] + [COLD_BATCH])
    skipped = set()
    written = 0
    with open(out, "a", encoding="utf-8") as f:
        for vocab, dist in pairs:
            in_grid = vocab in grid["vocabs"] and dist in grid["dists"]
            seed = 0x5A3D + 1000 * DISTS.index(dist) + vocab
            base = make_logits(torch, dist, max_batch, vocab, seed)
            inputs = {"f32": base, "bf16": base.to(torch.bfloat16)}
            for dtype in grid["dtypes"]:
                for op, label, params, sampling, k in ops:
                    points = []
                    if in_grid:
                        for batch in grid["batches"]:
                            for per_row in ([False, True] if sampling else [False]):
                                points.append((batch, per_row, False))
                    if (vocab, dist) == (COLD_VOCAB, COLD_DIST):
                        points.append((COLD_BATCH, False, True))
                    for impl, table in impls.items():
                        if op not in table:
                            continue
                        for batch, per_row, cold in points:
                            key = (impl, label, dtype, per_row)
                            if key in skipped:
                                continue
                            x = inputs[dtype][:batch]
                            prm = Params(torch, batch, per_row)
                            try:
                                fn = table[op](x, prm, k)
                                times = timer.time(runs, cold, fn)
                            except Exception as e:  # API drift, missing helper, OOM
                                print(f"SKIPPED {impl} {label} {dtype} per_row={per_row}: "
                                      f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
                                skipped.add(key)
                                try:  # a failed kernel can leave the context broken
                                    torch.cuda.synchronize()
                                    torch.cuda.empty_cache()
                                except Exception as e2:
                                    print(f"ERROR: CUDA unusable after that ({e2}); stopping")
                                    return 1
                                continue
                            us = median(times)
                            nbytes = batch * vocab * (4 if dtype == "f32" else 2) + \
                                out_bytes(op, k, batch, vocab)
                            gbps = nbytes / max(us, 1e-3) / 1e3
                            p = params if not cold else (params + ",l2=cold" if params else "l2=cold")
                            line = {"op": op, "impl": impl, "dtype": dtype, "dist": dist,
                                    "batch": batch, "vocab": vocab, "params": p,
                                    "per_row": per_row, "median_us": round(us, 3),
                                    "gbps": round(gbps, 2), "roof_gbps": round(roof, 2),
                                    "device": device, "git": git,
                                    "impl_version": VERSIONS.get(impl, "unknown")}
                            f.write(json.dumps(line) + "\n")
                            f.flush()
                            written += 1
                            pid = f"{dtype}/{dist}/b{batch}/v{vocab}" + \
                                ("/per_row" if per_row else "") + ("/cold" if cold else "")
                            print(f"{impl:<10} {label:<20} {pid:<36} {us:>10.2f} us  "
                                  f"{gbps:>8.1f} GB/s  {gbps / roof:.3f} of roof")
            del base, inputs
            torch.cuda.empty_cache()
        # The probability ops after the logit ops: new code cannot cost the main comparison.
        more = run_prob_ops(torch, f, impls, prob_ops, grid, timer, runs,
                            {"roof": roof, "device": device, "git": git}, skipped)
        if more is None:
            return 1
        written += more
    print(f"done: {written} points written to {out}, {len(skipped)} (impl, op, dtype, per_row) "
          f"or (impl, op, params) skipped, {timer.host_bound_batches} timed batches where the "
          f"device waited for the host")
    return 0


if __name__ == "__main__":
    sys.exit(main())
