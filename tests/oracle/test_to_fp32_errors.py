"""Bad input to to-fp32 at 1 and 3 ranks: one clear line naming the file and what was expected,
printed once, the same non-zero exit code on every rank, no hang, OUT not created or untouched."""

import os
import shutil
import subprocess
import unittest

import ucp_oracle as uo

from ucp_oracle import (DATA_LOSS, FAILED_PRECONDITION, INVALID_ARGUMENT, NOT_FOUND,  # noqa: F401
                        RESOURCE_EXHAUSTED, UNIMPLEMENTED)


class ToFp32Errors(uo.BadInputCase):
    def setUp(self):
        super().setUp()
        self.out = os.path.join(self.tmp, "out")

    def expect_failure(self, code, fragments, extra=(), ranks_list=(1, 3), prefix=None, ckpt=None, out=None):
        self.check_failure(["to-fp32", ckpt or self.ckpt, out or self.out, *extra], code, fragments,
                           watch_dir=self.tmp, allowed=("ckpt", "out"), ranks_list=ranks_list, prefix=prefix)

    def test_missing_rank_file(self):
        os.remove(os.path.join(self.tag_dir, "zero_pp_rank_2_mp_rank_00_optim_states.pt"))
        self.expect_failure(NOT_FOUND, ["zero_pp_rank_2_mp_rank_00_optim_states.pt", "expected ranks 0..3"])
        self.assertFalse(os.path.exists(self.out))

    def test_files_from_two_world_sizes(self):
        shutil.copy(os.path.join(self.tag_dir, "zero_pp_rank_0_mp_rank_00_optim_states.pt"),
                    os.path.join(self.tag_dir, "zero_pp_rank_4_mp_rank_00_optim_states.pt"))
        self.expect_failure(FAILED_PRECONDITION, ["zero_pp_rank_4_mp_rank_00_optim_states.pt", "written for 4"])
        self.assertFalse(os.path.exists(self.out))

    def test_two_tags_mixed(self):
        other = os.path.join(uo.DEEPSPEED, "mlp_z2_fp16_ws2", "checkpoint", self.TAG, "zero_pp_rank_1_mp_rank_00_optim_states.pt")
        shutil.copy(other, os.path.join(self.tag_dir, "zero_pp_rank_1_mp_rank_00_optim_states.pt"))
        self.expect_failure(FAILED_PRECONDITION, ["zero_pp_rank_1_mp_rank_00_optim_states.pt", "written for 2"])

    def test_not_a_checkpoint(self):
        with uo.TempDir() as empty:
            self.expect_failure(NOT_FOUND, ["not a DeepSpeed checkpoint", empty], ckpt=empty)

    def test_torch_file_that_is_not_deepspeed(self):
        shutil.copy(os.path.join(uo.DEEPSPEED, "mlp_z2_fp16_ws4", "fp32_reference.pt"),
                    os.path.join(self.tag_dir, "zero_pp_rank_1_mp_rank_00_optim_states.pt"))
        self.expect_failure(DATA_LOSS, ["zero_pp_rank_1_mp_rank_00_optim_states.pt", "optimizer_state_dict"])

    def test_file_that_is_not_a_zip(self):
        with open(os.path.join(self.tag_dir, "zero_pp_rank_0_mp_rank_00_optim_states.pt"), "wb") as f:
            f.write(b"this is not a torch checkpoint\n" * 100)
        self.expect_failure(DATA_LOSS, ["zero_pp_rank_0_mp_rank_00_optim_states.pt"])

    def test_truncated_file(self):
        path = os.path.join(self.tag_dir, "zero_pp_rank_3_mp_rank_00_optim_states.pt")
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            f.truncate(size // 2)
        self.expect_failure(DATA_LOSS, ["zero_pp_rank_3_mp_rank_00_optim_states.pt"])

    def test_corrupt_pickle(self):
        path = os.path.join(self.tag_dir, "mp_rank_00_model_states.pt")
        with open(path, "r+b") as f:
            raw = bytearray(f.read())
            start = raw.index(b"data.pkl") + len(b"data.pkl") + 100  # inside the pickle's bytes
            raw[start:start + 64] = b"\xfe" * 64
            f.seek(0)
            f.write(raw)
        self.expect_failure(DATA_LOSS, ["mp_rank_00_model_states.pt"])

    def test_existing_output_is_left_untouched(self):
        untouched = self.existing_output(self.out)
        self.expect_failure(FAILED_PRECONDITION, ["not empty", "--overwrite"])
        untouched()
        p = uo.run(["to-fp32", self.ckpt, self.out, "--overwrite"], 3)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(sorted(os.listdir(self.out)), ["model.safetensors"])

    def test_file_size_limit(self):
        # RLIMIT_FSIZE of 4 KiB: pre-allocating the 5 KiB output fails with EFBIG on the writer.
        self.expect_failure(RESOURCE_EXHAUSTED, ["model.safetensors"], prefix="ulimit -f 4;")
        self.assertFalse(os.path.exists(self.out))

    def test_disk_full(self):
        mnt = os.path.join(self.tmp, "small")
        os.mkdir(mnt)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", mnt], capture_output=True).returncode != 0:
            os.rmdir(mnt)
            self.skipTest("cannot mount a small tmpfs here (needs root); the EFBIG test covers the write-failure path")
        try:
            out = os.path.join(mnt, "out")
            for ranks in (1, 3):
                with self.subTest(ranks=ranks):
                    p = uo.run(["to-fp32", self.ckpt, out], ranks)
                    self.assertEqual(p.returncode, RESOURCE_EXHAUSTED, p.stderr)
                    self.assertIn("no space left on device", p.stderr)
                    self.assertEqual(os.listdir(mnt), [])
        finally:
            subprocess.run(["umount", mnt])
            os.rmdir(mnt)

    def test_model_parallel_is_refused_clearly(self):
        for name in os.listdir(self.tag_dir):
            if "mp_rank_00" in name:
                shutil.copy(os.path.join(self.tag_dir, name), os.path.join(self.tag_dir, name.replace("mp_rank_00", "mp_rank_01")))
        self.expect_failure(UNIMPLEMENTED, ["model-parallel"])

    def test_bad_options(self):
        self.expect_failure(INVALID_ARGUMENT, ["--max-shard-size", "5XB"], extra=["--max-shard-size", "5XB"])
        self.expect_failure(INVALID_ARGUMENT, ["--max-memory"], extra=["--max-memory", "1MiB"])


if __name__ == "__main__":
    unittest.main()
