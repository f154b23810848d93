"""Writes the DCP fixtures of tests/golden/dcp with torch itself (torch.distributed.checkpoint).

Run with the oracle venv's python (torch 2.x): python make_dcp_fixtures.py OUT_DIR
Each case is a folder OUT_DIR/<case>/checkpoint written by dcp.save on gloo ranks (or by
format_utils.torch_save_to_dcp); tests compare our reading of it with torch's own
dcp_to_torch_save of the same folder.

Cases:
  shard0_uneven_ws4   4 ranks, FSDP2-style Shard(0) with sizes that do not divide by 4 (empty
                      chunks on the last ranks), a replicated tensor, bf16/fp32/int64, bytes items
  mesh2x2_ws4         a 2x2 mesh: (Shard(0), Shard(1)) boxes, a 3-D tensor cut along dims 1 and 2,
                      (Shard(0), Shard(0)), a 1-D tensor
  lingua_nested_ws1   torch_save_to_dcp of a Lingua-style {"model": ..., "optim": ...} dict
  flat_ws1            torch_save_to_dcp of a flat state dict (with a 0-dim tensor)
  items_ws2           2 ranks, a training state with non-tensor ("bytes") items of every kind
                      torch.load(weights_only=True) takes: an int step, a float, a string,
                      param_groups (a list of dicts with tuples and None), a scheduler dict mixing
                      tensors and values, a tuple holding a tensor, an OrderedDict, a torch.Size
  zstd_ws2            the same state saved with FileSystemWriter(_extensions=[ZStandard()]): every
                      item a zstd stream. Needs `zstandard` (not in the oracle venv): run this
                      script with PYTHONPATH pointing at `pip install --target DIR zstandard`;
                      tests compare it with items_ws2, so they need no zstandard
Only the cases named after OUT_DIR are written when any are (python make_dcp_fixtures.py OUT items_ws2).
"""
import collections
import os
import sys
import tempfile

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.multiprocessing as mp
from torch.distributed.checkpoint.format_utils import torch_save_to_dcp
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Replicate, Shard, distribute_tensor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "oracle"))
from tensor_truth import seeded_values  # noqa: E402  (one deterministic-values helper for fixtures and tests)


values = seeded_values


def shard0_uneven(mesh):
    return {
        "model": {
            "embed.weight": distribute_tensor(values((10, 6), torch.float32, 1), mesh, [Shard(0)]),
            "layers.0.norm.weight": distribute_tensor(values((7,), torch.bfloat16, 2), mesh, [Shard(0)]),
            "layers.0.attn.wq": distribute_tensor(values((3, 5, 4), torch.float32, 3), mesh, [Shard(0)]),
            "rope.freqs": distribute_tensor(values((4, 2), torch.float32, 4), mesh, [Replicate()]),
            "counts": distribute_tensor(values((9,), torch.int64, 5), mesh, [Shard(0)]),
        },
        "step": 17,
        "note": "shard0",
    }


def mesh2x2(mesh):
    return {
        "w2d": distribute_tensor(values((6, 10), torch.float32, 11), mesh, [Shard(0), Shard(1)]),
        "w3d": distribute_tensor(values((2, 6, 9), torch.float32, 12), mesh, [Shard(1), Shard(2)]),
        "w00": distribute_tensor(values((9, 3), torch.bfloat16, 13), mesh, [Shard(0), Shard(0)]),
        "bias": distribute_tensor(values((5,), torch.float32, 14), mesh, [Replicate(), Shard(0)]),
    }


def training_state(mesh):
    """A model, Adam-like state and the non-tensor values trainers save beside them."""
    w = distribute_tensor(values((6, 4), torch.float32, 41), mesh, [Shard(0)])
    norm = distribute_tensor(values((5,), torch.bfloat16, 42), mesh, [Shard(0)])
    return {
        "model": {"w": w, "norm.weight": norm},
        "optim": {
            "state": {"w": {"step": torch.tensor(7.0), "exp_avg": distribute_tensor(values((6, 4), torch.float32, 43), mesh, [Shard(0)])}},
            "param_groups": [{"lr": 3e-4, "betas": (0.9, 0.95), "eps": 1e-8, "weight_decay": 0.0, "foreach": None,
                              "amsgrad": False, "params": ["model.w", "model.norm.weight"]}],
        },
        "step": 17,
        "lr": 2.5e-4,
        "note": "items fixture",
        "scheduler": {"last_epoch": 5, "base_lrs": [0.001], "warmup": {"steps": 100, "scale": torch.tensor([0.5, 0.25])},
                      "order": collections.OrderedDict([("b", 1), ("a", 2)]), "shape": torch.Size([2, 3])},
        "pair": (torch.arange(3, dtype=torch.int64), "ids"),
        "huge": 2 ** 70,
    }


def worker(rank, world, case, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ.get("UCP_DCP_PORT", "29531"))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    writer = None
    if case == "shard0_uneven_ws4":
        state = shard0_uneven(init_device_mesh("cpu", (4,)))
    elif case in ("items_ws2", "zstd_ws2"):
        state = training_state(init_device_mesh("cpu", (2,)))
        if case == "zstd_ws2":
            from torch.distributed.checkpoint import FileSystemWriter
            from torch.distributed.checkpoint._extension import ZStandard
            writer = FileSystemWriter(out, _extensions=[ZStandard()])
    else:
        state = mesh2x2(init_device_mesh("cpu", (2, 2)))
    dcp.save(state, checkpoint_id=out, storage_writer=writer)
    dist.barrier()
    dist.destroy_process_group()


def torch_saved(case, out):
    if case == "lingua_nested_ws1":
        state = {
            "model": {"tok_embeddings.weight": values((8, 4), torch.float32, 21),
                      "layers.0.attention.wq.weight": values((4, 4), torch.bfloat16, 22)},
            "optim": {"state": {"tok_embeddings.weight": {"step": torch.tensor(3.0),
                                                          "exp_avg": values((8, 4), torch.float32, 23)}},
                      "param_groups": [{"lr": 0.001, "params": ["tok_embeddings.weight"]}]},
        }
    else:
        state = {"a.weight": values((3, 7), torch.float32, 31), "scalar": torch.tensor(2.5),
                 "ids": values((5,), torch.int32, 32), "half": values((2, 2), torch.float16, 33)}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "consolidated.pth")
        torch.save(state, path)
        torch_save_to_dcp(path, out)


def main():
    root = sys.argv[1]
    cases = sys.argv[2:] or ["shard0_uneven_ws4", "mesh2x2_ws4", "lingua_nested_ws1", "flat_ws1", "items_ws2", "zstd_ws2"]
    for case in cases:
        out = os.path.join(root, case, "checkpoint")
        os.makedirs(out, exist_ok=True)
        if case.endswith("_ws4"):
            mp.spawn(worker, args=(4, case, out), nprocs=4, join=True)
        elif case.endswith("_ws2"):
            mp.spawn(worker, args=(2, case, out), nprocs=2, join=True)
        else:
            torch_saved(case, out)
        print("wrote", out)


if __name__ == "__main__":
    main()
