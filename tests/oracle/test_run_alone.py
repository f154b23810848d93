"""ucp-reshard started as a plain process, with no launcher: it is the only rank, skips MPI's
start-up (the version line says "self (1 rank, no MPI)"), and writes exactly what `mpirun -np 1`
writes; those bytes are checked against DeepSpeed's own outputs by the other oracle tests, and
here again against DeepSpeed's zero_to_fp32 reference. Parallel HDF5 needs MPI even then: the run
initialises it on its own, and h5py reads the file back. Errors read the same as under mpirun."""

import filecmp
import os
import tempfile
import unittest

import ucp_oracle as uo
from test_to_fp32 import Expected
from test_to_fp32_hdf5 import read_h5

FIXTURE = "gpt_z2_bf16_ws2"


def checkpoint():
    return os.path.join(uo.DEEPSPEED, FIXTURE, "checkpoint")


class RunAlone(unittest.TestCase):
    def run_both(self, args, tmp):
        """Runs ARGS (with OUT as a placeholder) alone and under mpirun -np 1; returns both OUT dirs."""
        outs = []
        for how in ("alone", "mpirun"):
            out = os.path.join(tmp, how, "out")
            os.makedirs(os.path.dirname(out))
            full = [out if a == "OUT" else a for a in args] + ["--no-progress"]
            p = uo.run_alone(full) if how == "alone" else uo.run(full, 1)
            self.assertEqual(p.returncode, 0, f"{how}: {p.stderr}")
            outs.append(out)
        return outs

    def assert_same_tree(self, a, b):
        self.assertEqual(uo.file_tree(a), uo.file_tree(b))
        for rel in sorted(uo.file_tree(a)):
            self.assertTrue(filecmp.cmp(os.path.join(a, rel), os.path.join(b, rel), shallow=False), rel)

    def test_version_line_names_the_communicator(self):
        alone = uo.run_alone(["--version"])
        self.assertEqual(alone.returncode, 0, alone.stderr)
        self.assertIn("| self (1 rank, no MPI) |", alone.stdout)
        launched = uo.run(["--version"], 1)
        self.assertEqual(launched.returncode, 0, launched.stderr)
        self.assertRegex(launched.stdout, r"\| MPI \(Open MPI v[0-9.]+\) \|")

    def test_to_fp32_alone_writes_what_mpirun_writes(self):
        with tempfile.TemporaryDirectory() as tmp:
            alone, launched = self.run_both(["to-fp32", checkpoint(), "OUT"], tmp)
            self.assert_same_tree(alone, launched)
            expected = Expected(FIXTURE)
            sd, _ = uo.load_output(alone)
            for name in expected.trainable:
                self.assertTrue(uo.bits_equal(sd[name], expected.trainable_value(name)), name)

    def test_to_universal_alone_writes_what_mpirun_writes(self):
        with tempfile.TemporaryDirectory() as tmp:
            alone, launched = self.run_both(["to-universal", checkpoint(), "OUT"], tmp)
            self.assert_same_tree(alone, launched)
            for how in ("alone", "mpirun"):
                with open(os.path.join(tmp, how, "latest_universal")) as f:
                    self.assertEqual(f.read().strip(), "out")

    def test_hdf5_alone_initialises_mpi_itself(self):
        with tempfile.TemporaryDirectory() as tmp:
            st = os.path.join(tmp, "st")
            p = uo.run_alone(["to-fp32", checkpoint(), st, "--no-progress"])
            self.assertEqual(p.returncode, 0, p.stderr)
            h5 = os.path.join(tmp, "h5")
            p = uo.run_alone(["to-fp32", checkpoint(), h5, "--format", "hdf5", "--no-progress"])
            self.assertEqual(p.returncode, 0, p.stderr)
            got = read_h5(os.path.join(h5, "model.h5"))
            want, _ = uo.load_output(st)
            self.assertEqual(sorted(got), sorted(want))
            for name, t in want.items():
                self.assertTrue(uo.bits_equal(got[name], t), name)

    def test_errors_read_the_same_as_under_mpirun(self):
        with tempfile.TemporaryDirectory() as tmp:
            missing = os.path.join(tmp, "no-such-checkpoint")
            args = ["to-universal", missing, os.path.join(tmp, "out"), "--no-progress"]
            alone, launched = uo.run_alone(args), uo.run(args, 1)
            self.assertEqual(alone.returncode, uo.NOT_FOUND, alone.stderr)
            self.assertEqual(launched.returncode, alone.returncode, launched.stderr)
            errors = [line for line in alone.stderr.splitlines() if "error:" in line]
            self.assertEqual(len(errors), 1, alone.stderr)
            self.assertIn(missing, errors[0])
            self.assertEqual(errors, [line for line in launched.stderr.splitlines() if "error:" in line])
            self.assertFalse(os.path.exists(os.path.join(tmp, "out")))


if __name__ == "__main__":
    unittest.main()
