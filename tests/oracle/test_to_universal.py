"""to-universal against DeepSpeed's own ds_to_universal output, for every fixture at 1-4 ranks.

Oracles: each fixture's universal/ folder (DeepSpeed 0.14.5's ds_to_universal, read with
torch.load and, for optimizer_state.pt, pickle with inert stand-ins for DeepSpeed's classes);
fp32_reference.pt (zero_to_fp32); and, where DeepSpeed's converter fails (ZeRO-3 with several
sub-groups: gpt_z3_*), a numpy reconstruction written here from the raw optimizer files.

Allowed differences, both upstream bugs named in the fixtures README: gpt_z3_* has no upstream
output at all; in mlp_z3_*_ws4 DeepSpeed emits padding for `scale` (3 values for a 1x1 param):
ours must hold exactly numel values, equal to the first numel of DeepSpeed's.
"""

import filecmp
import glob
import math
import os
import unittest

import torch

import ucp_oracle as uo


# ------------------------------------------------------------------ DeepSpeed pickles without DeepSpeed
# (Debian's torch 1.13 ignores torch.load's pickle_module, so stand-in modules are installed instead.)

def load(path):
    return torch.load(path, weights_only=False)


def deep_equal(a, b, where=""):
    """Returns '' or the path of the first difference (tensors compared bit for bit)."""
    if torch.is_tensor(a) or torch.is_tensor(b):
        if not (torch.is_tensor(a) and torch.is_tensor(b)):
            return f"{where}: tensor vs {type(b).__name__}"
        if a.requires_grad != b.requires_grad:
            return f"{where}: requires_grad {a.requires_grad} vs {b.requires_grad}"
        return "" if uo.bits_equal(a.detach(), b.detach()) else f"{where}: tensor values"
    if isinstance(a, dict):
        if not isinstance(b, dict) or list(a) != list(b):
            return f"{where}: keys {list(a)} vs {list(b) if isinstance(b, dict) else type(b).__name__}"
        for k in a:
            d = deep_equal(a[k], b[k], f"{where}[{k!r}]")
            if d:
                return d
        return ""
    if isinstance(a, (list, tuple)):
        if type(a) is not type(b) or len(a) != len(b):
            return f"{where}: {a!r} vs {b!r}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = deep_equal(x, y, f"{where}[{i}]")
            if d:
                return d
        return ""
    if isinstance(a, uo.DeepSpeedStub) or isinstance(b, uo.DeepSpeedStub):
        if not (isinstance(a, uo.DeepSpeedStub) and isinstance(b, uo.DeepSpeedStub)) or type(a).__name__ != type(b).__name__:
            return f"{where}: {a!r} vs {b!r}"
        return deep_equal(a.__dict__, b.__dict__, f"{where}.{type(a).__name__}")
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return ""
    return "" if type(a) is type(b) and a == b else f"{where}: {a!r} vs {b!r}"


def checkpoint(fixture):
    return os.path.join(uo.DEEPSPEED, fixture, "checkpoint")


