"""--transport on the machine at hand (CI: NCCL built, no GPU). What rank 0 says about the
transport, the same output bytes whatever the MPI-side choice, and a clear failure (exit 8,
unavailable; one error line) when NCCL is requested where it cannot run. On a machine where every
rank has a GPU the NCCL cases belong to tests/gpu/test_transport_nccl.py and are skipped here."""

import filecmp
import os
import re
import tempfile
import unittest

import ucp_oracle as uo

UNAVAILABLE = 8
FIXTURE = "gpt_z2_bf16_ws2"


def checkpoint():
    return os.path.join(uo.DEEPSPEED, FIXTURE, "checkpoint")


def build_facts():
    """(nccl_built, gpus) from `ucp-reshard --version`."""
    p = uo.run(["--version"], 1)
    text = p.stdout + p.stderr
    m = re.search(r"NCCL [0-9.]+, (\d+) GPU\(s\)", text)
    if m:
        return True, int(m.group(1))
    assert "NCCL not built" in text, text
    return False, 0


def transport_lines(stderr):
    return [line for line in stderr.splitlines() if "transport:" in line]


class Transport(unittest.TestCase):
    nccl_built, gpus = build_facts()

    def test_mpi_requested_gives_the_default_bytes(self):
        with tempfile.TemporaryDirectory() as tmp:
            a, b = os.path.join(tmp, "a"), os.path.join(tmp, "b")
            p = uo.run(["to-fp32", checkpoint(), a, "--no-progress", "--transport", "mpi"], 2)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(transport_lines(p.stderr), ["ucp-reshard: transport: MPI (requested)"])
            q = uo.run(["to-fp32", checkpoint(), b, "--no-progress"], 2)
            self.assertEqual(q.returncode, 0, q.stderr)
            self.assertEqual(len(transport_lines(q.stderr)), 1, q.stderr)  # printed once, by rank 0
            names = sorted(os.listdir(a))
            self.assertEqual(names, sorted(os.listdir(b)))
            for n in names:
                self.assertTrue(filecmp.cmp(os.path.join(a, n), os.path.join(b, n), shallow=False), n)

    def test_auto_says_why_it_chose_mpi(self):
        if self.gpus > 0:
            self.skipTest("this machine has a GPU: auto may choose NCCL (tests/gpu covers it)")
        with tempfile.TemporaryDirectory() as tmp:
            p = uo.run(["to-universal", checkpoint(), os.path.join(tmp, "u"), "--no-progress"], 3)
            self.assertEqual(p.returncode, 0, p.stderr)
            why = "no CUDA device on ranks 0-2" if self.nccl_built else "NCCL not built in"
            self.assertEqual(transport_lines(p.stderr), [f"ucp-reshard: transport: MPI (auto: {why})"])

    def test_nccl_where_impossible_fails_clearly_on_every_rank(self):
        if self.gpus > 0:
            self.skipTest("this machine has a GPU")
        for ranks, who in ((1, "rank 0"), (3, "ranks 0-2")):
            with self.subTest(ranks=ranks), tempfile.TemporaryDirectory() as tmp:
                out = os.path.join(tmp, "o")
                p = uo.run(["to-fp32", checkpoint(), out, "--transport", "nccl"], ranks)
                self.assertEqual(p.returncode, UNAVAILABLE, p.stderr)
                errors = [line for line in p.stderr.splitlines() if "error:" in line]
                self.assertEqual(len(errors), 1, p.stderr)
                if self.nccl_built:
                    self.assertIn(f"--transport nccl: no CUDA device on {who}; use --transport mpi or auto", errors[0])
                else:
                    self.assertIn("built without NCCL", errors[0])
                self.assertFalse(os.path.exists(out))

    def test_unknown_transport_is_a_usage_error(self):
        with tempfile.TemporaryDirectory() as tmp:
            p = uo.run(["to-fp32", checkpoint(), os.path.join(tmp, "o"), "--transport", "gloo"], 1)
            self.assertEqual(p.returncode, uo.INVALID_ARGUMENT, p.stderr)
            self.assertIn("--transport", p.stderr)


if __name__ == "__main__":
    unittest.main()
