"""reshard of an HF Trainer checkpoint-K/ dir (a DeepSpeed save dir plus trainer_state.json,
config.json, scheduler.pt and one rng_state_<rank>.pth per rank): the new dir has the same
framework files, per-rank RNG files for every new rank taken from source rank r mod N (HF's
rng_state.pth for one rank), a warning saying so, and a DeepSpeed part equal to resharding the bare
save dir. Lightning's DeepSpeed checkpoints are plain save dirs (tag 'checkpoint'): covered by
resharding a copy under that tag."""

import filecmp
import os
import shutil
import unittest

import torch

import reshard_checks as C
import ucp_oracle as U

SRC = os.path.join(U.DEEPSPEED, "gpt_z2_bf16_ws2", "checkpoint")


class FrameworkDirs(unittest.TestCase):
    def make_hf_dir(self, tmp, ranks):
        d = U.writable_copy(SRC, os.path.join(tmp, "checkpoint-3"))
        for r in range(ranks):
            torch.save({"python": r, "torch": torch.arange(4) + r}, os.path.join(d, f"rng_state_{r}.pth"))
        with open(os.path.join(d, "trainer_state.json"), "w") as f:
            f.write('{"global_step": 3}\n')
        with open(os.path.join(d, "config.json"), "w") as f:
            f.write('{"model_type": "gpt"}\n')
        torch.save({"last_epoch": 3}, os.path.join(d, "scheduler.pt"))
        return d

    def test_hf_trainer_dir(self):
        for m, ranks in ((3, 2), (1, 1), (2, 3)):
            with self.subTest(target_dp=m), U.TempDir() as tmp:
                src = self.make_hf_dir(tmp, 2)
                out = os.path.join(tmp, "checkpoint-3-dp" + str(m))
                p = U.run(["reshard", src, out, "--target-dp", str(m), "--no-progress"], ranks)
                self.assertEqual(p.returncode, 0, p.stderr)
                for name in ("trainer_state.json", "config.json", "scheduler.pt"):
                    self.assertTrue(filecmp.cmp(os.path.join(src, name), os.path.join(out, name), shallow=False), name)
                rng = sorted(n for n in os.listdir(out) if n.startswith("rng_state"))
                expected = ["rng_state.pth"] if m == 1 else [f"rng_state_{r}.pth" for r in range(m)]
                self.assertEqual(rng, expected)
                for r, name in enumerate(expected):
                    self.assertEqual(torch.load(os.path.join(out, name), weights_only=False)["python"], r % 2)
                if m != 2:
                    self.assertIn("RNG state of source rank r mod 2", p.stderr)
                bare = os.path.join(tmp, "bare")
                C.reshard(SRC, bare, m, ranks=1)
                a, b = C.files(bare), C.files(out)
                self.assertEqual(sorted(a), sorted(b))
                for name in a:
                    C.compare_values(self, C.load(a[name]), C.load(b[name]), name)

    def test_lightning_style_tag(self):
        with U.TempDir() as tmp:
            src = os.path.join(tmp, "epoch=0-step=3.ckpt")
            os.makedirs(src)
            shutil.copytree(os.path.join(SRC, "global_step3"), os.path.join(src, "checkpoint"))
            with open(os.path.join(src, "latest"), "w") as f:
                f.write("checkpoint")
            out = os.path.join(tmp, "out.ckpt")
            p = U.run(["reshard", src, out, "--target-dp", "3", "--no-progress"], 2)
            self.assertEqual(p.returncode, 0, p.stderr)
            with open(os.path.join(out, "latest")) as f:
                self.assertEqual(f.read(), "checkpoint")
            self.assertEqual(len([n for n in os.listdir(os.path.join(out, "checkpoint")) if "optim_states" in n]), 3)


if __name__ == "__main__":
    unittest.main()
