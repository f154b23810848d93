"""reshard from a universal checkpoint: DeepSpeed's own ds_to_universal output and ours give the
same M-rank checkpoint as the ZeRO original (every file, every value, every tensor bit for bit),
for every fixture; where DeepSpeed's universal output is wrong (ZeRO-3 'scale' with padding in
mlp_z3_*_ws4) the run fails with one clear error naming the file."""

import os
import unittest

import reshard_checks as C
import ucp_oracle as U

TARGET = 3


class ReshardFromUniversal(unittest.TestCase):
    def test_every_fixture(self):
        # Both ways of getting there must exist: to-universal refuses non-Adam optimizer state.
        for config in sorted(set(U.fixture_names("reshard")) & set(U.fixture_names("to-universal"))):
            n = int(C.parse_config(config)["ws"])
            src = os.path.join(U.DEEPSPEED, config, "checkpoint")
            with self.subTest(config=config), U.TempDir() as tmp:
                native = os.path.join(tmp, "from-zero")
                C.reshard(src, native, TARGET, ranks=1 + n % 2)
                ours = os.path.join(tmp, "ours", "global_step3")
                p = U.run(["to-universal", src, ours, "--no-progress"], 2)
                self.assertEqual(p.returncode, 0, p.stderr)
                sources = [os.path.dirname(ours)]  # the save dir with latest_universal
                theirs = os.path.join(U.DEEPSPEED, config, "universal")
                # DeepSpeed 0.14.5's padding defect (fixed by 0.19).
                broken = config.startswith("mlp_z3_") and config.endswith("_ws4") and not U.CURRENT_STACK
                if os.path.isdir(theirs) and not broken:
                    sources.append(theirs)
                for i, universal in enumerate(sources):
                    out = os.path.join(tmp, f"from-universal-{i}")
                    C.reshard(universal, out, TARGET, ranks=1 + i)
                    a, b = C.files(native), C.files(out)
                    self.assertEqual(sorted(a), sorted(b))
                    for name in a:
                        C.compare_values(self, C.load(a[name]), C.load(b[name]), f"{universal}: {name}")
                if broken:
                    p = U.run(["reshard", theirs, os.path.join(tmp, "bad"), "--target-dp", str(TARGET), "--no-progress"], 2)
                    self.assertEqual(p.returncode, U.DATA_LOSS, p.stderr)
                    errors = [line for line in p.stderr.splitlines() if "error:" in line]
                    self.assertEqual(len(errors), 1, p.stderr)
                    self.assertIn("zero/scale/fp32.pt' holds 3 elements, expected 1", errors[0])
                    self.assertFalse(os.path.exists(os.path.join(tmp, "bad")))


if __name__ == "__main__":
    unittest.main()
