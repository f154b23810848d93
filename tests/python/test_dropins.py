"""ucp_reshard's drop-ins against DeepSpeed 0.19's own zero_to_fp32 functions, imported from the
current-stack venv, on every fixture of both sets (tests/golden/deepspeed: DeepSpeed 0.14.5;
tests/golden/deepspeed-0.19: DeepSpeed 0.19), tensor for tensor (dtype, shape, bits), names in
DeepSpeed's order, tied names sharing one tensor.

Where DeepSpeed is wrong (README "to-fp32": frozen parameters dropped at ZeRO-1 / BF16_Optimizer,
BF16_Optimizer checkpoints refused) ours must be right, checked against independent oracles: the
model-state file's own weights (read with torch.load) and DeepSpeed's ds_to_universal output in the
fixture (universal/global_step3/zero/<name>/fp32.pt).

Runs with the venv's python (DeepSpeed 0.19, torch 2.x) and the wheel installed on PYTHONPATH:
see tests/python/run_pytest.sh. Env: UCP_GOLDEN_DIR (fixtures), UCP_BUILD_DIR (ucp-bench-gen).
"""

import copy
import glob
import json
import os
import resource
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

import deepspeed.utils.zero_to_fp32 as ds  # the real DeepSpeed 0.19, first (before any stub)

import ucp_reshard

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "oracle"))
from tensor_truth import bits_equal, dcp_tensors  # noqa: E402 (shared with the oracle tests)

GOLDEN = os.environ.get("UCP_GOLDEN_DIR", os.path.join(os.path.dirname(__file__), "..", "golden"))
SETS = ("deepspeed", "deepspeed-0.19")
# Fixtures of features refused by design (tests/oracle/ucp_oracle.py REFUSED, "to-fp32").
REFUSED = {"gpt_z2_fp32_legacy_ws2", "gpt_z2_fp32_moe2_ws4"}


def fixtures():
    out = []
    for s in SETS:
        d = os.path.join(GOLDEN, s)
        for n in sorted(os.listdir(d)):
            if os.path.isfile(os.path.join(d, n, "checkpoint", "latest")) and not n.startswith("resume_"):
                out.append(pytest.param(s, n, id=f"{s}/{n}"))
    return out


FIXTURES = fixtures()


def ckpt_dir(fixture_set, name):
    return os.path.join(GOLDEN, fixture_set, name, "checkpoint")


class FixtureTruth:
    """Independent facts about a fixture: its model-state file (torch.load with the real DeepSpeed
    classes) and DeepSpeed's universal checkpoint of it."""

    def __init__(self, fixture_set, name):
        d = ckpt_dir(fixture_set, name)
        with open(os.path.join(d, "latest")) as f:
            tag = f.read().strip()
        files = sorted(glob.glob(os.path.join(d, tag, "*model_states.pt")))
        ms = torch.load(files[0], weights_only=False, map_location="cpu")
        self.module = ms["module"]
        self.trainable = [n for g in ms["param_shapes"] for n in g]
        self.buffers = [n for n in ms["buffer_names"] if n in self.module]
        self.shared = dict(ms.get("shared_params") or {})
        fps = ms.get("frozen_param_shapes")
        skip = set(self.trainable) | set(self.buffers) | set(self.shared)
        self.frozen = list(fps) if fps else [n for n in self.module if n not in skip]
        self.shapes = {n: tuple(s) for g in ms["param_shapes"] for n, s in g.items()}
        self.universal = os.path.join(GOLDEN, fixture_set, name, "universal", tag, "zero")
        self.zero3 = "_z3_" in name

    def trainable_value(self, name):
        p = torch.load(os.path.join(self.universal, name, "fp32.pt"), weights_only=False)
        p = p["param"] if isinstance(p, dict) else p
        return p.reshape(self.shapes[name])


def assert_same_state_dict(ours, theirs, where):
    assert list(ours) == list(theirs), f"{where}: names or order differ"
    for k in theirs:
        assert bits_equal(ours[k], theirs[k]), f"{where}: {k}: {ours[k].dtype}{tuple(ours[k].shape)} vs {theirs[k].dtype}{tuple(theirs[k].shape)}"


