"""PyTorch DCP folders as a source of to-fp32, against torch itself.

The fixtures (tests/golden/dcp, written by torch's own dcp.save on 4 gloo ranks and by
format_utils.torch_save_to_dcp: see make_dcp_fixtures.py there) hold uneven Shard(0) chunks with
empty boxes, replicated tensors, a 2x2 mesh whose chunks are boxes cut along dimension 1 (and a 3-D
tensor cut along two dimensions), Lingua-style nesting, bytes items, bf16/fp16/int tensors and a
0-dim tensor. The oracle is torch's dcp_to_torch_save of the same folder: every tensor we write
(HF safetensors; torch's one consolidated.pth of the whole state; 1 and 3 ranks; direct writes on
and off) must equal its tensor bit for bit (safetensors: floating tensors upcast to fp32, which is
exact; torch: as stored; both cast to --dtype as torch casts when it is given).
Bad input: a missing or truncated data file, chunks that overlap or leave a hole, an item stored
with a transform we do not undo: one error line naming the file, the same exit code on every rank,
no output."""

import os
import shutil
import tempfile
import unittest

import torch
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.metadata import MetadataIndex

import ucp_oracle as uo

DCP = os.path.join(uo.GOLDEN, "dcp")
# zstd_ws2 needs zstandard for torch to read it: stack_dcp_items.py compares it with its plain twin.
FIXTURES = sorted(n for n in os.listdir(DCP)
                  if os.path.isfile(os.path.join(DCP, n, "checkpoint", ".metadata")) and not n.startswith("zstd"))


OUR_DTYPE_NAMES = {torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "f16", torch.int64: "i64",
                   torch.int32: "i32"}


def reference(ckpt, tmp):
    return uo.dcp_tensors(ckpt, tmp)


def whole_state_tensors(ckpt, out):
    """fqn -> tensor of to-fp32 --format torch's consolidated.pth, found by planner_data's paths."""
    nested = torch.load(os.path.join(out, "consolidated.pth"), weights_only=True)
    return uo.tensors_at_planner_paths(nested, ckpt)


def expected_as(t, dtype):
    return t.to(dtype) if t.is_floating_point() else t


