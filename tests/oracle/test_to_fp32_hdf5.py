"""to-fp32 --format hdf5 read back with h5py, against independent oracles.

Oracles: the safetensors output of the same command (itself checked against DeepSpeed's
zero_to_fp32 by test_to_fp32.py), read with json + numpy; the state-dict order and tied names from
the checkpoint's own model-state pickle (torch.load with stubbed DeepSpeed classes); for
--with-optimizer, the universal checkpoint DeepSpeed's ds_to_universal.py wrote for the fixture
(zero/<param>/{fp32,exp_avg,exp_avg_sq,step}.pt, read with torch.load).
"""

import json
import os
import subprocess
import unittest

import h5py
import numpy as np
import torch

import ucp_oracle as uo
from test_to_fp32 import Expected, model_file


def read_h5(path):
    """name -> torch tensor from /model (bf16 decoded from the uint16 + dtype attribute convention)."""
    out = {}
    with h5py.File(path, "r") as f:
        for name, d in f["model"].items():
            arr = np.array(d[()])  # 0-d datasets come back as numpy scalars
            if d.attrs.get("dtype") == "bfloat16":
                assert d.dtype == np.uint16, f"{name}: bf16 stored as {d.dtype}"
                out[name] = torch.from_numpy(arr.view(np.int16)).view(torch.bfloat16)
            else:
                out[name] = torch.from_numpy(arr)
    return out


def decode_bf16_as_readme_says(d):
    """The README recipe, numpy only: widen the bit patterns and view them as float32."""
    return (np.asarray(d[()]).astype(np.uint32) << 16).view(np.float32)


def run_ok(test, args, ranks):
    p = uo.run([*args, "--no-progress"], ranks)
    test.assertEqual(p.returncode, 0, p.stderr)
    return p


def ckpt_dir(fixture):
    return os.path.join(uo.DEEPSPEED, fixture, "checkpoint")


