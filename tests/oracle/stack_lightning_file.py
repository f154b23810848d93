"""`to-fp32 --format lightning` against Lightning's own converter (current-stack venv only).

Fixtures: tests/golden/frameworks/lightning_z{2,3}_ws2, DeepSpeedStrategy checkpoints written by
Lightning 2.6 itself (tools/frameworks). The oracle is
lightning.pytorch.utilities.deepspeed.convert_zero_checkpoint_to_fp32_state_dict on the same folder:
our lightning_model.pt must hold the same keys in the same order, the same trainer fields (epoch,
global_step, loops, callbacks, lr_schedulers, ...) and a state_dict equal tensor for tensor, bit for
bit, at 1 and 2 ranks; LightningModule.load_from_checkpoint must accept it (strict) and give the
module exactly those weights. The one deliberate difference (any DeepSpeed checkpoint): frozen
16-bit parameters are widened to fp32, exactly, as everywhere in to-fp32."""

import contextlib
import io
import os
import sys
import unittest

import deepspeed  # noqa: F401  (before ucp_oracle: Lightning's converter needs the real DeepSpeed, not its stubs)
import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict
from transformers import LlamaForCausalLM

import ucp_oracle as uo

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "frameworks"))
import gen_framework_ckpts as frameworks  # noqa: E402  (the fixtures' own model definition)

FRAMEWORKS = os.path.join(uo.GOLDEN, "frameworks")
CASES = ("lightning_z2_ws2", "lightning_z3_ws2")


class TinyLlamaModule(pl.LightningModule):
    """The module the fixtures trained (its weights; training logic is not needed to load)."""

    def __init__(self):
        super().__init__()
        self.model = LlamaForCausalLM(frameworks.llama_config())


def same(a, b, where):
    """'' or the first difference; tensors bit for bit, other values by their repr."""
    if torch.is_tensor(a) or torch.is_tensor(b):
        return "" if torch.is_tensor(a) and torch.is_tensor(b) and uo.bits_equal(a, b) else f"{where}: tensors differ"
    if isinstance(a, dict) and isinstance(b, dict):
        if list(a) != list(b):
            return f"{where}: keys {list(a)} vs {list(b)}"
        for k in a:
            d = same(a[k], b[k], f"{where}[{k!r}]")
            if d:
                return d
        return ""
    return "" if type(a) is type(b) and repr(a) == repr(b) else f"{where}: {a!r:.200} vs {b!r:.200}"


class LightningFile(unittest.TestCase):
    def test_equals_lightnings_converter_and_loads(self):
        for case in CASES:
            ckpt = os.path.join(FRAMEWORKS, case, "epoch=0-step=3.ckpt")
            with uo.TempDir() as tmp:
                ref_file = os.path.join(tmp, "lightning_reference.pt")
                with contextlib.redirect_stdout(io.StringIO()):
                    convert_zero_checkpoint_to_fp32_state_dict(ckpt, ref_file)
                ref = torch.load(ref_file, weights_only=False)
                for ranks in (1, 2):
                    with self.subTest(case=case, ranks=ranks):
                        out = os.path.join(tmp, f"ours{ranks}")
                        p = uo.run(["to-fp32", ckpt, out, "--format", "lightning", "--no-progress"], ranks)
                        self.assertEqual(p.returncode, 0, p.stderr)
                        self.assertEqual(os.listdir(out), ["lightning_model.pt"])
                        path = os.path.join(out, "lightning_model.pt")
                        ours = torch.load(path, weights_only=False)
                        self.assertEqual(same(ours, ref, "checkpoint"), "")
                        self.assertEqual(ours["global_step"], 3)
                        module = TinyLlamaModule.load_from_checkpoint(path, strict=True)
                        loaded = module.state_dict()
                        self.assertEqual(set(loaded), set(ours["state_dict"]))
                        for name, value in ours["state_dict"].items():
                            self.assertTrue(uo.bits_equal(loaded[name], value), f"{case}: {name} after loading")


    def test_one_file_takes_no_shard_size(self):
        ckpt = os.path.join(FRAMEWORKS, CASES[0], "epoch=0-step=3.ckpt")
        with uo.TempDir() as tmp:
            for ranks in (1, 3):
                out = os.path.join(tmp, "out")
                p = uo.run(["to-fp32", ckpt, out, "--format", "lightning", "--max-shard-size", "1GB", "--no-progress"], ranks)
                self.assertEqual(p.returncode, uo.INVALID_ARGUMENT, p.stderr)
                errors = [line for line in p.stderr.splitlines() if "error:" in line]
                self.assertEqual(len(errors), 1, p.stderr)
                self.assertIn("--max-shard-size does not apply to --format lightning", errors[0])
                self.assertFalse(os.path.exists(out))

    def test_any_deepspeed_checkpoint_like_lightning(self):
        # Lightning's converter takes any DeepSpeed save dir: frozen bf16 parameters, int64 and bool
        # buffers, tied names and ZeRO-3 (DeepSpeed 0.19 fixtures) must come out as it writes them.
        for config in ("mlp_z2_bf16_ws2", "gpt_z3_fp16_ws2", "mlp_z3_bf16_ws4"):
            ckpt = os.path.join(uo.GOLDEN, "deepspeed-0.19", config, "checkpoint")
            with self.subTest(config=config), uo.TempDir() as tmp:
                ref_file = os.path.join(tmp, "lightning_reference.pt")
                with contextlib.redirect_stdout(io.StringIO()):
                    convert_zero_checkpoint_to_fp32_state_dict(ckpt, ref_file)
                out = os.path.join(tmp, "ours")
                p = uo.run(["to-fp32", ckpt, out, "--format", "lightning", "--no-progress"], 3)
                self.assertEqual(p.returncode, 0, p.stderr)
                ours = torch.load(os.path.join(out, "lightning_model.pt"), weights_only=False)
                ref = torch.load(ref_file, weights_only=False)
                # DeepSpeed's get_fp32_state_dict_from_zero_checkpoint leaves frozen parameters in the
                # training dtype; ours widens them to fp32, exactly (README, to-fp32): compare widened.
                widened = {k: v.float() if v.dtype in (torch.bfloat16, torch.float16) and ours["state_dict"][k].dtype ==
                           torch.float32 else v for k, v in ref["state_dict"].items()}
                self.assertEqual(same(ours, dict(ref, state_dict=widened), config), "")


if __name__ == "__main__":
    unittest.main(verbosity=2)
