"""to-fp32 and to-dcp from the sources beside DeepSpeed ZeRO and DCP folders (issue 18).

Sources and their oracles:
- HF / torch model files, written here by safetensors and torch themselves: a .safetensors file,
  an HF folder sharded by transformers' save_pretrained (model.safetensors.index.json), a
  pytorch_model.bin index (shards by torch.save, a tied pair sharing one storage), a Lingua-style
  nested consolidated.pth (names: torch's own flatten_state_dict, as DCP flattens). Oracle: the
  tensors safetensors / torch.load read from the same files.
- HF-DCP safetensors (tests/golden/hf_dcp, written by torch's HuggingFaceStorageWriter on gloo
  ranks: see make_hf_dcp_fixtures.py). Oracle: the full tensors the generator saved before
  sharding them, and torch's HuggingFaceStorageReader reading the same folder.
- The model.h5 of to-fp32 --format hdf5 (bf16). Oracle: h5py reading it.
- Universal checkpoint folders of the DeepSpeed fixtures (ds_to_universal's). Oracle: DeepSpeed's
  zero_to_fp32 output of the original checkpoint, with the differences test_to_fp32 allows.
Each: to-fp32 --format safetensors (1 rank) and torch (3 ranks), to-dcp --target-world-size 1..3
(1, 3 and 2 ranks), our DCP read back by torch's dcp_to_torch_save, bit for bit in the stored dtype
(to-fp32 upcasts floating tensors, which is exact).
Bad input: a shard named in an index missing, a truncated safetensors file, an HF-DCP folder missing
a shard file (or whose files overwrote each other), a non-contiguous torch view: one error line on
every rank, non-zero exit, no output. A DeepSpeed save dir beside model.safetensors stays ZeRO."""

import json
import os
import shutil
import tempfile
import unittest

import torch
from safetensors.torch import load_file, save_file

import test_to_fp32 as tf
import ucp_oracle as uo
from tensor_truth import seeded_values

HF_DCP = os.path.join(uo.GOLDEN, "hf_dcp")
HF_DCP_GOOD = ["shard0_dist_ws3", "mesh2x2_dist_ws4", "single_ws1"]
UNIVERSAL = ["mlp_z1_fp16_ws2", "mlp_z2_bf16_ws2", "mlp_z3_fp16_ws2", "gpt1g_z3_bf16_ws2"]
DCP_RUNS = [(1, 1), (2, 3), (3, 2)]  # (target world size, ranks)


def upcast(t):
    return t.float() if t.is_floating_point() else t


def tensors_only(flat):
    return {k: v for k, v in flat.items() if isinstance(v, torch.Tensor)}


values = seeded_values


