#!/usr/bin/python3
"""The benchmark's checkpoint generator (bench/gen_checkpoint.cc, `ucp-bench-gen`) against three
independent oracles, for ZeRO-1/2/3 and BF16_Optimizer, fp32/fp16/bf16, DP 1 to 4:

(a) torch reads what our reader reads: every generated file is loaded by torch 1.13 (torch's zip
    reader and unpickler; DeepSpeed's classes become inert stand-ins that record how the pickle
    built them) and rendered in the canonical form `ucp_pt_tool dump` prints for our reader; the two
    must be identical, tensor bytes included.
(b) the layout is DeepSpeed's: generated with the shape of a real fixture (the tiny "gpt"), the files
    must have the fixture's exact skeleton: file names, every key in order, every value that does not
    depend on training (types, classes of pickled objects, shapes, dtypes, strides, storage sizes,
    offsets and sharing, paddings, fragment addresses, ...), only tensor values differing. And the
    padding and partition rules of the format spec (section 3) are recomputed here from the
    param_shapes and checked on both the fixture and the generated files (bench shape too: odd sizes,
    frozen parameters, int/float buffers, DP 3, several ZeRO-3 sub-groups).
(c) the values are the ones intended: `--expect` (computed by the generator from its value functions,
    not from the partitions) equals both `ucp-reshard to-fp32` of the checkpoint (`ucp-reshard diff`,
    bitwise) and a Python re-implementation of zero_to_fp32's reconstruction run on torch's view of
    the files; the model's 16-bit weights are the fp32 masters rounded to nearest even.
"""

import collections
import glob
import json
import math
import os
import pickle
import subprocess
import sys
import tempfile
import types
import unittest
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_oracle_util as util  # noqa: E402
import ucp_oracle  # noqa: E402

BUILD_DIR = os.environ.get("UCP_BUILD_DIR", "")
GEN = os.path.join(BUILD_DIR, "ucp-bench-gen")
FIXTURES = ucp_oracle.DEEPSPEED
FIXTURE_CLIENT_KEYS = {"generator", "kind"}  # client_state of the script that trained the fixtures
FIXTURE_SHAPE = ["--layers", "2", "--hidden", "16", "--vocab", "61", "--seq", "8", "--steps", "3",
                 "--no-frozen", "--no-extra-buffers"]
# Odd sizes so that every padding rule has work to do; frozen adapter and extra buffers on.
BENCH_SHAPE = ["--layers", "2", "--hidden", "13", "--vocab", "37", "--seq", "10", "--steps", "7"]

# name, generator flags, fixture with the same configuration (None: no such fixture), ranks for to-fp32
CONFIGS = [
    ("z1_bf16_dp2", ["--stage", "1", "--precision", "bf16", "--dp", "2"], "gpt_z1_bf16_ws2", 2),
    ("z1_fp32_dp1", ["--stage", "1", "--precision", "fp32", "--dp", "1"], "gpt_z1_fp32_ws1", 1),
    ("z1_fp16_dp4", ["--stage", "1", "--precision", "fp16", "--dp", "4"], "gpt_z1_fp16_ws4", 3),
    ("z2_bf16_dp4", ["--stage", "2", "--precision", "bf16", "--dp", "4"], "gpt_z2_bf16_ws4", 2),
    ("z2_fp16_dp2", ["--stage", "2", "--precision", "fp16", "--dp", "2"], "gpt_z2_fp16_ws2", 2),
    ("z2_fp32_dp3", ["--stage", "2", "--precision", "fp32", "--dp", "3"], None, 3),
    ("z3_fp32_dp2", ["--stage", "3", "--precision", "fp32", "--dp", "2", "--groups", "2"], "gpt_z3_fp32_ws2", 2),
    ("z3_bf16_dp4", ["--stage", "3", "--precision", "bf16", "--dp", "4", "--groups", "1"], "gpt1g_z3_bf16_ws4", 4),
    ("z3_fp16_dp2", ["--stage", "3", "--precision", "fp16", "--dp", "2", "--groups", "1"], "gpt1g_z3_fp16_ws2", 1),
    ("z3_fp16_dp3_subgroups", ["--stage", "3", "--precision", "fp16", "--dp", "3", "--groups", "2",
                               "--sub-group-size", "300"], None, 2),
    ("bf16opt_dp2", ["--stage", "1", "--precision", "bf16", "--bf16-optimizer", "--dp", "2"], "gpt_z1_bf16_bf16opt_ws2", 2),
    ("bf16opt_dp3", ["--stage", "1", "--precision", "bf16", "--bf16-optimizer", "--dp", "3"], None, 2),
]
# Real fixtures with frozen parameters and several buffers: the rules below hold on them too.
MLP_FIXTURES = ["mlp_z1_bf16_ws2", "mlp_z2_fp16_ws4", "mlp_z3_bf16_ws4", "mlp_z3_fp32_ws2", "mlp_z1_bf16_bf16opt_ws4"]