class Hdf5Output(unittest.TestCase):
    def compare(self, h5_path, sd, label):
        h5 = read_h5(h5_path)
        self.assertEqual(sorted(h5), sorted(sd), f"{label}: key set")
        for name, t in sd.items():
            self.assertTrue(uo.bits_equal(h5[name], t), f"{label}: {name} ({h5[name].dtype} {tuple(h5[name].shape)} "
                                                        f"vs {t.dtype} {tuple(t.shape)})")
        return h5

    def check_structure(self, h5_path, fixture, exclude_frozen=False):
        """Order, tied names as hard links, attributes, and one contiguous allocated range per dataset."""
        exp = Expected(fixture)
        ms = uo.load_deepspeed_file(model_file(fixture))
        with h5py.File(h5_path, "r") as f:
            model = f["model"]
            self.assertEqual(list(model), exp.names(exclude_frozen), f"{fixture}: datasets in state-dict order")
            tied = json.loads(model.attrs["tied_aliases"])
            want_tied = {a: s for a, s in exp.shared.items() if s in model}
            self.assertEqual(tied, want_tied, f"{fixture}: tied_aliases")
            for alias, source in tied.items():
                self.assertEqual(model[alias], model[source], f"{fixture}: {alias} is a hard link to {source}")
            a = f.attrs
            self.assertEqual(a["tag"], "global_step3")
            self.assertEqual(a["source_checkpoint"], os.path.normpath(os.path.abspath(
                os.path.join(ckpt_dir(fixture), "global_step3"))))
            self.assertEqual(a["deepspeed_version"], ms["ds_version"])
            # BF16_Optimizer files record no zero_stage: 0, as the checkpoint metadata says.
            stage = 0 if "bf16opt" in fixture else int(fixture.split("_z", 1)[1][0])
            self.assertEqual(a["zero_stage"], stage)
            self.assertEqual(a["optimizer_wrapper"], "BF16_Optimizer" if "bf16opt" in fixture else
                             "DeepSpeedZeroOptimizer_Stage3" if stage == 3 else "DeepSpeedZeroOptimizer")
            self.assertEqual(a["dp_world_size"], int(fixture.rsplit("_ws", 1)[1]))
            self.assertTrue(a["producer"].startswith("ucp-reshard "))
            for name, d in model.items():
                dcpl = d.id.get_create_plist()
                self.assertEqual(dcpl.get_layout(), h5py.h5d.CONTIGUOUS, name)
                self.assertEqual(dcpl.get_fill_time(), h5py.h5d.FILL_TIME_NEVER, name)
                if d.size:
                    self.assertIsNotNone(d.id.get_offset(), f"{name}: allocated")

    def test_every_fixture_equals_safetensors(self):
        # Both models, every stage / precision / wrapper (one saved world size each, rotating), at
        # rank counts rotating through 1..4; the safetensors reference at 1 rank.
        fixtures = uo.fixture_names("to-fp32")
        combos = sorted({f.rsplit("_ws", 1)[0] for f in fixtures})
        for i, combo in enumerate(combos):
            sizes = sorted(f for f in fixtures if f.rsplit("_ws", 1)[0] == combo)
            fixture = sizes[i % len(sizes)]
            ranks = i % 4 + 1
            with self.subTest(fixture=fixture, ranks=ranks), uo.TempDir() as tmp:
                run_ok(self, ["to-fp32", ckpt_dir(fixture), os.path.join(tmp, "st")], 1)
                run_ok(self, ["to-fp32", ckpt_dir(fixture), os.path.join(tmp, "h5"), "--format", "hdf5"], ranks)
                self.assertEqual(os.listdir(os.path.join(tmp, "h5")), ["model.h5"])
                sd, _ = uo.load_output(os.path.join(tmp, "st"))
                self.compare(os.path.join(tmp, "h5", "model.h5"), sd, f"{fixture} np{ranks}")
                self.check_structure(os.path.join(tmp, "h5", "model.h5"), fixture)

    def test_one_fixture_per_stage_at_1_to_4_ranks(self):
        # gpt1g (ZeRO-3, one param group): ws4 in the DeepSpeed 0.14.5 set, ws2 in the 0.19 set.
        gpt1g = "gpt1g_z3_bf16_ws2" if uo.CURRENT_STACK else "gpt1g_z3_bf16_ws4"
        for fixture in ("mlp_z1_fp16_ws2", "gpt_z1_bf16_bf16opt_ws4", "gpt_z2_fp32_ws4", gpt1g):
            with uo.TempDir() as tmp:
                run_ok(self, ["to-fp32", ckpt_dir(fixture), os.path.join(tmp, "st")], 1)
                sd, _ = uo.load_output(os.path.join(tmp, "st"))
                for ranks in (1, 2, 3, 4):
                    with self.subTest(fixture=fixture, ranks=ranks):
                        out = os.path.join(tmp, f"h5_{ranks}")
                        run_ok(self, ["to-fp32", ckpt_dir(fixture), out, "--format", "hdf5"], ranks)
                        self.compare(os.path.join(out, "model.h5"), sd, f"{fixture} np{ranks}")

    def test_bf16_and_fp16_output_and_exclude_frozen(self):
        for fixture in ("mlp_z3_fp16_ws4", "gpt_z1_bf16_ws2"):
            for dtype, np_dtype in (("bf16", np.uint16), ("fp16", np.float16)):
                with self.subTest(fixture=fixture, dtype=dtype), uo.TempDir() as tmp:
                    args = ["--dtype", dtype, "--exclude-frozen"]
                    run_ok(self, ["to-fp32", ckpt_dir(fixture), os.path.join(tmp, "st"), *args], 1)
                    run_ok(self, ["to-fp32", ckpt_dir(fixture), os.path.join(tmp, "h5"), "--format", "hdf5", *args], 3)
                    sd, _ = uo.load_output(os.path.join(tmp, "st"))
                    path = os.path.join(tmp, "h5", "model.h5")
                    self.compare(path, sd, f"{fixture} {dtype}")
                    self.check_structure(path, fixture, exclude_frozen=True)
                    with h5py.File(path, "r") as f:
                        self.assertEqual(f.attrs["float_dtype"], {"bf16": "bfloat16", "fp16": "float16"}[dtype])
                        floats = [n for n, t in sd.items() if t.is_floating_point()]
                        self.assertTrue(floats)
                        for n in floats:
                            d = f["model"][n]
                            self.assertEqual(d.dtype, np_dtype, n)
                            if dtype == "bf16":
                                self.assertEqual(d.attrs["dtype"], "bfloat16", n)
                                got = decode_bf16_as_readme_says(d)
                                want = sd[n].float().numpy()
                                self.assertEqual(got.tobytes(), want.tobytes(), f"{n}: README bf16 recipe")
                            else:
                                self.assertNotIn("dtype", d.attrs, n)
                        for n, t in sd.items():
                            if not t.is_floating_point():
                                self.assertEqual(f["model"][n].dtype, t.numpy().dtype, f"{n} keeps its dtype")

    def test_with_optimizer_matches_deepspeed_universal(self):
        for fixture, ranks in (("gpt_z2_fp16_ws2", 3), ("mlp_z1_bf16_bf16opt_ws4", 2), ("gpt1g_z3_bf16_ws2" if uo.CURRENT_STACK else "gpt1g_z3_fp32_ws2", 4),
                               ("mlp_z3_bf16_ws4", 1)):
            with self.subTest(fixture=fixture, ranks=ranks), uo.TempDir() as tmp:
                out = os.path.join(tmp, "h5")
                run_ok(self, ["to-fp32", ckpt_dir(fixture), out, "--format", "hdf5", "--with-optimizer"], ranks)
                run_ok(self, ["to-fp32", ckpt_dir(fixture), os.path.join(tmp, "st")], 1)
                sd, _ = uo.load_output(os.path.join(tmp, "st"))
                path = os.path.join(out, "model.h5")
                self.compare(path, sd, fixture)  # the model part is unchanged
                exp = Expected(fixture)
                zero = os.path.join(uo.DEEPSPEED, fixture, "universal", "global_step3", "zero")
                with h5py.File(path, "r") as f:
                    opt = f["optimizer"]
                    self.assertEqual(list(opt), exp.trainable)
                    for name in exp.trainable:
                        g = opt[name]
                        self.assertEqual(list(g), ["fp32", "exp_avg", "exp_avg_sq"], name)
                        for state in ("fp32", "exp_avg", "exp_avg_sq"):
                            ref = torch.load(os.path.join(zero, name, state + ".pt"), weights_only=False)
                            ref = (ref["param"] if isinstance(ref, dict) else ref).detach()
                            # ZeRO-3's files are flat, and DeepSpeed pads a parameter some ranks hold
                            # none of (README "to-universal"): its first numel values are the state.
                            numel = int(np.prod(exp.shapes[name]))
                            ref = ref.flatten()[:numel].reshape(exp.shapes[name]).numpy()
                            got = g[state][()]
                            self.assertEqual(got.dtype, np.float32)
                            self.assertEqual(got.shape, tuple(exp.shapes[name]), f"{name}/{state}")
                            self.assertEqual(got.tobytes(), ref.tobytes(), f"{fixture}: {name}/{state}")
                        step_file = os.path.join(zero, name, "step.pt")
                        if os.path.exists(step_file):
                            self.assertEqual(float(g.attrs["step"]), float(torch.load(step_file, weights_only=False)), name)
                        else:
                            self.assertEqual(float(g.attrs["step"]), 3.0, f"{name}: 3 steps were taken")

    def test_multi_round_generated_checkpoint(self):
        # Many rounds (a small --max-memory) and tensors split across rounds and ranks: only a
        # generated checkpoint is big enough. ucp-bench-gen is part of the default build.
        gen = os.path.join(os.environ.get("UCP_BUILD_DIR", ""), "ucp-bench-gen")
        if not os.path.exists(gen):
            self.skipTest("ucp-bench-gen not built")
        with uo.TempDir() as tmp:
            ck = os.path.join(tmp, "ck")
            subprocess.run([gen, "--out", ck, "--params", "12M", "--stage", "3", "--precision", "bf16", "--dp", "3"],
                           check=True, stdout=subprocess.DEVNULL)
            run_ok(self, ["to-fp32", ck, os.path.join(tmp, "st")], 1)
            sd, _ = uo.load_output(os.path.join(tmp, "st"))
            for ranks in (2, 4):
                with self.subTest(ranks=ranks):
                    out = os.path.join(tmp, f"h5_{ranks}")
                    p = run_ok(self, ["to-fp32", ck, out, "--format", "hdf5", "--max-memory", "32MiB", "--dry-run"], ranks)
                    rounds = int(p.stdout.split(" round(s)")[0].rsplit(" ", 1)[1])
                    self.assertGreater(rounds, 1, p.stdout)
                    run_ok(self, ["to-fp32", ck, out, "--format", "hdf5", "--max-memory", "32MiB"], ranks)
                    self.compare(os.path.join(out, "model.h5"), sd, f"generated np{ranks}")

    def test_dry_run_writes_nothing(self):
        with uo.TempDir() as tmp:
            out = os.path.join(tmp, "out")
            p = run_ok(self, ["to-fp32", ckpt_dir("gpt_z2_bf16_ws4"), out, "--format", "hdf5", "--dry-run"], 3)
            self.assertIn("model.h5", p.stdout)
            self.assertIn("written by every rank", p.stdout)
            self.assertEqual(os.listdir(tmp), [])


