"""to-fp32 against DeepSpeed's own zero_to_fp32 output, for every real fixture at 1-4 ranks.

Oracles: fp32_reference.pt (DeepSpeed's zero_to_fp32, read with torch.load); for BF16_Optimizer
checkpoints, where zero_to_fp32 fails, DeepSpeed's universal fp32.pt files; the checkpoint's own
module tensors (read with torch.load and stubbed DeepSpeed classes) for dtypes of buffers and for
frozen parameters zero_to_fp32 drops. Our safetensors output is read with json + numpy, our .bin
output with torch.load(weights_only=True).

Allowed differences from zero_to_fp32, all improvements listed in the issue and fixtures README:
ZeRO-1 / BF16_Optimizer frozen parameters present; integer and bool buffers keep their dtype;
frozen parameters upcast to fp32 losslessly.
"""

import glob
import json
import os
import unittest

import torch

import ucp_oracle as uo


def model_file(fixture):
    files = sorted(glob.glob(os.path.join(uo.DEEPSPEED, fixture, "checkpoint", "global_step3", "*model_states.pt")))
    return files[0]


class Expected:
    """What a correct consolidation of one fixture contains."""

    def __init__(self, fixture):
        self.fixture = fixture
        d = os.path.join(uo.DEEPSPEED, fixture)
        ms = uo.load_deepspeed_file(model_file(fixture))
        self.module = ms["module"]
        self.buffers = list(ms["buffer_names"])
        self.trainable = [n for group in ms["param_shapes"] for n in group]
        self.shapes = {n: tuple(s) for group in ms["param_shapes"] for n, s in group.items()}
        self.shared = dict(ms["shared_params"] or {})
        frozen_shapes = ms.get("frozen_param_shapes")
        if frozen_shapes:
            self.frozen = list(frozen_shapes)
        else:
            skip = set(self.trainable) | set(self.buffers) | set(self.shared)
            self.frozen = [n for n in self.module if n not in skip]
        self.zero3 = "_z3_" in fixture
        ref = os.path.join(d, "fp32_reference.pt")
        self.ref = torch.load(ref, weights_only=False) if os.path.exists(ref) else None
        self.universal = os.path.join(d, "universal", "global_step3", "zero")

    def names(self, exclude_frozen=False):
        names = self.buffers[:] + ([] if exclude_frozen else self.frozen) + self.trainable
        names = [n for n in names if n in self.module or n in self.trainable]
        aliases = [a for a, s in self.shared.items() if s in names]
        return [n for n in self.buffers if n in self.module] + ([] if exclude_frozen else self.frozen) + self.trainable + aliases

    def trainable_value(self, name):
        if self.ref is not None:
            return self.ref[name]
        param = torch.load(os.path.join(self.universal, name, "fp32.pt"), weights_only=False)["param"]
        return param.reshape(self.shapes[name])

    def frozen_value(self, name):
        if self.ref is not None and name in self.ref:
            return self.ref[name].float()
        if self.zero3:
            raise AssertionError("ZeRO-3 frozen params are always in the reference")
        return self.module[name].float()


