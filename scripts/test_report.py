"""Tests of scripts/report.py on synthetic result lines in a temporary folder (docs/ untouched).

    python3 -m unittest scripts/test_report.py
"""

import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402


def line(impl, us, op="sample_top_p", params="p=0.9", dtype="bf16", dist="normal1", batch=128,
         vocab=128256, per_row=False, device="GPU A", roof=3000.0, gbps=None):
    nbytes = batch * vocab * (2 if dtype == "bf16" else 4) + batch * 4
    return {"op": op, "impl": impl, "dtype": dtype, "dist": dist, "batch": batch, "vocab": vocab,
            "params": params, "per_row": per_row, "median_us": us,
            "gbps": gbps if gbps is not None else nbytes / us / 1e3, "roof_gbps": roof,
            "device": device, "git": "abc1234"}


def write(path, lines, junk=False):
    with open(path, "w", encoding="utf-8") as f:
        for rec in lines:
            f.write(json.dumps(rec) + "\n")
        if junk:
            f.write("not json\n")


class ReportTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        self.docs = os.path.join(report.REPO, "docs")
        self.docs_before = self._snapshot(self.docs)

    def tearDown(self):
        # The report under test never writes the repository's docs/.
        self.assertEqual(self._snapshot(self.docs), self.docs_before)
        self.tmp.cleanup()

    @staticmethod
    def _snapshot(d):
        if not os.path.isdir(d):
            return None
        return {n: os.stat(os.path.join(d, n)).st_mtime_ns for n in os.listdir(d)}

    def run_report(self, files):
        md = os.path.join(self.dir, "out", "BENCHMARKS.md")
        png = os.path.join(self.dir, "out", "benchmarks.png")
        self.assertEqual(report.main(files + ["--md", md, "--png", png]), 0)
        with open(md, encoding="utf-8") as f:
            return f.read(), png

    def test_ratios_compare_only_lines_of_one_file_and_device(self):
        a = os.path.join(self.dir, "2026-01-02-gpu-a.jsonl")
        b = os.path.join(self.dir, "2026-01-01-gpu-a.jsonl")
        write(a, [
            line("samplex", 10.0),
            line("torch", 40.0),
            line("flashinfer", 15.0),
            # Another device in the same file: its torch time must not be used for GPU A.
            line("torch", 1000.0, device="GPU B"),
            line("samplex", 20.0, device="GPU B"),
        ], junk=True)
        # Another file, same device: not the same run.
        write(b, [line("torch", 5.0), line("samplex", 50.0, batch=8)])
        records = report.load([a, b])
        self.assertEqual(len(records), 7)  # the junk line is left out
        runs = {(f, d): report.analyse(rs) for f, d, rs in report.group_runs(records)}

        ra = runs[("2026-01-02-gpu-a.jsonl", "GPU A")]
        self.assertEqual(ra["peers"], ["flashinfer", "torch"])
        [row] = ra["sections"][("sample_top_p", "p=0.9")]
        self.assertAlmostEqual(row["ratios"]["torch"], 4.0)
        self.assertAlmostEqual(row["ratios"]["flashinfer"], 1.5)
        expected_fraction = (128 * 128256 * 2 + 128 * 4) / 10.0 / 1e3 / 3000.0
        self.assertAlmostEqual(row["fraction"], expected_fraction)

        rb = runs[("2026-01-02-gpu-a.jsonl", "GPU B")]
        [row_b] = rb["sections"][("sample_top_p", "p=0.9")]
        self.assertAlmostEqual(row_b["ratios"]["torch"], 50.0)
        self.assertNotIn("flashinfer", rb["peers"])

        # The older file's torch line is at batch 128 but its samplex line at batch 8: no ratio.
        rold = runs[("2026-01-01-gpu-a.jsonl", "GPU A")]
        [row_old] = rold["sections"][("sample_top_p", "p=0.9")]
        self.assertIsNone(row_old["ratios"]["torch"])
        self.assertEqual(rold["peer_only_points"], 1)

        md, _ = self.run_report([a, b])
        self.assertIn("## GPU A — `2026-01-02-gpu-a.jsonl`", md)
        self.assertIn("| bf16 | normal1 | 128 | 128256 | no | warm | 10.00 | "
                      f"{expected_fraction:.2f} | 1.50× | 4.00× |", md)
        self.assertIn("| bf16 | normal1 | 8 | 128256 | no | warm | 50.00 |", md)
        # Newest file first.
        self.assertLess(md.index("2026-01-02-gpu-a.jsonl"), md.index("2026-01-01-gpu-a.jsonl"))

    def test_sections_split_selection_k_and_mark_cold_points(self):
        path = os.path.join(self.dir, "2026-01-03-gpu-a.jsonl")
        write(path, [
            line("samplex", 8.0, op="top_k_select", params="k=50"),
            line("samplex", 9.0, op="top_k_select", params="k=1024"),
            line("torch", 27.0, op="top_k_select", params="k=1024"),
            line("samplex", 12.0, op="top_k_select", params="k=50,l2=cold", batch=32),
            line("torch", 36.0, op="top_k_select", params="k=50,l2=cold", batch=32),
            line("samplex", 5.0, op="greedy", params="", per_row=False),
            line("samplex", 6.0, op="greedy", params="l2=cold", batch=32),
            # The same point twice (two appended runs): the last line wins.
            line("samplex", 7.0, op="greedy", params="", per_row=False),
        ])
        [(_, _, recs)] = report.group_runs(report.load([path]))
        a = report.analyse(recs)
        self.assertEqual(list(a["sections"]),
                         [("greedy", ""), ("top_k_select", "k=50"), ("top_k_select", "k=1024")])
        k50 = a["sections"][("top_k_select", "k=50")]
        self.assertEqual([(r["batch"], r["cold"]) for r in k50], [(128, False), (32, True)])
        self.assertIsNone(k50[0]["ratios"]["torch"])
        self.assertAlmostEqual(k50[1]["ratios"]["torch"], 3.0)
        self.assertAlmostEqual(a["sections"][("top_k_select", "k=1024")][0]["ratios"]["torch"], 3.0)
        greedy = a["sections"][("greedy", "")]
        self.assertEqual([r["us"] for r in greedy], [7.0, 6.0])

        md, png = self.run_report([path])
        self.assertIn("### top_k_select (k=1024) 2026-01-03-gpu-a.jsonl", md)
        self.assertIn("| bf16 | normal1 | 32 | 128256 | no | cold | 12.00 |", md)
        try:
            import matplotlib  # noqa: F401
            have_mpl = True
        except ImportError:
            have_mpl = False
        if have_mpl:
            self.assertTrue(os.path.getsize(png) > 0)
            self.assertIn("](benchmarks.png)", md)
        else:
            self.assertFalse(os.path.exists(png))
            self.assertIn("plot was skipped", md)

    def test_probability_ops_follow_the_grid_ops_one_section_per_params(self):
        path = os.path.join(self.dir, "2026-01-04-gpu-a.jsonl")
        probs = lambda impl, us, op, params, **kw: line(  # noqa: E731
            impl, us, op=op, params=params, dtype="f32", **kw)
        write(path, [
            probs("samplex", 20.0, "verify_draft", "n=8,accept=none"),
            probs("flashinfer", 50.0, "verify_draft", "n=8,accept=none"),
            probs("samplex", 10.0, "verify_draft", "n=4,accept=all"),
            probs("samplex", 11.0, "verify_draft", "n=4,accept=all", vocab=32000),
            probs("samplex", 30.0, "verify_draft", "n=4,accept=all,target=logits"),
            probs("torch", 90.0, "verify_draft", "n=4,accept=all,target=logits"),
            probs("samplex", 4.0, "sample_from_probs", ""),
            probs("torch", 12.0, "sample_from_probs", ""),
            probs("samplex", 5.0, "sample_from_probs_n", "n=4"),
            line("samplex", 6.0, op="sample_bok", params="T=5,K=8"),
        ])
        [(_, _, recs)] = report.group_runs(report.load([path]))
        a = report.analyse(recs)
        self.assertEqual(list(a["sections"]), [
            ("sample_bok", "T=5,K=8"), ("sample_from_probs", ""), ("sample_from_probs_n", "n=4"),
            ("verify_draft", "n=4,accept=all"), ("verify_draft", "n=4,accept=all,target=logits"),
            ("verify_draft", "n=8,accept=none")])
        self.assertEqual(len(a["sections"][("verify_draft", "n=4,accept=all")]), 2)
        self.assertFalse(a["unaligned"])
        [rej] = a["sections"][("verify_draft", "n=8,accept=none")]
        self.assertAlmostEqual(rej["ratios"]["flashinfer"], 2.5)
        self.assertAlmostEqual(a["sections"][("sample_from_probs", "")][0]["ratios"]["torch"], 3.0)
        # target=logits: a section of its own, beside the probability target's.
        [fused] = a["sections"][("verify_draft", "n=4,accept=all,target=logits")]
        self.assertAlmostEqual(fused["ratios"]["torch"], 3.0)
        md, _ = self.run_report([path])
        self.assertIn("### verify_draft (n=8,accept=none) 2026-01-04-gpu-a.jsonl", md)
        intro = md.split("### Summary")[0]  # it says what the params mean
        for param in ("accept=all", "draft=tokens", "target=logits"):
            self.assertIn(param, intro)

    def test_forced_split_points_sit_beside_the_default_path_only(self):
        f = os.path.join(self.dir, "2026-01-03-gpu-a.jsonl")
        write(f, [
            line("samplex", 10.0, batch=1),
            line("samplex", 25.0, batch=1, params="p=0.9,split=off"),
            line("samplex", 12.0, batch=1, params="p=0.9,split=grid"),
            line("samplex", 30.0, batch=8, params="p=0.9,split=off"),  # no default point
            line("torch", 40.0, batch=1),
        ])
        md, _ = self.run_report([f])
        main = md[md.index("### sample_top_p (p=0.9)"):md.index("### Row splitting")]
        # The main table has the default point alone, and its peer ratio.
        self.assertEqual(main.count("| bf16 | normal1 |"), 1)
        self.assertIn("| 10.00 |", main)
        self.assertIn("4.00×", main)
        split = md[md.index("### Row splitting"):]
        self.assertIn("| sample_top_p (p=0.9) | bf16 | normal1 | 1 | 128256 | one block | 25.00 | 10.00 | 2.50× |", split)
        self.assertIn("| grid | 12.00 | 10.00 | 1.20× |", split)
        self.assertIn("| 8 | 128256 | one block | 30.00 | — | — |", split)
        # The summary counts the default point only.
        self.assertIn("| 1 |", md[md.index("### Summary"):md.index("### sample_top_p")])

    def test_unaligned_points_sit_beside_the_aligned_vocab_only(self):
        f = os.path.join(self.dir, "2026-01-04-gpu-a.jsonl")
        write(f, [
            line("samplex", 10.0, batch=32),
            line("samplex", 13.0, batch=32, vocab=128255),
            line("samplex", 20.0, batch=32, vocab=128255, dtype="f32"),  # no aligned point
            line("torch", 40.0, batch=32),
        ])
        md, _ = self.run_report([f])
        main = md[md.index("### sample_top_p (p=0.9)"):md.index("### Unaligned rows")]
        # The aligned point keeps its row and its peer ratio; an odd vocab with nothing to
        # compare against stays in the main table.
        self.assertIn("| bf16 | normal1 | 32 | 128256 |", main)
        self.assertIn("4.00×", main)
        self.assertIn("| f32 | normal1 | 32 | 128255 |", main)
        self.assertNotIn("| bf16 | normal1 | 32 | 128255 |", main)
        odd = md[md.index("### Unaligned rows"):]
        self.assertIn("| sample_top_p (p=0.9) | bf16 | normal1 | 32 | 128255 | 13.00 | 10.00 | 1.30× |", odd)
        self.assertNotIn("| f32 |", odd)

    def test_each_peer_is_named_with_the_versions_its_lines_carry(self):
        path = os.path.join(self.dir, "2026-01-03-gpu-a.jsonl")
        fi = dict(line("flashinfer", 8.0), impl_version="0.7.4 kernels via scripts/flashinfer/glue.cu")
        torch = dict(line("torch", 30.0), impl_version="2.11.0")
        write(path, [line("samplex", 10.0), fi, torch, line("torch", 31.0, batch=1)])
        md, _ = self.run_report([path])
        self.assertIn("peers: flashinfer (0.7.4 kernels via scripts/flashinfer/glue.cu), "
                      "torch (2.11.0).", md)

    def test_no_files_still_writes_markdown(self):
        md_path = os.path.join(self.dir, "empty", "BENCHMARKS.md")
        empty = os.path.join(self.dir, "empty.jsonl")
        write(empty, [])
        self.assertEqual(report.main([empty, "--md", md_path,
                                      "--png", os.path.join(self.dir, "empty", "b.png")]), 0)
        with open(md_path, encoding="utf-8") as f:
            self.assertIn("No result files yet", f.read())


if __name__ == "__main__":
    unittest.main()
