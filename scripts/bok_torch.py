#!/usr/bin/env python3
"""Best-of-K mirror ascent in PyTorch: the peer of samplex's BoK kernels (SPEC.md "Best-of-K").

    from bok_torch import bok_torch
    q = bok_torch(logits, k=8, beta=1.0, lam=1.0, eta=0.2, T=5, tau=1.0, weights="prob")

The same T iterations as kernels/bok.cu and src/cpu/bok.rs, written as the elementwise tensor
ops a serving stack would use (on whatever device ``logits`` lives, f32 throughout):

    p   = softmax(z / tau)                                   (q0 = p)
    g   = z - beta * (log q - log p) + lam * w * k * (1 - q)^(k - 1)
    a   = log q + eta * g
    log q' = a - logsumexp(a)

``k, beta, lam, eta, tau`` are numbers or tensors broadcastable to ``logits`` (per-row values as
``batch x 1`` columns); ``T`` is an int. ``weights``: ``"prob"`` (w = p), an int M or
``("top_m", M)`` (w = 1 on the M most likely tokens; ties broken by torch.topk, not by the
lower index as samplex does), or a tensor shaped like ``logits``. Tokens with logit -inf (a
support rule applied by the caller, or NaN, which counts as -inf) stay at q = 0; +inf counts as
the largest finite f32. A row with no finite logit gives q = 0.

``python3 scripts/bok_torch.py`` checks this against a NumPy float64 implementation on random
rows (on the GPU when there is one, else on the CPU) and prints the largest difference.
"""

import math
import sys

import torch

FLT_MAX = 3.4028234663852886e38


def _top_m_weights(log_p, m):
    m = min(int(m), log_p.shape[-1])
    idx = torch.topk(log_p, m, dim=-1).indices
    w = torch.zeros_like(log_p)
    w.scatter_(-1, idx, 1.0)
    return torch.where(torch.isfinite(log_p), w, torch.zeros_like(w))


def bok_torch(logits, k=8, beta=1.0, lam=1.0, eta=0.2, T=5, tau=1.0, weights="prob"):
    """BoK's q after ``T`` mirror-ascent steps, per row of ``logits`` (batch x vocab)."""
    z = torch.nan_to_num(logits.float(), nan=-math.inf, posinf=FLT_MAX)
    # A batch-wide tau of 1 is skipped, as a serving stack skips it (one pass less).
    u = z if isinstance(tau, (int, float)) and tau == 1 else z / tau
    log_p = torch.log_softmax(u, dim=-1)
    kept = torch.isfinite(log_p)
    if isinstance(weights, str) and weights == "prob":
        w = log_p.exp()
    elif isinstance(weights, int):
        w = _top_m_weights(log_p, weights)
    elif isinstance(weights, tuple) and len(weights) == 2 and weights[0] == "top_m":
        w = _top_m_weights(log_p, weights[1])
    elif torch.is_tensor(weights):
        w = weights.to(device=z.device, dtype=torch.float32)
    else:
        raise ValueError(f"weights must be 'prob', an int M, ('top_m', M) or a tensor, got {weights!r}")
    neg_inf = torch.full_like(z, -math.inf)
    log_q = log_p
    for _ in range(int(T)):
        q = log_q.exp()
        g = z - beta * (log_q - log_p) + lam * w * k * (1.0 - q).pow(k - 1)
        a = torch.where(kept, log_q + eta * g, neg_inf)
        log_q = a - torch.logsumexp(a, dim=-1, keepdim=True)
    return torch.nan_to_num(log_q.exp(), nan=0.0)


def _bok_numpy(z, k, beta, lam, eta, T, tau, m=None):
    """The float64 reference (src/cpu/bok.rs, row by row)."""
    import numpy as np

    out = np.zeros_like(z, dtype=np.float64)
    for r in range(z.shape[0]):
        x = z[r].astype(np.float64)
        u = x / tau
        mx = u.max()
        log_p = u - (mx + np.log(np.exp(u - mx).sum()))
        if m is None:
            w = np.exp(log_p)
        else:
            order = np.lexsort((np.arange(len(x)), -log_p))  # value descending, lower index first
            w = np.zeros_like(x)
            w[order[:m]] = 1.0
        log_q = log_p.copy()
        for _ in range(T):
            q = np.exp(log_q)
            g = x - beta * (log_q - log_p) + lam * w * k * (1.0 - q) ** (k - 1)
            a = log_q + eta * g
            am = a.max()
            log_q = a - (am + np.log(np.exp(a - am).sum()))
        out[r] = np.exp(log_q)
    return out


def _self_check():
    try:
        import numpy as np
    except ImportError:
        print("SKIPPED bok_torch self-check: numpy is not installed")
        return 0
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gen = torch.Generator().manual_seed(7)
    worst = 0.0
    cases = [
        ("normal1", torch.randn(4, 1000, generator=gen), dict(k=8, beta=1.0, lam=1.0, eta=0.2, T=5, tau=1.0)),
        ("normal5", 5 * torch.randn(4, 1000, generator=gen), dict(k=8, beta=1.0, lam=1.0, eta=0.2, T=5, tau=1.0)),
        ("tau0.7", torch.randn(3, 3000, generator=gen), dict(k=4, beta=0.5, lam=2.0, eta=0.1, T=20, tau=0.7)),
        ("k1", torch.randn(2, 500, generator=gen), dict(k=1, beta=1.0, lam=1.0, eta=0.2, T=10, tau=1.0)),
    ]
    for name, z, prm in cases:
        got = bok_torch(z.to(device), **prm).double().cpu().numpy()
        want = _bok_numpy(z.numpy(), **prm)
        err = float(np.abs(got - want).max())
        worst = max(worst, err)
        print(f"{name:8s} {tuple(z.shape)}  max |q_torch - q_numpy| = {err:.2e}")
    z = torch.randn(3, 800, generator=gen)
    got = bok_torch(z.to(device), T=8, weights=("top_m", 5)).double().cpu().numpy()
    want = _bok_numpy(z.numpy(), 8, 1.0, 1.0, 0.2, 8, 1.0, m=5)
    err = float(np.abs(got - want).max())
    worst = max(worst, err)
    print(f"{'top_m5':8s} {tuple(z.shape)}  max |q_torch - q_numpy| = {err:.2e}")
    ok = worst < 1e-4
    print(f"{'ok' if ok else 'FAILED'}: worst {worst:.2e} (tolerance 1e-4, f32 vs f64) on {device}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(_self_check())
