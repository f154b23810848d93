"""Checks of `reshard` against independent oracles: DeepSpeed's own files for the same model at the
target world size (structure), the original checkpoint after a round trip N -> M -> N (values, bit
for bit outside the padding DeepSpeed leaves uninitialised), and to-fp32 of the result. Files are
read with torch.load (DeepSpeed classes as inert stubs, ucp_oracle)."""

import glob
import math
import os
import re

import torch

import ucp_oracle as U

TAG = "global_step3"


def parse_config(name):
    # Variants of the DeepSpeed 0.19 set that reshard must handle like the base config: ZeRO-3
    # sub-groups (_sg<N>), bf16 master weights with or without bf16 optimizer states, SGD with
    # momentum and Muon (their momentum_buffer is re-partitioned like Adam's moments).
    m = re.match(r"(?P<model>\w+?)_z(?P<stage>\d)_(?P<prec>fp32|fp16|bf16)(?P<bf16opt>_bf16opt)?"
                 r"(?P<variant>(_bf16master|_bf16states|_offload|_sg\d+|_sgd|_muon)*)_ws(?P<ws>\d+)$", name)
    return m.groupdict() if m else None



def fixture_at(name, ws):
    """The fixture of the same model, stage and precision written by DeepSpeed at world size ws."""
    other = re.sub(r"_ws\d+$", f"_ws{ws}", name)
    path = os.path.join(U.DEEPSPEED, other, "checkpoint")
    return path if os.path.isdir(path) else None


def reshard(src, out, m, ranks):
    p = U.run(["reshard", src, out, "--target-dp", str(m), "--no-progress"], ranks)
    if p.returncode != 0:
        raise AssertionError(f"reshard {src} -> dp {m} on {ranks} ranks failed ({p.returncode}):\n{p.stderr}")


def files(save_dir):
    with open(os.path.join(save_dir, "latest")) as f:
        tag = f.read().strip()
    return {os.path.basename(f): f for f in glob.glob(os.path.join(save_dir, tag, "*.pt"))}


def load(path):
    return U.load_deepspeed_file(path)


# ------------------------------------------------------------------------------ structure

def signature(v, path=""):
    """The shape of a DeepSpeed file's content: containers and keys, tensors as (dtype, shape),
    ints/bools/strings as they are, floats dropped (learning rates, loss scales), stub objects as
    their class and state."""
    if isinstance(v, torch.Tensor):
        return ("tensor", str(v.dtype), tuple(v.shape))
    if isinstance(v, dict):
        return (type(v).__name__, tuple((k, signature(x, f"{path}[{k!r}]")) for k, x in v.items()))
    if isinstance(v, (list, tuple)) and not isinstance(v, torch.Size):
        return (type(v).__name__, tuple(signature(x, f"{path}[{i}]") for i, x in enumerate(v)))
    if isinstance(v, torch.Size):
        return ("Size", tuple(v))
    if isinstance(v, U.DeepSpeedStub):
        return (type(v).__name__, signature(v.__dict__.get("_state"), path), signature(v.__dict__.get("_args"), path))
    if isinstance(v, float):
        return ("float",)
    if isinstance(v, set):
        return ("set", tuple(sorted(map(str, v))))
    return v


# Entries legitimately different from a DeepSpeed run at M ranks: the run's own configuration
# (micro batch per GPU follows the world size; reshard carries the source's config, the resuming
# run uses its own), and the generator's client keys.
CONFIG_KEYS = {"ds_config"}


def strip_config(sig):
    if isinstance(sig, tuple) and len(sig) == 2 and sig[0] in ("dict", "OrderedDict") and isinstance(sig[1], tuple):
        return (sig[0], tuple((k, strip_config(x)) for k, x in sig[1] if k not in CONFIG_KEYS))
    return sig


def first_difference(a, b, path=""):
    if type(a) != type(b):
        return f"{path}: {a!r:.200} vs {b!r:.200}"
    if isinstance(a, tuple):
        if len(a) != len(b):
            return f"{path}: length {len(a)} vs {len(b)}: {a!r:.300} vs {b!r:.300}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_difference(x, y, f"{path}/{a[i][0] if isinstance(a[i], tuple) and len(a[i]) == 2 and isinstance(a[i][0], str) else i}")
            if d:
                return d
        return None
    return None if a == b else f"{path}: {a!r:.200} vs {b!r:.200}"


def check_structure(test, ours_dir, deepspeed_dir):
    """Same files; in each, the same keys, tensor dtypes and shapes, group_paddings,
    partition_count, param_slice_mappings, param_shapes, sub-groups and dp_world_size."""
    ours, theirs = files(ours_dir), files(deepspeed_dir)
    test.assertEqual(sorted(ours), sorted(theirs))
    for name in sorted(ours):
        a, b = strip_config(signature(load(ours[name]))), strip_config(signature(load(theirs[name])))
        test.assertIsNone(first_difference(a, b), f"{name} differs from DeepSpeed's own file")


