"""Lightning resumes, at another number of ranks, from what `ucp-reshard reshard` makes of its DeepSpeed
checkpoint folder epoch=0-step=3.ckpt/ (current stack: lightning 2.6, DeepSpeed 0.19, torch 2.x, CPU).

Fixtures: tests/golden/frameworks/lightning_z2_ws2 and lightning_z3_ws2 (tiny Llama in a LightningModule,
DeepSpeedStrategy(stage=2 / 3), bf16-mixed, one AdamW param group, per-step LambdaLR, written by Lightning itself
at 2 ranks; see tools/frameworks/README.md). Lightning's own state (loops, callbacks, lr schedulers, epoch,
global step) is DeepSpeed client state in the *model_states.pt files. For each, `ucp-reshard reshard
epoch=0-step=3.ckpt OUT --target-dp M` (M = 3: grow to a non-multiple; M = 1; and a real shrink: 2 -> 4, then
4 -> 2 and resume at 2), then `trainer.fit(model, ckpt_path=OUT)` at M ranks (gen_framework_ckpts.py resume; no
flag, no edit).

Required, besides the checks `resume` makes itself (framework_resume.py: global step 3 at the start and 5 at
the end, lr of steps 4 and 5 = the uninterrupted run's (the LambdaLR state), Adam step 3 on every rank, fp32
masters after the load bit-identical to DeepSpeed's zero_to_fp32 of the fixture, Adam moments bit-identical to
its ds_to_universal):
- OUT: `latest` = checkpoint; M optimizer-state files; the model-state files DeepSpeed reads at M (ZeRO-2: one
  mp_rank_00_model_states.pt; ZeRO-3: one per rank), each holding Lightning's entries (epoch, global_step, loops,
  callbacks, lr_schedulers, version) equal to the fixture's;
- epoch position: Lightning starts at epoch 1 (the step-3 checkpoint closes epoch 0 of 3 steps) and runs steps 4
  and 5 in epoch 1, as DeepSpeed's own universal resume does;
- losses of steps 4 and 5 (the mean over the ranks): M = 3 and 1, both stages: equal (tolerance 0) to DeepSpeed's
  own universal resume of the fixture at M (one param group, so DeepSpeed's ZeRO-3 universal load is right here);
  M = 2 after 2 -> 4 -> 2: equal (tolerance 0) to the fixture's uninterrupted run.
Prints the loss table.
"""

import os
import unittest

import torch

import framework_resume as fr

RUNS = fr.standard_runs("lightning_z2_ws2") + fr.standard_runs("lightning_z3_ws2")
# what DeepSpeed's save_checkpoint writes itself; everything else in a model-state file is Lightning's client state
DEEPSPEED_KEYS = {"module", "buffer_names", "optimizer", "param_shapes", "frozen_param_shapes", "shared_params",
                  "frozen_param_fragments", "lr_scheduler", "data_sampler", "random_ltd", "sparse_tensor_module_names",
                  "skipped_steps", "global_steps", "global_samples", "dp_world_size", "mp_world_size",
                  "checkpoint_parallel_dimensions", "ds_config", "ds_version"}
LIGHTNING_KEYS = {"epoch", "global_step", "pytorch-lightning_version", "loops", "callbacks", "lr_schedulers"}


class LightningResumesReshardedCheckpoints(fr.ResumeCase):
    RUNS = RUNS
    TITLE = ("Lightning resume (trainer.fit(model, ckpt_path=OUT)) of ucp-reshard output; "
             "DS-universal@M = DeepSpeed's own universal resume of the fixture at M")

    @staticmethod
    def client_state(path):
        d = torch.load(path, map_location="cpu", weights_only=False)
        return {k: v for k, v in d.items() if k not in DEEPSPEED_KEYS}

    def check_files(self, run):
        out, src = run.out, run.fixture_ckpt
        self.assertEqual(sorted(os.listdir(out)), ["checkpoint", "latest"])
        self.assertEqual(fr.file_bytes(os.path.join(out, "latest")).strip(), b"checkpoint")
        names = os.listdir(os.path.join(out, "checkpoint"))
        self.assertEqual(len([n for n in names if n.endswith("optim_states.pt")]), run.m)
        stage3 = "_z3_" in run.case
        model = sorted(n for n in names if n.endswith("model_states.pt"))
        self.assertEqual(model, [f"zero_pp_rank_{r}_mp_rank_00_model_states.pt" for r in range(run.m)] if stage3
                         else ["mp_rank_00_model_states.pt"])
        ref_name = "zero_pp_rank_0_mp_rank_00_model_states.pt" if stage3 else "mp_rank_00_model_states.pt"
        want = self.client_state(os.path.join(src, "checkpoint", ref_name))
        self.assertTrue(LIGHTNING_KEYS <= set(want), sorted(want))
        for name in model:
            got = self.client_state(os.path.join(out, "checkpoint", name))
            self.assertEqual(sorted(got), sorted(want), name)
            for k in want:
                self.assertTrue(fr.same(got[k], want[k]), f"{name}: Lightning's {k!r} differs from the fixture's")

    def check_framework(self, run):
        self.check_files(run)
        self.assertEqual(run.res["epoch_at_begin"], 1)
        self.assertEqual(run.res["epochs"], {"4": 1, "5": 1})


if __name__ == "__main__":
    unittest.main()