class Hdf5Errors(uo.BadInputCase):
    def test_existing_output_is_refused_and_left_alone(self):
        out = os.path.join(self.tmp, "out")
        untouched = self.existing_output(out)
        self.check_failure(["to-fp32", self.ckpt, out, "--format", "hdf5"], uo.FAILED_PRECONDITION,
                           ["exists and is not empty"], self.tmp, {"ckpt", "out"})
        untouched()

    def test_max_shard_size_is_refused_with_hdf5(self):
        out = os.path.join(self.tmp, "out")
        self.check_failure(["to-fp32", self.ckpt, out, "--format", "hdf5", "--max-shard-size", "1GB"],
                           uo.INVALID_ARGUMENT, ["--max-shard-size", "hdf5"], self.tmp, {"ckpt"})

    def test_with_optimizer_needs_hdf5(self):
        out = os.path.join(self.tmp, "out")
        self.check_failure(["to-fp32", self.ckpt, out, "--with-optimizer"], uo.INVALID_ARGUMENT,
                           ["--with-optimizer", "hdf5"], self.tmp, {"ckpt"})

    def test_corrupt_source_leaves_no_output(self):
        victim = sorted(n for n in os.listdir(self.tag_dir) if "optim_states" in n)[-1]
        path = os.path.join(self.tag_dir, victim)
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) - 200)
        self.check_failure(["to-fp32", self.ckpt, os.path.join(self.tmp, "out"), "--format", "hdf5"], uo.DATA_LOSS,
                           [victim], self.tmp, {"ckpt"})

if __name__ == "__main__":
    unittest.main()