# ------------------------------------------------------------------------------ torch's view

class _StubAttr:
    """What getattr(StubClass, 'NAME') returns (ZeroStageEnum members are pickled that way)."""

    def __init__(self, cls, attr):
        self.cls, self.attr = cls, attr


class _StubMeta(type):
    def __getattr__(cls, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _StubAttr(cls, attr)


def _stub_class(module, name, cache={}):
    key = (module, name)
    if key not in cache:
        def __new__(cls, *args):
            obj = object.__new__(cls)
            obj._args, obj._kind, obj._state = args, "newobj", None  # NEWOBJ calls __new__ only
            return obj

        def __init__(self, *args):
            self._kind = "reduce"  # a REDUCE call of the class runs __init__ too

        def __setstate__(self, state):
            self._state = state

        cache[key] = _StubMeta(name, (), {"__new__": __new__, "__init__": __init__, "__setstate__": __setstate__,
                                          "_module": module, "_name": name})
    return cache[key]


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module in ("__builtin__", "builtins") and name == "getattr":
            return getattr  # getattr(StubClass, 'x') goes through _StubMeta
        if module.split(".")[0] in ("torch", "collections", "builtins", "__builtin__", "_codecs", "copyreg", "copy_reg"):
            return super().find_class(module, name)
        return _stub_class(module, name)


_pickle_module = types.ModuleType("bench_gen_pickle")
_pickle_module.Unpickler = _Unpickler
_pickle_module.load = pickle.load


def torch_load(path):
    """torch's own zip reader and persistent-id loader with our find_class (Debian's torch 1.13
    torch.load ignores pickle_module for zip files, so this calls what it hands them to)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.serialization._open_zipfile_reader(path) as zf:
            return torch.serialization._load(zf, None, _pickle_module, encoding="utf-8")


def render(x):
    """Canonical form of torch's result, as `ucp_pt_tool dump` prints ours."""
    if isinstance(x, _StubAttr):
        return {"object": {"callable": {"global": "builtins.getattr"}, "kind": "reduce",
                           "args": {"tuple": [render(x.cls), x.attr]}}}
    if isinstance(x, _StubMeta):
        return {"global": f"{x._module}.{x._name}"}
    if isinstance(type(x), _StubMeta):
        out = {"callable": render(type(x)), "kind": x._kind, "args": {"tuple": [render(a) for a in x._args]}}
        if x._state is not None:
            out["state"] = render(x._state)
        return {"object": out}
    t = type(x)
    if t is dict:
        return {"dict": [[render(k), render(v)] for k, v in x.items()]}
    if t is collections.OrderedDict:
        out = {"odict": [[render(k), render(v)] for k, v in x.items()]}
        if vars(x):
            out["state"] = render(dict(vars(x)))
        return out
    if t in (list, tuple, set):
        return {t.__name__: [render(v) for v in x]}
    return util.render(x, 2)


# ------------------------------------------------------------------------------ helpers

def generate(out, flags, expect=None):
    cmd = [GEN, "--out", out] + flags + (["--expect", expect] if expect else [])
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.strip()}")
    return json.loads(p.stdout)


def tag_dir(save_dir):
    with open(os.path.join(save_dir, "latest")) as f:
        return os.path.join(save_dir, f.read())


def strip_values(tree):
    """Skeleton of a dump: tensor and storage bytes removed, everything else kept."""
    if isinstance(tree, list):
        return [strip_values(e) for e in tree]
    if isinstance(tree, dict):
        return {k: strip_values(v) for k, v in tree.items() if k != "hex"}
    return tree


def drop_client_keys(tree):
    if "dict" in tree:
        tree = dict(tree, dict=[e for e in tree["dict"] if e[0] not in FIXTURE_CLIENT_KEYS])
    return tree


def numel(shape):
    return math.prod(shape)


def align(x, a):
    return (x + a - 1) // a * a


def ceil_div(a, b):
    return (a + b - 1) // b


