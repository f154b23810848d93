"""to-dcp --with-optimizer: a DeepSpeed run continued under FSDP2 (Lingua, torchtitan) with its
optimizer state, checked with torch itself.

Reference state: what DeepSpeed itself resumes from, its universal checkpoint (ds_to_universal's
zero/<param>/{fp32,exp_avg,exp_avg_sq,step}.pt) where DeepSpeed gets it right, and the param groups
of DeepSpeed's own optimizer file. For each layout:
- the keys and their nesting (.metadata's planner_data) are the ones torch's own dcp.save writes for
  the same state dict (get_state_dict for Lingua, torchtitan's flattened optimizer state dict);
- a torch model and AdamW load our folder through get_state_dict / dcp.load / set_state_dict, and
  every parameter and optimizer state equals the reference bit for bit;
- one AdamW step from our state equals one step from the reference state, bit for bit;
- the same on 2 and 3 FSDP2 ranks (fully_shard on a gloo mesh), each loading its own shards."""

import json
import os
import re
import shutil
import tempfile
import unittest

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_optimizer_state_dict,
                                                     get_state_dict, set_state_dict)

import ucp_oracle as uo

# ZeRO-1/2/3 in fp32, bf16 and fp16, 1 and 2 param groups, at DP 1, 2 and 4: configs where
# ds_to_universal is right (see the fixtures' README).
FIXTURES = ["gpt_z2_fp32_ws2", "gpt_z1_bf16_ws4", "mlp_z2_fp16_ws1", "gpt1g_z3_bf16_ws2", "mlp_z3_fp32_ws2"]


def universal_state(name):
    """(param name -> {fp32, exp_avg, exp_avg_sq}, step, groups): DeepSpeed's own view of the state."""
    root = os.path.join(uo.DEEPSPEED, name, "checkpoint")
    with open(os.path.join(root, "latest")) as f:
        tag = f.read().strip()
    files = sorted(os.listdir(os.path.join(root, tag)))
    model = uo.load_deepspeed_file(os.path.join(root, tag, next(f for f in files if f.endswith("model_states.pt"))))
    optim = uo.load_deepspeed_file(os.path.join(root, tag, next(f for f in files
                                                                if f.endswith("zero_pp_rank_0_mp_rank_00_optim_states.pt"))))
    osd = optim["optimizer_state_dict"]
    inner = osd["optimizer_state_dict"] if "_z3_" in name else osd["base_optimizer_state"]
    flat = [list(shapes) for shapes in model["param_shapes"]]
    steps = {k: float(v["step"]) for k, v in inner["state"].items()}
    zero = os.path.join(uo.DEEPSPEED, name, "universal", tag, "zero")
    shapes = {p: tuple(shape) for group in model["param_shapes"] for p, shape in group.items()}
    params = {}
    for group in flat:
        for p in group:
            params[p] = {}
            for s in ("fp32", "exp_avg", "exp_avg_sq"):
                v = torch.load(os.path.join(zero, p, f"{s}.pt"), weights_only=False)
                v = v["param"] if isinstance(v, dict) else v  # ZeRO-3: the flat tensor itself
                params[p][s] = v.reshape(shapes[p])
    groups = []
    for g in inner["param_groups"]:
        names = [p for k in g["params"] for p in flat[k]]
        groups.append(({k: v for k, v in g.items() if k != "params"}, names))
    assert len(set(steps.values())) == 1, steps
    return params, next(iter(steps.values())), groups


def module_with(shapes):
    """A module whose parameters have exactly these names and shapes (nested submodules)."""
    root = torch.nn.Module()
    for fqn, shape in shapes.items():
        *path, leaf = fqn.split(".")
        m = root
        for part in path:
            if not hasattr(m, part):
                m.add_module(part, torch.nn.Module())
            m = getattr(m, part)
        m.register_parameter(leaf, torch.nn.Parameter(torch.zeros(shape)))
    return root


def adamw(model, groups):
    named = dict(model.named_parameters())
    return torch.optim.AdamW([{"params": [named[n] for n in names], **hyper} for hyper, names in groups])


