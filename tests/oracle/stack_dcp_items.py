"""A PyTorch DCP folder's whole state, non-tensor items included, against torch itself.

The oracle is torch's own format_utils.dcp_to_torch_save of each fixture of tests/golden/dcp
(make_dcp_fixtures.py there): `to-fp32 --format torch` of a DCP folder must write one
consolidated.pth that torch.load(weights_only=True) reads back as the very same nested state: the
same dict keys in the same order, lists where torch makes lists, every tensor bit for bit in its
stored dtype (or cast to an asked --dtype) and every non-tensor value equal, at 1 and 2 ranks.
items_ws2 holds every kind of non-tensor item; zstd_ws2 is the same state saved with torch's
ZStandard extension, compared with items_ws2's dcp_to_torch_save (so the test needs no zstandard).
inspect shows the decoded items, diff compares them (DCP vs DCP, DCP vs .pt). Bad input: a
truncated bytes item, a bytes item naming os.system (posix.system), a truncated zstd stream: one error line naming
the item, nothing written, nothing executed."""

import json
import os
import pickle
import struct
import zipfile
import io
import unittest

import torch
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

import ucp_oracle as uo

DCP = os.path.join(uo.GOLDEN, "dcp")
ITEMS = os.path.join(DCP, "items_ws2", "checkpoint")
ZSTD = os.path.join(DCP, "zstd_ws2", "checkpoint")
# Every fixture torch can read without zstandard.
PLAIN = sorted(n for n in os.listdir(DCP)
               if os.path.isfile(os.path.join(DCP, n, "checkpoint", ".metadata")) and not n.startswith("zstd"))


def torch_state(ckpt, tmp, name="ref.pt"):
    path = os.path.join(tmp, name)
    dcp_to_torch_save(ckpt, path)
    return torch.load(path, weights_only=False), path


def ours(out):
    return torch.load(os.path.join(out, "consolidated.pth"), weights_only=True)


class SameState:
    def assert_same(self, a, b, path="root", dtype=None):
        """`a` (ours) equals `b` (torch's): same types and nesting, dict keys in order, tensors bit
        for bit (b cast to `dtype` when floating and one is given)."""
        self.assertIs(type(a), type(b), f"{path}: {type(a).__name__} vs {type(b).__name__}")
        if isinstance(b, torch.Tensor):
            want = b.to(dtype) if dtype is not None and b.is_floating_point() else b
            self.assertTrue(uo.bits_equal(a.contiguous(), want.contiguous()), f"{path}: {a} vs {want}")
        elif isinstance(b, dict):
            self.assertEqual(list(a), list(b), path)
            for k in b:
                self.assert_same(a[k], b[k], f"{path}[{k!r}]", dtype)
        elif isinstance(b, (list, tuple)):
            self.assertEqual(len(a), len(b), path)
            for i, (x, y) in enumerate(zip(a, b)):
                self.assert_same(x, y, f"{path}[{i}]", dtype)
        elif isinstance(b, float):
            self.assertEqual(struct.pack("<d", a), struct.pack("<d", b), path)
        else:
            self.assertEqual(a, b, path)