def make_model_files(root):
    """name -> (path, fqn -> tensor as torch / safetensors read the source)."""
    from torch.distributed.checkpoint._nested_dict import flatten_state_dict
    out = {}
    single = {"a.weight": values((3, 7), torch.float32, 1), "b": values((5,), torch.bfloat16, 2),
              "ids": values((4,), torch.int64, 3), "s": torch.tensor(1.5, dtype=torch.float16)}
    path = os.path.join(root, "single.safetensors")
    save_file(single, path)
    out["safetensors_file"] = (path, load_file(path))

    import transformers
    cfg = transformers.GPT2Config(vocab_size=37, n_positions=16, n_embd=8, n_layer=2, n_head=2)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg)
    hf = os.path.join(root, "hf_sharded")
    model.save_pretrained(hf, max_shard_size="2KB")
    assert os.path.exists(os.path.join(hf, "model.safetensors.index.json")), os.listdir(hf)
    with open(os.path.join(hf, "model.safetensors.index.json")) as f:
        shards = sorted(set(json.load(f)["weight_map"].values()))
    ref = {}
    for s in shards:
        ref.update(load_file(os.path.join(hf, s)))
    out["hf_sharded_safetensors"] = (hf, ref)

    bin_dir = os.path.join(root, "hf_bin")
    os.makedirs(bin_dir)
    shared = values((6, 4), torch.float32, 4)
    big = values((10,), torch.float16, 5)
    shard1 = {"wte.weight": shared, "lm_head.weight": shared, "view": big[2:7]}  # tied; a view at an offset
    shard2 = {"ln.bias": values((4,), torch.bfloat16, 6)}
    torch.save(shard1, os.path.join(bin_dir, "pytorch_model-00001-of-00002.bin"))
    torch.save(shard2, os.path.join(bin_dir, "pytorch_model-00002-of-00002.bin"))
    weight_map = {k: "pytorch_model-00001-of-00002.bin" for k in shard1}
    weight_map.update({k: "pytorch_model-00002-of-00002.bin" for k in shard2})
    with open(os.path.join(bin_dir, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)
    ref = {}
    for name in ("pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"):
        ref.update(torch.load(os.path.join(bin_dir, name), weights_only=True))
    out["hf_bin_index"] = (bin_dir, ref)

    nested = {"model": {"tok_embeddings.weight": values((8, 4), torch.float32, 7),
                        "layers.0.attention.wq.weight": values((4, 4), torch.bfloat16, 8)},
              "optim": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": values((8, 4), torch.float32, 9)}},
                        "param_groups": [{"lr": 0.001, "params": [0]}]},
              "lists": [values((2,), torch.float32, 10), {"deep": values((3,), torch.int32, 11)}]}
    path = os.path.join(root, "consolidated.pth")
    torch.save(nested, path)
    flat, _ = flatten_state_dict(torch.load(path, weights_only=True))
    out["lingua_consolidated_pth"] = (path, tensors_only(flat))
    return out