def model_and_optimizer(params, groups):
    model = module_with({p: s["fp32"].shape for p, s in params.items()})
    return model, adamw(model, groups)


def reference(params, step, groups):
    """The model and AdamW holding DeepSpeed's state, loaded the plain torch way."""
    model, optim = model_and_optimizer(params, groups)
    named = dict(model.named_parameters())
    with torch.no_grad():
        for n, p in named.items():
            p.copy_(params[n]["fp32"])
    order = [n for _, names in groups for n in names]
    optim.load_state_dict({
        "state": {i: {"step": torch.tensor(step), "exp_avg": params[n]["exp_avg"].clone(),
                      "exp_avg_sq": params[n]["exp_avg_sq"].clone()} for i, n in enumerate(order)},
        "param_groups": [{**hyper, "params": list(range(sum(len(x) for _, x in groups[:g]),
                                                        sum(len(x) for _, x in groups[:g + 1])))}
                         for g, (hyper, _) in enumerate(groups)]})
    return model, optim


def layout_state_dict(model, optim, layout):
    """The state dict the framework's checkpointer hands to dcp.save / dcp.load."""
    if layout == "lingua":
        msd, osd = get_state_dict(model, optim)
        return {"model": msd, "optim": osd}
    msd, _ = get_state_dict(model, optim)
    osd = get_optimizer_state_dict(model, optim, options=StateDictOptions(flatten_optimizer_state_dict=True))
    return {**msd, "optimizer": osd}


def load_into(model, optim, folder, layout):
    """What the framework's checkpointer does on resume: its state dict filled by dcp.load, then set."""
    sd = layout_state_dict(model, optim, layout)
    dcp.load(sd, checkpoint_id=folder)
    if layout == "lingua":
        set_state_dict(model, optim, model_state_dict=sd["model"], optim_state_dict=sd["optim"])
    else:
        set_state_dict(model, optim, model_state_dict={k: v for k, v in sd.items() if k != "optimizer"},
                       optim_state_dict=sd["optimizer"])


def load_ours(folder, params, groups, layout):
    model, optim = model_and_optimizer(params, groups)
    load_into(model, optim, folder, layout)
    return model, optim


def one_step(model, optim, seed):
    gen = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=gen)
    optim.step()


