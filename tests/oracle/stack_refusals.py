"""What DeepSpeed 0.19 writes that we refuse, refused by name (DeepSpeed 0.19 fixture set only).

Each checkpoint here was written by DeepSpeed 0.19 itself (tests/golden/deepspeed-0.19/MANIFEST.md).
Every command that would have to read what it cannot convert must stop with one error line naming
the file and the feature (and the DeepSpeed setting behind it), the same exit code on 1 and 3 ranks,
and leave no output behind. Where a command does not need the refused part (to-fp32 reads no
optimizer state), it must succeed and equal DeepSpeed's own zero_to_fp32."""

import os
import unittest
import zipfile

import torch

import ucp_oracle as uo

# The fragments each refusal's one error line must hold (uo.REFUSED says which commands refuse).
FRAGMENTS = {
    "gpt_z2_fp32_legacy_ws2": ["mp_rank_00_model_states.pt", "legacy (non-zip) format",
                               "checkpoint.checkpoint_serialization: false"],
    "gpt_z2_fp32_moe2_ws4": ["_expert_", "mixture-of-experts"],
    "gpt_z2_bf16_muon_ws2": ["bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt", "'momentum_buffer'"],
    "mlp_z2_fp32_muon_ws2": ["zero_pp_rank_0_mp_rank_00_optim_states.pt", "'momentum_buffer'"],
    "gpt_z3_bf16_muon_ws2": ["bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt", "'momentum_buffer'", "Adam"],
    "gpt_z2_fp32_sgd_ws2": ["zero_pp_rank_0_mp_rank_00_optim_states.pt", "'momentum_buffer'", "Adam"],
}
ARGS = {"to-fp32": [], "to-universal": [], "reshard": ["--target-dp", "3"]}


class Refusals(uo.BadInputCase):
    SRC = os.path.join(uo.DEEPSPEED, "gpt_z2_fp32_ws2", "checkpoint")

    def test_refused_by_name(self):
        self.assertEqual(set(FRAGMENTS), set(uo.REFUSED))
        for config, commands in uo.REFUSED.items():
            src = os.path.join(uo.DEEPSPEED, config, "checkpoint")
            self.assertTrue(os.path.isdir(src), f"fixture {config} missing")
            for command in sorted(commands):
                with self.subTest(config=config, command=command):
                    parent = os.path.join(self.tmp, f"{config}-{command}")
                    os.mkdir(parent)
                    self.check_failure([command, src, os.path.join(parent, "out"), *ARGS[command]],
                                       uo.UNIMPLEMENTED, FRAGMENTS[config], parent, allowed=[])

    def test_fastpersist_file_names(self):
        # checkpoint.writer.type: fast renames every file <name>-<writer rank>.<writers> (DeepSpeed's
        # writer_factory; its AIO op does not build here, so the names are made from a real checkpoint).
        tag = os.path.join(self.ckpt, "global_step3")
        for name in os.listdir(tag):
            os.rename(os.path.join(tag, name), os.path.join(tag, name + "-0.1"))
        for command in ("to-fp32", "reshard"):
            with self.subTest(command=command):
                parent = os.path.join(self.tmp, f"fast-{command}")
                os.mkdir(parent)
                self.check_failure([command, self.ckpt, os.path.join(parent, "out"), *ARGS[command]], uo.UNIMPLEMENTED,
                                   ["_states.pt-0.1", "FastPersist", "checkpoint.writer.type: fast"], parent, allowed=[])

    def test_big_endian_file(self):
        # torch >= 2.1 records the saving machine's byte order; a big-endian file must not be misread.
        path = os.path.join(self.tag_dir, "mp_rank_00_model_states.pt")
        with zipfile.ZipFile(path) as zin:
            records = [(i.filename, zin.read(i.filename)) for i in zin.infolist()]
        with zipfile.ZipFile(path, "w") as zout:
            for name, data in records:
                zout.writestr(name, b"big" if name.endswith("/byteorder") else data)
        parent = os.path.join(self.tmp, "big")
        os.mkdir(parent)
        self.check_failure(["to-fp32", self.ckpt, os.path.join(parent, "out")], uo.UNIMPLEMENTED,
                           ["mp_rank_00_model_states.pt", "'big'-endian"], parent, allowed=[])

    def test_to_fp32_needs_no_optimizer_state(self):
        # Optimizers we cannot re-partition still consolidate: to-fp32 reads only the fp32 masters.
        for config in ("gpt_z2_bf16_muon_ws2", "mlp_z2_fp32_muon_ws2", "gpt_z2_fp32_sgd_ws2"):
            with self.subTest(config=config), uo.TempDir() as tmp:
                d = os.path.join(uo.DEEPSPEED, config)
                p = uo.run(["to-fp32", os.path.join(d, "checkpoint"), os.path.join(tmp, "out"), "--no-progress"], 2)
                self.assertEqual(p.returncode, 0, p.stderr)
                ours, _ = uo.load_output(os.path.join(tmp, "out"))
                ref = torch.load(os.path.join(d, "fp32_reference.pt"), weights_only=True)
                for name, value in ref.items():
                    if value.dtype == torch.float32 and name in ours:
                        self.assertTrue(uo.bits_equal(ours[name], value), f"{config}: {name}")


if __name__ == "__main__":
    unittest.main(verbosity=2)
