"""Checks of the CPU emulator itself (scripts/emu): that it computes, and that it catches what it
claims to catch. It drives the emulated driver through its C API (ctypes), with the kernels of
scripts/emu/selftest.cu. Skipped where there is no C++ compiler.

    python3 -m unittest discover -s scripts -p 'test_emu.py'
"""

import ctypes
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CUDA_ERROR_LAUNCH_FAILED = 719
CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE = 720


def build_emulator(tsan=False):
    """Builds (or reuses) the emulator, with the kernels under ThreadSanitizer when asked; returns
    the folder holding libcuda.so.1."""
    out = subprocess.run(
        ["bash", str(ROOT / "scripts/emu/build.sh")],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "SAMPLEX_EMU_TSAN": "1" if tsan else "0"},
    )
    return Path(out.stdout.strip().splitlines()[-1])


def libtsan():
    """The compiler's ThreadSanitizer runtime, or None."""
    cxx = shutil.which(os.environ.get("CXX", "g++"))
    if not cxx:
        return None
    path = subprocess.run([cxx, "-print-file-name=libtsan.so"], capture_output=True, text=True).stdout.strip()
    return os.path.realpath(path) if os.path.isabs(path) and os.path.exists(path) else None


# A small driver-API client; the same text runs in-process and in child processes (for the
# checks that end the process).
CLIENT = textwrap.dedent(
    """
    import ctypes, struct

    class Emu:
        def __init__(self, libdir):
            self.lib = ctypes.CDLL(str(libdir) + "/libcuda.so.1")
            L = self.lib
            L.cuLaunchKernel.argtypes = [ctypes.c_void_p] + [ctypes.c_uint] * 7 + [
                ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p]
            L.cuMemAlloc_v2.argtypes = [ctypes.POINTER(ctypes.c_ulonglong), ctypes.c_size_t]
            L.cuMemcpyHtoD_v2.argtypes = [ctypes.c_ulonglong, ctypes.c_char_p, ctypes.c_size_t]
            L.cuMemcpyDtoH_v2.argtypes = [ctypes.c_void_p, ctypes.c_ulonglong, ctypes.c_size_t]
            L.cuMemsetD8_v2.argtypes = [ctypes.c_ulonglong, ctypes.c_ubyte, ctypes.c_size_t]
            assert L.cuInit(0) == 0
            self.module = ctypes.c_void_p()
            assert L.cuModuleLoadData(ctypes.byref(self.module), b"fatbin") == 0

        def alloc(self, nbytes, fill=None):
            p = ctypes.c_ulonglong()
            assert self.lib.cuMemAlloc_v2(ctypes.byref(p), nbytes) == 0
            if fill is not None:
                assert self.lib.cuMemsetD8_v2(p.value, fill, nbytes) == 0
            return p.value

        def upload(self, ptr, data):
            assert self.lib.cuMemcpyHtoD_v2(ptr, data, len(data)) == 0

        def download(self, ptr, nbytes):
            buf = ctypes.create_string_buffer(nbytes)
            assert self.lib.cuMemcpyDtoH_v2(buf, ptr, nbytes) == 0
            return buf.raw

        def launch(self, name, grid, block, *args):
            f = ctypes.c_void_p()
            assert self.lib.cuModuleGetFunction(ctypes.byref(f), self.module, name.encode()) == 0
            # Each argument: ("u64" | "u32" | "f32", value).
            ctypes_of = {"u64": ctypes.c_ulonglong, "u32": ctypes.c_uint, "f32": ctypes.c_float}
            values = [ctypes_of[kind](v) for kind, v in args]
            params = (ctypes.c_void_p * len(values))(
                *[ctypes.cast(ctypes.pointer(v), ctypes.c_void_p) for v in values])
            return self.lib.cuLaunchKernel(f, grid, 1, 1, block, 1, 1, 0, None, params, None)

        def launch_cooperative(self, name, grid, block, *args):
            # cuLaunchKernelEx with CU_LAUNCH_ATTRIBUTE_COOPERATIVE (id 2).
            class Attr(ctypes.Structure):
                _fields_ = [("id", ctypes.c_int), ("pad", ctypes.c_char * 4), ("value", ctypes.c_int * 16)]
            class Config(ctypes.Structure):
                _fields_ = [("grid", ctypes.c_uint * 3), ("block", ctypes.c_uint * 3),
                            ("shared", ctypes.c_uint), ("stream", ctypes.c_void_p),
                            ("attrs", ctypes.POINTER(Attr)), ("num_attrs", ctypes.c_uint)]
            f = ctypes.c_void_p()
            assert self.lib.cuModuleGetFunction(ctypes.byref(f), self.module, name.encode()) == 0
            ctypes_of = {"u64": ctypes.c_ulonglong, "u32": ctypes.c_uint, "f32": ctypes.c_float}
            values = [ctypes_of[kind](v) for kind, v in args]
            params = (ctypes.c_void_p * len(values))(
                *[ctypes.cast(ctypes.pointer(v), ctypes.c_void_p) for v in values])
            attr = Attr(2, b"", (ctypes.c_int * 16)(1))
            cfg = Config((grid, 1, 1), (block, 1, 1), 0, None, ctypes.pointer(attr), 1)
            self.lib.cuLaunchKernelEx.argtypes = [ctypes.POINTER(Config), ctypes.c_void_p,
                                                  ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p]
            return self.lib.cuLaunchKernelEx(ctypes.byref(cfg), f, params, None)
    """
)