def assert_same_sharing(ours, theirs, where):
    names = list(theirs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert (theirs[a] is theirs[b]) == (ours[a] is ours[b]), f"{where}: sharing of {a} and {b}"


def check_defects(ours, theirs, truth, where, exclude_frozen=False):
    """ours = DeepSpeed's + what DeepSpeed wrongly drops (frozen parameters at ZeRO-1)."""
    extra = [k for k in ours if k not in theirs]
    if extra:
        assert not exclude_frozen, f"{where}: extra names with frozen excluded: {extra}"
        assert not truth.zero3, f"{where}: extra names at ZeRO-3: {extra}"
        for k in extra:
            assert k in truth.frozen or truth.shared.get(k) in truth.frozen, f"{where}: extra {k} is not frozen"
            src = truth.shared.get(k, k)
            assert bits_equal(ours[k], truth.module[src].float()), f"{where}: frozen {k} vs the model weights"
    common = {k: v for k, v in ours.items() if k in theirs}
    theirs = dict(theirs)
    for k, v in theirs.items():
        if v.dtype in (torch.float16, torch.bfloat16) and common[k].dtype == torch.float32:
            # DeepSpeed leaves frozen parameters in 16-bit on some checkpoints, and bf16 master
            # weights (bf16_master_weights_and_grads) in bf16: ours are the same values widened exactly.
            assert "bf16master" in where or k in truth.frozen or truth.shared.get(k) in truth.frozen, \
                f"{where}: {k} is 16-bit and not frozen"
            theirs[k] = v.float()
    assert_same_state_dict(common, theirs, where)


def check_against_truth(ours, truth, where, exclude_frozen=False):
    """For checkpoints DeepSpeed cannot read (BF16_Optimizer): DeepSpeed's ds_to_universal output and
    the model weights."""
    want = truth.buffers + ([] if exclude_frozen else truth.frozen) + truth.trainable
    want += [a for a, s in truth.shared.items() if s in want]
    assert list(ours) == want, where
    for k in truth.trainable:
        assert bits_equal(ours[k], truth.trainable_value(k)), f"{where}: {k}"
    for k in truth.buffers:
        m = truth.module[k]
        assert bits_equal(ours[k], m.float() if m.is_floating_point() else m), f"{where}: buffer {k}"
    if not exclude_frozen:
        for k in truth.frozen:
            assert bits_equal(ours[k], truth.module[k].float()), f"{where}: frozen {k}"
    for a, s in truth.shared.items():
        if s in ours:
            assert ours[a] is ours[s], f"{where}: {a} shares {s}"


def deepspeed_or_none(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs), None
    except Exception as e:  # noqa: BLE001 - DeepSpeed's refusal is part of what we record
        return None, e


@pytest.mark.parametrize("fixture_set,name", FIXTURES)
def test_get_fp32_state_dict(fixture_set, name):
    d = ckpt_dir(fixture_set, name)
    if name in REFUSED:
        with pytest.raises(ucp_reshard.CheckpointError):
            ucp_reshard.get_fp32_state_dict_from_zero_checkpoint(d)
        return
    truth = FixtureTruth(fixture_set, name)
    for exclude in (False, True):
        where = f"{fixture_set}/{name} exclude_frozen={exclude}"
        ours = ucp_reshard.get_fp32_state_dict_from_zero_checkpoint(d, exclude_frozen_parameters=exclude)
        theirs, err = deepspeed_or_none(ds.get_fp32_state_dict_from_zero_checkpoint, d, exclude_frozen_parameters=exclude)
        if theirs is None:
            assert "bf16opt" in name, f"{where}: DeepSpeed failed where it should not: {err!r}"
            check_against_truth(ours, truth, where, exclude)
            continue
        check_defects(ours, theirs, truth, where, exclude)
        assert_same_sharing({k: ours[k] for k in theirs}, theirs, where)


@pytest.mark.parametrize("fixture_set,name", [f for f in FIXTURES if f.values[1] not in REFUSED])
def test_lazy_mode(fixture_set, name):
    d = ckpt_dir(fixture_set, name)
    where = f"{fixture_set}/{name} lazy"
    lazy = ucp_reshard.get_fp32_state_dict_from_zero_checkpoint(d, lazy_mode=True)
    eager = ucp_reshard.get_fp32_state_dict_from_zero_checkpoint(d)
    assert list(lazy) == list(eager)
    for k, t in lazy.items():
        assert t.dtype == eager[k].dtype and t.shape == eager[k].shape, f"{where}: {k} dtype/shape before reading"
    mat = {k: t.contiguous() for k, t in lazy.items()}
    assert_same_state_dict(mat, eager, where)
    theirs, err = deepspeed_or_none(ds.get_fp32_state_dict_from_zero_checkpoint, d, lazy_mode=True)
    if theirs is None:
        assert "bf16opt" in name, f"{where}: DeepSpeed failed: {err!r}"
        return
    for k, t in theirs.items():
        assert tuple(lazy[k].shape) == tuple(t.shape), f"{where}: {k}"
        # Same dtype, or DeepSpeed's 16-bit one widened (checked in check_defects).
        assert lazy[k].dtype == t.dtype or (lazy[k].dtype == torch.float32 and t.dtype in (torch.float16, torch.bfloat16)), k
    theirs = {k: t.contiguous() for k, t in theirs.items()}
    check_defects(mat, theirs, FixtureTruth(fixture_set, name), where)


@pytest.mark.parametrize("fixture_set", SETS)
@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_to_torch_tensor(fixture_set, dtype):
    # DeepSpeed's helper for lazy dicts, ours on ours and theirs on theirs (ZeRO-3: GatheredTensors).
    from ucp_reshard.zero_to_fp32 import to_torch_tensor
    name = "gpt_z3_fp32_ws2"
    d = ckpt_dir(fixture_set, name)
    ours = to_torch_tensor(ucp_reshard.get_fp32_state_dict_from_zero_checkpoint(d, lazy_mode=True), dtype=dtype)
    theirs = ds.to_torch_tensor(ds.get_fp32_state_dict_from_zero_checkpoint(d, lazy_mode=True), dtype=dtype)
    check_defects(ours, theirs, FixtureTruth(fixture_set, name), f"{fixture_set}/{name} to_torch_tensor {dtype}")
    assert_same_sharing(ours, theirs, name)
    empty = to_torch_tensor(ucp_reshard.get_fp32_state_dict_from_zero_checkpoint(d, lazy_mode=True),
                            return_empty_tensor=True, dtype=dtype)
    assert {k: (v.dtype, v.shape) for k, v in empty.items()} == {k: (v.dtype, v.shape) for k, v in ours.items()}


# ------------------------------------------------------------------ load_state_dict_from_zero_checkpoint

def model_like(state_dict, truth):
    """An nn.Module with a parameter or buffer of the right shape and dtype under every name of the
    checkpoint's model (tied names share one Parameter, frozen ones require no grad), initialised
    with random values."""
    root = torch.nn.Module()
    made = {}

    def owner(name):
        m = root
        parts = name.split(".")
        for p in parts[:-1]:
            if not hasattr(m, p):
                m.add_module(p, torch.nn.Module())
            m = getattr(m, p)
        return m, parts[-1]

    for name, t in state_dict.items():
        src = truth.shared.get(name)
        m, leaf = owner(name)
        if src is not None and src in made:
            setattr(m, leaf, made[src])
            continue
        if name in truth.buffers:
            init = torch.randint(0, 2, t.shape).to(t.dtype) if not t.is_floating_point() else torch.randn(t.shape)
            m.register_buffer(leaf, init)
        else:
            p = torch.nn.Parameter(torch.randn(t.shape), requires_grad=name not in truth.frozen)
            setattr(m, leaf, p)
            made[name] = p
    return root


@pytest.mark.parametrize("fixture_set,name", [f for f in FIXTURES if f.values[1] not in REFUSED])
def test_load_state_dict(fixture_set, name):
    d = ckpt_dir(fixture_set, name)
    where = f"{fixture_set}/{name} load_state_dict"
    truth = FixtureTruth(fixture_set, name)
    ours_sd = ucp_reshard.get_fp32_state_dict_from_zero_checkpoint(d)
    torch.manual_seed(0)
    model_a = model_like(ours_sd, truth)
    model_b = copy.deepcopy(model_a)
    init = {k: v.clone() for k, v in model_a.state_dict().items()}
    got = ucp_reshard.load_state_dict_from_zero_checkpoint(model_a, d)
    assert got is model_a
    ours = model_a.state_dict()
    _, err = deepspeed_or_none(ds.load_state_dict_from_zero_checkpoint, model_b, d)
    if err is not None:
        assert "bf16opt" in name, f"{where}: DeepSpeed failed: {err!r}"
        for k, v in ours.items():
            assert bits_equal(v, ours_sd[k].to(v.dtype)), f"{where}: {k}"
        return
    theirs = model_b.state_dict()
    for k in theirs:
        if bits_equal(ours[k], theirs[k]):
            continue
        # DeepSpeed left it as initialised (it dropped the frozen parameter): ours loaded the weights.
        assert bits_equal(theirs[k], init[k]), f"{where}: {k} differs and DeepSpeed did load it"
        assert k in truth.frozen or truth.shared.get(k) in truth.frozen, f"{where}: {k}"
        assert bits_equal(ours[k], truth.module[truth.shared.get(k, k)].float()), f"{where}: frozen {k}"


# ------------------------------------------------------------------ convert_zero_checkpoint_to_fp32_state_dict

def load_folder(out):
    files = sorted(os.listdir(out))
    sd = {}
    for f in files:
        p = os.path.join(out, f)
        if f.endswith(".safetensors"):
            from safetensors.torch import load_file
            sd.update(load_file(p))
        elif f.endswith(".bin"):
            sd.update(torch.load(p, weights_only=True))
    sd = dict(sorted(sd.items()))  # file order is not state-dict order (safetensors sorts)
    index = None
    for f in files:
        if f.endswith(".index.json"):
            with open(os.path.join(out, f)) as fh:
                index = json.load(fh)
    return files, sd, index


CONVERT_CASES = ["gpt_z2_bf16_ws2", "gpt_z3_fp16_ws4", "mlp_z1_fp32_ws2", "mlp_z3_bf16_ws4", "gpt1g_z3_bf16_ws2",
                 "gpt_z1_bf16_bf16opt_ws2"]


@pytest.mark.parametrize("fixture_set", SETS)
@pytest.mark.parametrize("name", CONVERT_CASES)
@pytest.mark.parametrize("safe", [False, True])
@pytest.mark.parametrize("shard", ["5GB", "5KB", None])
def test_convert(tmp_path, fixture_set, name, safe, shard):
    d = ckpt_dir(fixture_set, name)
    if not os.path.isdir(d):
        pytest.skip("no such fixture in this set")
    where = f"{fixture_set}/{name} safe={safe} shard={shard}"
    a, b = tmp_path / "ours", tmp_path / "theirs"
    os.makedirs(a)
    (a / "keep.txt").write_text("left alone")
    ucp_reshard.convert_zero_checkpoint_to_fp32_state_dict(d, str(a), max_shard_size=shard, safe_serialization=safe)
    assert (a / "keep.txt").read_text() == "left alone"
    os.remove(a / "keep.txt")
    files_a, sd_a, index_a = load_folder(a)
    _, err = deepspeed_or_none(ds.convert_zero_checkpoint_to_fp32_state_dict, d, str(b), max_shard_size=shard,
                               safe_serialization=safe)
    truth = FixtureTruth(fixture_set, name)
    eager = ucp_reshard.get_fp32_state_dict_from_zero_checkpoint(d)
    assert sorted(sd_a) == sorted(eager), where
    for k in eager:
        assert bits_equal(sd_a[k], eager[k]), f"{where}: {k} vs get_fp32_state_dict"
    rename = lambda f: f
    if err is not None and safe and truth.shared and "share memory" in str(err):
        # DeepSpeed's safetensors writer refuses tied weights (every fixture has them): compare with
        # its torch output instead, whose split is the same (both come from one size estimate).
        shutil.rmtree(b, ignore_errors=True)
        _, err = deepspeed_or_none(ds.convert_zero_checkpoint_to_fp32_state_dict, d, str(b), max_shard_size=shard,
                                   safe_serialization=False)
        rename = lambda f: f.replace("pytorch_model", "model").replace(".bin", ".safetensors")
    if err is not None:
        assert "bf16opt" in name, f"{where}: DeepSpeed failed: {err!r}"
        return
    files_b, sd_b, index_b = load_folder(b)
    files_b = sorted(rename(f) for f in files_b)
    if index_b is not None:
        index_b["weight_map"] = {k: rename(v) for k, v in index_b["weight_map"].items()}
    check_defects(sd_a, dict(sorted(sd_b.items())), truth, where)
    if set(sd_a) != set(sd_b):
        # DeepSpeed dropped frozen parameters (ZeRO-1): our files hold more, so shards may differ.
        for k in (index_b or {}).get("weight_map", {}):
            assert k in index_a["weight_map"], where
        return
    assert files_a == files_b, where
    if index_b is not None:
        assert index_a["weight_map"] == index_b["weight_map"], where
        if not safe:
            assert index_a == index_b, where


@pytest.mark.parametrize("fixture_set", SETS)
def test_tag_and_options(tmp_path, fixture_set):
    # tag given explicitly, the tag folder itself as checkpoint_dir, max_shard_size as an int,
    # exclude_frozen_parameters in the converter: each as DeepSpeed's function has it.
    name = "mlp_z2_fp16_ws2"
    d = ckpt_dir(fixture_set, name)
    with open(os.path.join(d, "latest")) as f:
        tag = f.read().strip()
    base = ucp_reshard.get_fp32_state_dict_from_zero_checkpoint(d)
    theirs = ds.get_fp32_state_dict_from_zero_checkpoint(d, tag=tag)
    ours = ucp_reshard.get_fp32_state_dict_from_zero_checkpoint(d, tag=tag)
    check_defects(ours, theirs, FixtureTruth(fixture_set, name), f"{fixture_set}/{name} tag")
    assert_same_state_dict(ucp_reshard.get_fp32_state_dict_from_zero_checkpoint(os.path.join(d, tag)), base, "tag folder")
    with pytest.raises(ucp_reshard.CheckpointNotFoundError):
        ucp_reshard.get_fp32_state_dict_from_zero_checkpoint(d, tag="global_step999")
    for kwargs in ({"max_shard_size": 600}, {"exclude_frozen_parameters": True, "max_shard_size": "0.5KB"}):
        a, b = tmp_path / f"a{len(kwargs)}", tmp_path / f"b{len(kwargs)}"
        ucp_reshard.convert_zero_checkpoint_to_fp32_state_dict(d, str(a), **kwargs)
        ds.convert_zero_checkpoint_to_fp32_state_dict(d, str(b), **kwargs)
        files_a, sd_a, index_a = load_folder(a)
        files_b, sd_b, index_b = load_folder(b)
        assert files_a == files_b and index_a == index_b, kwargs
        assert len(files_a) > 2, kwargs  # sharded
        check_defects(sd_a, sd_b, FixtureTruth(fixture_set, name), f"{fixture_set}/{name} {kwargs}",
                      exclude_frozen=kwargs.get("exclude_frozen_parameters", False))


# ------------------------------------------------------------------ readers, errors

def test_open_checkpoint_numpy_without_torch():
    d = ckpt_dir("deepspeed-0.19", "mlp_z3_bf16_ws4")
    script = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # torch "not installed"
        import numpy as np, ucp_reshard
        ck = ucp_reshard.open_checkpoint({d!r}, fp32=True)
        out = {{}}
        for name, t in ck.items():
            a = t.numpy()
            assert a.shape == tuple(t.shape) and a.dtype == t.dtype, name
            out[name] = a
        np.savez(sys.argv[1], **out)
        print(len(out), "ok")
    """)
    tmp = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"ucp-py-{os.getpid()}.npz")
    try:
        p = subprocess.run([sys.executable, "-c", script, tmp], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        arrays = dict(__import__("numpy").load(tmp))
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    eager = ucp_reshard.get_fp32_state_dict_from_zero_checkpoint(d)
    assert sorted(arrays) == sorted(eager)
    for k, v in eager.items():
        assert bits_equal(torch.from_numpy(arrays[k]), v), k


def test_open_checkpoint_native_dtypes():
    d = ckpt_dir("deepspeed-0.19", "gpt_z2_bf16_ws2")
    truth = FixtureTruth("deepspeed-0.19", "gpt_z2_bf16_ws2")
    ck = ucp_reshard.open_checkpoint(d)
    assert ck.zero_stage == 2 and ck.dp == 2
    for k in truth.buffers:
        assert ck[k].dtype == truth.module[k].dtype
        assert bits_equal(ck[k].contiguous(), truth.module[k]), k


@pytest.mark.parametrize("name", ["gpt_z2_bf16_ws2", "gpt_z3_fp32_ws2", "mlp_z1_fp16_ws4"])
def test_open_universal_and_optimizer_states(name):
    # DeepSpeed's own ds_to_universal output, read by us, against torch.load of its files; and the
    # same states read from the ZeRO files.
    base = os.path.join(GOLDEN, "deepspeed-0.19", name)
    truth = FixtureTruth("deepspeed-0.19", name)
    uni = ucp_reshard.open_checkpoint(os.path.join(base, "universal"))
    zero = ucp_reshard.open_checkpoint(os.path.join(base, "checkpoint"))
    assert uni.format == "universal" and zero.format.startswith("DeepSpeed")
    assert set(truth.trainable) <= set(uni)
    for state in ("exp_avg", "exp_avg_sq"):
        assert set(uni.optimizer_states[state]) == set(truth.trainable), state
        assert set(zero.optimizer_states[state]) == set(truth.trainable), state
    for k in truth.trainable:
        want = truth.trainable_value(k)
        assert bits_equal(uni[k].contiguous(), want), k
        assert bits_equal(zero[k].contiguous(), want), k
        for state in ("exp_avg", "exp_avg_sq"):
            f = torch.load(os.path.join(truth.universal, k, state + ".pt"), weights_only=False)
            f = f["param"] if isinstance(f, dict) else f
            f = f.reshape(truth.shapes[k])
            assert bits_equal(uni.optimizer_states[state][k].contiguous().reshape(truth.shapes[k]), f), (state, k)
            assert bits_equal(zero.optimizer_states[state][k].contiguous().reshape(truth.shapes[k]), f), (state, k)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_open_hdf5(tmp_path, dtype):
    # model.h5 of `ucp-reshard to-fp32 --format hdf5 --with-optimizer` (the build's command, run
    # alone), read through h5py: the same tensors as get_fp32_state_dict (cast to bf16 with
    # --dtype bf16) and the same optimizer states as the ZeRO files.
    pytest.importorskip("h5py")
    ucp = os.environ.get("UCP_RESHARD", "")
    if not ucp or not os.path.exists(ucp):
        pytest.skip("UCP_RESHARD not set")
    d = ckpt_dir("deepspeed-0.19", "gpt_z2_bf16_ws2")
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMIX_", "PMI_", "SLURM_"))}
    p = subprocess.run([ucp, "to-fp32", d, str(out), "--format", "hdf5", "--with-optimizer", "--dtype", dtype,
                        "--no-progress"], capture_output=True, text=True, env=env)
    if p.returncode == 5:
        pytest.skip("ucp-reshard built without parallel HDF5")
    assert p.returncode == 0, p.stderr
    eager = ucp_reshard.get_fp32_state_dict_from_zero_checkpoint(d)
    zero = ucp_reshard.open_checkpoint(d)
    want_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    for fp32 in (False, True):
        ck = ucp_reshard.open_checkpoint(str(out), fp32=fp32)
        assert ck.format.startswith("HDF5") and ck.zero_stage == 2
        assert sorted(ck) == sorted(eager)
        for k, v in eager.items():
            want = v.to(want_dtype) if v.is_floating_point() else v
            if fp32 and want.is_floating_point():
                want = want.float()
            got = ck[k].contiguous()
            assert ck[k].dtype == want.dtype and tuple(ck[k].shape) == tuple(want.shape), k
            assert bits_equal(got, want), k
            a = ck[k].numpy()
            if a.dtype.kind != "V" and str(want.dtype) != "torch.bfloat16":
                assert bits_equal(torch.from_numpy(a.copy()), want), k
    ck = ucp_reshard.open_checkpoint(str(out / "model.h5"))
    for state in ("exp_avg", "exp_avg_sq"):
        assert sorted(ck.optimizer_states[state]) == sorted(zero.optimizer_states[state])
        for k, t in zero.optimizer_states[state].items():
            got = ck.optimizer_states[state][k].contiguous().reshape(-1)
            assert bits_equal(got, t.contiguous().reshape(-1)), (state, k)


# zstd_ws2: torch needs zstandard to read it (tests/oracle/stack_dcp_items.py covers it).
DCP_FIXTURES = sorted(n for n in os.listdir(os.path.join(GOLDEN, "dcp"))
                      if os.path.isfile(os.path.join(GOLDEN, "dcp", n, "checkpoint", ".metadata"))
                      and not n.startswith("zstd")) \
    if os.path.isdir(os.path.join(GOLDEN, "dcp")) else []


@pytest.mark.parametrize("name", DCP_FIXTURES)
def test_open_dcp(tmp_path, name):
    # PyTorch DCP folders (tests/golden/dcp: uneven shards, 2x2 meshes cut along dimension 1,
    # nesting, bf16/fp16/int, 0-dim) against torch's own dcp_to_torch_save, tensor for tensor.
    d = os.path.join(GOLDEN, "dcp", name, "checkpoint")
    want = dcp_tensors(d, str(tmp_path))
    ck = ucp_reshard.open_checkpoint(d)
    assert sorted(ck) == sorted(want)
    for k, v in want.items():
        assert ck[k].dtype == v.dtype and tuple(ck[k].shape) == tuple(v.shape), k
        assert bits_equal(ck[k].contiguous(), v), k
    lazy = ucp_reshard.open_checkpoint(d, fp32=True)
    for k, v in want.items():
        assert bits_equal(lazy[k].contiguous(), v.float() if v.is_floating_point() else v), k


def test_zero_copy_view():
    # ZeRO-2 fp32 at DP 1: every trainable tensor is one fp32 run in the optimizer file.
    d = ckpt_dir("deepspeed-0.19", "gpt_z2_fp32_ws1")
    lazy = ucp_reshard.get_fp32_state_dict_from_zero_checkpoint(d, lazy_mode=True)
    eager = ucp_reshard.get_fp32_state_dict_from_zero_checkpoint(d)
    views = 0
    for k, t in lazy.items():
        m = t.contiguous()
        assert bits_equal(m, eager[k]), k
        if t._source.core.source_run(t._index) is not None:
            views += 1
            if m.is_floating_point():
                m.add_(1)  # copy-on-write: writable, and the file is untouched
    assert views > 0
    again = ucp_reshard.get_fp32_state_dict_from_zero_checkpoint(d)
    for k in eager:
        assert bits_equal(again[k], eager[k]), k


def test_errors_are_one_line_checkpoint_errors(tmp_path):
    with pytest.raises(ucp_reshard.CheckpointNotFoundError) as e:
        ucp_reshard.get_fp32_state_dict_from_zero_checkpoint(str(tmp_path / "nothing"))
    assert isinstance(e.value, FileNotFoundError) and "\n" not in str(e.value)
    bad = tmp_path / "ckpt"
    os.makedirs(bad / "global_step1")
    (bad / "latest").write_text("global_step1")
    src = ckpt_dir("deepspeed-0.19", "gpt_z2_bf16_ws2")
    for f in os.listdir(os.path.join(src, "global_step3")):
        data = open(os.path.join(src, "global_step3", f), "rb").read()
        if "optim" in f:
            data = data[: len(data) // 2]  # truncated
        (bad / "global_step1" / f).write_bytes(data)
    with pytest.raises(ucp_reshard.CheckpointError) as e:
        ucp_reshard.get_fp32_state_dict_from_zero_checkpoint(str(bad))
    assert isinstance(e.value, ValueError) and "\n" not in str(e.value) and "optim_states" in str(e.value)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_nothing_from_a_pickle_is_executed(tmp_path):
    # A model-state file whose pickle calls os.system when unpickled (torch.load(weights_only=False),
    # as DeepSpeed does, would run it): ours refuses it with one line and runs nothing.
    import pickle
    import zipfile
    src = os.path.join(ckpt_dir("deepspeed-0.19", "gpt_z2_bf16_ws2"), "global_step3")
    bad = tmp_path / "ckpt"
    os.makedirs(bad / "global_step3")
    (bad / "latest").write_text("global_step3")
    marker = tmp_path / "executed"
    for f in os.listdir(src):
        if f != "mp_rank_00_model_states.pt":
            shutil.copy(os.path.join(src, f), bad / "global_step3" / f)
    with zipfile.ZipFile(os.path.join(src, "mp_rank_00_model_states.pt")) as zin, \
            zipfile.ZipFile(bad / "global_step3" / "mp_rank_00_model_states.pt", "w", zipfile.ZIP_STORED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("/data.pkl"):
                data = pickle.dumps({"module": _Evil(str(marker))}, protocol=2)
            zout.writestr(item, data)
    for call in (lambda: ucp_reshard.get_fp32_state_dict_from_zero_checkpoint(str(bad)),
                 lambda: ucp_reshard.open_checkpoint(str(bad)),
                 lambda: ucp_reshard.convert_zero_checkpoint_to_fp32_state_dict(str(bad), str(tmp_path / "out"))):
        with pytest.raises(ucp_reshard.CheckpointError) as e:
            call()
        assert "\n" not in str(e.value) and "mp_rank_00_model_states.pt" in str(e.value), str(e.value)
    assert not marker.exists()


def test_no_mpi_in_the_module():
    # The extension links no MPI: in a plain process (no launcher variables), reading a checkpoint
    # maps no libmpi.
    d = ckpt_dir("deepspeed-0.19", "gpt_z3_bf16_ws2")
    script = ("import sys, ucp_reshard\n"
              "sd = ucp_reshard.get_fp32_state_dict_from_zero_checkpoint(sys.argv[1])\n"
              "maps = open('/proc/self/maps').read()\n"
              "print(len(sd), 'libmpi' in maps, 'libucp' in maps)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMIX_", "PMI_", "SLURM_"))}
    p = subprocess.run([sys.executable, "-c", script, d], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    n, mpi, _ = p.stdout.split()
    assert int(n) > 0 and mpi == "False", p.stdout


# ------------------------------------------------------------------ lazy mode's peak memory

def test_lazy_peak_memory(tmp_path):
    gen = os.path.join(os.environ.get("UCP_BUILD_DIR", ""), "ucp-bench-gen")
    if not os.path.exists(gen):
        pytest.skip("ucp-bench-gen not built (UCP_BUILD_DIR)")
    out = tmp_path / "ckpt"
    # ~125M parameters (~500 MB in fp32), ZeRO-2 bf16 at DP 2: fp32 masters split across 2 files
    # (assembled), frozen 16-bit and buffer tensors (widened); the largest tensor is the 64 MB embedding.
    p = subprocess.run([gen, "--out", str(out), "--layers", "8", "--hidden", "1024", "--vocab", "16000", "--seq", "64",
                        "--stage", "2", "--precision", "bf16", "--dp", "2"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    script = textwrap.dedent("""
        import sys, json
        def hwm():
            for line in open("/proc/self/status"):
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        import torch, ucp_reshard
        torch.zeros(1)
        before = hwm()
        sd = ucp_reshard.get_fp32_state_dict_from_zero_checkpoint(sys.argv[1], lazy_mode=True)
        largest, total = 0, 0
        for name, t in sd.items():
            x = t.contiguous()
            n = x.numel() * x.element_size()
            largest, total = max(largest, n), total + n
            float(x.sum()) if x.is_floating_point() else None
            del x
        print(json.dumps({"growth": hwm() - before, "largest": largest, "total": total}))
    """)
    p = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout.strip().splitlines()[-1])
    print(r)
    assert r["total"] > 5 * r["largest"], r  # the test means something only if the model is much bigger
    # One tensor at a time: the largest, plus what the interpreter and allocator keep (< 32 MB).
    assert r["growth"] < 1.5 * r["largest"] + (32 << 20), r
