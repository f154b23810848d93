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
        self.check_failure(["reshard", src or self.ckpt, self.out, *extra], code, fragments,
                           watch_dir=self.parent, allowed=("resharded",), prefix=prefix)
        self.assertFalse(os.path.exists(self.out) and not os.listdir(self.out) == ["keep.txt"])

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
        os.mkdir(self.out)
        with open(os.path.join(self.out, "keep.txt"), "w") as f:
            f.write("mine")
        self.expect_failure(FAILED_PRECONDITION, ["not empty", "--overwrite"])
        with open(os.path.join(self.out, "keep.txt")) as f:
            self.assertEqual(f.read(), "mine")
        shutil.rmtree(self.out)

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
