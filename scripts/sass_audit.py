"""Instructions per byte in the kernels' streaming loops, read from their SASS: a GPU-free check of
whether a loop can keep up with the memory at the roof, or runs out of issue slots first.

    python3 scripts/sass_audit.py [FATBIN] [--arch sm_90] [--kernels REGEX] [--json]

FATBIN defaults to the newest target/*/build/samplex-*/out/samplex.fatbin (a build with nvcc).
SASS comes from cuobjdump -sass, which needs nvdisasm beside it: scripts/install-sass-tools.sh
installs both (CUDA 13.2's, which read 13.0's cubins; PyPI has no 13.0 build of them) and prints
their folder; SAMPLEX_CUOBJDUMP names cuobjdump otherwise.

Why it matters: an SM issues four warp instructions a cycle, 128 thread instructions. At H100's
copy roof (~3.0 TB/s, 132 SMs, ~1.75-1.98 GHz) that is 8-11 thread instructions per byte of
logits for everything a loop does; at H200's (~4.3 TB/s) 6-8. A 16-bit logit brings two bytes,
so a loop that spends 10 instructions on each value reads bf16 logits at about half the roof
however its loads are issued. Reading it off the SASS needs no GPU, and a change to a hot loop
can be checked in seconds (docs/ARCHITECTURE.md, "Instructions per byte").

Per kernel, every loop that loads from global memory and holds no loop that does: its
instructions, and two paths from its head to its back edge (`paths`): the fast one, with the
fewest instructions, and the heavy one, with the most MUFU instructions (exponentials,
logarithms), each with its instructions, the bytes of its global loads (LDG; not the .STRONG
ones, which are synchronisation) and their ratio. The counts are issue slots only: no stall,
latency or pipe limit, so they are a floor on a loop's cost, not a measurement.
"""

import argparse
import glob
import heapq
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# "/*0520*/  @!P0 LDG.E.128 R8, desc[UR8][R8.64] ;" (cuobjdump -sass; the encoding follows).
INSTRUCTION = re.compile(r"^\s*/\*([0-9a-f]{4,})\*/\s+(@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_.]*)\s*(.*?)\s*;")
FUNCTION = re.compile(r"Function\s*:\s*(\S+)")
LOAD_BYTES = ((".128", 16), (".64", 8), (".U16", 2), (".S16", 2), (".U8", 1), (".S8", 1))


def parse(text):
    """{kernel: [(address, predicated, opcode, operands)]} from cuobjdump -sass text."""
    kernels, current = {}, None
    for line in text.splitlines():
        m = FUNCTION.search(line)
        if m:
            current = kernels.setdefault(m.group(1), [])
            continue
        m = INSTRUCTION.match(line)
        if m and current is not None:
            current.append((int(m.group(1), 16), m.group(2) is not None, m.group(3), m.group(4)))
    return kernels


def load_bytes(opcode):
    """Bytes one thread reads from global memory with this instruction (0 for anything else and
    for the .STRONG loads of flags and tickets)."""
    if not opcode.startswith("LDG") or ".STRONG" in opcode:
        return 0
    for suffix, size in LOAD_BYTES:
        if suffix in opcode:
            return size
    return 4


def branch_target(operands):
    m = re.search(r"0x([0-9a-f]+)", operands)
    return int(m.group(1), 16) if m else None


def streaming_loops(code):
    """(head, back-edge address) of each loop that loads from global memory while no loop nested
    in it does: the loops that stream a row. A loop nested in one that loads nothing does not hide
    it: the compare-and-swap retry loop that a 64-bit shared-memory atomicAdd compiles to, say.
    A loop is a BRA to an address at or before its own."""
    edges = []
    for address, _, opcode, operands in code:
        if opcode.startswith("BRA"):
            target = branch_target(operands)
            if target is not None and target <= address:
                edges.append((target, address))
    loads = [address for address, _, opcode, _ in code if load_bytes(opcode)]

    def loading(h, e):
        return any(h <= a <= e for a in loads)

    return [
        (h, e)
        for h, e in edges
        if loading(h, e)
        and not any(h <= h2 and e2 <= e and (h2, e2) != (h, e) and loading(h2, e2) for h2, e2 in edges)
    ]


