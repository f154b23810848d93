"""The reshard test matrix: `reshard_matrix.py MODEL STAGE` checks every fixture of that model and
ZeRO stage (BF16_Optimizer fixtures count as stage 1); tests/CMakeLists.txt registers one CTest
entry per (model, stage) so CI runs them in parallel. For every such fixture and every M in
{1, 2, 3, 4, 5, 8}:
  - reshard N -> M, then M -> N: every original file comes back, bit for bit outside padding;
  - to-fp32 of the M-rank checkpoint equals to-fp32 of the original, tensor by tensor;
  - where DeepSpeed itself wrote the model at M ranks (M in {1, 2, 4}): same files and structure."""

import os
import sys
import unittest

import reshard_checks as C
import ucp_oracle as U

# The DeepSpeed 0.19 set runs a lighter sweep (it has as many fixtures again): up, down, 1 and a non-divisor.
TARGETS = (1, 2, 3, 4, 5, 8) if not U.CURRENT_STACK else (1, 3, 5)


def make_suite(model, stage):
    class ReshardMatrix(unittest.TestCase):
        def test_matrix(self):
            configs = [n for n in U.fixture_names("reshard")
                       if (C.parse_config(n) or {}).get("model") == model and C.parse_config(n)["stage"] == stage]
            only = os.environ.get("UCP_RESHARD_CONFIGS")  # debugging: a comma-separated subset
            if only:
                configs = [c for c in configs if c in only.split(",")]
            self.assertTrue(configs, f"no fixtures for model {model} at stage {stage}")
            for config in configs:
                n = int(C.parse_config(config)["ws"])
                src = os.path.join(U.DEEPSPEED, config, "checkpoint")
                with U.TempDir() as tmp:
                    reference = os.path.join(tmp, "fp32-original")
                    p = U.run(["to-fp32", src, reference, "--no-progress"], 1)
                    self.assertEqual(p.returncode, 0, p.stderr)
                    for m in TARGETS:
                        with self.subTest(config=config, target_dp=m):
                            out = os.path.join(tmp, f"dp{m}")
                            back = os.path.join(tmp, f"dp{m}-back")
                            C.reshard(src, out, m, ranks=1 + (m + n) % 3)
                            C.reshard(out, back, n, ranks=1 + m % 2)
                            C.check_round_trip(self, os.path.join(src), back, C.kind_of(config))
                            fp32 = os.path.join(tmp, f"fp32-dp{m}")
                            p = U.run(["to-fp32", out, fp32, "--no-progress"], 1 + m % 3)
                            self.assertEqual(p.returncode, 0, p.stderr)
                            (a, _), (b, _) = U.load_output(reference), U.load_output(fp32)
                            self.assertEqual(list(a), list(b))
                            for k in a:
                                self.assertTrue(U.bits_equal(a[k], b[k]), f"to-fp32 differs at {k}")
                            deepspeed = C.fixture_at(config, m)
                            if deepspeed and m != n:
                                C.check_structure(self, out, deepspeed)

    ReshardMatrix.__name__ = f"ReshardMatrix_{model}_z{stage}"
    return ReshardMatrix


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: reshard_matrix.py MODEL STAGE")
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(make_suite(sys.argv[1], sys.argv[2]))
    sys.exit(0 if unittest.TextTestRunner(verbosity=2).run(suite).wasSuccessful() else 1)