class DcpToFp32(unittest.TestCase):
    def test_fixtures_cover_the_cases(self):
        cut_along_1 = 0
        for name in FIXTURES:
            meta = FileSystemReader(os.path.join(DCP, name, "checkpoint")).read_metadata()
            for item in meta.state_dict_metadata.values():
                for c in getattr(item, "chunks", []):
                    cut_along_1 += len(c.sizes) > 1 and c.sizes[1] != item.size[1]
        self.assertGreater(cut_along_1, 4, "the fixtures need chunks cut along a dimension other than 0")
        self.assertIn("mesh2x2_ws4", FIXTURES)
        self.assertIn("shard0_uneven_ws4", FIXTURES)

    def test_every_tensor_equals_torch_dcp_to_torch_save(self):
        # torch: one consolidated.pth of the whole nested state (stack_dcp_items.py checks its
        # non-tensor values), tensors in their stored dtypes unless --dtype is given.
        runs = [("safetensors", 1, []), ("safetensors", 3, ["--shared-output", "no"]),
                ("torch", 3, ["--shared-output", "yes"]),
                ("torch", 2, ["--shared-output", "no", "--dtype", "bf16"])]
        for name in FIXTURES:
            ckpt = os.path.join(DCP, name, "checkpoint")
            with uo.TempDir() as tmp:
                ref = reference(ckpt, tmp)
                self.assertTrue(ref, name)
                for fmt, ranks, extra in runs:
                    with self.subTest(fixture=name, fmt=fmt, ranks=ranks, extra=extra):
                        out = os.path.join(tmp, f"{fmt}-{ranks}-{len(extra)}")
                        p = uo.run(["to-fp32", ckpt, out, "--format", fmt, "--no-progress", *extra], ranks)
                        self.assertEqual(p.returncode, 0, p.stderr)
                        ours = whole_state_tensors(ckpt, out) if fmt == "torch" else uo.load_output(out, fmt)[0]
                        self.assertEqual(set(ours), set(ref))
                        dtype = torch.bfloat16 if "bf16" in extra else torch.float32 if fmt != "torch" else None
                        for fqn, t in ref.items():
                            step = fmt == "torch" and fqn.endswith(".step") and t.dim() == 0  # never cast
                            want = t if dtype is None or step else expected_as(t, dtype)
                            self.assertTrue(uo.bits_equal(ours[fqn].contiguous(), want.contiguous()),
                                            f"{fqn}: {ours[fqn]} vs {want}")

    def test_hdf5_datasets_equal_torch_dcp_to_torch_save(self):
        import h5py
        for name in FIXTURES:
            ckpt = os.path.join(DCP, name, "checkpoint")
            with self.subTest(fixture=name), uo.TempDir() as tmp:
                ref = reference(ckpt, tmp)
                out = os.path.join(tmp, "h5")
                p = uo.run(["to-fp32", ckpt, out, "--format", "hdf5", "--no-progress"], 2)
                self.assertEqual(p.returncode, 0, p.stderr)
                with h5py.File(os.path.join(out, "model.h5"), "r") as f:
                    self.assertEqual(set(f["model"].keys()), set(ref))
                    for fqn, t in ref.items():
                        ours = torch.from_numpy(f["model"][fqn][()].copy()) if t.dim() else torch.tensor(f["model"][fqn][()])
                        self.assertTrue(uo.bits_equal(ours.reshape(t.shape), expected_as(t, torch.float32).contiguous()), fqn)

    def test_inspect_lists_what_torch_reads(self):
        import json
        for name in FIXTURES:
            ckpt = os.path.join(DCP, name, "checkpoint")
            with self.subTest(fixture=name):
                p = uo.run(["inspect", ckpt, "--json"], 1)
                self.assertEqual(p.returncode, 0, p.stderr)
                ours = json.loads(p.stdout)
                meta = FileSystemReader(ckpt).read_metadata()
                self.assertEqual(ours["coverage"], "complete")
                tensors = {k: v for k, v in meta.state_dict_metadata.items() if hasattr(v, "chunks")}
                self.assertEqual(list(ours["tensors"]), list(tensors))
                self.assertEqual(set(ours["bytes_items"]), set(meta.state_dict_metadata) - set(tensors))
                for fqn, item in tensors.items():
                    t = ours["tensors"][fqn]
                    self.assertEqual(t["shape"], list(item.size))
                    self.assertEqual(t["dtype"], OUR_DTYPE_NAMES[item.properties.dtype])
                    self.assertEqual([(c["offsets"], c["sizes"]) for c in t["chunks"]],
                                     [(list(c.offsets), list(c.sizes)) for c in item.chunks])
                    for c in t["chunks"]:
                        info = meta.storage_data[MetadataIndex(fqn, torch.Size(c["offsets"]))]
                        self.assertEqual((c["file"], c["offset"], c["length"]), (info.relative_path, info.offset, info.length))

    def test_diff_against_what_torch_wrote(self):
        from safetensors.torch import save_file
        for name in FIXTURES:
            ckpt = os.path.join(DCP, name, "checkpoint")
            with self.subTest(fixture=name), uo.TempDir() as tmp:
                ref = {k: v.contiguous() for k, v in reference(ckpt, tmp).items()}
                same = os.path.join(tmp, "same.safetensors")
                save_file(ref, same)
                p = uo.run(["diff", ckpt, same], 1)
                self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
                name0 = sorted(ref)[0]
                changed = dict(ref)
                changed[name0] = ref[name0].clone().reshape(-1)
                changed[name0][0] += 1
                changed[name0] = changed[name0].reshape(ref[name0].shape)
                other = os.path.join(tmp, "other.safetensors")
                save_file(changed, other)
                p = uo.run(["diff", ckpt, other], 1)
                self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
                self.assertIn(name0, p.stdout)

    def test_select_model_of_a_lingua_checkpoint(self):
        ckpt = os.path.join(DCP, "lingua_nested_ws1", "checkpoint")
        with uo.TempDir() as tmp:
            ref = reference(ckpt, tmp)
            model = {k[len("model."):]: v for k, v in ref.items() if k.startswith("model.")}
            self.assertTrue(model and len(model) < len(ref), "the fixture needs model and optimizer tensors")
            for fmt in ("safetensors", "torch"):
                out = os.path.join(tmp, fmt)
                p = uo.run(["to-fp32", ckpt, out, "--format", fmt, "--select", "model", "--no-progress"], 2)
                self.assertEqual(p.returncode, 0, p.stderr)
                ours, _ = uo.load_output(out, fmt)
                self.assertEqual(set(ours), set(model))
                for k, t in model.items():
                    self.assertTrue(uo.bits_equal(ours[k], expected_as(t, torch.float32).contiguous()), k)
            p = uo.run(["to-fp32", ckpt, os.path.join(tmp, "none"), "--select", "modle", "--no-progress"], 2)
            self.assertEqual(p.returncode, uo.INVALID_ARGUMENT, p.stderr)
            self.assertIn("the top-level names are: model, optim", p.stderr)
            self.assertFalse(os.path.exists(os.path.join(tmp, "none")))

    def test_dry_run_names_the_source(self):
        ckpt = os.path.join(DCP, "mesh2x2_ws4", "checkpoint")
        with uo.TempDir() as tmp:
            p = uo.run(["to-fp32", ckpt, os.path.join(tmp, "out"), "--dry-run"], 1)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("PyTorch DCP checkpoint", p.stdout)
            self.assertIn("4 tensors", p.stdout)
            self.assertFalse(os.path.exists(os.path.join(tmp, "out")))


