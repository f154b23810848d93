"""--config FILE end to end: each shipped preset gives byte-identical output to the flags it stands
for (and that output matches DeepSpeed's zero_to_fp32, read with torch); flags on the command line
win over the file; a bad key is one usage-error line (exit 2) with a hint, printed once at 2 ranks."""

import json
import os
import unittest

import torch

import ucp_oracle as uo

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CONFIGS = os.path.join(REPO, "configs")
FIXTURE = os.path.join(uo.DEEPSPEED, "gpt_z2_bf16_ws2")
CKPT = os.path.join(FIXTURE, "checkpoint")

# Preset -> the flags it is documented to stand for (README "Presets").
PRESETS = {
    "hf-safetensors.json": ["--format", "safetensors", "--max-shard-size", "5GB", "--dtype", "fp32"],
    "hf-bin-2gb.json": ["--format", "torch", "--max-shard-size", "2GB", "--dtype", "fp32"],
    "bf16-export.json": ["--format", "safetensors", "--max-shard-size", "5GB", "--dtype", "bf16"],
}


def tree(d):
    out = {}
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name), "rb") as f:
            out[name] = f.read()
    return out


class ConfigPresets(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ref = torch.load(os.path.join(FIXTURE, "fp32_reference.pt"), weights_only=False)

    def convert(self, tmp, name, args, ranks=2):
        out = os.path.join(tmp, name)
        r = uo.run(["to-fp32", CKPT, out] + args, ranks=ranks)
        self.assertEqual(r.returncode, 0, r.stderr)
        return out

    def check_values(self, out, fmt, dtype):
        sd, _ = uo.load_output(out, fmt)
        self.assertEqual(sorted(sd), sorted(self.ref))
        for name, want in self.ref.items():
            got = sd[name]
            if got.dtype == torch.bool:  # zero_to_fp32 turns the bool mask into float; we keep bool
                self.assertTrue(torch.equal(got.float(), want), name)
            else:
                self.assertTrue(uo.bits_equal(got, want.to(dtype)), name)

    def test_each_preset_equals_its_flags(self):
        self.assertEqual(sorted(PRESETS), sorted(n for n in os.listdir(CONFIGS) if n.endswith(".json")),
                         "every shipped preset is covered here")
        for preset, flags in PRESETS.items():
            with self.subTest(preset=preset), uo.TempDir() as tmp:
                with open(os.path.join(CONFIGS, preset)) as f:
                    keys = json.load(f)
                a = self.convert(tmp, "preset", ["--config", os.path.join(CONFIGS, preset)])
                b = self.convert(tmp, "flags", flags)
                self.assertEqual(tree(a), tree(b))
                dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[keys["dtype"]]
                self.check_values(a, keys["format"], dtype)

    def test_flags_win_and_sharding_from_the_file_applies(self):
        with uo.TempDir() as tmp:
            cfg = os.path.join(tmp, "small.json")
            with open(cfg, "w") as f:
                json.dump({"max-shard-size": "20KB", "dtype": "bf16", "format": "torch"}, f)
            a = self.convert(tmp, "mixed", ["--dtype", "fp32", "--config", cfg, "--format", "safetensors"], ranks=3)
            b = self.convert(tmp, "flags", ["--max-shard-size", "20KB", "--dtype", "fp32", "--format", "safetensors"], ranks=3)
            self.assertEqual(tree(a), tree(b))
            self.assertIn("model.safetensors.index.json", os.listdir(a), "20KB shards: the file's size applied")
            self.check_values(a, "safetensors", torch.float32)

    def test_unknown_key_is_one_usage_error_line(self):
        with uo.TempDir() as tmp:
            cfg = os.path.join(tmp, "typo.json")
            with open(cfg, "w") as f:
                f.write('{"format": "torch", "max_shard_sise": "2GB"}')
            out = os.path.join(tmp, "out")
            r = uo.run(["to-fp32", CKPT, out, "--config", cfg], ranks=2)
            self.assertEqual(r.returncode, uo.INVALID_ARGUMENT, r.stderr)
            lines = [l for l in r.stderr.splitlines() if l.startswith("ucp-reshard")]  # not mpirun's banner
            self.assertEqual(len(lines), 1, r.stderr)
            self.assertEqual(lines[0],
                             f"ucp-reshard to-fp32: error: '{cfg}': unknown key 'max_shard_sise' for 'to-fp32'; did you mean "
                             "'max_shard_size'? Valid keys: dry_run, dtype, exclude_frozen, format, hf_config, key_map, max_memory, "
                             "max_shard_size, model_config, no_progress, no_sync, overwrite, progress, restart, select, shared_output, tag, "
                             "timings, transport, with_optimizer")
            self.assertFalse(os.path.exists(out))

    def test_to_universal_takes_a_config_too(self):
        with uo.TempDir() as tmp:
            cfg = os.path.join(tmp, "u.json")
            with open(cfg, "w") as f:
                json.dump({"max_memory": "48MiB", "dry_run": True}, f)
            r = uo.run(["to-universal", CKPT, os.path.join(tmp, "u"), "--config", cfg], ranks=2)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertFalse(os.path.exists(os.path.join(tmp, "u")), "dry_run from the file: nothing written")
            self.assertIn("max memory 48MiB", r.stderr + r.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
