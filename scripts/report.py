#!/usr/bin/env python3
"""Turns benchmark result lines (BENCH.md's JSONL) into docs/BENCHMARKS.md and docs/benchmarks.png.

    python3 scripts/report.py [FILE.jsonl ...] [--md docs/BENCHMARKS.md] [--png docs/benchmarks.png]

FILEs default to benches/results/*.jsonl. A *run* is the lines of one file with one device
string; every ratio compares samplex with a peer inside one run only (BENCH.md: a ratio from two
runs or two machines is not a ratio). Where a run holds the same point twice (a file appended
to by two invocations), the last line wins.

Per run and per operation (op + params; top_k_select k=50 and k=1024 apart) the markdown has a
table: samplex's median time (us), its fraction of the run's copy roof (samplex's GB/s over
roof_gbps), and for each peer the ratio peer time / samplex time (> 1: samplex is faster).
Rows whose params end in ``l2=cold`` are the cold-L2 points. Rows marked ``split=off`` or
``split=grid`` (the small-batch points the bench times again with one block per row, or with a
cooperative grid where clusters are the default) are left out of those tables and of the plot;
a "Row splitting" table sets each beside the default path's time. Likewise a point whose vocab
is one less than another point's (the bench's unaligned rows: vocab 128255, rows off 16-byte
boundaries) goes to an "Unaligned rows" table beside that point's time. The plot shows, for the latest run,
the fraction of roof against batch: one panel per operation, one line per vocab and dtype
(normal1 inputs, batch-wide parameters, warm L2). Without matplotlib the markdown is still
written and says the plot was skipped.
"""

import argparse
import glob
import json
import math
import os
import sys
from collections import OrderedDict

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

OP_ORDER = ["softmax", "sample", "greedy", "sample_top_k", "sample_top_p", "sample_min_p",
            "sample_top_k_top_p", "top_k_select", "sparsemax", "sample_sparsemax", "bok",
            "sample_bok", "sample_from_probs", "sample_from_probs_n", "verify_draft"]
DTYPE_ORDER = ["f32", "bf16", "f16"]
DIST_ORDER = ["normal1", "normal5", "gumbel0.1", "gumbel1"]
FIELDS = ["op", "impl", "dtype", "dist", "batch", "vocab", "params", "per_row", "median_us",
          "gbps", "roof_gbps", "device", "git"]
COLD = "l2=cold"
SPLIT = "split="  # split=off | split=grid: a forced row-split path (benches/sampling.rs)


def load(paths):
    """Every valid line of `paths`, each with `_file` (the file's base name) and `_line` added.
    Malformed lines are reported on stderr and left out."""
    records = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for n, raw in enumerate(f, 1):
                raw = raw.strip()
                if not raw:
                    continue
                try:
                    r = json.loads(raw)
                except json.JSONDecodeError as e:
                    print(f"{path}:{n}: not JSON ({e}); skipped", file=sys.stderr)
                    continue
                missing = [k for k in FIELDS if k not in r]
                if missing:
                    print(f"{path}:{n}: missing {missing}; skipped", file=sys.stderr)
                    continue
                r["_file"] = os.path.basename(path)
                r["_line"] = n
                records.append(r)
    return records


def split_params(params):
    """(params without the cold and split markers, cold?, forced split path or "")"""
    parts = [p for p in params.split(",") if p]
    cold = COLD in parts
    split = next((p[len(SPLIT):] for p in parts if p.startswith(SPLIT)), "")
    base = ",".join(p for p in parts if p != COLD and not p.startswith(SPLIT))
    return base, cold, split


def point_key(r):
    base, cold, split = split_params(r["params"])
    return (r["op"], base, r["dtype"], r["dist"], int(r["batch"]), int(r["vocab"]),
            bool(r["per_row"]), cold, split)


