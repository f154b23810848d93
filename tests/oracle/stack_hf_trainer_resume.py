"""The HF Trainer resumes, at another number of ranks, from what `ucp-reshard reshard` makes of its
checkpoint-3/ folder (current stack: transformers 5, DeepSpeed 0.19, torch 2.x, CPU).

Fixtures: tests/golden/frameworks/hf_z2_bf16_ws2 and hf_z3_bf16_ws2 (tiny Llama, bf16, ZeRO-2 / ZeRO-3, two
AdamW param groups (decay / no decay), linear lr schedule, written by the Trainer itself at 2 ranks; see
tools/frameworks/README.md). For each, `ucp-reshard reshard checkpoint-3 OUT --target-dp M` (M = 3: grow to a
non-multiple; M = 1; and a real shrink: 2 -> 4, then 4 -> 2 and resume at 2), then
`trainer.train(resume_from_checkpoint=OUT)` at M ranks (gen_framework_ckpts.py resume; no flag, no edit).

Required, besides the checks `resume` makes itself (framework_resume.py: global step 3 at the start and 5 at
the end, lr of steps 4 and 5 = the uninterrupted run's, Adam step 3 on every rank, fp32 masters after the
load bit-identical to DeepSpeed's zero_to_fp32 of the fixture, Adam moments bit-identical to its
ds_to_universal, every rank's Trainer restored the CPU RNG state from its own rng_state_<r>.pth, rng_state.pth
at M=1):
- OUT holds exactly the RNG files the Trainer reads at M (rng_state_0..M-1.pth, or rng_state.pth at M=1), new
  rank r's being source rank r mod N's; trainer_state.json, scheduler.pt, training_args.bin, config and
  tokenizer files, model.safetensors byte-identical to the fixture's; `latest` = global_step3;
- epoch position: the Trainer starts at epoch 0.6 (trainer_state.json) and logs epochs 0.8 and 1.0;
- losses of steps 4 and 5:
  ZeRO-2, M = 3 and 1: equal (tolerance 0) to DeepSpeed's own universal resume of the fixture at M;
  M = 2 after 2 -> 4 -> 2 (both stages): equal (tolerance 0) to the fixture's uninterrupted run;
  ZeRO-3, M = 3 and 1: DeepSpeed's universal resume is wrong for two param groups (tools/frameworks/README.md),
  so the fixture's own run: step 4 within 1e-6 relative, step 5 within 5e-4 absolute (bf16 gradient reduction
  over another number of ranks; see framework_resume.STEP5_ABS).
Prints the loss table.
"""

import os
import unittest

import torch

import framework_resume as fr

RUNS = (fr.standard_runs("hf_z2_bf16_ws2", shrink_note=" (rng_state.pth)")
        + fr.standard_runs("hf_z3_bf16_ws2", universal_is_right=False, shrink_note=" (rng_state.pth)"))
CARRIED = ["trainer_state.json", "scheduler.pt", "training_args.bin", "config.json", "generation_config.json",
           "tokenizer.json", "tokenizer_config.json", "model.safetensors"]


class HFTrainerResumesReshardedCheckpoints(fr.ResumeCase):
    RUNS = RUNS
    TITLE = ("HF Trainer resume (trainer.train(resume_from_checkpoint=OUT)) of ucp-reshard output; "
             "DS-universal@M = DeepSpeed's own universal resume of the fixture at M")

    def check_files(self, run):
        out, src = run.out, run.fixture_ckpt
        expected = ["rng_state.pth"] if run.m == 1 else [f"rng_state_{r}.pth" for r in range(run.m)]
        self.assertEqual(sorted(n for n in os.listdir(out) if n.startswith("rng_state")), expected)
        for r, name in enumerate(expected):
            got = torch.load(os.path.join(out, name), weights_only=False)
            want = torch.load(os.path.join(src, f"rng_state_{run.source_of_rank(r)}.pth"), weights_only=False)
            self.assertTrue(fr.same(got, want), f"{name} is not source rank {run.source_of_rank(r)}'s RNG state")
        for name in CARRIED:
            self.assertEqual(fr.file_bytes(os.path.join(out, name)), fr.file_bytes(os.path.join(src, name)), name)
        self.assertEqual(fr.file_bytes(os.path.join(out, "latest")).strip(), b"global_step3")
        optim = [n for n in os.listdir(os.path.join(out, "global_step3")) if n.endswith("optim_states.pt")]
        self.assertEqual(len(optim), run.m)

    def check_framework(self, run):
        self.check_files(run)
        # epoch position: trainer_state.json's 0.6 at the start, then 0.8 and 1.0 (5 steps in the epoch)
        self.assertEqual(run.res["epoch_at_begin"], 0.6)
        self.assertEqual(run.res["epochs"], {"4": 0.8, "5": 1.0})
        calls = [c for rr in run.res["rng_restore"] for c in rr["calls"]]
        self.assertEqual(sorted(rr["rank"] for rr in run.res["rng_restore"]), list(range(run.m)))
        self.assertTrue(calls and all(c["exists"] and c["cpu_state_restored"] for c in calls), calls)


if __name__ == "__main__":
    unittest.main()
