"""Checks of scripts/sass_audit.py on hand-written SASS (no CUDA tools needed).

    python3 -m unittest discover -s scripts -p 'test_sass_audit.py'
"""

import contextlib
import io
import json
import tempfile
import unittest
from pathlib import Path

import sass_audit

# cuobjdump -sass's shape: a header per function, then one instruction a line with its encoding.
SASS = """
	code for sm_90
		Function : samplex_demo_bf16
	.headerflags	@"EF_CUDA_SM90 EF_CUDA_VIRTUAL_SM(EF_CUDA_SM90)"
        /*0000*/                   LDC R1, c[0x0][0x28] ;                   /* 0x00000a00ff017b82 */
        /*0010*/               @P3 BRA 0x30 ;                               /* 0x0000000000003947 */
        /*0020*/                   LDG.E.128 R4, desc[UR4][R2.64] ;         /* 0x0000000402047981 */
        /*0030*/                   LDG.E.STRONG.GPU R9, desc[UR4][R6.64] ;  /* 0x0000000406097981 */
        /*0040*/               @P0 BRA 0x90 ;                               /* 0x0000000000000947 */
        /*0050*/                   MUFU.EX2 R5, R4 ;                        /* 0x0000000400057308 */
        /*0060*/                   MUFU.EX2 R6, R4 ;                        /* 0x0000000400067308 */
        /*0070*/                   FADD R5, R5, R6 ;                        /* 0x0000000605057221 */
        /*0080*/                   FADD R5, R5, R6 ;                        /* 0x0000000605057221 */
        /*0090*/                   ISETP.NE.AND P1, PT, R0, RZ, PT ;        /* 0x000000ff0000720c */
        /*00a0*/               @P1 BRA 0x10 ;                               /* 0x0000000000001947 */
        /*00b0*/                   IADD3 R0, R0, 0x1, RZ ;                  /* 0x0000000100007810 */
        /*00c0*/               @P2 BRA 0x10 ;                               /* 0x0000000000002947 */
        /*00d0*/                   IADD3 R7, R7, 0x1, RZ ;                  /* 0x0000000107077810 */
        /*00e0*/               @P4 BRA 0xd0 ;                               /* 0x0000000000004947 */
        /*00f0*/                   EXIT ;                                   /* 0x000000000000794d */
		Function : samplex_other_f32
        /*0000*/                   LDG.E.U16 R4, desc[UR4][R2.64] ;         /* 0x0000000402047981 */
        /*0010*/               @P0 BRA 0x0 ;                                /* 0x0000000000000947 */
        /*0020*/                   EXIT ;                                   /* 0x000000000000794d */
"""

# A streaming loop (0x10..0x80) whose body holds a compare-and-swap retry loop (0x40..0x60), as a
# 64-bit shared-memory atomicAdd compiles.
NESTED_CAS = """
		Function : samplex_cas_f32
        /*0000*/                   LDC R1, c[0x0][0x28] ;                   /* 0x00000a00ff017b82 */
        /*0010*/                   LDG.E R4, desc[UR4][R2.64] ;             /* 0x0000000402047981 */
        /*0020*/                   LDS.64 R6, [R8] ;                        /* 0x0000000008067984 */
        /*0030*/                   FADD R5, R4, R4 ;                        /* 0x0000000404057221 */
        /*0040*/                   IADD3 R10, P1, R6, R5, RZ ;              /* 0x0000000506067210 */
        /*0050*/                   ATOMS.CAST.SPIN.64 P2, [R8], R6, R10 ;   /* 0x0000000a0800758d */
        /*0060*/              @!P2 BRA 0x40 ;                               /* 0x0000000000002947 */
        /*0070*/                   IADD3 R0, R0, 0x1, RZ ;                  /* 0x0000000100007810 */
        /*0080*/               @P0 BRA 0x10 ;                               /* 0x0000000000000947 */
        /*0090*/                   EXIT ;                                   /* 0x000000000000794d */
"""


