"""Today's readers of what we write (current-stack venv only: torch 2.x, safetensors from PyPI).

For fixtures of both sets (DeepSpeed 0.14.5 / torch 1.13 and DeepSpeed 0.19 / torch 2.x), every file
our conversions write is opened the way today's users open it:
  - every `.bin` shard of `to-fp32 --format torch` (sharded, with its index) with
    torch.load(weights_only=True) and with torch.load(weights_only=True, mmap=True);
  - every `.safetensors` shard with safetensors.torch.load_file;
  - every per-parameter universal file of `to-universal` (fp32.pt, exp_avg.pt, exp_avg_sq.pt, step.pt)
    with torch.load(weights_only=True, mmap=True); zero/optimizer_state.pt needs weights_only=False,
    exactly like DeepSpeed's own (it holds DeepSpeed classes): both are checked to behave the same;
  - the resharded native files with torch.load(weights_only=False) (DeepSpeed's own loader does so).
Values are compared with DeepSpeed's own outputs (fp32_reference.pt, ds_to_universal's files) where
DeepSpeed wrote them, so the test fails if a reader sees different bits, not only if it raises."""

import glob
import json
import os
import pickle
import sys
import unittest

import torch
from safetensors.torch import load_file

import ucp_oracle as uo

GOLDEN = uo.GOLDEN
SETS = {"deepspeed": ["gpt_z2_bf16_ws2", "mlp_z3_fp16_ws4", "gpt_z1_bf16_bf16opt_ws2"],
        "deepspeed-0.19": ["gpt_z2_bf16_ws2", "gpt_z3_bf16_ws2", "mlp_z3_fp32_ws4", "mlp_z1_fp16_ws2",
                           "gpt_z1_bf16_bf16opt_ws2"]}


def fixture_dirs():
    for fixture_set, names in SETS.items():
        for name in names:
            d = os.path.join(GOLDEN, fixture_set, name)
            if os.path.isdir(d):
                yield fixture_set, name, d


def tensor_of(x):
    return x["param"] if isinstance(x, dict) else x


class Torch2Consumers(unittest.TestCase):
    def test_00_fixtures_present(self):
        found = list(fixture_dirs())
        self.assertEqual(len(found), sum(len(v) for v in SETS.values()), [f[1] for f in found])

    def test_fp32_outputs(self):
        for fixture_set, name, d in fixture_dirs():
            ref_path = os.path.join(d, "fp32_reference.pt")
            ref = torch.load(ref_path, weights_only=True) if os.path.exists(ref_path) else None
            with uo.TempDir() as tmp, self.subTest(fixture=f"{fixture_set}/{name}"):
                outs = {}
                for fmt in ("torch", "safetensors"):
                    out = os.path.join(tmp, fmt)
                    # 1 KB shards: several files and an index, as a large model gets.
                    p = uo.run(["to-fp32", os.path.join(d, "checkpoint"), out, "--format", fmt,
                                "--max-shard-size", "1KB", "--no-progress"], 2)
                    self.assertEqual(p.returncode, 0, p.stderr)
                    outs[fmt] = out
                bins = sorted(glob.glob(os.path.join(outs["torch"], "*.bin")))
                sts = sorted(glob.glob(os.path.join(outs["safetensors"], "*.safetensors")))
                self.assertGreater(len(bins), 1)
                self.assertGreater(len(sts), 1)
                plain, mapped, safe = {}, {}, {}
                for f in bins:
                    plain.update(torch.load(f, weights_only=True))
                    mapped.update(torch.load(f, weights_only=True, mmap=True))
                for f in sts:
                    safe.update(load_file(f))
                with open(os.path.join(outs["torch"], "pytorch_model.bin.index.json")) as f:
                    self.assertEqual(set(json.load(f)["weight_map"]), set(plain))
                self.assertEqual(set(plain), set(mapped))
                self.assertEqual(set(plain), set(safe))
                for k in plain:
                    self.assertTrue(uo.bits_equal(plain[k], mapped[k]), k)
                    self.assertTrue(uo.bits_equal(plain[k], safe[k]), k)
                    if ref is not None and k in ref and ref[k].dtype == torch.float32 and plain[k].dtype == torch.float32:
                        self.assertTrue(uo.bits_equal(plain[k], ref[k]), f"{k} differs from DeepSpeed's zero_to_fp32")

    def test_universal_outputs(self):
        for fixture_set, name, d in fixture_dirs():
            theirs = os.path.join(d, "universal", "global_step3")
            with uo.TempDir() as tmp, self.subTest(fixture=f"{fixture_set}/{name}"):
                out = os.path.join(tmp, "universal")
                p = uo.run(["to-universal", os.path.join(d, "checkpoint"), out, "--no-progress"], 2)
                self.assertEqual(p.returncode, 0, p.stderr)
                files = sorted(glob.glob(os.path.join(out, "zero", "*", "*.pt")))
                self.assertTrue(files)
                for f in files:
                    ours = torch.load(f, weights_only=True, mmap=True)
                    rel = os.path.relpath(f, out)
                    if os.path.exists(os.path.join(theirs, rel)):
                        ref = torch.load(os.path.join(theirs, rel), weights_only=False)
                        a, b = tensor_of(ours), tensor_of(ref)
                        if torch.is_tensor(b) and b.dtype == a.dtype and b.shape == a.shape:
                            self.assertTrue(uo.bits_equal(a, b), rel)
                state = os.path.join(out, "zero", "optimizer_state.pt")
                if os.path.exists(state):
                    # Holds DeepSpeed classes (loss scaler, ZeroStageEnum), as DeepSpeed's own does:
                    # the weights-only unpickler refuses both alike, the full one loads both.
                    ours_wo = self._weights_only_error(state)
                    theirs_state = os.path.join(theirs, "zero", "optimizer_state.pt")
                    if os.path.exists(theirs_state):
                        self.assertEqual(ours_wo is None, self._weights_only_error(theirs_state) is None, ours_wo)
                    torch.load(state, weights_only=False)

    def test_resharded_native_files_load(self):
        for fixture_set, name, d in fixture_dirs():
            with uo.TempDir() as tmp, self.subTest(fixture=f"{fixture_set}/{name}"):
                out = os.path.join(tmp, "dp3")
                p = uo.run(["reshard", os.path.join(d, "checkpoint"), out, "--target-dp", "3", "--no-progress"], 2)
                self.assertEqual(p.returncode, 0, p.stderr)
                files = sorted(glob.glob(os.path.join(out, "global_step3", "*.pt")))
                self.assertGreaterEqual(len(files), 4)
                for f in files:
                    torch.load(f, weights_only=False, mmap=True)  # what DeepSpeed 0.19's loader does

    @staticmethod
    def _weights_only_error(path):
        try:
            torch.load(path, weights_only=True)
            return None
        except pickle.UnpicklingError as e:
            return str(e).splitlines()[0]


if __name__ == "__main__":
    print(f"torch {torch.__version__}", file=sys.stderr)
    unittest.main(verbosity=2)