class WholeState(SameState, unittest.TestCase):
    def test_fixture_has_every_kind_of_item(self):
        meta = FileSystemReader(ITEMS).read_metadata()
        items = [k for k, v in meta.state_dict_metadata.items() if not hasattr(v, "chunks")]
        self.assertGreaterEqual(len(items), 10)
        self.assertIn(("model", "norm.weight"), meta.planner_data.values(), "a key with a dot inside one path step")
        zmeta = FileSystemReader(ZSTD).read_metadata()
        self.assertTrue(all(i.transform_descriptors == ["stream.zstd/1"] for i in zmeta.storage_data.values()))
        self.assertEqual(list(zmeta.state_dict_metadata), list(meta.state_dict_metadata))

    def test_equals_dcp_to_torch_save(self):
        for name in PLAIN:
            ckpt = os.path.join(DCP, name, "checkpoint")
            with uo.TempDir() as tmp:
                ref, _ = torch_state(ckpt, tmp)
                for ranks in (1, 2):
                    with self.subTest(fixture=name, ranks=ranks):
                        out = os.path.join(tmp, f"out{ranks}")
                        p = uo.run(["to-fp32", ckpt, out, "--format", "torch", "--no-progress"], ranks)
                        self.assertEqual(p.returncode, 0, p.stderr)
                        self.assertEqual(os.listdir(out), ["consolidated.pth"])
                        self.assert_same(ours(out), ref)

    def test_lingua_params_json_travels_with_the_state(self):
        # Lingua's consolidate_checkpoints copies the step folder's params.json beside consolidated.pth.
        with uo.TempDir() as tmp:
            ckpt = uo.writable_copy(ITEMS, os.path.join(tmp, "0000000100"))
            params = b'{"model": {"dim": 4, "n_layers": 1}, "distributed": {"model_dtype": "bf16"}}\n'
            with open(os.path.join(ckpt, "params.json"), "wb") as f:
                f.write(params)
            out = os.path.join(ckpt, "consolidated")
            p = uo.run(["to-fp32", ckpt, out, "--format", "torch", "--no-progress"], 2)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(sorted(os.listdir(out)), ["consolidated.pth", "params.json"])
            with open(os.path.join(out, "params.json"), "rb") as f:
                self.assertEqual(f.read(), params)

    def test_zstd_items_equal_their_uncompressed_twin(self):
        with uo.TempDir() as tmp:
            ref, _ = torch_state(ITEMS, tmp)
            for ranks in (1, 2):
                with self.subTest(ranks=ranks):
                    out = os.path.join(tmp, f"out{ranks}")
                    p = uo.run(["to-fp32", ZSTD, out, "--format", "torch", "--no-progress"], ranks)
                    self.assertEqual(p.returncode, 0, p.stderr)
                    self.assert_same(ours(out), ref)
            out = os.path.join(tmp, "st")
            p = uo.run(["to-fp32", ZSTD, out, "--select", "model", "--no-progress"], 2)
            self.assertEqual(p.returncode, 0, p.stderr)
            st, _ = uo.load_output(out, "safetensors")
            self.assertEqual(set(st), set(ref["model"]))
            for k, t in ref["model"].items():
                self.assertTrue(uo.bits_equal(st[k], t.float()), k)

    def test_an_asked_dtype_casts_floating_tensors_only(self):
        with uo.TempDir() as tmp:
            ref, _ = torch_state(ITEMS, tmp)
            out = os.path.join(tmp, "out")
            p = uo.run(["to-fp32", ITEMS, out, "--format", "torch", "--dtype", "fp16", "--no-progress"], 2)
            self.assertEqual(p.returncode, 0, p.stderr)
            got = ours(out)
            # Tensor items are cast, but not the optimizer's step counter; tensors inside non-tensor
            # items ("pair") keep theirs (ints here).
            step = ref["optim"]["state"]["w"].pop("step")
            self.assert_same(got["optim"]["state"]["w"].pop("step"), step)
            self.assert_same(got, ref, dtype=torch.float16)
            self.assertEqual(got["model"]["norm.weight"].dtype, torch.float16)

    def test_select_model_keeps_the_flat_model_file(self):
        with uo.TempDir() as tmp:
            ref, _ = torch_state(ITEMS, tmp)
            out = os.path.join(tmp, "out")
            p = uo.run(["to-fp32", ITEMS, out, "--format", "torch", "--select", "model", "--no-progress"], 2)
            self.assertEqual(p.returncode, 0, p.stderr)
            got, _ = uo.load_output(out, "torch")
            self.assertEqual(list(got), list(ref["model"]))
            for k, t in ref["model"].items():
                self.assertTrue(uo.bits_equal(got[k], t.float()), k)