class ToFp32Fixtures(unittest.TestCase):
    def check(self, exp, out, fmt="safetensors", exclude_frozen=False, dtype=torch.float32):
        sd, _ = uo.load_output(out, fmt)
        want = exp.names(exclude_frozen)
        self.assertEqual(list(sorted(sd)), sorted(want), f"{exp.fixture}: key set")
        cast = (lambda t: t) if dtype == torch.float32 else (lambda t: t.to(dtype))
        for name in exp.trainable:
            self.assertTrue(uo.bits_equal(sd[name], cast(exp.trainable_value(name))), f"{exp.fixture}: {name}")
        for name in exp.buffers:
            if name not in exp.module:
                continue
            m = exp.module[name]
            if m.is_floating_point():
                self.assertTrue(uo.bits_equal(sd[name], cast(m.float())), f"{exp.fixture}: buffer {name}")
                if exp.ref is not None:
                    self.assertTrue(uo.bits_equal(sd[name], cast(exp.ref[name])), f"{exp.fixture}: buffer {name} vs reference")
            else:
                self.assertEqual(sd[name].dtype, m.dtype, f"{exp.fixture}: buffer {name} keeps its dtype")
                self.assertTrue(torch.equal(sd[name], m), f"{exp.fixture}: buffer {name}")
                if exp.ref is not None:
                    self.assertTrue(torch.equal(sd[name].float(), exp.ref[name]), f"{exp.fixture}: {name} vs reference")
        if not exclude_frozen:
            for name in exp.frozen:
                self.assertTrue(uo.bits_equal(sd[name], cast(exp.frozen_value(name))), f"{exp.fixture}: frozen {name}")
        for alias, source in exp.shared.items():
            if source in sd:
                self.assertTrue(uo.bits_equal(sd[alias], sd[source]), f"{exp.fixture}: alias {alias}")
        return sd

    def test_every_fixture_at_1_to_4_ranks(self):
        for fixture in uo.fixture_names("to-fp32"):
            exp = Expected(fixture)
            for ranks in (1, 2, 3, 4):
                with self.subTest(fixture=fixture, ranks=ranks), uo.TempDir() as tmp:
                    out = os.path.join(tmp, "out")
                    p = uo.run(["to-fp32", os.path.join(uo.DEEPSPEED, fixture, "checkpoint"), out, "--no-progress"], ranks)
                    self.assertEqual(p.returncode, 0, p.stderr)
                    self.check(exp, out)

    def test_torch_format_shares_tied_storage(self):
        for fixture in ("mlp_z1_fp16_ws2", "mlp_z3_bf16_ws4", "gpt_z2_fp32_ws4", "gpt_z1_bf16_bf16opt_ws2"):
            exp = Expected(fixture)
            for ranks in (1, 3):
                with self.subTest(fixture=fixture, ranks=ranks), uo.TempDir() as tmp:
                    out = os.path.join(tmp, "out")
                    p = uo.run(["to-fp32", os.path.join(uo.DEEPSPEED, fixture, "checkpoint"), out, "--format", "torch"], ranks)
                    self.assertEqual(p.returncode, 0, p.stderr)
                    sd = self.check(exp, out, fmt="torch")
                    for alias, source in exp.shared.items():
                        self.assertEqual(sd[alias].data_ptr(), sd[source].data_ptr(), f"{alias} shares {source}'s storage")

    def test_sharding_and_index(self):
        fixture = "gpt_z3_fp16_ws4"
        exp = Expected(fixture)
        for fmt, suffix in (("safetensors", "safetensors"), ("torch", "bin")):
            for ranks in (1, 3):
                with self.subTest(fmt=fmt, ranks=ranks), uo.TempDir() as tmp:
                    out = os.path.join(tmp, "out")
                    p = uo.run(["to-fp32", os.path.join(uo.DEEPSPEED, fixture, "checkpoint"), out, "--format", fmt,
                                "--max-shard-size", "5KB"], ranks)
                    self.assertEqual(p.returncode, 0, p.stderr)
                    self.check(exp, out, fmt=fmt)
                    index_name = "model.safetensors.index.json" if fmt == "safetensors" else "pytorch_model.bin.index.json"
                    with open(os.path.join(out, index_name)) as f:
                        text = f.read()
                    index = json.loads(text)
                    self.assertEqual(text, json.dumps(index, indent=2, sort_keys=True) + "\n", "index formatting")
                    shards = sorted(set(index["weight_map"].values()))
                    self.assertGreater(len(shards), 3)
                    n = len(shards)
                    stem = "model" if fmt == "safetensors" else "pytorch_model"
                    self.assertEqual(shards, [f"{stem}-{i:05d}-of-{n:05d}.{suffix}" for i in range(1, n + 1)])
                    self.assertEqual(sorted(os.listdir(out)), sorted(shards + [index_name]))
                    # A shard exceeds the limit only when it holds a single tensor larger than it.
                    per_shard = {}
                    for k, v in index["weight_map"].items():
                        per_shard.setdefault(v, []).append(k)
                    sd, _ = uo.load_output(out, fmt)
                    total = 0
                    seen = set()
                    for shard, names in per_shard.items():
                        size = 0
                        limit_size = 0  # HF counts tied names once: a safetensors alias copy rides along
                        for k in names:
                            key = sd[k].data_ptr() if fmt == "torch" else k
                            if key in seen:
                                continue
                            seen.add(key)
                            size += sd[k].numel() * sd[k].element_size()
                            if k not in exp.shared:
                                limit_size += sd[k].numel() * sd[k].element_size()
                        total += size
                        if limit_size > 5000:
                            self.assertEqual(len([k for k in names if k not in exp.shared]), 1, shard)
                    self.assertEqual(index["metadata"]["total_size"], total)

    def test_dtype_cast_and_exclude_frozen(self):
        for fixture in ("mlp_z2_fp32_ws2", "mlp_z3_fp16_ws4", "gpt_z1_bf16_ws2"):
            exp = Expected(fixture)
            for dtype_name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
                with self.subTest(fixture=fixture, dtype=dtype_name), uo.TempDir() as tmp:
                    out = os.path.join(tmp, "out")
                    p = uo.run(["to-fp32", os.path.join(uo.DEEPSPEED, fixture, "checkpoint"), out, "--dtype", dtype_name,
                                "--exclude-frozen"], 2)
                    self.assertEqual(p.returncode, 0, p.stderr)
                    self.check(exp, out, exclude_frozen=True, dtype=dtype)

    def test_dry_run_writes_nothing(self):
        with uo.TempDir() as tmp:
            out = os.path.join(tmp, "out")
            p = uo.run(["to-fp32", os.path.join(uo.DEEPSPEED, "gpt_z2_bf16_ws4", "checkpoint"), out, "--dry-run"], 3)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertFalse(os.path.exists(out))
            self.assertIn("model.safetensors", p.stdout)
            for r in range(3):
                self.assertRegex(p.stdout, rf"\n  {r} ")
            self.assertEqual(os.listdir(tmp), [])


if __name__ == "__main__":
    unittest.main()