def hf_dcp_reference(name):
    """The full tensors the generator sharded, and torch's HuggingFaceStorageReader agreeing."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageReader
    expected = load_file(os.path.join(HF_DCP, name, "expected.safetensors"))
    state = {k: torch.zeros_like(v) for k, v in expected.items()}
    dcp.load(state, storage_reader=HuggingFaceStorageReader(os.path.join(HF_DCP, name, "checkpoint")), no_dist=True)
    for k, v in expected.items():
        assert uo.bits_equal(state[k], v), f"torch's HuggingFaceStorageReader disagrees with the generator on {k}"
    return expected


class ModelSources(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ucp-oracle-")
        cls.model_files = make_model_files(cls.tmp)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def out(self, *parts):
        return os.path.join(self.tmp, "out", *parts)

    def check_to_fp32(self, src, ref, label):
        for fmt, ranks in (("safetensors", 1), ("torch", 3)):
            with self.subTest(source=label, fmt=fmt, ranks=ranks):
                out = self.out(label, f"fp32-{fmt}")
                p = uo.run(["to-fp32", src, out, "--format", fmt, "--no-progress"], ranks)
                self.assertEqual(p.returncode, 0, p.stderr)
                ours, _ = uo.load_output(out, fmt)
                self.assertEqual(set(ours), set(ref))
                for k, t in ref.items():
                    self.assertTrue(uo.bits_equal(ours[k].contiguous(), upcast(t).contiguous()), f"{label}: {k}")

    def check_to_dcp(self, src, ref, label, exact_dtype=True):
        for world, ranks in DCP_RUNS:
            with self.subTest(source=label, target_world_size=world, ranks=ranks):
                out = self.out(label, f"dcp-{world}-{ranks}")
                p = uo.run(["to-dcp", src, out, "--target-world-size", str(world), "--no-progress"], ranks)
                self.assertEqual(p.returncode, 0, p.stderr)
                ours = uo.dcp_tensors(out, self.tmp)
                self.assertEqual(set(ours), set(ref))
                for k, t in ref.items():
                    want = t if exact_dtype else upcast(t)
                    got = ours[k] if exact_dtype else upcast(ours[k])
                    self.assertTrue(uo.bits_equal(got.contiguous(), want.contiguous()), f"{label}: {k}")

    def test_model_files(self):
        for label, (src, ref) in self.model_files.items():
            self.assertTrue(ref, label)
            self.check_to_fp32(src, ref, label)
            self.check_to_dcp(src, ref, label)

    def test_hdf5_model_file(self):
        import h5py
        src, _ = self.model_files["hf_bin_index"]
        h5_dir = self.out("h5")
        p = uo.run(["to-fp32", src, h5_dir, "--format", "hdf5", "--dtype", "bf16", "--no-progress"], 2)
        self.assertEqual(p.returncode, 0, p.stderr)
        with h5py.File(os.path.join(h5_dir, "model.h5"), "r") as f:  # h5py's reading is the oracle
            ref = {k: torch.from_numpy(f["model"][k][()].copy()).view(torch.bfloat16)
                   if f["model"][k].attrs.get("dtype") == "bfloat16" else torch.from_numpy(f["model"][k][()].copy())
                   for k in f["model"].keys()}
        self.assertEqual(set(ref), set(self.model_files["hf_bin_index"][1]))
        self.check_to_fp32(h5_dir, ref, "hdf5_folder")
        self.check_to_dcp(os.path.join(h5_dir, "model.h5"), ref, "hdf5_file")

    def test_hf_dcp_safetensors(self):
        for name in HF_DCP_GOOD:
            src = os.path.join(HF_DCP, name, "checkpoint")
            ref = hf_dcp_reference(name)
            self.check_to_fp32(src, ref, name)
            self.check_to_dcp(src, ref, name)
        # One HF-DCP file alone is a source too (here a whole one).
        one = os.path.join(HF_DCP, "single_ws1", "checkpoint", "model-00001-of-00002.safetensors")
        ref = hf_dcp_reference("single_ws1")
        self.check_to_fp32(one, {k: v for k, v in ref.items() if k in load_file(one)}, "single_file")

    def test_universal_folders_equal_zero_to_fp32(self):
        for name in UNIVERSAL:
            exp = tf.Expected(name)
            src = os.path.join(uo.DEEPSPEED, name, "universal")
            for fmt, ranks in (("safetensors", 1), ("torch", 3)):
                with self.subTest(fixture=name, fmt=fmt, ranks=ranks):
                    out = self.out(name, f"fp32-{fmt}")
                    p = uo.run(["to-fp32", src, out, "--format", fmt, "--no-progress"], ranks)
                    self.assertEqual(p.returncode, 0, p.stderr)
                    tf.ToFp32Fixtures.check(self, exp, out, fmt)
            if name == UNIVERSAL[0]:  # ZeRO-1: frozen parameters known only from the model-state copy
                with self.subTest(fixture=name, exclude_frozen=True):
                    out = self.out(name, "fp32-no-frozen")
                    p = uo.run(["to-fp32", src, out, "--exclude-frozen", "--no-progress"], 2)
                    self.assertEqual(p.returncode, 0, p.stderr)
                    tf.ToFp32Fixtures.check(self, exp, out, exclude_frozen=True)
            # to-dcp keeps the stored dtypes: upcast, they are what zero_to_fp32 gives.
            for world, ranks in DCP_RUNS[::2]:  # to-dcp's cuts are checked on every source above: 2 runs here
                with self.subTest(fixture=name, target_world_size=world, ranks=ranks):
                    out = self.out(name, f"dcp-{world}")
                    p = uo.run(["to-dcp", src, out, "--target-world-size", str(world), "--no-progress"], ranks)
                    self.assertEqual(p.returncode, 0, p.stderr)
                    ours = uo.dcp_tensors(out, self.tmp)
                    for t in exp.trainable:
                        self.assertEqual(ours[t].dtype, torch.float32, f"{name}: {t} is an fp32 master")
                    as_fp32 = self.out(name, f"dcp-{world}-as-fp32")
                    os.makedirs(as_fp32)
                    save_file({k: upcast(v).contiguous() for k, v in ours.items()}, os.path.join(as_fp32, "model.safetensors"),
                              metadata={"format": "pt"})
                    tf.ToFp32Fixtures.check(self, exp, as_fp32)

    def test_deepspeed_save_dir_beside_model_files_stays_zero(self):
        name = "mlp_z2_bf16_ws2"
        ckpt = uo.writable_copy(os.path.join(uo.DEEPSPEED, name, "checkpoint"), self.out("trainer_dir"))
        save_file({"decoy": torch.zeros(2)}, os.path.join(ckpt, "model.safetensors"))
        out = self.out("trainer_dir_fp32")
        p = uo.run(["to-fp32", ckpt, out, "--no-progress"], 2)
        self.assertEqual(p.returncode, 0, p.stderr)
        tf.ToFp32Fixtures.check(self, tf.Expected(name), out)


class BadModelSources(uo.BadInputCase):
    SRC = os.path.join(HF_DCP, "shard0_dist_ws3", "checkpoint")

    def refused(self, src, code, fragments):
        out = os.path.join(self.tmp, "out")
        for cmd, ranks in ((["to-fp32", src, out], (1, 3)), (["to-dcp", src, out, "--target-world-size", "2"], (3,))):
            with self.subTest(cmd=cmd[0]):
                self.check_failure(cmd, code, fragments, self.tmp, {"ckpt", "src"}, ranks_list=ranks)

    def test_hf_dcp_missing_shard(self):
        os.remove(os.path.join(self.ckpt, "shard-00002-model-00001-of-00002.safetensors"))
        # rank 2's rows of every tensor of bucket 1 are in no file: torch would read the rest
        self.refused(self.ckpt, uo.DATA_LOSS, ["not covered by any source", self.ckpt])

    def test_hf_dcp_missing_model_index(self):
        src = uo.writable_copy(os.path.join(HF_DCP, "single_ws1", "checkpoint"), os.path.join(self.tmp, "src"))
        os.remove(os.path.join(src, "model-00002-of-00002.safetensors"))
        self.refused(src, uo.DATA_LOSS, ["model-00002-of-00002", src])

    def test_hf_dcp_files_that_overwrote_each_other(self):
        self.refused(os.path.join(HF_DCP, "overwritten_ws2", "checkpoint"), uo.DATA_LOSS, ["not covered"])

    def test_index_names_a_missing_shard(self):
        src = os.path.join(self.tmp, "src")
        os.makedirs(src)
        save_file({"a": torch.ones(2)}, os.path.join(src, "model-00001-of-00002.safetensors"))
        with open(os.path.join(src, "model.safetensors.index.json"), "w") as f:
            json.dump({"weight_map": {"a": "model-00001-of-00002.safetensors",
                                      "b": "model-00002-of-00002.safetensors"}}, f)
        self.refused(src, uo.NOT_FOUND, ["model-00002-of-00002.safetensors"])

    def test_truncated_safetensors(self):
        src = os.path.join(self.tmp, "src")
        os.makedirs(src)
        path = os.path.join(src, "model.safetensors")
        save_file({"a": torch.ones(64)}, path)
        os.truncate(path, os.path.getsize(path) - 100)
        self.refused(src, uo.DATA_LOSS, [path])

    def test_non_contiguous_torch_view(self):
        src = os.path.join(self.tmp, "src")
        os.makedirs(src)
        path = os.path.join(src, "consolidated.pth")
        torch.save({"ok": torch.ones(3), "w": torch.arange(12.0).reshape(3, 4).t()}, path)
        self.refused(path, uo.UNIMPLEMENTED, [path, "'w'", "non-contiguous"])

    def test_universal_folder_missing_a_parameter_file(self):
        src = uo.writable_copy(os.path.join(uo.DEEPSPEED, "mlp_z2_fp32_ws2", "universal"), os.path.join(self.tmp, "src"))
        missing = os.path.join(src, "global_step3", "zero", "fc1.weight", "fp32.pt")
        os.remove(missing)
        self.refused(os.path.join(src, "global_step3"), uo.NOT_FOUND, [missing])

    def test_truncated_model_h5(self):
        src = os.path.join(self.tmp, "src")
        p = uo.run(["to-fp32", os.path.join(uo.DEEPSPEED, "mlp_z2_fp32_ws2", "checkpoint"), src, "--format", "hdf5",
                    "--no-progress"], 1)
        self.assertEqual(p.returncode, 0, p.stderr)
        path = os.path.join(src, "model.h5")
        os.truncate(path, 3000)
        self.refused(path, uo.DATA_LOSS, [path, "truncated"])


if __name__ == "__main__":
    unittest.main()