def file_kind(files):
    """(stage, bf16_optimizer) of a loaded checkpoint: {basename: torch tree}."""
    optim = files[sorted(n for n in files if n.endswith("optim_states.pt"))[0]]["optimizer_state_dict"]
    if "zero_stage" not in optim:
        return 1, True
    return {"optimizer_states": 1, "gradients": 2, "weights": 3}[optim["zero_stage"].attr], False


def rule_problems(files, dp):
    """Spec section 3 partition / padding rules and section 2 layout rules, recomputed from the
    param_shapes; returns a list of violations. `files`: {basename: torch tree} of one tag folder."""
    P = []
    stage, bf16opt = file_kind(files)
    model_names = sorted(n for n in files if n.endswith("model_states.pt"))
    optim_names = sorted((n for n in files if n.endswith("optim_states.pt")),
                         key=lambda n: int(n.split("zero_pp_rank_")[1].split("_")[0]))
    ms0 = files[model_names[0]]
    bf16 = any(n.startswith("bf16_") for n in optim_names)
    model_dtype = next(t.dtype for n, t in ms0["module"].items() if n not in ms0["buffer_names"])
    if bf16 != (model_dtype == torch.bfloat16):
        P.append(f"bf16_ prefix {bf16} but model dtype {model_dtype}")
    want_models = [f"zero_pp_rank_{r}_mp_rank_00_model_states.pt" for r in range(dp)] if stage == 3 \
        else ["mp_rank_00_model_states.pt"]
    if model_names != sorted(want_models):
        P.append(f"model files {model_names}, expected {sorted(want_models)}")
    if len(optim_names) != dp:
        P.append(f"{len(optim_names)} optimizer files for dp {dp}")
    shapes = ms0["param_shapes"]
    frozen = ms0["frozen_param_shapes"]
    if (stage >= 2) != (frozen is not None):
        P.append(f"frozen_param_shapes is {type(frozen).__name__} at stage {stage}")
    for name, ms in ((n, files[n]) for n in model_names):
        if ms["dp_world_size"] != dp:
            P.append(f"{name}: dp_world_size {ms['dp_world_size']}")
        rank = int(name.split("_")[3]) if stage == 3 else 0
        if bool(ms["shared_params"]) != (rank == 0):
            P.append(f"{name}: shared_params {ms['shared_params']} on rank {rank}")
        for alias, source in ms0["shared_params"].items():
            a, s = ms["module"][alias], ms["module"][source]
            if a.storage().data_ptr() != s.storage().data_ptr() or a.storage_offset() != s.storage_offset():
                P.append(f"{name}: tied {alias} does not share {source}'s storage")

    if stage <= 2:
        module = ms0["module"]
        for g, group in enumerate(shapes):
            names = list(group)
            T = sum(numel(s) for s in group.values())
            Pg = align(T, 2 * dp)
            S = Pg // dp
            # Model: views of one flat buffer of P elements, at the flattening offsets.
            ptrs = {module[n].storage().data_ptr() for n in names}
            if len(ptrs) != 1:
                P.append(f"group {g}: module weights in {len(ptrs)} storages")
            if module[names[0]].storage().size() != Pg:
                P.append(f"group {g}: flat buffer of {module[names[0]].storage().size()} elements, expected {Pg}")
            o = 0
            for n in names:
                if module[n].storage_offset() != o:
                    P.append(f"{n}: offset {module[n].storage_offset()} in the flat buffer, expected {o}")
                o += numel(group[n])
            for r, oname in enumerate(optim_names):
                osd = files[oname]["optimizer_state_dict"]
                left = r * S
                pad_zero = S if T <= left else (left + S - T if T < left + S else 0)
                pad = (Pg - T if r == dp - 1 else 0) if bf16opt else pad_zero
                if osd["group_paddings"][g] != pad:
                    P.append(f"{oname}: group_paddings[{g}] {osd['group_paddings'][g]}, expected {pad}")
                if osd["partition_count"][g] != dp:
                    P.append(f"{oname}: partition_count[{g}] {osd['partition_count'][g]}")
                part = osd["single_partition_of_fp32_groups"][g]
                want = S if bf16opt else S - pad
                if part.numel() != want or part.storage().size() != S or part.dtype != torch.float32:
                    P.append(f"{oname}: fp32 partition {g} has {part.numel()} of {part.storage().size()} elements, "
                             f"expected {want} of {S}")
                st = osd["base_optimizer_state"]["state"][g]
                for k in ("exp_avg", "exp_avg_sq"):
                    if st[k].numel() != S:
                        P.append(f"{oname}: {k}[{g}] has {st[k].numel()} elements, expected {S}")
                # param_slice_mappings: section 3.3
                want_map, o = [], 0
                for n in names:
                    k = numel(group[n])
                    lo, hi = max(o, left), min(o + k, left + S)
                    if o < left + S and o + k > left:
                        want_map.append((n, lo - left, hi - lo))
                    o += k
                got = [(n, fa._state["start"], fa._state["numel"]) for n, fa in osd["param_slice_mappings"][g].items()]
                if got != want_map:
                    P.append(f"{oname}: param_slice_mappings[{g}] {got}, expected {want_map}")
                if type(osd["param_slice_mappings"][g]) is not collections.OrderedDict:
                    P.append(f"{oname}: param_slice_mappings[{g}] is not an OrderedDict")
        if stage == 2:
            for n, shape in frozen.items():
                f = ms0["frozen_param_fragments"][n]
                if tuple(f.shape) != tuple(shape) or f.storage().data_ptr() != module[n].storage().data_ptr():
                    P.append(f"frozen {n}: fragment {tuple(f.shape)} not the module's full tensor")
    else:
        for r, oname in enumerate(optim_names):
            osd = files[oname]["optimizer_state_dict"]
            if osd["partition_count"] != dp:
                P.append(f"{oname}: partition_count {osd['partition_count']}")
            flat = osd["fp32_flat_groups"]
            if len(flat) != len(shapes):
                P.append(f"{oname}: {len(flat)} fp32 groups for {len(shapes)} param_shapes entries")
            for k, group in enumerate(shapes):
                want = sum(ceil_div(numel(s), dp) for s in group.values())
                if flat[k].numel() != want or flat[k].storage().size() != want:
                    P.append(f"{oname}: fp32_flat_groups[{k}] has {flat[k].numel()} elements, expected {want}")
                st = osd["optimizer_state_dict"]["state"][k]
                if st["exp_avg"].numel() != want or st["exp_avg_sq"].numel() != want:
                    P.append(f"{oname}: Adam state {k} has {st['exp_avg'].numel()} elements, expected {want}")
            listed = sorted(i for pg in osd["optimizer_state_dict"]["param_groups"] for i in pg["params"])
            if listed != list(range(len(shapes))):
                P.append(f"{oname}: param_groups list sub-groups {listed}")
        for name in model_names:
            ms, r = files[name], int(name.split("_")[3])
            for n, t in ms["module"].items():
                if n not in ms["buffer_names"] and t.numel() != 0:
                    P.append(f"{name}: module[{n}] has {t.numel()} elements (ZeRO-3 placeholders are empty)")
            for n, shape in frozen.items():
                f = ms["frozen_param_fragments"][n]
                if f.numel() != ceil_div(numel(shape), dp):
                    P.append(f"{name}: frozen fragment {n} has {f.numel()} elements, expected {ceil_div(numel(shape), dp)}")
    return P