class DcpBadInput(uo.BadInputCase):
    SRC = os.path.join(DCP, "shard0_uneven_ws4", "checkpoint")
    TAG = ""

    def out_args(self):
        return ["to-fp32", self.ckpt, os.path.join(self.tmp, "out")]

    def rewrite_metadata(self, change):
        uo.rewrite_dcp_metadata(self.ckpt, change)

    def test_missing_data_file(self):
        os.remove(os.path.join(self.ckpt, "__2_0.distcp"))
        self.check_failure(self.out_args(), uo.NOT_FOUND, ["__2_0.distcp"], self.tmp, {"ckpt"})

    def test_truncated_data_file(self):
        path = os.path.join(self.ckpt, "__1_0.distcp")
        os.truncate(path, os.path.getsize(path) // 2)
        self.check_failure(self.out_args(), uo.DATA_LOSS, ["__1_0.distcp", "runs past the end"], self.tmp, {"ckpt"})

    def test_overlapping_chunks(self):
        def overlap(meta):  # the second chunk (rows 3-5) moved up a row, over the first (rows 0-2)
            fqn = "model.embed.weight"
            meta.state_dict_metadata[fqn].chunks[1].offsets = torch.Size([2, 0])
            key = next(k for k in meta.storage_data if k.fqn == fqn and list(k.offset) == [3, 0])
            meta.storage_data[MetadataIndex(fqn, torch.Size([2, 0]), key.index)] = meta.storage_data.pop(key)
        self.rewrite_metadata(overlap)
        self.check_failure(self.out_args(), uo.DATA_LOSS, ["model.embed.weight", ".metadata", "covered twice"],
                           self.tmp, {"ckpt"})
        p = uo.run(["inspect", self.ckpt], 1)
        self.assertEqual(p.returncode, uo.DATA_LOSS, p.stderr)
        self.assertIn("covered twice", p.stdout)

    def test_hole(self):
        def hole(meta):
            meta.state_dict_metadata["model.counts"].chunks.pop(1)
        self.rewrite_metadata(hole)
        self.check_failure(self.out_args(), uo.DATA_LOSS, ["model.counts", "not covered by any source"], self.tmp, {"ckpt"})

    def test_transform_we_do_not_undo(self):
        def lz4(meta):
            for info in meta.storage_data.values():
                info.transform_descriptors = ["stream.lz4/1"]
        self.rewrite_metadata(lz4)
        self.check_failure(self.out_args(), uo.UNIMPLEMENTED, ["stream.lz4/1", ".distcp"], self.tmp, {"ckpt"})

    def test_items_that_are_not_the_zstd_streams_they_claim(self):
        def zstd(meta):
            for info in meta.storage_data.values():
                info.transform_descriptors = ["stream.zstd/1"]
        self.rewrite_metadata(zstd)
        self.check_failure(self.out_args(), uo.DATA_LOSS, ["corrupt zstd stream", ".distcp"], self.tmp, {"ckpt"})

    def test_whole_state_is_one_file(self):
        self.check_failure([*self.out_args(), "--format", "torch", "--max-shard-size", "1KB"], uo.INVALID_ARGUMENT,
                           ["--max-shard-size", "consolidated.pth", "--select"], self.tmp, {"ckpt"})

    def test_select_that_names_no_tensor(self):
        self.check_failure([*self.out_args(), "--select", "modle"], uo.INVALID_ARGUMENT,
                           ["--select modle", "the top-level names are: model"], self.tmp, {"ckpt"})

    def test_to_dcp_of_a_truncated_checkpoint(self):
        path = os.path.join(self.ckpt, "__1_0.distcp")
        os.truncate(path, os.path.getsize(path) // 2)
        self.check_failure(["to-dcp", self.ckpt, os.path.join(self.tmp, "out"), "--target-world-size", "2"],
                           uo.DATA_LOSS, ["__1_0.distcp", "runs past the end"], self.tmp, {"ckpt"})

    def test_to_dcp_needs_a_positive_target_world_size(self):
        # A parse error: the parser's usage message, printed once (rank 0), exit 2 on every rank.
        message = "--target-world-size: Value 0 not in range 1 to 1048576"
        for ranks in (1, 3):
            p = uo.run(["to-dcp", self.ckpt, os.path.join(self.tmp, "out"), "--target-world-size", "0"], ranks)
            self.assertEqual(p.returncode, uo.INVALID_ARGUMENT, p.stderr)
            self.assertEqual(p.stderr.count(message), 1, p.stderr)
            self.assertEqual(os.listdir(self.tmp), ["ckpt"])

    def test_exclude_frozen_is_refused(self):
        self.check_failure([*self.out_args(), "--exclude-frozen"], uo.INVALID_ARGUMENT, ["--exclude-frozen", "DCP"],
                           self.tmp, {"ckpt"})


if __name__ == "__main__":
    unittest.main()
