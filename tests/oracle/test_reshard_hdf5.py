"""The HDF5 file of `to-fp32 --format hdf5 --with-optimizer` as a universal checkpoint, and as a
state dict for diff and inspect, against independent oracles.

Oracles: `reshard` of the ZeRO original (itself checked against DeepSpeed's files by
test_reshard_*.py), compared file by file with torch.load (reshard_checks); the to-universal output
of the same checkpoint, read byte for byte next to h5py's view of the /universal datasets; h5py to
damage a file (one changed value, a missing group).
"""

import os
import subprocess
import unittest

import h5py
import numpy as np

import reshard_checks as C
import ucp_oracle as U

# (fixture, ranks for to-fp32): ZeRO-1/2/3 (gpt_z3: two param groups), BF16_Optimizer, fp16.
FIXTURES = (("gpt_z2_fp16_ws2", 2), ("mlp_z1_bf16_bf16opt_ws2", 1), ("gpt_z1_fp32_ws1", 1),
            ("gpt_z3_bf16_ws2", 2), ("mlp_z3_fp16_ws4", 3))
STATE_FILES = {"fp32.pt", "exp_avg.pt", "exp_avg_sq.pt"}


def hdf5_built():
    p = subprocess.run([U.UCP, "--version"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return "HDF5" in p.stdout


def ckpt_dir(fixture):
    return os.path.join(U.DEEPSPEED, fixture, "checkpoint")


def run_ok(test, args, ranks=1):
    p = U.run([*args, "--no-progress"], ranks)
    test.assertEqual(p.returncode, 0, p.stderr)
    return p


def to_hdf5(test, fixture, out, ranks, with_optimizer=True):
    args = ["to-fp32", ckpt_dir(fixture), out, "--format", "hdf5"] + (["--with-optimizer"] if with_optimizer else [])
    run_ok(test, args, ranks)
    return os.path.join(out, "model.h5")


def universal_datasets(path):
    """relative path -> bytes of every dataset under /universal (h5py)."""
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                test_layout = obj.id.get_create_plist().get_layout()
                assert test_layout == h5py.h5d.CONTIGUOUS, f"{name} is not contiguous"
                assert obj.dtype == np.uint8 and obj.ndim == 1, f"{name}: {obj.dtype} {obj.shape}"
                out[name] = obj[()].tobytes()
        f["universal"].visititems(visit)
    return out


@unittest.skipUnless(U.UCP and hdf5_built(), "ucp-reshard built without HDF5")
class ReshardFromHdf5(unittest.TestCase):
    def test_reshard_from_hdf5_equals_reshard_from_zero(self):
        for fixture, ranks in FIXTURES:
            with self.subTest(fixture=fixture), U.TempDir() as tmp:
                h5 = to_hdf5(self, fixture, os.path.join(tmp, "h5"), ranks)
                for m, reshard_ranks in ((1, 2), (3, 1)):
                    native = os.path.join(tmp, f"zero-{m}")
                    C.reshard(ckpt_dir(fixture), native, m, ranks=1)
                    # SRC as the file, and as the folder holding model.h5.
                    src = h5 if m == 1 else os.path.dirname(h5)
                    out = os.path.join(tmp, f"hdf5-{m}")
                    C.reshard(src, out, m, ranks=reshard_ranks)
                    a, b = C.files(native), C.files(out)
                    self.assertEqual(sorted(a), sorted(b), f"{fixture} dp {m}")
                    for name in a:
                        C.compare_values(self, C.load(a[name]), C.load(b[name]), f"{fixture} dp {m}: {name}")
                    with open(os.path.join(native, "latest")) as x, open(os.path.join(out, "latest")) as y:
                        self.assertEqual(x.read(), y.read())

    def test_universal_datasets_are_the_to_universal_files(self):
        for fixture, ranks in (("gpt_z2_fp16_ws2", 2), ("mlp_z3_fp16_ws4", 1), ("mlp_z1_bf16_bf16opt_ws2", 1)):
            with self.subTest(fixture=fixture), U.TempDir() as tmp:
                h5 = to_hdf5(self, fixture, os.path.join(tmp, "h5"), ranks)
                universal = os.path.join(tmp, "u", "global_step3")
                run_ok(self, ["to-universal", ckpt_dir(fixture), universal], 2)
                expected = {}
                for root, _, names in os.walk(universal):
                    for n in names:
                        if n not in STATE_FILES:
                            rel = os.path.relpath(os.path.join(root, n), universal)
                            with open(os.path.join(root, n), "rb") as f:
                                expected[rel] = f.read()
                got = universal_datasets(h5)
                self.assertEqual(sorted(got), sorted(expected), fixture)
                for rel in expected:
                    self.assertEqual(got[rel], expected[rel], f"{fixture}: {rel} differs from to-universal's")
                # Model-state files are the source's bytes.
                for n in os.listdir(os.path.join(ckpt_dir(fixture), "global_step3")):
                    if "model_states" in n:
                        with open(os.path.join(ckpt_dir(fixture), "global_step3", n), "rb") as f:
                            self.assertEqual(got[n], f.read(), n)


@unittest.skipUnless(U.UCP and hdf5_built(), "ucp-reshard built without HDF5")
class DiffAndInspectHdf5(unittest.TestCase):
    def test_diff(self):
        fixture = "gpt_z2_bf16_ws2"  # bf16 tensors, a bool buffer, tied names
        with U.TempDir() as tmp:
            a = to_hdf5(self, fixture, os.path.join(tmp, "a"), 2, with_optimizer=False)
            b = to_hdf5(self, fixture, os.path.join(tmp, "b"), 1)
            for dtype in ("bf16", "fp32"):
                run_ok(self, ["to-fp32", ckpt_dir(fixture), os.path.join(tmp, "st-" + dtype), "--dtype", dtype])
            run_ok(self, ["to-fp32", ckpt_dir(fixture), os.path.join(tmp, "h5-bf16"), "--format", "hdf5", "--dtype", "bf16"])
            cases = [(a, b), (a, os.path.join(tmp, "st-fp32")), (os.path.dirname(b), os.path.join(tmp, "st-fp32")),
                     (os.path.join(tmp, "h5-bf16", "model.h5"), os.path.join(tmp, "st-bf16"))]
            for x, y in cases:
                p = U.run(["diff", x, y])
                self.assertEqual(p.returncode, 0, f"{x} vs {y}:\n{p.stdout}{p.stderr}")
            with h5py.File(a, "r") as f:
                names = list(f["model"])
            sd, _ = U.load_output(os.path.join(tmp, "st-fp32"))
            self.assertEqual(sorted(names), sorted(sd))
            # One changed value: diff fails and names the tensor.
            victim = next(n for n in names if sd[n].is_floating_point() and sd[n].numel() > 1)
            with h5py.File(a, "r+") as f:
                d = f["model"][victim]
                flat = d[()].reshape(-1)
                flat[1] = flat[1] + 1
                d[...] = flat.reshape(d.shape)
            for other in (b, os.path.join(tmp, "st-fp32")):
                p = U.run(["diff", a, other])
                self.assertNotEqual(p.returncode, 0, p.stdout)
                self.assertIn(victim, p.stdout + p.stderr)
                self.assertIn("1 of", p.stdout + p.stderr)

    def test_inspect_lists_the_model(self):
        fixture = "gpt_z2_bf16_ws2"
        with U.TempDir() as tmp:
            run_ok(self, ["to-fp32", ckpt_dir(fixture), os.path.join(tmp, "h5"), "--format", "hdf5", "--dtype", "bf16"])
            p = U.run(["inspect", os.path.join(tmp, "h5", "model.h5")])
            self.assertEqual(p.returncode, 0, p.stderr)
            with h5py.File(os.path.join(tmp, "h5", "model.h5"), "r") as f:
                for name, d in f["model"].items():
                    dtype = "bf16" if d.attrs.get("dtype") == "bfloat16" else None
                    line = next((l for l in p.stdout.splitlines() if l.strip().startswith(f'"{name}":')), None)
                    self.assertIsNotNone(line, f"{name} not listed:\n{p.stdout}")
                    self.assertIn("[" + ", ".join(str(n) for n in d.shape) + "]", line)
                    if dtype:
                        self.assertIn(dtype, line)


@unittest.skipUnless(U.UCP and hdf5_built(), "ucp-reshard built without HDF5")
class BadHdf5Sources(U.BadInputCase):
    SRC = os.path.join(U.DEEPSPEED, "mlp_z2_fp16_ws2", "checkpoint")

    def test_without_optimizer_states(self):
        h5 = to_hdf5(self, "mlp_z2_fp16_ws2", os.path.join(self.tmp, "h5"), 1, with_optimizer=False)
        self.check_failure(["reshard", h5, os.path.join(self.tmp, "out"), "--target-dp", "2"], U.NOT_FOUND,
                           [h5, "'/optimizer'", "--with-optimizer"], self.tmp, {"ckpt", "h5"})

    def test_missing_universal_dataset(self):
        h5 = to_hdf5(self, "mlp_z2_fp16_ws2", os.path.join(self.tmp, "h5"), 1)
        with h5py.File(h5, "r+") as f:
            del f["universal"]["zero"]["optimizer_state.pt"]
        self.check_failure(["reshard", h5, os.path.join(self.tmp, "out"), "--target-dp", "2"], U.NOT_FOUND,
                           [h5, "/universal/zero/optimizer_state.pt", "missing"], self.tmp, {"ckpt", "h5"})

    def test_wrong_state_shape(self):
        h5 = to_hdf5(self, "mlp_z2_fp16_ws2", os.path.join(self.tmp, "h5"), 1)
        with h5py.File(h5, "r+") as f:
            name = list(f["optimizer"])[0]
            g = f["optimizer"][name]
            del g["exp_avg"]
            g.create_dataset("exp_avg", data=np.zeros(3, dtype=np.float32))
        self.check_failure(["reshard", h5, os.path.join(self.tmp, "out"), "--target-dp", "2"], U.DATA_LOSS,
                           [h5, f"exp_avg of parameter '{name}'", "expected"], self.tmp, {"ckpt", "h5"})

    def test_chunked_dataset(self):
        # A dataset rewritten chunked (as h5py does with compression) is no longer one byte range.
        h5 = to_hdf5(self, "mlp_z2_fp16_ws2", os.path.join(self.tmp, "h5"), 1)
        with h5py.File(h5, "r+") as f:
            name = list(f["optimizer"])[-1]
            g = f["optimizer"][name]
            data = g["fp32"][()]
            del g["fp32"]
            g.create_dataset("fp32", data=data, chunks=True, compression="gzip")
        self.check_failure(["reshard", h5, os.path.join(self.tmp, "out"), "--target-dp", "3"], U.DATA_LOSS,
                           [h5, f"/optimizer/{name}/fp32", "expected a contiguous dataset"], self.tmp, {"ckpt", "h5"})

    def test_not_hdf5_diff(self):
        bad = os.path.join(self.tmp, "bad.h5")
        with open(bad, "wb") as f:
            f.write(b"not an hdf5 file at all")
        p = U.run(["diff", bad, bad])
        self.assertEqual(p.returncode, U.FAILED_PRECONDITION, p.stderr)
        self.assertIn("not an HDF5 file", p.stderr)


if __name__ == "__main__":
    unittest.main()