def consolidate(files, dp):
    """zero_to_fp32's reconstruction (spec 3.5), on torch's view of the files, with frozen parameters
    from the module at ZeRO-1 / BF16 and buffers converted like ucp-reshard (floating -> fp32)."""
    stage, bf16opt = file_kind(files)
    model_names = sorted(n for n in files if n.endswith("model_states.pt"))
    optim_names = sorted((n for n in files if n.endswith("optim_states.pt")),
                         key=lambda n: int(n.split("zero_pp_rank_")[1].split("_")[0]))
    ms0 = files[model_names[0]]
    out = {}
    for n in ms0["buffer_names"]:
        t = ms0["module"][n]
        out[n] = t.float() if t.is_floating_point() else t
    for n, shape in (ms0["frozen_param_shapes"] or {}).items():
        if stage == 3:
            full = torch.cat([files[m]["frozen_param_fragments"][n].reshape(-1) for m in model_names])
            out[n] = full[:numel(shape)].reshape(shape).float()
        else:
            out[n] = ms0["frozen_param_fragments"][n].float()
    trainable = {n for g in ms0["param_shapes"] for n in g}
    if ms0["frozen_param_shapes"] is None:  # ZeRO-1 / BF16: frozen only in the module
        for n, t in ms0["module"].items():
            if n not in trainable and n not in ms0["buffer_names"] and n not in ms0["shared_params"]:
                out[n] = t.float()
    osds = [files[n]["optimizer_state_dict"] for n in optim_names]
    if stage <= 2:
        for g, group in enumerate(ms0["param_shapes"]):
            full = torch.cat([o["single_partition_of_fp32_groups"][g] for o in osds])
            o = 0
            for n, shape in group.items():
                out[n] = full[o:o + numel(shape)].reshape(shape)
                o += numel(shape)
    else:
        merged = collections.OrderedDict((n, s) for g in ms0["param_shapes"] for n, s in g.items())
        per_rank = [torch.cat(o["fp32_flat_groups"]) for o in osds]
        o = 0
        for n, shape in merged.items():
            pn = ceil_div(numel(shape), dp)
            out[n] = torch.cat([v[o:o + pn] for v in per_rank])[:numel(shape)].reshape(shape)
            o += pn
    for alias, source in ms0["shared_params"].items():
        out[alias] = out[source]
    return out