# ------------------------------------------------------------------------------ values

def partition_of(dp, rank, n):
    """Elements of a ZeRO-3 parameter of n elements that rank holds: (slice length, real elements)."""
    p = -(-n // dp)
    return p, max(0, min(p, n - rank * p))


def pop_partitioned(opt, kind):
    """Takes the partitioned tensors out of an optimizer file's tree: {(state, group): tensor}."""
    osd = opt["optimizer_state_dict"]
    out = {}
    if kind == "z3":
        for k in range(len(osd["fp32_flat_groups"])):
            out[("fp32", k)] = osd["fp32_flat_groups"][k]
            osd["fp32_flat_groups"][k] = None
        state = osd["optimizer_state_dict"]["state"]
    else:
        for g in range(len(osd["single_partition_of_fp32_groups"])):
            out[("fp32", g)] = osd["single_partition_of_fp32_groups"][g]
            osd["single_partition_of_fp32_groups"][g] = None
        state = osd["base_optimizer_state"]["state"]
    for g, entry in state.items():
        for key, value in list(entry.items()):
            if isinstance(value, torch.Tensor) and value.dim() >= 1:  # per element: exp_avg, momentum_buffer, ...
                out[(key, g)] = value
                entry[key] = None
    return out


def padding_mask(key, tensor, opt, model, kind, rank):
    """Elements of a partitioned tensor that are padding, from the documented partition math and
    the file's own metadata: ZeRO-3 per parameter slice; ZeRO-1/2 the moments' tail
    (group_paddings); BF16_Optimizer the fp32 and moments' tail."""
    osd = opt["optimizer_state_dict"]
    state, g = key
    if kind == "z3":
        parts = []
        for shape in model["param_shapes"][g].values():
            p, have = partition_of(osd["partition_count"], rank, math.prod(shape))
            parts.append(torch.arange(p) >= have)
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.bool)
    pad = osd["group_paddings"][g]
    if state == "fp32" and kind != "bf16opt":
        pad = 0  # ZeRO-1/2 save the fp32 partition without its padding
    return torch.arange(tensor.numel()) >= tensor.numel() - pad


def equal_outside(a, b, mask):
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    keep = ~mask
    return U.bits_equal(a.flatten()[keep], b.flatten()[keep])


def compare_values(test, a, b, path):
    """Recursive equality, tensors bit for bit."""
    if isinstance(a, torch.Tensor):
        test.assertIsInstance(b, torch.Tensor, path)
        test.assertTrue(U.bits_equal(a, b), f"{path}: tensors differ")
        return
    test.assertEqual(type(a), type(b), path)
    if isinstance(a, dict):
        test.assertEqual(list(a.keys()), list(b.keys()), path)
        for k in a:
            compare_values(test, a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        test.assertEqual(len(a), len(b), path)
        for i, (x, y) in enumerate(zip(a, b)):
            compare_values(test, x, y, f"{path}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        test.assertTrue(math.isnan(b), path)
    else:
        test.assertEqual(a, b, path)


def check_round_trip(test, original_dir, round_trip_dir, kind):
    """Every file equal to the original: every value, every tensor bit for bit, except padding
    elements (DeepSpeed's are uninitialised at ZeRO-3; ours are zeros)."""
    orig, back = files(original_dir), files(round_trip_dir)
    test.assertEqual(sorted(orig), sorted(back))
    models = {n: load(p) for n, p in orig.items() if "model_states" in n}
    for name in sorted(orig):
        a, b = load(orig[name]), load(back[name])
        m = re.search(r"zero_pp_rank_(\d+)_", name)
        rank = int(m.group(1)) if m else 0
        if "optim_states" in name:
            model = models.get(f"zero_pp_rank_{rank}_mp_rank_00_model_states.pt") or models.get("mp_rank_00_model_states.pt")
            pa, pb = pop_partitioned(a, kind), pop_partitioned(b, kind)
            test.assertEqual(sorted(pa), sorted(pb), name)
            for key in pa:
                mask = padding_mask(key, pa[key], a, model, kind, rank)
                test.assertTrue(equal_outside(pa[key], pb[key], mask), f"{name}: {key} differs")
        elif kind == "z3" and a.get("frozen_param_fragments"):
            frozen_a, frozen_b = a.pop("frozen_param_fragments"), b.pop("frozen_param_fragments")
            test.assertEqual(list(frozen_a), list(frozen_b), name)
            for pname, shape in a["frozen_param_shapes"].items():
                p, have = partition_of(a["dp_world_size"], rank, math.prod(shape))
                test.assertTrue(equal_outside(frozen_a[pname], frozen_b[pname], torch.arange(p) >= have),
                                f"{name}: frozen fragment {pname} differs")
        compare_values(test, a, b, name)


def kind_of(config):
    c = parse_config(config)
    if c["bf16opt"]:
        return "bf16opt"
    return "z3" if c["stage"] == "3" else "z12"
