"""Bad input to reshard at 1 and 3 ranks: one clear error line naming the file or option, printed
once, the same non-zero exit code on every rank, OUT not created (or untouched), no temporary
folder left behind."""

import os
import shutil
import unittest

import ucp_oracle as uo

from ucp_oracle import DATA_LOSS, FAILED_PRECONDITION, INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED


class ReshardErrors(uo.BadInputCase):
    def setUp(self):
        super().setUp()
        self.parent = os.path.join(self.tmp, "out-parent")
        os.mkdir(self.parent)
        self.out = os.path.join(self.parent, "resharded")

    def expect_failure(self, code, fragments, extra=("--target-dp", "3"), prefix=None, src=None):
        """Fails as BadInputCase requires; OUT is not created (a test that made OUT checks it)."""
        existed = os.path.exists(self.out)
        self.check_failure(["reshard", src or self.ckpt, self.out, *extra], code, fragments,
                           watch_dir=self.parent, allowed=("resharded",), prefix=prefix)
        if not existed:
            self.assertFalse(os.path.exists(self.out))

    def test_missing_rank_file(self):
        os.remove(os.path.join(self.tag_dir, "zero_pp_rank_2_mp_rank_00_optim_states.pt"))
        self.expect_failure(NOT_FOUND, ["zero_pp_rank_2_mp_rank_00_optim_states.pt"])

    def test_truncated_file(self):
        path = os.path.join(self.tag_dir, "zero_pp_rank_3_mp_rank_00_optim_states.pt")
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
        self.expect_failure(DATA_LOSS, ["zero_pp_rank_3_mp_rank_00_optim_states.pt"])

    def test_not_a_checkpoint(self):
        empty = os.path.join(self.tmp, "empty")
        os.mkdir(empty)
        self.expect_failure(NOT_FOUND, [empty], src=empty)

    def test_output_file_size_limit(self):
        # RLIMIT_FSIZE of 4 KiB: the optimizer files do not fit (EFBIG) -> one error, no output.
        self.expect_failure(RESOURCE_EXHAUSTED, ["optim_states.pt"], prefix="ulimit -f 4;")

    def test_existing_output(self):
        untouched = self.existing_output(self.out)
        self.expect_failure(FAILED_PRECONDITION, ["not empty", "--overwrite"])
        untouched()

    def universal_source(self):
        """Our universal checkpoint of the fixture (a save dir holding latest_universal)."""
        save_dir = os.path.join(self.tmp, "universal")
        p = uo.run(["to-universal", self.ckpt, os.path.join(save_dir, self.TAG), "--no-progress"], 2)
        self.assertEqual(p.returncode, 0, p.stderr)
        return save_dir, os.path.join(save_dir, self.TAG)

    def test_universal_source_missing_parameter_file(self):
        save_dir, folder = self.universal_source()
        os.remove(os.path.join(folder, "zero", "fc1.weight", "fp32.pt"))
        self.expect_failure(NOT_FOUND, ["zero/fc1.weight/fp32.pt"], src=save_dir)

    def test_universal_source_missing_moments(self):
        save_dir, folder = self.universal_source()
        os.remove(os.path.join(folder, "zero", "fc1.weight", "exp_avg.pt"))
        self.expect_failure(NOT_FOUND, [folder, "no exp_avg/exp_avg_sq"], src=save_dir)

    def test_universal_source_truncated_optimizer_state(self):
        save_dir, folder = self.universal_source()
        path = os.path.join(folder, "zero", "optimizer_state.pt")
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
        self.expect_failure(DATA_LOSS, ["zero/optimizer_state.pt"], src=save_dir)

    def test_universal_source_without_model_states(self):
        save_dir, folder = self.universal_source()
        os.remove(os.path.join(folder, "mp_rank_00_model_states.pt"))
        self.expect_failure(NOT_FOUND, [folder, "model-state file copies"], src=save_dir)

    def test_framework_dir_with_a_gap_in_rng_states(self):
        for r in (0, 2):
            shutil.copy(os.path.join(self.tag_dir, "mp_rank_00_model_states.pt"), os.path.join(self.ckpt, f"rng_state_{r}.pth"))
        self.expect_failure(NOT_FOUND, ["rng_state_1.pth is missing"])

    def test_bad_options(self):
        self.expect_failure(INVALID_ARGUMENT, ["--max-memory"], extra=["--target-dp", "2", "--max-memory", "lots"])
        # Command-line parse errors: the parser's usage message, printed once (rank 0), exit 2 on all.
        for extra, message in ((["--target-dp", "0"], "--target-dp: Value 0 not in range 1 to 1048576"),
                               ([], "--target-dp is required")):
            for ranks in (1, 3):
                p = uo.run(["reshard", self.ckpt, self.out, *extra], ranks)
                self.assertEqual(p.returncode, INVALID_ARGUMENT, p.stderr)
                self.assertEqual(p.stderr.count(message), 1, p.stderr)
                self.assertEqual(os.listdir(self.parent), [])


if __name__ == "__main__":
    unittest.main()