def load_tag(save_dir):
    d = tag_dir(save_dir)
    return {os.path.basename(p): torch_load(p) for p in sorted(glob.glob(os.path.join(d, "*.pt")))}


# ------------------------------------------------------------------------------ tests

class BenchGenerator(unittest.TestCase):
    def setUp(self):
        util.require_tool(self)
        if not os.access(GEN, os.X_OK):
            self.fail(f"{GEN} is missing: build the ucp-bench-gen target")
        if not os.access(ucp_oracle.UCP, os.X_OK):
            self.fail("UCP_RESHARD is not set or not executable")
        self.tmp = tempfile.TemporaryDirectory(prefix="ucp_bench_gen_")
        self.addCleanup(self.tmp.cleanup)

    def _torch_equals_ours(self, save_dir):
        paths = sorted(glob.glob(os.path.join(tag_dir(save_dir), "*.pt")))
        self.assertTrue(paths)
        for path, ours in zip(paths, util.dump_files(paths)):
            for problem in util.zip_problems(path):
                self.fail(f"{path}: {problem}")
            d = util.json_diff(util.normalize(render(torch_load(path))), util.normalize(ours))
            self.assertIsNone(d, f"{os.path.basename(path)}: torch and ucp_pt_tool dump differ at {d}")

    def test_a_torch_reads_what_we_read(self):
        for name, flags, _, _ in CONFIGS:
            with self.subTest(config=name):
                out = os.path.join(self.tmp.name, "a_" + name)
                generate(out, flags + BENCH_SHAPE)
                self._torch_equals_ours(out)

    def test_b_layout_matches_the_fixture(self):
        for name, flags, fixture, _ in CONFIGS:
            if fixture is None:
                continue
            with self.subTest(config=name, fixture=fixture):
                out = os.path.join(self.tmp.name, "b_" + name)
                generate(out, flags + FIXTURE_SHAPE)
                real = os.path.join(FIXTURES, fixture, "checkpoint")
                with open(os.path.join(real, "latest")) as f, open(os.path.join(out, "latest")) as g:
                    self.assertEqual(g.read(), f.read(), "latest")
                ours_files = sorted(os.listdir(tag_dir(out)))
                self.assertEqual(ours_files, sorted(os.listdir(tag_dir(real))), "file names")
                ours = util.dump_files([os.path.join(tag_dir(out), f) for f in ours_files])
                theirs = util.dump_files([os.path.join(tag_dir(real), f) for f in ours_files])
                for f, a, b in zip(ours_files, ours, theirs):
                    d = util.json_diff(util.normalize(strip_values(a)), util.normalize(strip_values(drop_client_keys(b))))
                    self.assertIsNone(d, f"{f}: skeleton differs from the real fixture at {d}")
                dp = int(fixture.rsplit("ws", 1)[1])
                self.assertEqual(rule_problems(load_tag(real), dp), [], f"rules on the fixture {fixture}")
                self.assertEqual(rule_problems(load_tag(out), dp), [], "rules on the generated files")

    def test_b_rules_hold_on_fixtures_with_frozen_params_and_on_bench_shapes(self):
        for fixture in MLP_FIXTURES:
            with self.subTest(fixture=fixture):
                files = load_tag(os.path.join(FIXTURES, fixture, "checkpoint"))
                self.assertEqual(rule_problems(files, int(fixture.rsplit("ws", 1)[1])), [])
        for name, flags, _, _ in CONFIGS:
            with self.subTest(config=name):
                out = os.path.join(self.tmp.name, "r_" + name)
                generate(out, flags + BENCH_SHAPE)
                files = load_tag(out)
                dp = int(flags[flags.index("--dp") + 1])
                self.assertEqual(rule_problems(files, dp), [])
                ms0 = files[sorted(n for n in files if n.endswith("model_states.pt"))[0]]
                self.assertIn("frozen_adapter.weight", ms0["module"])
                self.assertEqual(ms0["buffer_names"], ["causal_mask", "position_ids", "inv_freq"])
                if "--sub-group-size" in flags:
                    self.assertGreater(len(ms0["param_shapes"]), 2, "sub_group_size should split the groups")

    def test_c_values_are_the_intended_ones(self):
        for name, flags, _, ranks in CONFIGS:
            with self.subTest(config=name):
                out = os.path.join(self.tmp.name, "c_" + name)
                expect_path = os.path.join(self.tmp.name, f"c_{name}.expect.safetensors")
                generate(out, flags + BENCH_SHAPE, expect=expect_path)
                expect = ucp_oracle.read_safetensors(expect_path)
                dp = int(flags[flags.index("--dp") + 1])
                files = load_tag(out)
                # Python's own consolidation of torch's view of the files.
                mine = consolidate(files, dp)
                self.assertEqual(sorted(mine), sorted(expect))
                for n in expect:
                    self.assertTrue(ucp_oracle.bits_equal(mine[n].contiguous(), expect[n]), f"{n}: python consolidation")
                # Model weights are the masters rounded to the model dtype.
                ms0 = files[sorted(n for n in files if n.endswith("model_states.pt"))[0]]
                trainable = [n for g in ms0["param_shapes"] for n in g]
                if "--stage" in flags and flags[flags.index("--stage") + 1] != "3":
                    for n in trainable:
                        lp = ms0["module"][n]
                        self.assertTrue(ucp_oracle.bits_equal(lp, expect[n].to(lp.dtype)), f"{n}: module weight")
                # ucp-reshard to-fp32, compared with ucp-reshard diff (bitwise).
                dst = os.path.join(self.tmp.name, f"c_{name}.out")
                p = ucp_oracle.run(["to-fp32", out, dst], ranks=ranks)
                self.assertEqual(p.returncode, 0, p.stderr)
                d = subprocess.run([ucp_oracle.UCP, "diff", dst, expect_path], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, timeout=120)
                self.assertEqual(d.returncode, 0, d.stdout + d.stderr)

    def test_values_do_not_depend_on_dp_and_seed_changes_them(self):
        # The same model at DP 1 and DP 4 consolidates to the same weights; another seed does not.
        e1, e4, e9 = (os.path.join(self.tmp.name, f"e{i}.safetensors") for i in (1, 4, 9))
        generate(os.path.join(self.tmp.name, "s1"), ["--stage", "2", "--dp", "1"] + BENCH_SHAPE, expect=e1)
        generate(os.path.join(self.tmp.name, "s4"), ["--stage", "3", "--dp", "4"] + BENCH_SHAPE, expect=e4)
        generate(os.path.join(self.tmp.name, "s9"), ["--stage", "2", "--dp", "1", "--seed", "9"] + BENCH_SHAPE, expect=e9)
        a, b, c = (ucp_oracle.read_safetensors(p) for p in (e1, e4, e9))
        for n in a:
            self.assertTrue(ucp_oracle.bits_equal(a[n], b[n]), n)
        self.assertFalse(ucp_oracle.bits_equal(a["wte.weight"], c["wte.weight"]))
        w = a["blocks.0.qkv.weight"]
        self.assertGreater(w.std().item(), 0.01, "values should look random, not constant")
        self.assertEqual(len(set(w.reshape(-1).tolist())), w.numel(), "values should not repeat")

    def test_rejects_bad_options(self):
        for flags in (["--stage", "4"], ["--precision", "fp8"], ["--bf16-optimizer", "--precision", "fp16"],
                      ["--bf16-optimizer", "--stage", "2"], ["--dp", "0"], ["--params", "lots"]):
            with self.subTest(flags=flags):
                p = subprocess.run([GEN, "--out", os.path.join(self.tmp.name, "bad")] + flags,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
                self.assertNotEqual(p.returncode, 0)
                self.assertIn("ucp-bench-gen", p.stderr)
        out = os.path.join(self.tmp.name, "twice")
        generate(out, ["--params", "50K"])
        p = subprocess.run([GEN, "--out", out, "--params", "50K"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=60)
        self.assertNotEqual(p.returncode, 0, "an existing tag folder must not be overwritten silently")
        self.assertIn("--overwrite", p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