class RechunkedCopy(SameState, unittest.TestCase):
    def test_to_dcp_keeps_the_whole_state(self):
        # A training checkpoint re-chunked for another world size keeps its nesting and every
        # non-tensor item (zstd ones decoded): torch rebuilds the same state from our folder.
        with uo.TempDir() as tmp:
            ref, _ = torch_state(ITEMS, tmp)
            for source, world, ranks in ((ITEMS, 3, 2), (ZSTD, 1, 1)):
                with self.subTest(source=os.path.basename(os.path.dirname(source)), M=world, ranks=ranks):
                    out = os.path.join(tmp, f"dcp-{world}-{ranks}")
                    p = uo.run(["to-dcp", source, out, "--target-world-size", str(world), "--no-progress"], ranks)
                    self.assertEqual(p.returncode, 0, p.stderr)
                    got, _ = torch_state(out, tmp, f"got-{world}.pt")
                    self.assert_same(got, ref)


class MetadataDialects(SameState, unittest.TestCase):
    def test_metadata_pickled_at_protocol_5(self):
        # Python 3.14 pickles .metadata at protocol 5 (3.8-3.13: 4): torch's own Metadata object
        # of a fixture, dumped again at protocol 5, reads the same.
        with uo.TempDir() as tmp:
            ref, _ = torch_state(ITEMS, tmp)
            ckpt = uo.writable_copy(ITEMS, os.path.join(tmp, "p5"))
            meta = FileSystemReader(ITEMS).read_metadata()
            with open(os.path.join(ckpt, ".metadata"), "wb") as f:
                pickle.dump(meta, f, protocol=5)
            with open(os.path.join(ckpt, ".metadata"), "rb") as f:
                self.assertEqual(f.read(2), b"\x80\x05")
            out = os.path.join(tmp, "out")
            p = uo.run(["to-fp32", ckpt, out, "--format", "torch", "--no-progress"], 2)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assert_same(ours(out), ref)


class LegacyDialect(unittest.TestCase):
    """torch 1.13's prototype DCP (make_legacy_fixture.py, run by Debian's torch 1.13): other class
    paths, no planner_data, one data file per item. torch 2.x cannot load it; the oracle is what
    torch 1.13's own load_state_dict read back (expected.pt) and the step it saved (9)."""

    FOLDER = os.path.join(DCP, "legacy_torch113", "dcp")

    def test_reads_what_torch_113_reads(self):
        expected = torch.load(os.path.join(DCP, "legacy_torch113", "expected.pt"), weights_only=True)
        with uo.TempDir() as tmp:
            for ranks in (1, 2):
                out = os.path.join(tmp, f"out{ranks}")
                p = uo.run(["to-fp32", self.FOLDER, out, "--format", "torch", "--no-progress"], ranks)
                self.assertEqual(p.returncode, 0, p.stderr)
                got = ours(out)
                self.assertEqual(set(got), set(expected) | {"step"})
                self.assertEqual(got["step"], 9)
                for k, t in expected.items():
                    self.assertTrue(uo.bits_equal(got[k], t), k)
            p = uo.run(["inspect", self.FOLDER], 1)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertIn('"step": 9', p.stdout)


