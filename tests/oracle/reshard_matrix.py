"""The reshard test matrix, shared by test_reshard_<model>.py (one CTest entry per model, so CI
runs them in parallel): for every fixture of the model and every M in {1, 2, 3, 4, 5, 8}:
  - reshard N -> M, then M -> N: every original file comes back, bit for bit outside padding;
  - to-fp32 of the M-rank checkpoint equals to-fp32 of the original, tensor by tensor;
  - where DeepSpeed itself wrote the model at M ranks (M in {1, 2, 4}): same files and structure."""

import os
import unittest

import reshard_checks as C
import ucp_oracle as U

TARGETS = (1, 2, 3, 4, 5, 8)


def make_suite(model):
    class ReshardMatrix(unittest.TestCase):
        def test_matrix(self):
            configs = [n for n in U.fixture_names() if (C.parse_config(n) or {}).get("model") == model]
            only = os.environ.get("UCP_RESHARD_CONFIGS")  # debugging: a comma-separated subset
            if only:
                configs = [c for c in configs if c in only.split(",")]
            self.assertTrue(configs, f"no fixtures for model {model}")
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

    ReshardMatrix.__name__ = f"ReshardMatrix_{model}"
    return ReshardMatrix