def zero3_reconstruction(fixture):
    """name -> {state: 1-D fp32 tensor of numel n}, from the raw ZeRO-3 files (independent math)."""
    tag = os.path.join(checkpoint(fixture), "global_step3")
    models = sorted(glob.glob(os.path.join(tag, "zero_pp_rank_*_model_states.pt")),
                    key=lambda p: int(os.path.basename(p).split("_")[3]))
    dp = len(models)
    shapes = load(models[0])["param_shapes"]
    optims = []
    for r in range(dp):
        path = glob.glob(os.path.join(tag, f"*zero_pp_rank_{r}_mp_rank_00_optim_states.pt"))[0]
        osd = load(path)["optimizer_state_dict"]
        state = osd["optimizer_state_dict"]["state"]
        optims.append({"fp32": osd["fp32_flat_groups"],
                       "exp_avg": [state[k]["exp_avg"] for k in range(len(osd["fp32_flat_groups"]))],
                       "exp_avg_sq": [state[k]["exp_avg_sq"] for k in range(len(osd["fp32_flat_groups"]))]})
    out = {}
    for k, group in enumerate(shapes):
        offset = 0
        for name, shape in group.items():
            n = math.prod(shape)
            p = -(-n // dp)
            out[name] = {key: torch.cat([optims[r][key][k].detach()[offset:offset + p] for r in range(dp)])[:n].clone()
                         for key in ("fp32", "exp_avg", "exp_avg_sq")}
            offset += p
    return out


class ToUniversal(unittest.TestCase):
    def convert(self, fixture, ranks, tmp, extra=()):
        out = os.path.join(tmp, "global_step3")
        p = uo.run(["to-universal", checkpoint(fixture), out, "--no-progress", *extra], ranks)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(os.path.join(tmp, "latest_universal")) as f:
            self.assertEqual(f.read(), "global_step3")
        return out

    def check_against_deepspeed(self, fixture, out):
        ref = os.path.join(uo.DEEPSPEED, fixture, "universal", "global_step3")
        zero3 = "_z3_" in fixture
        theirs = uo.file_tree(ref)
        if uo.CURRENT_STACK:
            # DeepSpeed 0.19's ds_to_universal also writes zero/<name>/fp32.pt ({'param': float32}) at
            # ZeRO-1/2 for every module entry that is not a trainable parameter (buffers, frozen
            # parameters, tied names); its universal loader reads none of them (a universal load
            # restores no module state). We write the layout of 0.14.5, which 0.19 loads: the extra
            # files must be exactly those names, and are then left aside.
            ms = uo.load_deepspeed_file(sorted(glob.glob(os.path.join(checkpoint(fixture), "global_step3",
                                                                      "*model_states.pt")))[0])
            trainable = {n for group in ms["param_shapes"] for n in group}
            extra = {os.path.join("zero", n, "fp32.pt") for n in ms["module"] if n not in trainable}
            self.assertEqual(theirs - uo.file_tree(out), set() if zero3 else extra, f"{fixture}: DeepSpeed 0.19's extra files")
            theirs -= extra
        self.assertEqual(uo.file_tree(out), theirs, f"{fixture}: file set")
        fp32_ref = torch.load(os.path.join(uo.DEEPSPEED, fixture, "fp32_reference.pt"), weights_only=False) if zero3 else None
        for rel in sorted(theirs):
            ours, their_file = os.path.join(out, rel), os.path.join(ref, rel)
            if not rel.startswith("zero" + os.sep):
                self.assertTrue(filecmp.cmp(ours, their_file, shallow=False), f"{fixture}: {rel} is a byte copy")
                continue
            a, b = load(ours), load(their_file)
            if rel.endswith("optimizer_state.pt"):
                self.assertEqual(deep_equal(a, b), "", f"{fixture}: {rel}")
                continue
            if zero3 and torch.is_tensor(b) and b.numel() != a.numel():
                # DeepSpeed's padding bug (a rank holding only padding still contributes a value).
                self.assertTrue(fixture.startswith("mlp_z3_") and fixture.endswith("_ws4"), f"{fixture}: {rel} size")
                name = rel.split(os.sep)[1]
                n = math.prod(fp32_ref[name].shape)
                self.assertEqual(a.numel(), n, f"{fixture}: {rel}")
                self.assertTrue(uo.bits_equal(a.detach(), b.detach()[:n]), f"{fixture}: {rel}")
                if rel.endswith("fp32.pt"):
                    self.assertTrue(uo.bits_equal(a.detach(), fp32_ref[name].flatten()), f"{fixture}: {rel} vs fp32_reference")
                self.assertEqual(a.requires_grad, b.requires_grad)
                continue
            self.assertEqual(deep_equal(a, b), "", f"{fixture}: {rel}")

    def test_fixtures_with_deepspeed_output(self):
        fixtures = [f for f in uo.fixture_names("to-universal")
                    if os.path.isdir(os.path.join(uo.DEEPSPEED, f, "universal", "global_step3"))]
        self.assertGreater(len(fixtures), 40)
        # Every fixture at 1 and 3 ranks; 2 and 4 ranks on every third one (runtime).
        for i, fixture in enumerate(fixtures):
            for ranks in ((1, 3, 2, 4) if i % 3 == 0 else (1, 3)):
                with self.subTest(fixture=fixture, ranks=ranks), uo.TempDir() as tmp:
                    self.check_against_deepspeed(fixture, self.convert(fixture, ranks, tmp))

    def test_zero3_scale_keeps_numel_values(self):
        for fixture in ("mlp_z3_fp32_ws4", "mlp_z3_bf16_ws4", "mlp_z3_fp16_ws4"):
            with self.subTest(fixture=fixture), uo.TempDir() as tmp:
                out = self.convert(fixture, 2, tmp)
                ref = torch.load(os.path.join(uo.DEEPSPEED, fixture, "fp32_reference.pt"), weights_only=False)
                for key in ("fp32", "exp_avg", "exp_avg_sq"):
                    t = load(os.path.join(out, "zero", "scale", key + ".pt"))
                    self.assertEqual(tuple(t.shape), (1,))
                self.assertTrue(uo.bits_equal(load(os.path.join(out, "zero", "scale", "fp32.pt")).detach(),
                                              ref["scale"].flatten()))

    def test_zero3_several_sub_groups(self):
        # DeepSpeed's converter fails on these; check against fp32_reference and a numpy-free
        # reconstruction from the raw partitions, and the file set against the ZeRO-3 layout.
        for fixture in [f for f in uo.fixture_names("to-universal") if f.startswith("gpt_z3_")]:
            ref = torch.load(os.path.join(uo.DEEPSPEED, fixture, "fp32_reference.pt"), weights_only=False)
            want = zero3_reconstruction(fixture)
            for ranks in ((1, 4) if fixture.endswith("ws2") else (3,)):
                with self.subTest(fixture=fixture, ranks=ranks), uo.TempDir() as tmp:
                    out = self.convert(fixture, ranks, tmp)
                    tag = os.path.join(checkpoint(fixture), "global_step3")
                    models = {os.path.basename(p) for p in glob.glob(os.path.join(tag, "*model_states.pt"))}
                    expected = {os.path.join("zero", "optimizer_state.pt")} | models
                    expected |= {os.path.join("zero", n, k + ".pt") for n in want for k in ("fp32", "exp_avg", "exp_avg_sq")}
                    self.assertEqual(uo.file_tree(out), expected)
                    for name, states in want.items():
                        for key, value in states.items():
                            t = load(os.path.join(out, "zero", name, key + ".pt"))
                            self.assertEqual(t.requires_grad, key == "fp32")
                            self.assertTrue(uo.bits_equal(t.detach(), value), f"{fixture}: {name}/{key}")
                        # bf16 master weights: zero_to_fp32 widens them (exactly); the universal file keeps bf16.
                        master = load(os.path.join(out, "zero", name, "fp32.pt")).detach()
                        self.assertTrue(uo.bits_equal(master.to(ref[name].dtype), ref[name].flatten()),
                                        f"{fixture}: {name} vs fp32_reference")
                    osd = load(os.path.join(out, "zero", "optimizer_state.pt"))
                    orig = load(glob.glob(os.path.join(tag, "*zero_pp_rank_0_mp_rank_00_optim_states.pt"))[0])["optimizer_state_dict"]
                    self.assertEqual(list(osd), list(orig) + ["param_groups"])
                    self.assertEqual(deep_equal(osd["param_groups"], orig["optimizer_state_dict"]["param_groups"]), "")

    def test_small_memory_bound_and_dry_run(self):
        fixture = "gpt_z2_fp16_ws4"
        with uo.TempDir() as tmp:
            out = os.path.join(tmp, "global_step3")
            p = uo.run(["to-universal", checkpoint(fixture), out, "--dry-run"], 3)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("zero/wte.weight/fp32.pt", p.stdout)
            self.assertRegex(p.stdout, r"\.\.\. and \d+ more file\(s\)")  # 3 files per parameter, listing capped
            self.assertIn("plus latest_universal", p.stdout)
            self.assertEqual(os.listdir(tmp), [])
        with uo.TempDir() as tmp:
            out = self.convert(fixture, 4, tmp, ("--max-memory", "32MiB", "--timings"))
            self.check_against_deepspeed(fixture, out)

    def test_existing_output_refused_on_every_rank(self):
        with uo.TempDir() as tmp:
            out = os.path.join(tmp, "global_step3")
            os.makedirs(out)
            with open(os.path.join(out, "keep"), "w") as f:
                f.write("x")
            p = uo.run(["to-universal", checkpoint("mlp_z1_fp32_ws2"), out], 2)
            self.assertNotEqual(p.returncode, 0)
            self.assertEqual(os.listdir(out), ["keep"])
            self.assertFalse(os.path.exists(os.path.join(tmp, "latest_universal")))


if __name__ == "__main__":
    unittest.main()
