"""End to end on a GPU machine: to-fp32 and to-universal with --transport nccl produce files
byte-identical to --transport mpi (the CPU path, itself checked against DeepSpeed by the oracle
tests), at 1 rank and, with two devices, 2 ranks, also at the smallest --max-memory (many executor
rounds). Exits 77 (CTest: skipped) where no CUDA device is visible. Multi-round NCCL staging is
covered by nccl_comm_gpu_test.cc."""

import filecmp
import os
import re
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "oracle"))
import ucp_oracle as uo  # noqa: E402

SKIPPED = 77
FIXTURES = ["gpt_z3_bf16_ws2", "gpt_z1_fp16_ws4", "mlp_z2_fp32_ws1", "gpt_z1_bf16_bf16opt_ws2"]


def visible_gpus():
    """GPU count from `ucp-reshard --version` ("| NCCL 2.28.9, 1 GPU(s)"); 0 if NCCL is not built."""
    p = uo.run(["--version"], 1)
    m = re.search(r"NCCL [0-9.]+, (\d+) GPU\(s\)", p.stdout + p.stderr)
    return int(m.group(1)) if m else 0


def same_tree(a, b):
    """Lists the files that differ between two output folders (names or bytes)."""
    diffs = []
    for root, _, files in os.walk(a):
        for f in files:
            pa = os.path.join(root, f)
            pb = os.path.join(b, os.path.relpath(pa, a))
            if not os.path.exists(pb) or not filecmp.cmp(pa, pb, shallow=False):
                diffs.append(os.path.relpath(pa, a))
    for root, _, files in os.walk(b):
        for f in files:
            if not os.path.exists(os.path.join(a, os.path.relpath(os.path.join(root, f), b))):
                diffs.append(os.path.relpath(os.path.join(root, f), b))
    return diffs


class NcclMatchesMpi(unittest.TestCase):
    gpus = 0

    def ranks(self):
        return [1, 2] if self.gpus >= 2 else [1]

    def compare(self, command, fixture, ranks, extra=()):
        ckpt = os.path.join(uo.DEEPSPEED, fixture, "checkpoint")
        with tempfile.TemporaryDirectory() as tmp:
            outs = {}
            for transport in ("mpi", "nccl"):
                out = os.path.join(tmp, transport)
                p = uo.run([command, ckpt, out, "--no-progress", "--transport", transport, *extra], ranks)
                self.assertEqual(p.returncode, 0, p.stderr)
                header = [line for line in p.stderr.splitlines() if "transport:" in line]
                self.assertEqual(len(header), 1, p.stderr)
                self.assertIn("transport: NCCL " if transport == "nccl" else "transport: MPI (requested)", header[0])
                outs[transport] = out
            self.assertEqual(same_tree(outs["mpi"], outs["nccl"]), [])

    def test_to_fp32(self):
        for fixture in FIXTURES:
            for ranks in self.ranks():
                for extra in ((), ("--dtype", "bf16", "--max-memory", "32MiB")):
                    with self.subTest(fixture=fixture, ranks=ranks, extra=extra):
                        self.compare("to-fp32", fixture, ranks, extra)

    def test_to_universal(self):
        for fixture in FIXTURES:
            for ranks in self.ranks():
                with self.subTest(fixture=fixture, ranks=ranks):
                    self.compare("to-universal", fixture, ranks, ("--max-memory", "32MiB"))

    def test_auto_picks_nccl_and_says_why(self):
        with tempfile.TemporaryDirectory() as tmp:
            p = uo.run(["to-fp32", os.path.join(uo.DEEPSPEED, FIXTURES[0], "checkpoint"), os.path.join(tmp, "o"),
                        "--no-progress"], 1)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertRegex(p.stderr, r"transport: NCCL \d+\.\d+\.\d+ \(auto: every rank has a GPU\)")


if __name__ == "__main__":
    NcclMatchesMpi.gpus = visible_gpus()
    if NcclMatchesMpi.gpus == 0:
        print("SKIPPED: no CUDA device (or NCCL not built): the NCCL transport cannot run here")
        sys.exit(SKIPPED)
    unittest.main()