class SassAudit(unittest.TestCase):
    def setUp(self):
        self.kernels = sass_audit.parse(SASS)

    def test_parse_reads_every_function_and_instruction(self):
        self.assertEqual(list(self.kernels), ["samplex_demo_bf16", "samplex_other_f32"])
        demo = self.kernels["samplex_demo_bf16"]
        self.assertEqual(len(demo), 16)
        self.assertEqual(demo[1], (0x10, True, "BRA", "0x30"))
        self.assertEqual(demo[2][2], "LDG.E.128")

    def test_load_bytes_by_width_and_strong_loads_are_not_data(self):
        self.assertEqual(sass_audit.load_bytes("LDG.E.128"), 16)
        self.assertEqual(sass_audit.load_bytes("LDG.E.64"), 8)
        self.assertEqual(sass_audit.load_bytes("LDG.E"), 4)
        self.assertEqual(sass_audit.load_bytes("LDG.E.U16"), 2)
        self.assertEqual(sass_audit.load_bytes("LDG.E.STRONG.GPU"), 0)
        self.assertEqual(sass_audit.load_bytes("LDS.128"), 0)

    def test_streaming_loops_are_the_innermost_that_load(self):
        loops = sass_audit.streaming_loops(self.kernels["samplex_demo_bf16"])
        # 0x10..0xa0 is inside 0x10..0xc0, which is therefore not counted; 0xd0..0xe0 loads nothing.
        self.assertEqual(loops, [(0x10, 0xA0)])

    def test_a_retry_loop_inside_does_not_hide_the_loop_that_streams(self):
        kernels = sass_audit.parse(NESTED_CAS)
        code = kernels["samplex_cas_f32"]
        self.assertEqual(sass_audit.streaming_loops(code), [(0x10, 0x80)])
        found = sass_audit.paths(code, 0x10, 0x80)
        # Once through the retry loop 0x40..0x60 (no retry): 10, 20, 30, 40, 50, 60, 70, 80.
        self.assertEqual(found["fast"], (8, 4, 0))
        rows = sass_audit.audit(kernels)
        self.assertEqual([r["loop"] for r in rows], ["00010-00080"])

    def test_fast_and_heavy_paths(self):
        found = sass_audit.paths(self.kernels["samplex_demo_bf16"], 0x10, 0xA0)
        # Fast: 10, 20 (the load; the branch around it would load nothing), 30, 40, 90, a0.
        self.assertEqual(found["fast"], (6, 16, 0))
        # Heavy: through both MUFU: 10, 20, 30, 40, 50, 60, 70, 80, 90, a0.
        self.assertEqual(found["heavy"], (10, 16, 2))

    def test_audit_rows_skip_loops_without_loads_and_filter_kernels(self):
        rows = sass_audit.audit(self.kernels)
        self.assertEqual([(r["kernel"], r["loop"]) for r in rows],
                         [("samplex_demo_bf16", "00010-000a0"), ("samplex_other_f32", "00000-00010")])
        demo = rows[0]
        self.assertEqual((demo["static"], demo["fast"], demo["fast_bytes"]), (10, 6, 16))
        self.assertEqual(demo["fast_per_byte"], 0.38)
        self.assertEqual((demo["heavy"], demo["heavy_mufu"], demo["heavy_per_byte"]), (10, 2, 0.62))
        self.assertEqual(rows[1]["fast_per_byte"], 1.0)  # two instructions for one 16-bit value
        self.assertEqual(len(sass_audit.audit(self.kernels, r"f32$")), 1)

    def test_main_reads_a_saved_listing(self):
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "demo.sass"
            path.write_text(SASS)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                self.assertEqual(sass_audit.main(["--sass", str(path), "--json"]), 0)
            lines = [json.loads(line) for line in out.getvalue().splitlines()]
            self.assertEqual([r["kernel"] for r in lines], ["samplex_demo_bf16", "samplex_other_f32"])
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                sass_audit.main(["--sass", str(path), "--kernels", "demo"])
            table = out.getvalue().splitlines()
            self.assertTrue(table[0].startswith("kernel"))
            self.assertEqual(len(table), 2)
            self.assertIn("00010-000a0", table[1])


if __name__ == "__main__":
    unittest.main()
