"""Bad input to to-universal at 1 and 3 ranks: one clear error line naming the file, printed once,
the same non-zero exit code on every rank, OUT not created (or untouched), no temporary folder and
no latest_universal left behind."""

import os
import struct
import unittest
import zipfile
import zlib

import ucp_oracle as uo

from ucp_oracle import (DATA_LOSS, FAILED_PRECONDITION, INVALID_ARGUMENT, NOT_FOUND,  # noqa: F401
                        RESOURCE_EXHAUSTED, UNIMPLEMENTED)


class ToUniversalErrors(uo.BadInputCase):
    def setUp(self):
        super().setUp()
        self.parent = os.path.join(self.tmp, "universal")
        os.mkdir(self.parent)
        self.out = os.path.join(self.parent, self.TAG)

    def expect_failure(self, code, fragments, extra=(), prefix=None):
        # latest_universal must not appear either: only the (absent or untouched) OUT may be there.
        self.check_failure(["to-universal", self.ckpt, self.out, *extra], code, fragments,
                           watch_dir=self.parent, allowed=(self.TAG,), prefix=prefix)

    def test_missing_rank_file(self):
        os.remove(os.path.join(self.tag_dir, "zero_pp_rank_2_mp_rank_00_optim_states.pt"))
        self.expect_failure(NOT_FOUND, ["zero_pp_rank_2_mp_rank_00_optim_states.pt"])
        self.assertFalse(os.path.exists(self.out))

    def test_truncated_file(self):
        path = os.path.join(self.tag_dir, "zero_pp_rank_3_mp_rank_00_optim_states.pt")
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
        self.expect_failure(DATA_LOSS, ["zero_pp_rank_3_mp_rank_00_optim_states.pt"])
        self.assertFalse(os.path.exists(self.out))

    def test_rank0_optimizer_without_param_groups(self):
        # A well-formed file (CRCs consistent) whose pickle lacks what optimizer_state.pt needs.
        # Every rank plans that file from rank 0's pickle, so every rank reports it, at the plan.
        path = os.path.join(self.tag_dir, "zero_pp_rank_0_mp_rank_00_optim_states.pt")
        with zipfile.ZipFile(path) as z:
            info = next(i for i in z.infolist() if i.filename.endswith("/data.pkl"))
        with open(path, "rb") as f:
            raw = bytearray(f.read())
        name_len, extra_len = struct.unpack_from("<HH", raw, info.header_offset + 26)
        start = info.header_offset + 30 + name_len + extra_len
        pickle = bytes(raw[start:start + info.file_size])
        self.assertEqual(pickle.count(b"param_groups"), 1)
        pickle = pickle.replace(b"param_groups", b"param_groupz")
        raw[start:start + info.file_size] = pickle
        raw = raw.replace(struct.pack("<I", info.CRC), struct.pack("<I", zlib.crc32(pickle)))
        with open(path, "wb") as f:
            f.write(raw)
        self.expect_failure(DATA_LOSS, ["zero_pp_rank_0_mp_rank_00_optim_states.pt", "has no 'param_groups'"])
        self.assertFalse(os.path.exists(self.out))

    def test_file_size_limit_while_copying_model_states(self):
        # RLIMIT_FSIZE of 4 KiB: the state files fit, the planned model-state copy does not (EFBIG
        # when its space is reserved), so the error names that file.
        self.assertGreater(os.path.getsize(os.path.join(self.tag_dir, "mp_rank_00_model_states.pt")), 4096)
        self.expect_failure(RESOURCE_EXHAUSTED, ["mp_rank_00_model_states.pt"], prefix="ulimit -f 4;")
        self.assertFalse(os.path.exists(self.out))

    def test_existing_output_then_overwrite(self):
        untouched = self.existing_output(self.out)
        self.expect_failure(FAILED_PRECONDITION, ["not empty", "--overwrite"])
        untouched()
        p = uo.run(["to-universal", self.ckpt, self.out, "--overwrite"], 3)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(sorted(os.listdir(self.out)), ["mp_rank_00_model_states.pt", "zero"])
        with open(os.path.join(self.parent, "latest_universal")) as f:
            self.assertEqual(f.read(), self.TAG)

    def test_bad_options(self):
        self.expect_failure(INVALID_ARGUMENT, ["--max-memory"], extra=["--max-memory", "1MiB"])
        self.expect_failure(INVALID_ARGUMENT, ["--max-memory"], extra=["--max-memory", "lots"])


if __name__ == "__main__":
    unittest.main()