def paths(code, head, back):
    """Two paths from `head` to the back edge at `back`, through the loop's body (its branches
    are followed forward only, so address order is a topological order and a loop nested in the
    body, one that loads nothing, is counted once, as if it never retried), each among the
    paths that load anything (one that skips its loads is the row's end, not its streaming):
    "fast", the fewest instructions; and "heavy", the most MUFU instructions (exponentials,
    logarithms), then the fewest instructions. The fast path skips rare work (NaN fix-ups, a new
    best candidate) but also common work behind a branch (the exponentials of a span that is not
    all -inf); the heavy one keeps the latter, and sometimes the former. The truth lies between,
    usually. Each is (instructions, load bytes, MUFU), or None."""
    index = {address: k for k, (address, _, _, _) in enumerate(code)}
    start, end = index[head], index[back]

    def successors(k):
        _, predicated, opcode, operands = code[k]
        if opcode.startswith("BRA"):
            target = index.get(branch_target(operands))
            if target is not None and target <= k:  # a nested loop's back edge: not taken
                target = None
            out = [target] + ([k + 1] if predicated else [])
        elif opcode.startswith(("EXIT", "RET", "BPT")):
            out = [k + 1] if predicated else []
        else:
            out = [k + 1]
        return [s for s in out if s is not None and start <= s <= end]

    found = {}
    for name, key in (("fast", lambda c: (c[0], c[1])), ("heavy", lambda c: (-c[2], c[0], c[1]))):
        best = {}  # (k, loaded anything) -> (instructions, bytes, mufu)

        def offer(k, any_load, cost):
            if (k, any_load) not in best or key(cost) < key(best[(k, any_load)]):
                best[(k, any_load)] = cost

        def step(cost, k):
            op = code[k][2]
            return (cost[0] + 1, cost[1] + load_bytes(op), cost[2] + op.startswith("MUFU"))

        c0 = step((0, 0, 0), start)
        offer(start, c0[1] > 0, c0)
        for k in range(start, end + 1):
            for any_load in (False, True):
                cost = best.get((k, any_load))
                if cost is None or k == end:
                    continue
                for s in successors(k):
                    c = step(cost, s)
                    offer(s, any_load or c[1] > cost[1], c)
        found[name] = best.get((end, True))
    return found


def audit(kernels, pattern=None):
    """One row per (kernel, loop with global loads on its fast path)."""
    rows = []
    for name, code in kernels.items():
        if pattern and not re.search(pattern, name):
            continue
        for head, back in streaming_loops(code):
            found = paths(code, head, back)
            fast, heavy = found["fast"], found["heavy"]
            if not fast:
                continue
            rows.append(
                {
                    "kernel": name,
                    "loop": f"{head:05x}-{back:05x}",
                    "static": sum(head <= c[0] <= back for c in code),
                    "fast": fast[0],
                    "fast_bytes": fast[1],
                    "fast_per_byte": round(fast[0] / fast[1], 2),
                    "heavy": heavy[0],
                    "heavy_bytes": heavy[1],
                    "heavy_per_byte": round(heavy[0] / heavy[1], 2),
                    "heavy_mufu": heavy[2],
                }
            )
    return rows


def cuobjdump():
    """cuobjdump's path, or None."""
    named = os.environ.get("SAMPLEX_CUOBJDUMP")
    if named:
        return named
    cached = Path.home() / ".cache/samplex/sass-13.2/cu13/bin/cuobjdump"
    if cached.exists():
        return str(cached)
    return shutil.which("cuobjdump")


def default_fatbin():
    found = glob.glob(str(ROOT / "target/*/build/samplex-*/out/samplex.fatbin"))
    found = [f for f in found if os.path.getsize(f) > 0]
    return max(found, key=os.path.getmtime) if found else None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("fatbin", nargs="?", help="a fatbin or cubin (default: the newest build's)")
    ap.add_argument("--arch", default="sm_90", help="the SASS to read (default sm_90)")
    ap.add_argument("--kernels", help="only kernels whose names match this regex")
    ap.add_argument("--sass", help="read this cuobjdump -sass output instead of running cuobjdump")
    ap.add_argument("--json", action="store_true", help="one JSON object per loop")
    args = ap.parse_args(argv)

    if args.sass:
        text = Path(args.sass).read_text()
    else:
        fatbin = args.fatbin or default_fatbin()
        if not fatbin:
            sys.exit("sass_audit: no fatbin (build with nvcc first, or name one)")
        tool = cuobjdump()
        if not tool:
            sys.exit("sass_audit: no cuobjdump (bash scripts/install-sass-tools.sh)")
        env = dict(os.environ, PATH=f"{Path(tool).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        text = subprocess.run(
            [tool, "-sass", "-arch", args.arch, fatbin], check=True, capture_output=True, text=True, env=env
        ).stdout

    rows = audit(parse(text), args.kernels)
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    print(f"{'kernel':46} {'loop':11} {'static':>6} {'fast':>5} {'B':>3} {'/B':>6} {'heavy':>5} {'B':>3} {'/B':>6} mufu")
    for r in rows:
        print(
            f"{r['kernel']:46} {r['loop']:11} {r['static']:6d} {r['fast']:5d} {r['fast_bytes']:3d} "
            f"{r['fast_per_byte']:6.2f} {r['heavy']:5d} {r['heavy_bytes']:3d} {r['heavy_per_byte']:6.2f} "
            f"{r['heavy_mufu']:4d}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
