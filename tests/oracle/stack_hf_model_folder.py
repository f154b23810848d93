"""`to-fp32` of an HF Trainer checkpoint-K/ is a complete HF model folder (current-stack venv only).

Fixtures: tests/golden/frameworks/hf_z{2,3}_bf16_ws2, written by the HF Trainer itself with DeepSpeed
0.19 (tools/frameworks). For each, and for safetensors and torch output:
  - the folder holds the weights plus config.json, generation_config.json and the tokenizer files
    found beside the checkpoint, config.json recording the weights' dtype (float32);
  - AutoModelForCausalLM.from_pretrained(OUT) loads it with no missing, unexpected or mismatched
    keys, in float32, and AutoTokenizer.from_pretrained(OUT) loads the tokenizer;
  - its logits equal, bit for bit, those of the same model built from the checkpoint's config and
    loaded with DeepSpeed's own get_fp32_state_dict_from_zero_checkpoint;
  - a checkpoint whose model files live elsewhere (XTuner): the bare DeepSpeed folder plus
    --hf-config DIR gives the same folder; a --hf-config without config.json is refused by name."""

import filecmp
import json
import os
import shutil
import unittest

import torch
from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint  # real DeepSpeed, before ucp_oracle
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

import ucp_oracle as uo

FRAMEWORKS = os.path.join(uo.GOLDEN, "frameworks")
CASES = ("hf_z2_bf16_ws2", "hf_z3_bf16_ws2")
MODEL_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json")


def logits_of(model, vocab):
    ids = torch.arange(12).remainder(vocab).reshape(2, 6)
    with torch.no_grad():
        return model(input_ids=ids).logits


class HfModelFolder(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.reference = {}
        for case in CASES:
            ckpt = os.path.join(FRAMEWORKS, case, "checkpoint-3")
            config = AutoConfig.from_pretrained(ckpt)
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
            state = get_fp32_state_dict_from_zero_checkpoint(ckpt)
            missing, unexpected = model.load_state_dict(state, strict=False)
            assert not unexpected and all("rotary" in k for k in missing), (missing, unexpected)
            cls.reference[case] = logits_of(model.eval(), config.vocab_size)

    def check_folder(self, case, out, fmt):
        ckpt = os.path.join(FRAMEWORKS, case, "checkpoint-3")
        for name in MODEL_FILES:
            self.assertTrue(os.path.isfile(os.path.join(out, name)), f"{case}: {name} missing")
            if name != "config.json":
                self.assertTrue(filecmp.cmp(os.path.join(out, name), os.path.join(ckpt, name), shallow=False), name)
        with open(os.path.join(out, "config.json")) as f:
            config = json.load(f)
        self.assertEqual(config["dtype"], "float32")
        model, info = AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
        for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
            self.assertFalse(info[kind], f"{case} ({fmt}): {kind} {info[kind]}")
        self.assertTrue(all(p.dtype == torch.float32 for p in model.parameters()))
        logits = logits_of(model.eval(), config["vocab_size"])
        self.assertTrue(uo.bits_equal(logits, self.reference[case]),
                        f"{case} ({fmt}): logits differ from DeepSpeed's own conversion "
                        f"(max {float((logits - self.reference[case]).abs().max())})")
        tokenizer = AutoTokenizer.from_pretrained(out)
        self.assertGreater(len(tokenizer("a b c")["input_ids"]), 0)

    def test_trainer_checkpoint_is_a_model_folder(self):
        for case in CASES:
            for fmt in ("safetensors", "torch"):
                with self.subTest(case=case, format=fmt), uo.TempDir() as tmp:
                    out = os.path.join(tmp, "model")
                    p = uo.run(["to-fp32", os.path.join(FRAMEWORKS, case, "checkpoint-3"), out, "--format", fmt,
                                "--no-progress"], 2)
                    self.assertEqual(p.returncode, 0, p.stderr)
                    self.check_folder(case, out, fmt)

    def test_model_files_from_elsewhere(self):
        case = "hf_z3_bf16_ws2"
        ckpt = os.path.join(FRAMEWORKS, case, "checkpoint-3")
        with uo.TempDir() as tmp:
            bare = os.path.join(tmp, "run")  # a DeepSpeed save dir alone, as XTuner leaves it
            os.mkdir(bare)
            shutil.copytree(os.path.join(ckpt, "global_step3"), os.path.join(bare, "global_step3"))
            shutil.copy(os.path.join(ckpt, "latest"), bare)
            out = os.path.join(tmp, "model")
            p = uo.run(["to-fp32", bare, out, "--hf-config", ckpt, "--no-progress"], 1)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.check_folder(case, out, "safetensors --hf-config")
            plain = os.path.join(tmp, "plain")
            p = uo.run(["to-fp32", bare, plain, "--no-progress"], 1)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(sorted(os.listdir(plain)), ["model.safetensors"])  # nothing to carry
            for ranks in (1, 3):  # the same one line and exit code from every rank, nothing written
                p = uo.run(["to-fp32", bare, os.path.join(tmp, "bad"), "--hf-config", bare, "--no-progress"], ranks)
                self.assertEqual(p.returncode, uo.NOT_FOUND, p.stderr)
                errors = [line for line in p.stderr.splitlines() if "error:" in line]
                self.assertEqual(len(errors), 1, p.stderr)
                self.assertIn("holds no config.json", errors[0])
                self.assertFalse(os.path.exists(os.path.join(tmp, "bad")))
            for extra in (["--format", "hdf5"], ["--format", "lightning"]):  # not an HF model folder
                p = uo.run(["to-fp32", bare, os.path.join(tmp, "bad"), "--hf-config", ckpt, *extra, "--no-progress"], 3)
                self.assertEqual(p.returncode, uo.INVALID_ARGUMENT, p.stderr)
                self.assertEqual(len([line for line in p.stderr.splitlines() if "error:" in line]), 1, p.stderr)
                self.assertFalse(os.path.exists(os.path.join(tmp, "bad")))


if __name__ == "__main__":
    unittest.main(verbosity=2)