def child(libdir, body, env=None):
    """Runs `body` (with `emu` an Emu) in a fresh Python process; returns (returncode, stderr)."""
    script = CLIENT + f"\nemu = Emu({str(libdir)!r})\n" + textwrap.dedent(body)
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=e)
    return p.returncode, p.stderr


@unittest.skipUnless(shutil.which(os.environ.get("CXX", "g++")), "no C++ compiler for the emulator")
class EmulatorTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.libdir = build_emulator()
        scope = {}
        exec(CLIENT, scope)
        cls.emu = scope["Emu"](cls.libdir)

    def test_kernels_compute_with_shuffles_and_barriers(self):
        n, blocks = 1000, 4
        data = [float((i * 37) % 101) - 50.0 for i in range(n)]
        src = self.emu.alloc(4 * n)
        self.emu.upload(src, struct.pack(f"{n}f", *data))
        out, sums = self.emu.alloc(4 * n), self.emu.alloc(4 * blocks)
        rc = self.emu.launch(
            "samplex_emu_selftest_double", blocks, 256,
            ("u64", src), ("u64", out), ("u64", sums), ("u32", n),
        )
        self.assertEqual(rc, 0)
        got = struct.unpack(f"{n}f", self.emu.download(out, 4 * n))
        self.assertEqual(list(got), [2.0 * x for x in data])
        want = [sum(data[b * 256:(b + 1) * 256]) for b in range(blocks)]
        got_sums = struct.unpack(f"{blocks}f", self.emu.download(sums, 4 * blocks))
        for g, w in zip(got_sums, want):
            self.assertAlmostEqual(g, w, places=3)

    def test_nvrtc_compiles_beside_the_emulated_driver(self):
        # Built without nvcc, the crate compiles its kernels with NVRTC at first use; NVRTC opens
        # libcuda.so.1 itself, and the emulator's must not crash it (it did, lacking
        # cuGetExportTable). In a child process: LD_LIBRARY_PATH is read when it starts.
        cache = Path.home() / ".cache/samplex/cuda-13.0/cu13/lib"
        path = os.pathsep.join(p for p in [str(self.libdir), os.environ.get("LD_LIBRARY_PATH", ""),
                                           str(cache)] if p)
        probe = textwrap.dedent(
            """
            import ctypes, sys
            try:
                nvrtc = ctypes.CDLL("libnvrtc.so.13")
            except OSError:
                sys.exit(77)
            prog = ctypes.c_void_p()
            src = b'extern "C" __global__ void k(float *x) { x[threadIdx.x] *= 2.0f; }'
            assert nvrtc.nvrtcCreateProgram(ctypes.byref(prog), src, b"k.cu", 0, None, None) == 0
            opts = (ctypes.c_char_p * 1)(b"--gpu-architecture=compute_90")
            print("nvrtc", nvrtc.nvrtcCompileProgram(prog, 1, opts))
            """
        )
        run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                             env={**os.environ, "LD_LIBRARY_PATH": path})
        if run.returncode == 77:
            self.skipTest("no libnvrtc.so.13 (scripts/install-cuda.sh installs it)")
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertEqual(run.stdout.strip(), "nvrtc 0")

    def test_new_memory_is_not_zero(self):
        p = self.emu.alloc(64)
        self.assertEqual(self.emu.download(p, 64), b"\xff" * 64)

    def test_a_write_past_the_end_of_a_buffer_is_reported(self):
        rc, err = child(
            self.libdir,
            """
            out = emu.alloc(400)
            emu.launch("samplex_emu_selftest_overrun", 1, 32, ("u64", out), ("u32", 100))
            """,
        )
        self.assertNotEqual(rc, 0)
        self.assertIn("invalid access", err)
        self.assertIn("samplex_emu_selftest_overrun", err)
        self.assertIn("byte 400 of a 400-byte device buffer", err)

    def test_a_misaligned_vector_load_is_reported(self):
        body = """
            import struct, sys
            src, out = emu.alloc(4 * 12), emu.alloc(4)
            emu.upload(src, struct.pack("12f", *range(12)))
            rc = emu.launch("samplex_emu_selftest_vector_load", 1, 32, ("u64", src), ("u64", out), ("u32", OFFSET))
            sys.stderr.write("SUM %g" % struct.unpack("f", emu.download(out, 4))[0])
            sys.exit(rc)
            """
        rc, err = child(self.libdir, body.replace("OFFSET", "4"))
        self.assertEqual(rc, 0, err)
        self.assertIn("SUM 22", err)  # 4 + 5 + 6 + 7
        rc, err = child(self.libdir, body.replace("OFFSET", "1"))
        self.assertNotEqual(rc, 0)
        self.assertIn("misaligned address", err)
        self.assertIn("16 byte alignment", err)
        self.assertNotIn("SUM", err)

    def test_a_collective_that_some_threads_never_reach_fails_the_launch(self):
        rc, err = child(
            self.libdir,
            """
            import sys
            out = emu.alloc(4 * 128)
            sys.exit(emu.launch("samplex_emu_selftest_divergent_collective", 1, 128, ("u64", out)))
            """,
        )
        self.assertEqual(rc, CUDA_ERROR_LAUNCH_FAILED % 256)
        self.assertIn("deadlock", err)

    def test_a_full_mask_shuffle_after_lanes_returned_fails_the_launch(self):
        rc, err = child(
            self.libdir,
            """
            import sys
            out = emu.alloc(4 * 64)
            sys.exit(emu.launch("samplex_emu_selftest_shuffle_after_return", 1, 64, ("u64", out)))
            """,
        )
        self.assertEqual(rc, CUDA_ERROR_LAUNCH_FAILED % 256)
        self.assertIn("after some lanes returned", err)

    def order(self, env):
        rc, err = child(
            self.libdir,
            """
            import struct, sys
            counter, order = emu.alloc(4, fill=0), emu.alloc(4 * 64)
            assert emu.launch("samplex_emu_selftest_block_order", 64, 32, ("u64", counter), ("u64", order)) == 0
            sys.stderr.write("ORDER " + " ".join(map(str, struct.unpack("64I", emu.download(order, 256)))))
            """,
            env,
        )
        self.assertEqual(rc, 0, err)
        return [int(x) for x in err.split("ORDER ")[1].split()]

    def test_blocks_run_in_a_shuffled_order_unless_asked_otherwise(self):
        shuffled = self.order({})
        self.assertEqual(sorted(shuffled), list(range(64)))
        self.assertNotEqual(shuffled, list(range(64)))
        self.assertEqual(self.order({"SAMPLEX_EMU_BLOCK_ORDER": "forward"}), list(range(64)))
        self.assertEqual(self.order({"SAMPLEX_EMU_BLOCK_ORDER": "reverse"}), list(range(63, -1, -1)))

    def racy_broadcast(self, env):
        rc, err = child(
            self.libdir,
            """
            import struct, sys
            counter, order, seen = emu.alloc(4, fill=0), emu.alloc(4 * 64), emu.alloc(4 * 64)
            assert emu.launch("samplex_emu_selftest_racy_broadcast", 1, 64, ("u64", counter),
                              ("u64", order), ("u64", seen)) == 0
            for name, p in (("ORDER", order), ("SEEN", seen)):
                sys.stderr.write(name + " " + " ".join(map(str, struct.unpack("64I", emu.download(p, 256)))) + "\\n")
            """,
            env,
        )
        self.assertEqual(rc, 0, err)
        lines = dict(line.split(" ", 1) for line in err.splitlines() if line.startswith(("ORDER", "SEEN")))
        return [int(x) for x in lines["ORDER"].split()], [int(x) for x in lines["SEEN"].split()]

    def test_threads_resume_in_the_order_asked_so_a_race_inside_a_block_shows(self):
        # Arrival order (the default): thread 63 completes the barrier and runs on, then 0..62;
        # the race is hidden from every thread after thread 0.
        order, seen = self.racy_broadcast({})
        self.assertEqual(order, [63] + list(range(63)))
        self.assertEqual(seen, [7] * 63 + [0])
        # Descending: thread 0 runs last, so every other thread reads the stale value.
        order, seen = self.racy_broadcast({"SAMPLEX_EMU_THREAD_ORDER": "reverse"})
        self.assertEqual(order, list(range(63, -1, -1)))
        self.assertEqual(seen, [7] + [0] * 63)
        # Shuffled: a permutation, and the threads run before thread 0 read the stale value.
        order, seen = self.racy_broadcast({"SAMPLEX_EMU_THREAD_ORDER": "shuffle"})
        self.assertEqual(sorted(order), list(range(64)))
        self.assertNotIn(order, (list(range(64)), [63] + list(range(63)), list(range(63, -1, -1))))
        before = set(order[: order.index(0)])
        self.assertEqual(seen, [7 if t == 0 or t not in before else 0 for t in range(64)])

    def test_a_thread_seed_picks_the_shuffle_and_the_same_seed_repeats_it(self):
        shuffle = {"SAMPLEX_EMU_THREAD_ORDER": "shuffle"}
        default, _ = self.racy_broadcast(shuffle)
        self.assertEqual(self.racy_broadcast({**shuffle, "SAMPLEX_EMU_THREAD_SEED": "0"})[0], default)
        seeded, _ = self.racy_broadcast({**shuffle, "SAMPLEX_EMU_THREAD_SEED": "12345"})
        self.assertEqual(sorted(seeded), list(range(64)))
        self.assertNotEqual(seeded, default)
        self.assertEqual(self.racy_broadcast({**shuffle, "SAMPLEX_EMU_THREAD_SEED": "12345"})[0], seeded)
        rc, err = child(
            self.libdir,
            """
            counter, order, seen = emu.alloc(4, fill=0), emu.alloc(4 * 64), emu.alloc(4 * 64)
            emu.launch("samplex_emu_selftest_racy_broadcast", 1, 64, ("u64", counter), ("u64", order), ("u64", seen))
            """,
            {**shuffle, "SAMPLEX_EMU_THREAD_SEED": "-3"},
        )
        self.assertNotEqual(rc, 0)
        self.assertIn("SAMPLEX_EMU_THREAD_SEED=-3", err)

    def test_an_unknown_thread_order_is_refused(self):
        rc, err = child(
            self.libdir,
            """
            counter, order, seen = emu.alloc(4, fill=0), emu.alloc(4 * 64), emu.alloc(4 * 64)
            emu.launch("samplex_emu_selftest_racy_broadcast", 1, 64, ("u64", counter), ("u64", order), ("u64", seen))
            """,
            {"SAMPLEX_EMU_THREAD_ORDER": "sideways"},
        )
        self.assertNotEqual(rc, 0)
        self.assertIn("SAMPLEX_EMU_THREAD_ORDER=sideways", err)

    def row_barrier_args(self, blocks, per_row, rounds):
        slots = self.emu.alloc(4 * blocks)
        bars = self.emu.alloc(8 * (blocks // per_row), fill=0)
        errors = self.emu.alloc(4 * blocks)
        return (slots, bars, errors), [("u64", slots), ("u64", bars), ("u64", errors),
                                       ("u32", per_row), ("u32", rounds)]

    def test_a_cooperative_launch_runs_its_blocks_at_once(self):
        blocks, per_row, rounds = 12, 4, 5
        (_, bars, errors), args = self.row_barrier_args(blocks, per_row, rounds)
        rc = self.emu.launch_cooperative("samplex_emu_selftest_row_barrier", blocks, 64, *args)
        self.assertEqual(rc, 0)
        self.assertEqual(struct.unpack(f"{blocks}I", self.emu.download(errors, 4 * blocks)), (0,) * blocks)
        # Every barrier re-armed itself (arrived = 0) and counted its generations.
        rows = blocks // per_row
        self.assertEqual(struct.unpack(f"{2 * rows}I", self.emu.download(bars, 8 * rows)), (0, 2 * rounds) * rows)

    def test_a_spin_wait_in_a_launch_that_is_not_cooperative_fails(self):
        rc, err = child(
            self.libdir,
            """
            import sys
            slots, bars, errors = emu.alloc(8), emu.alloc(8, fill=0), emu.alloc(8)
            sys.exit(emu.launch("samplex_emu_selftest_row_barrier", 2, 64, ("u64", slots), ("u64", bars),
                                ("u64", errors), ("u32", 2), ("u32", 1)))
            """,
        )
        self.assertEqual(rc, CUDA_ERROR_LAUNCH_FAILED % 256)
        self.assertIn("not cooperative", err)

    def test_a_cooperative_grid_larger_than_the_device_is_refused(self):
        rc, err = child(
            self.libdir,
            """
            import sys
            slots, bars, errors = emu.alloc(4 * 9), emu.alloc(8, fill=0), emu.alloc(4 * 9)
            sys.exit(emu.launch_cooperative("samplex_emu_selftest_row_barrier", 9, 1024, ("u64", slots),
                                            ("u64", bars), ("u64", errors), ("u32", 9), ("u32", 1)))
            """,
            {"SAMPLEX_EMU_SMS": "4"},  # 4 SMs x 2 blocks of 1024 threads
        )
        self.assertEqual(rc, CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE % 256)
        self.assertIn("cooperative launch of 9 blocks", err)


@unittest.skipUnless(libtsan(), "no C++ compiler with a ThreadSanitizer runtime")
class TsanTest(unittest.TestCase):
    """The race check of scripts/emu/run.sh with SAMPLEX_EMU_TSAN=1: the kernels under
    ThreadSanitizer, each warp (or, with SAMPLEX_EMU_TSAN_GRAIN=thread, each thread) a TSan
    fiber, ordered only by what orders it on a GPU."""

    @classmethod
    def setUpClass(cls):
        cls.libdir = build_emulator(tsan=True)
        cls.env = {"LD_PRELOAD": libtsan(), "TSAN_OPTIONS": "ignore_noninstrumented_modules=1 exitcode=66"}

    def run_child(self, body, env=None):
        return child(self.libdir, body, {**self.env, **(env or {})})

    def assert_no_race(self, rc, err):
        self.assertEqual(rc, 0, err)
        self.assertNotIn("ThreadSanitizer", err)

    def assert_race_in(self, kernel, rc, err):
        self.assertEqual(rc, 66, err)
        self.assertIn("WARNING: ThreadSanitizer: data race", err)
        self.assertIn(kernel, err)

    def test_a_read_without_the_barrier_after_the_write_is_a_race(self):
        rc, err = self.run_child(
            """
            counter, order, seen = emu.alloc(4, fill=0), emu.alloc(4 * 64), emu.alloc(4 * 64)
            assert emu.launch("samplex_emu_selftest_racy_broadcast", 1, 64, ("u64", counter),
                              ("u64", order), ("u64", seen)) == 0
            """
        )
        self.assert_race_in("samplex_emu_selftest_racy_broadcast", rc, err)

    def test_barriers_shuffles_and_blocks_that_reuse_shared_memory_are_not_races(self):
        # Four blocks, one after another on four helper threads (unordered to TSan), through
        # the block reduction's shuffles and barriers on their __shared__ scratch.
        rc, err = self.run_child(
            """
            import struct
            n, blocks = 1000, 4
            src, out, sums = emu.alloc(4 * n), emu.alloc(4 * n), emu.alloc(4 * blocks)
            emu.upload(src, struct.pack(f"{n}f", *[float(i % 7) for i in range(n)]))
            assert emu.launch("samplex_emu_selftest_double", blocks, 256, ("u64", src), ("u64", out),
                              ("u64", sums), ("u32", n)) == 0
            sums = struct.unpack(f"{blocks}f", emu.download(sums, 4 * blocks))
            assert sum(sums) == sum(float(i % 7) for i in range(n)), sums
            """
        )
        self.assert_no_race(rc, err)

    def test_syncwarp_orders_shared_memory_and_a_shuffle_does_not(self):
        body = """
            import struct
            out = emu.alloc(4 * 128)
            assert emu.launch("samplex_emu_selftest_warp_publish", 1, 128, ("u64", out), ("u32", {})) == 0
            assert struct.unpack("128I", emu.download(out, 512)) == tuple(100 + t // 32 for t in range(128))
            """
        per_thread = {"SAMPLEX_EMU_TSAN_GRAIN": "thread"}
        self.assert_no_race(*self.run_child(body.format(1), per_thread))
        self.assert_race_in("samplex_emu_selftest_warp_publish", *self.run_child(body.format(0), per_thread))
        # Per warp (the default) a warp's lanes are one TSan thread: their race does not show.
        self.assert_no_race(*self.run_child(body.format(0)))
        rc, err = self.run_child(body.format(1), {"SAMPLEX_EMU_TSAN_GRAIN": "lane"})
        self.assertNotEqual(rc, 0)
        self.assertIn("SAMPLEX_EMU_TSAN_GRAIN=lane", err)

    def test_a_last_block_merge_needs_both_fences(self):
        # Blocks of an ordinary launch run one after another, yet TSan does not order those on
        # different helper threads: a ticket (a relaxed atomic, as in CUDA) orders their parts
        # only with the writers' __threadfence before it and the last block's after it.
        body = """
            import struct
            blocks = 6
            parts, ticket, out = emu.alloc(4 * blocks), emu.alloc(4, fill=0), emu.alloc(4, fill=0)
            assert emu.launch("samplex_emu_selftest_ticket", blocks, 64, ("u64", parts), ("u64", ticket),
                              ("u64", out), ("u32", {})) == 0
            assert struct.unpack("I", emu.download(out, 4))[0] == sum(10 + b for b in range(blocks))
            """
        self.assert_no_race(*self.run_child(body.format(3)))
        self.assert_race_in("samplex_emu_selftest_ticket", *self.run_child(body.format(2)))  # no writer fence
        self.assert_race_in("samplex_emu_selftest_ticket", *self.run_child(body.format(1)))  # no reader fence

    def test_blocks_of_a_cooperative_launch_are_ordered_by_their_fences(self):
        # Twelve blocks at once, on twelve OS threads, that publish plain stores to each other
        # through the row barrier's fences around its (relaxed) atomics and acquire loads.
        rc, err = self.run_child(
            """
            import struct
            blocks, per_row, rounds = 12, 4, 5
            slots, bars, errors = emu.alloc(4 * blocks), emu.alloc(8 * 3, fill=0), emu.alloc(4 * blocks)
            assert emu.launch_cooperative("samplex_emu_selftest_row_barrier", blocks, 64, ("u64", slots),
                                          ("u64", bars), ("u64", errors), ("u32", per_row), ("u32", rounds)) == 0
            assert struct.unpack(f"{blocks}I", emu.download(errors, 4 * blocks)) == (0,) * blocks
            """
        )
        self.assert_no_race(rc, err)


if __name__ == "__main__":
    unittest.main()