def group_runs(records):
    """[(file, device, [records])] in file then device order."""
    runs = OrderedDict()
    for r in records:
        runs.setdefault((r["_file"], r["device"]), []).append(r)
    return [(f, d, rs) for (f, d), rs in sorted(runs.items())]


def _order(seq, x):
    return seq.index(x) if x in seq else len(seq)


def row_sort_key(key):
    op, params, dtype, dist, batch, vocab, per_row, cold, split = key
    return (_order(DTYPE_ORDER, dtype), dtype, _order(DIST_ORDER, dist), dist, per_row, cold,
            vocab, batch, split)


def section_sort_key(section):
    op, params = section
    k = 0
    if params.startswith("k="):
        try:
            k = int(params.split(",")[0][2:])
        except ValueError:
            pass
    return (_order(OP_ORDER, op), op, k, params)


def analyse(records):
    """One run's tables: {"peers": [...], "roof": gbps, "git": [...],
    "sections": {(op, params): [row, ...]}} where a row is a dict with the point's fields,
    samplex's us and fraction of roof, and {peer: ratio or None}."""
    last = {}
    for r in records:  # the last line of a point wins
        last[(r["impl"], point_key(r))] = r
    samplex = {k: r for (impl, k), r in last.items() if impl == "samplex"}
    peers = sorted({impl for impl, _ in last if impl != "samplex"})
    roofs = [r["roof_gbps"] for r in samplex.values() if r["roof_gbps"]]
    sections = {}
    splits = {}  # (op, params) -> rows of forced split paths beside the default's time
    unaligned = {}  # (op, params) -> rows of vocab V - 1 beside the same point at vocab V
    for key in sorted(samplex, key=row_sort_key):
        r = samplex[key]
        aligned = samplex.get(key[:5] + (key[5] + 1,) + key[6:])
        if aligned is not None:
            us, base = float(r["median_us"]), float(aligned["median_us"])
            unaligned.setdefault((key[0], key[1]), []).append({
                "dtype": key[2], "dist": key[3], "batch": key[4], "vocab": key[5],
                "split": key[8], "us": us, "aligned_us": base,
                "ratio": us / base if base > 0 else None,
            })
            continue
        if key[8]:
            default = samplex.get(key[:8] + ("",))
            us = float(r["median_us"])
            base = float(default["median_us"]) if default else None
            splits.setdefault((key[0], key[1]), []).append({
                "dtype": key[2], "dist": key[3], "batch": key[4], "vocab": key[5],
                "split": key[8], "us": us, "default_us": base,
                "ratio": us / base if base else None,
            })
            continue
        us = float(r["median_us"])
        roof = float(r["roof_gbps"])
        row = {
            "op": key[0], "params": key[1], "dtype": key[2], "dist": key[3], "batch": key[4],
            "vocab": key[5], "per_row": key[6], "cold": key[7], "us": us,
            "fraction": float(r["gbps"]) / roof if roof > 0 else None,
            "ratios": {},
        }
        for peer in peers:
            p = last.get((peer, key))
            row["ratios"][peer] = (float(p["median_us"]) / us) if p and us > 0 else None
        sections.setdefault((key[0], key[1]), []).append(row)
    ordered = OrderedDict((s, sections[s]) for s in sorted(sections, key=section_sort_key))
    peer_only = {(impl, k) for (impl, k) in last if impl != "samplex" and k not in samplex}
    versions = {p: sorted({str(r["impl_version"]) for r in records
                           if r["impl"] == p and r.get("impl_version")}) for p in peers}
    return {
        "peers": peers,
        "versions": versions,
        "roof": statistics_median(roofs),
        "git": sorted({r["git"] for r in records if r["impl"] == "samplex"}),
        "sections": ordered,
        "splits": OrderedDict((s, splits[s]) for s in sorted(splits, key=section_sort_key)),
        "unaligned": OrderedDict((s, unaligned[s])
                                 for s in sorted(unaligned, key=section_sort_key)),
        "peer_only_points": len(peer_only),
        "lines": len(records),
    }