def fsdp2_worker(rank, world, folder, name, layout, result_dir):
    """One rank of an FSDP2 run (fully_shard on a gloo mesh) resuming from our folder: checks its
    full parameters and Adam state against DeepSpeed's, takes one step and checks again."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import Shard, distribute_tensor
    dist.init_process_group("gloo", rank=rank, world_size=world)
    mesh = init_device_mesh("cpu", (world,))
    params, step, groups = universal_state(name)
    ref_model, ref_optim = reference(params, step, groups)
    model = module_with({p: s["fp32"].shape for p, s in params.items()})
    fully_shard(model, mesh=mesh)
    optim = adamw(model, groups)  # over the sharded parameters
    load_into(model, optim, folder, layout)
    failures = []

    def compare(what):
        ref_named = dict(ref_model.named_parameters())
        for n, p in model.named_parameters():
            if not uo.bits_equal(p.full_tensor().detach(), ref_named[n].detach()):
                failures.append(f"{what}: parameter {n}")
            for k in ("exp_avg", "exp_avg_sq", "step"):
                mine, theirs = optim.state[p][k], ref_optim.state[ref_named[n]][k]
                mine = mine.full_tensor() if hasattr(mine, "full_tensor") else mine
                if not uo.bits_equal(mine, theirs):
                    failures.append(f"{what}: {k} of {n}")

    compare("loaded")
    gen = torch.Generator().manual_seed(11)
    ref_named = dict(ref_model.named_parameters())
    for n, p in model.named_parameters():
        g = torch.randn(p.shape, generator=gen)
        ref_named[n].grad = g.clone()
        p.grad = distribute_tensor(g, mesh, [Shard(0)])
    optim.step()
    ref_optim.step()
    compare("after one AdamW step")
    with open(os.path.join(result_dir, f"rank{rank}.txt"), "w") as f:
        f.write("\n".join(failures))
    dist.barrier()  # rank 0 hosts the store: no rank tears down while another still talks to it
    dist.destroy_process_group()


class ToDcpWithOptimizer(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ucp-oracle-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def assert_same_state(self, ours, ref, what):
        (m1, o1), (m2, o2) = ours, ref
        for (n, a), (_, b) in zip(m1.named_parameters(), m2.named_parameters()):
            self.assertTrue(uo.bits_equal(a.detach(), b.detach()), f"{what}: parameter {n}")
        s1, s2 = o1.state_dict(), o2.state_dict()
        self.assertEqual(s1["param_groups"], s2["param_groups"], what)
        for i, st in s2["state"].items():
            for k, v in st.items():
                self.assertTrue(uo.bits_equal(s1["state"][i][k], v), f"{what}: state {i} {k}")

    def assert_keys_as_torch_writes(self, ours, ref_model, ref_optim, layout):
        theirs = os.path.join(self.tmp, f"torch-{layout}")
        dcp.save(layout_state_dict(ref_model, ref_optim, layout), checkpoint_id=theirs)
        a, b = FileSystemReader(ours).read_metadata(), FileSystemReader(theirs).read_metadata()
        model_only = {k for k in a.state_dict_metadata
                      if not k.startswith(("optim.", "optimizer.")) and k not in b.state_dict_metadata}
        # Ours also holds the buffers and tied names the test module lacks (the whole model).
        self.assertEqual(set(a.state_dict_metadata) - model_only, set(b.state_dict_metadata), layout)
        for k, item in b.state_dict_metadata.items():
            self.assertEqual(tuple(a.planner_data[k]), tuple(b.planner_data[k]), k)
            self.assertEqual(type(a.state_dict_metadata[k]).__name__, type(item).__name__, k)
            if hasattr(item, "size"):
                self.assertEqual(a.state_dict_metadata[k].size, item.size, k)
                self.assertEqual(a.state_dict_metadata[k].properties.dtype, item.properties.dtype, k)

    def test_adam_continues_from_deepspeed(self):
        cases = [(name, layout, world, ranks)
                 for name in FIXTURES for layout in ("lingua", "torchtitan")
                 for world, ranks in ((1, 1), (3, 2))]
        for name, layout, world, ranks in cases:
            with self.subTest(source=name, layout=layout, M=world, ranks=ranks):
                params, step, groups = universal_state(name)
                out = os.path.join(self.tmp, f"{name}-{layout}-{world}-{ranks}")
                p = uo.run(["to-dcp", os.path.join(uo.DEEPSPEED, name, "checkpoint"), out, "--layout", layout,
                            "--with-optimizer", "--target-world-size", str(world), "--no-progress"], ranks)
                self.assertEqual(p.returncode, 0, p.stderr)
                ref = reference(params, step, groups)
                ours = load_ours(out, params, groups, layout)
                self.assert_same_state(ours, ref, "loaded")
                one_step(*ours, seed=7)
                one_step(*ref, seed=7)
                self.assert_same_state(ours, ref, "after one AdamW step")
                if world == 1 and ranks == 1:
                    self.assert_keys_as_torch_writes(out, *reference(params, step, groups), layout)

    def test_fsdp2_ranks_continue_from_deepspeed(self):
        for name, layout, world in (("gpt_z2_fp32_ws2", "lingua", 2), ("gpt1g_z3_bf16_ws2", "torchtitan", 3)):
            with self.subTest(source=name, layout=layout, M=world):
                out = os.path.join(self.tmp, f"fsdp-{name}-{layout}")
                p = uo.run(["to-dcp", os.path.join(uo.DEEPSPEED, name, "checkpoint"), out, "--layout", layout,
                            "--with-optimizer", "--target-world-size", str(world), "--no-progress"], 2)
                self.assertEqual(p.returncode, 0, p.stderr)
                results = os.path.join(self.tmp, f"fsdp-results-{name}")
                os.makedirs(results)
                uo.spawn_gloo(fsdp2_worker, world, out, name, layout, results)
                for rank in range(world):
                    with open(os.path.join(results, f"rank{rank}.txt")) as f:
                        self.assertEqual(f.read(), "", f"rank {rank}")

    def test_key_map_names_and_permutes_the_moments(self):
        # A user map renames the qkv projections and permutes their rows HF -> Meta (4 heads of 12
        # rows): Adam's moments must move with their parameter's rows, or the next step differs.
        key_map = os.path.join(self.tmp, "map.json")
        with open(key_map, "w") as f:
            json.dump({"rename": [{"from": "blocks\\.(\\d+)\\.qkv\\.weight", "to": "layers.$1.attention.wqkv.weight",
                                   "rotary": "hf_to_meta", "heads": "n_heads"}], "keep_unmatched": True}, f)
        config = os.path.join(self.tmp, "config.json")
        with open(config, "w") as f:
            json.dump({"num_attention_heads": 4, "num_key_value_heads": 4, "head_dim": 12, "hidden_size": 16}, f)
        name = "gpt_z2_fp32_ws2"
        params, step, groups = universal_state(name)

        def renamed(p):
            return re.sub(r"^blocks\.(\d+)\.qkv\.weight$", r"layers.\1.attention.wqkv.weight", p)

        def hf_to_meta(w):  # each head's two halves interleaved as rotary pairs (the standard formula's inverse)
            return w.view(4, 2, 6, w.shape[1]).transpose(1, 2).reshape(w.shape)

        mapped = {renamed(p): {k: (hf_to_meta(v) if renamed(p) != p else v) for k, v in s.items()} for p, s in params.items()}
        mapped_groups = [(hyper, [renamed(n) for n in names]) for hyper, names in groups]
        for layout in ("lingua", "torchtitan"):
            with self.subTest(layout=layout):
                out = os.path.join(self.tmp, f"mapped-{layout}")
                p = uo.run(["to-dcp", os.path.join(uo.DEEPSPEED, name, "checkpoint"), out, "--layout", layout,
                            "--with-optimizer", "--key-map", key_map, "--model-config", config,
                            "--target-world-size", "2", "--no-progress"], 2)
                self.assertEqual(p.returncode, 0, p.stderr)
                ref = reference(mapped, step, mapped_groups)
                ours = load_ours(out, mapped, mapped_groups, layout)
                self.assert_same_state(ours, ref, "loaded")
                one_step(*ours, seed=3)
                one_step(*ref, seed=3)
                self.assert_same_state(ours, ref, "after one AdamW step")


class Refusals(uo.BadInputCase):
    """One error line, the same exit code from 1 and 3 ranks, nothing written."""
    SRC = os.path.join(uo.DEEPSPEED, "gpt_z2_fp32_ws2", "checkpoint")
    TAG = ""

    def refused(self, src, args, code, fragments):
        self.check_failure(["to-dcp", src, os.path.join(self.tmp, "out"), *args], code, fragments, self.tmp, {"ckpt"})

    def test_optimizer_needs_a_layout(self):
        self.refused(self.ckpt, ["--with-optimizer"], uo.INVALID_ARGUMENT, ["--layout lingua or torchtitan"])

    def test_unknown_layout(self):  # a usage error, as CLI11 reports every bad option value
        out = os.path.join(self.tmp, "out")
        for ranks in (1, 3):
            p = uo.run(["to-dcp", self.ckpt, out, "--layout", "nested"], ranks)
            self.assertEqual(p.returncode, uo.INVALID_ARGUMENT, p.stderr)
            self.assertIn("--layout: nested not in {plain,lingua,torchtitan}", p.stdout + p.stderr)
            self.assertFalse(os.path.exists(out))

    def test_optimizer_from_a_dcp_source(self):
        self.refused(os.path.join(uo.GOLDEN, "dcp", "flat_ws1", "checkpoint"), ["--layout", "lingua", "--with-optimizer"],
                     uo.INVALID_ARGUMENT, ["DeepSpeed ZeRO files"])

    def test_optimizer_without_adam_moments(self):
        self.refused(os.path.join(uo.DEEPSPEED, "gpt_z2_fp32_sgd_ws2", "checkpoint"), ["--layout", "lingua", "--with-optimizer"],
                     uo.UNIMPLEMENTED, ["exp_avg", "momentum_buffer", "optim_states.pt"])


if __name__ == "__main__":
    unittest.main()