class InspectAndDiff(unittest.TestCase):
    def test_inspect_shows_each_item(self):
        with uo.TempDir() as tmp:
            ref, _ = torch_state(ITEMS, tmp)
        meta = FileSystemReader(ITEMS).read_metadata()
        p = uo.run(["inspect", ITEMS, "--json"], 1)
        self.assertEqual(p.returncode, 0, p.stderr)
        items = json.loads(p.stdout)["bytes_items"]
        self.assertEqual(set(items), {k for k, v in meta.state_dict_metadata.items() if not hasattr(v, "chunks")})
        for fqn, item in items.items():
            value = ref
            for key in meta.planner_data[fqn]:
                value = value[key]
            if isinstance(value, (bool, str, float)) or value is None or (isinstance(value, int) and abs(value) < 2 ** 63):
                self.assertEqual(item["value"], value, fqn)
        self.assertEqual(items["optim.param_groups.0.params"]["value"], ["model.w", "model.norm.weight"])
        p = uo.run(["inspect", ZSTD], 1)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn('"step": 17', p.stdout)
        self.assertIn('"note": \'items fixture\'', p.stdout.replace('"items fixture"', "'items fixture'"))

    def test_diff_compares_non_tensor_values(self):
        with uo.TempDir() as tmp:
            ref, same = torch_state(ITEMS, tmp)
            for a, b in ((ITEMS, ZSTD), (ITEMS, same), (same, ZSTD)):
                p = uo.run(["diff", a, b], 1)
                self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
                self.assertIn("non-tensor values", p.stdout)
            changed = dict(ref)
            changed["step"] = 18
            changed["optim"] = {**ref["optim"], "param_groups": [{**ref["optim"]["param_groups"][0], "betas": (0.9, 0.99)}]}
            other = os.path.join(tmp, "other.pt")
            torch.save(changed, other)
            p = uo.run(["diff", ITEMS, other], 1)
            self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
            self.assertIn("non-tensor value differs: step", p.stdout)
            self.assertIn("optim.param_groups.0.betas", p.stdout)
            self.assertNotIn("values differ:", p.stdout)
            del changed["note"]
            changed["step"] = 17
            changed["optim"] = ref["optim"]
            torch.save(changed, other)
            p = uo.run(["diff", other, ZSTD], 1)
            self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
            self.assertIn("only in B: note", p.stdout)


def torch_zip(obj_pickle):
    """A torch.save-shaped zip (stored entries) around a raw pickle."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", obj_pickle)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")
    return buf.getvalue()


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, ("touch " + self.marker,)


class DcpItemsBadInput(uo.BadInputCase):
    SRC = ITEMS
    TAG = ""

    def out_args(self):
        return ["to-fp32", self.ckpt, os.path.join(self.tmp, "out"), "--format", "torch"]

    def storage(self, meta, fqn):
        return next(v for k, v in meta.storage_data.items() if k.fqn == fqn)

    def rewrite_metadata(self, change):
        uo.rewrite_dcp_metadata(self.ckpt, change)

    def test_truncated_bytes_item(self):
        self.rewrite_metadata(lambda meta: setattr(self.storage(meta, "note"), "length", self.storage(meta, "note").length - 30))
        self.check_failure(self.out_args(), uo.DATA_LOSS, ["'note'", ".distcp"], self.tmp, {"ckpt"})

    def test_forbidden_global_is_refused_by_name(self):
        marker = os.path.join(self.tmp, "executed")

        def evil(meta):
            info = self.storage(meta, "note")
            path = os.path.join(self.ckpt, info.relative_path)
            data = torch_zip(pickle.dumps(Evil(marker), protocol=2))
            info.offset = os.path.getsize(path)
            info.length = len(data)
            with open(path, "ab") as f:
                f.write(data)
        self.rewrite_metadata(evil)
        # os.system pickles as posix.system (its real module).
        self.check_failure(self.out_args(), uo.DATA_LOSS, ["'note'", "posix.system", "weights_only"], self.tmp, {"ckpt"})
        p = uo.run(["inspect", self.ckpt], 1)
        self.assertEqual(p.returncode, uo.DATA_LOSS)
        self.assertIn("posix.system", p.stdout + p.stderr)
        p = uo.run(["diff", self.ckpt, ITEMS], 1)
        self.assertNotIn(p.returncode, (0, 1), p.stdout + p.stderr)
        self.assertFalse(os.path.exists(marker))

    def test_truncated_zstd_stream(self):
        self.ckpt = uo.writable_copy(ZSTD, os.path.join(self.tmp, "zckpt"))
        self.rewrite_metadata(lambda meta: setattr(self.storage(meta, "model.w"), "length", self.storage(meta, "model.w").length // 2))
        self.check_failure(self.out_args(), uo.DATA_LOSS, ["model.w", "zstd"], self.tmp, {"ckpt", "zckpt"})


if __name__ == "__main__":
    unittest.main()