def statistics_median(xs):
    xs = sorted(xs)
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def geomean(xs):
    xs = [x for x in xs if x is not None and x > 0]
    if not xs:
        return None
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def fmt_ratio(x):
    return "—" if x is None else f"{x:.2f}×"


def fmt_frac(x):
    return "—" if x is None else f"{x:.2f}"


def fmt_us(x):
    return f"{x:.2f}" if x < 1000 else f"{x:.0f}"


def section_title(section):
    op, params = section
    return f"{op} ({params})" if params else op


def anchor(text):
    """GitHub's heading slug: lower case, punctuation dropped, spaces to '-'."""
    kept = "".join(c for c in text.lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


def peer_names(a):
    """Each peer with the versions its lines name (impl_version), e.g. "torch (2.11.0)"."""
    return [f"{p} ({'; '.join(a['versions'][p])})" if a["versions"].get(p) else p
            for p in a["peers"]]


def render(runs, plot_note):
    """The markdown for analysed runs [(file, device, analysis)]."""
    out = [
        "# samplex benchmarks",
        "",
        "Generated by `scripts/report.py` from `benches/results/*.jsonl`; do not edit by hand.",
        "The protocol is BENCH.md's: each time is the median of at least 50 device-timed runs",
        "(CUDA events on the stream, after warm-up, host launch latency kept out), the logits",
        "left in L2 as far as they fit (rows marked *cold* write a 256 MiB buffer before each",
        "run instead). *Fraction of roof* is (bytes read + written) / time over the",
        "device-to-device copy roof measured in the same run. *vs peer* is the peer's time over",
        "samplex's (above 1: samplex is faster), only between lines of one results file and",
        "one device. Inputs are random logits (N(0,1), N(0,25), log(−log U)/β for β = 0.1, 1);",
        "the Rust bench and the Python peers draw them from different generators.",
        "The probability ops (sample_from_probs, sample_from_probs_n, verify_draft; not in",
        "BENCH.md's grid) read f32 probabilities, the softmax of the normal1 rows;",
        "verify_draft's `accept=all` drafts equal the target (every draft accepted: the draw",
        "reads p_n), its `accept=none` drafts are one-hot at a token the target all but rules",
        "out (the first rejected: the draw reads p_0 and q_0), and `draft=tokens` passes those",
        "drafts as their tokens alone (one-hot drafts, as n-gram drafters have them: the draw",
        "reads p_0); `target=logits` gives the target as the normal1 logits those rows are the",
        "softmax of (samplex's verify_draft_logits fuses the softmax into the verification; the",
        "peers run their softmax, then their verification, both timed).",
        "benches/probs/mod.rs says how they are built and their bytes counted.",
        "",
    ]
    if plot_note:
        out += [plot_note, ""]
    if not runs:
        out += ["No result files yet: run `cargo bench --bench sampling` and "
                "`python3 scripts/peers.py` on a GPU host (or `scripts/bundle.sh`).", ""]
    for file, device, a in runs:
        roof = f"{a['roof']:.0f} GB/s" if a["roof"] else "unknown"
        out += [f"## {device} — `{file}`", "",
                f"samplex git {', '.join(a['git']) or 'unknown'}; copy roof {roof}; "
                f"peers: {', '.join(peer_names(a)) or 'none'}.", ""]
        if a["peer_only_points"]:
            out += [f"{a['peer_only_points']} peer points have no samplex point "
                    f"(op not implemented or filtered) and are not shown.", ""]
        if not a["sections"]:
            out += ["No samplex lines in this run.", ""]
            continue
        # Summary.
        head = ["operation", "points", "median fraction of roof"] + \
            [f"geomean vs {p}" for p in a["peers"]]
        out += ["### Summary", "", "| " + " | ".join(head) + " |",
                "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
        for section, rows in a["sections"].items():
            fr = statistics_median([r["fraction"] for r in rows if r["fraction"] is not None])
            cells = [f"[{section_title(section)}](#{anchor(section_title(section) + ' ' + file)})",
                     str(len(rows)), fmt_frac(fr)]
            cells += [fmt_ratio(geomean([r["ratios"][p] for r in rows])) for p in a["peers"]]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
        # Per operation.
        for section, rows in a["sections"].items():
            out += [f"### {section_title(section)} {file}", ""]
            head = ["dtype", "dist", "batch", "vocab", "per-row", "L2", "samplex µs",
                    "fraction of roof"] + [f"vs {p}" for p in a["peers"]]
            out += ["| " + " | ".join(head) + " |",
                    "|" + "|".join(["---"] * 2 + ["---:"] * 2 + ["---"] * 2 +
                                   ["---:"] * (len(head) - 6)) + "|"]
            for r in rows:
                cells = [r["dtype"], r["dist"], str(r["batch"]), str(r["vocab"]),
                         "yes" if r["per_row"] else "no", "cold" if r["cold"] else "warm",
                         fmt_us(r["us"]), fmt_frac(r["fraction"])]
                cells += [fmt_ratio(r["ratios"][p]) for p in a["peers"]]
                out.append("| " + " | ".join(cells) + " |")
            out.append("")
        if a["splits"]:
            def forced_cells(section, r):
                forced = {"off": "two reads" if section[0] == "softmax" else "one block",
                          "grid": "grid"}.get(r["split"], r["split"])
                return [r["dtype"], r["dist"], str(r["batch"]), str(r["vocab"]), forced,
                        fmt_us(r["us"]),
                        "—" if r["default_us"] is None else fmt_us(r["default_us"]),
                        fmt_ratio(r["ratio"])]
            out += beside_table(
                f"Row splitting {file}",
                ["Small batches split each row over several blocks by default (a cluster per",
                 "row on sm_90, else a cooperative grid). *one block* forces one block per row",
                 "(`split=off`), *grid* a cooperative grid where clusters are the default",
                 "(`split=grid`); *vs default* is that time over the default path's (above 1:",
                 "the default is faster). For softmax the forced path is the two-read one at",
                 "large batches (`split=off`: its default on sm_90 holds each row in a",
                 "cluster's shared memory and reads it once)."],
                ["forced", "µs", "default µs", "vs default"], "---", a["splits"], forced_cells)
        if a["unaligned"]:
            out += beside_table(
                f"Unaligned rows {file}",
                ["The same logits read as contiguous rows of one token fewer, so that the rows",
                 "start off 16-byte boundaries (as with an odd vocab such as 50257): the",
                 "kernels' unaligned twins (scalar loads; softmax's shifted 16-byte loads).",
                 "*vs aligned* is that time over the aligned point's (above 1: the odd vocab",
                 "costs that much)."],
                ["µs", "aligned µs", "vs aligned"], None, a["unaligned"],
                lambda section, r: [r["dtype"], r["dist"], str(r["batch"]), str(r["vocab"]),
                                    fmt_us(r["us"]), fmt_us(r["aligned_us"]),
                                    fmt_ratio(r["ratio"])])
    return "\n".join(out)


def beside_table(title, intro, head, label_align, groups, cells):
    """A table of points each set beside another point's time: the heading, the intro lines,
    and one row per point of `groups` ({section: [row, ...]}), whose columns after the
    operation, dtype, dist, batch and vocab are `head` (the first a label column when
    `label_align` is "---", the rest numbers) with the cells `cells(section, row)` gives."""
    columns = ["operation", "dtype", "dist", "batch", "vocab"] + head
    aligns = ["---"] * 3 + ["---:"] * 2 + ([label_align] if label_align else []) + \
        ["---:"] * (len(head) - (1 if label_align else 0))
    out = [f"### {title}", ""] + intro + ["", "| " + " | ".join(columns) + " |",
                                         "|" + "|".join(aligns) + "|"]
    for section, rows in groups.items():
        for r in rows:
            out.append("| " + " | ".join([section_title(section)] + cells(section, r)) + " |")
    return out + [""]


def plot(run, path):
    """Fraction of roof against batch for one analysed run. Returns (written?, message)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False, "The plot was skipped: matplotlib is not installed where the report ran."
    file, device, a = run
    panels = []
    for section, rows in a["sections"].items():
        rows = [r for r in rows if r["dist"] == "normal1" and not r["per_row"] and not r["cold"]
                and r["fraction"] is not None]
        if rows:
            panels.append((section, rows))
    if not panels:
        return False, "The plot was skipped: no warm normal1 batch-wide samplex points."
    cols = min(4, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.3 * nrows), squeeze=False,
                             sharey=True)
    styles = {"f32": "-", "bf16": "--", "f16": ":"}
    vocabs = sorted({r["vocab"] for _, rows in panels for r in rows})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (section, rows) in zip(axes.flat, panels):
        for vi, vocab in enumerate(vocabs):
            for dtype in sorted({r["dtype"] for r in rows}, key=lambda d: _order(DTYPE_ORDER, d)):
                pts = sorted((r["batch"], r["fraction"]) for r in rows
                             if r["vocab"] == vocab and r["dtype"] == dtype)
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], styles.get(dtype, "-"),
                            marker="o", markersize=3, color=colors[vi % len(colors)],
                            label=f"V={vocab} {dtype}")
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_title(section_title(section), fontsize=9)
        ax.set_xlabel("batch", fontsize=8)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("fraction of copy roof", fontsize=8)
    # One legend for the figure, from every panel: an op missing a vocab must not drop it.
    legend = {}
    for ax in axes.flat[:len(panels)]:
        for h, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, h)
    labels = sorted(legend, key=lambda s: (int(s.split()[0][2:]), _order(DTYPE_ORDER, s.split()[1])))
    handles = [legend[label] for label in labels]
    fig.legend(handles, labels, loc="lower center", ncol=min(8, len(labels)), fontsize=7)
    fig.suptitle(f"samplex on {device} ({file}): normal1 inputs (the probability ops: "
                 "their softmax), warm L2", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    # "tight": a figure of one or two panels is narrower than its title and legend.
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return True, f"Plotted from `{file}` ({device})."


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", help="result files (default: benches/results/*.jsonl)")
    ap.add_argument("--md", default=os.path.join(REPO, "docs", "BENCHMARKS.md"))
    ap.add_argument("--png", default=os.path.join(REPO, "docs", "benchmarks.png"))
    args = ap.parse_args(argv)
    files = args.files or sorted(glob.glob(os.path.join(REPO, "benches", "results", "*.jsonl")))
    records = load(files)
    runs = [(f, d, analyse(rs)) for f, d, rs in group_runs(records)]
    with_samplex = [r for r in runs if r[2]["sections"]]
    note = None
    if with_samplex:
        # The latest run: the last file name (dated), then the device with the most points.
        latest = max(with_samplex, key=lambda r: (r[0], sum(map(len, r[2]["sections"].values()))))
        ok, msg = plot(latest, args.png)
        if ok:
            rel = os.path.relpath(os.path.abspath(args.png), os.path.dirname(os.path.abspath(args.md)))
            note = f"![fraction of roof against batch]({rel.replace(os.sep, '/')})\n\n{msg}"
        else:
            note = msg
        print(msg)
    os.makedirs(os.path.dirname(os.path.abspath(args.md)), exist_ok=True)
    # Newest file first.
    runs.sort(key=lambda r: r[0], reverse=True)
    with open(args.md, "w", encoding="utf-8") as f:
        f.write(render(runs, note))
    print(f"wrote {args.md} from {len(files)} file(s), {len(records)} line(s), {len(runs)} run(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
