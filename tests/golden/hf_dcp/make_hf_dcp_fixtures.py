"""Writes the HF-DCP fixtures of tests/golden/hf_dcp with torch itself: dcp.save through
torch.distributed.checkpoint.HuggingFaceStorageWriter (safetensors files whose __metadata__ holds
DCP_SHARDING_INFO, each file a chunk of every tensor it holds).

Run with the oracle venv's python (torch 2.x): python make_hf_dcp_fixtures.py OUT_DIR
Each case is a folder OUT_DIR/<case>/checkpoint; tests compare our reading of it with the full
tensors this script also saves (OUT_DIR/<case>/expected.safetensors, written from the unsharded
values before distribute_tensor) and with torch's HuggingFaceStorageReader.

Cases:
  shard0_dist_ws3   3 ranks, save_distributed=True (shard-<rank>-model-<i>-of-<N> names), FSDP2-style
                    Shard(0) with sizes that do not divide by 3 (an empty chunk), a replicated tensor,
                    bf16/fp32/int64, two buckets by fqn_to_index_mapping
  mesh2x2_dist_ws4  4 ranks on a 2x2 mesh: (Shard(0), Shard(1)) boxes, (Shard(0), Shard(0)), a 1-D
                    tensor, save_distributed=True
  single_ws1        one process (no_dist), save_distributed=False: model-<i>-of-<N> names and
                    model.safetensors.index.json, whole tensors (a 0-dim one among them)
  overwritten_ws2   2 ranks with save_distributed=False: both ranks write the same file names, so
                    each file keeps the chunks of whichever rank wrote last. torch's reader takes the
                    shapes it sees; ours must refuse the elements no file holds (bad input)
"""
import os
import sys

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.multiprocessing as mp
from safetensors.torch import save_file
from torch.distributed.checkpoint import HuggingFaceStorageWriter
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Replicate, Shard, distribute_tensor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "oracle"))
from tensor_truth import seeded_values  # noqa: E402  (one deterministic-values helper for fixtures and tests)


values = seeded_values


def full_tensors(case):
    if case.startswith("mesh2x2"):
        return {"w2d": (values((6, 10), torch.float32, 11), [Shard(0), Shard(1)]),
                "w00": (values((9, 3), torch.bfloat16, 13), [Shard(0), Shard(0)]),
                "bias": (values((5,), torch.float32, 14), [Replicate(), Shard(0)])}
    if case.startswith("single"):
        return {"embed.weight": values((10, 6), torch.float32, 1), "norm.weight": values((7,), torch.bfloat16, 2),
                "scale": torch.tensor(2.5), "ids": values((3, 2), torch.int32, 6)}
    return {"embed.weight": (values((10, 6), torch.float32, 1), [Shard(0)]),
            "layers.0.norm.weight": (values((7,), torch.bfloat16, 2), [Shard(0)]),
            "layers.0.attn.wq": (values((2, 5, 4), torch.float32, 3), [Shard(0)]),
            "rope.freqs": (values((4, 2), torch.float32, 4), [Replicate()]),
            "counts": (values((5,), torch.int64, 5), [Shard(0)])}


def mesh_of(case, world):
    return init_device_mesh("cpu", (2, 2) if case.startswith("mesh2x2") else (world,))


def worker(rank, world, case, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ.get("UCP_DCP_PORT", "29541"))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    mesh = mesh_of(case, world)
    state = {k: distribute_tensor(t, mesh, p) for k, (t, p) in full_tensors(case).items()}
    writer = HuggingFaceStorageWriter(out, fqn_to_index_mapping=bucket_index(state), save_distributed="_dist_" in case)
    dcp.save(state, storage_writer=writer)
    dist.barrier()
    dist.destroy_process_group()


def bucket_index(names):
    return {k: 1 + (i % 2) for i, k in enumerate(names)}  # two buckets, 1-based as torchtitan gives them


def single(out):
    state = full_tensors("single")
    writer = HuggingFaceStorageWriter(out, fqn_to_index_mapping=bucket_index(state), save_distributed=False)
    dcp.save(state, storage_writer=writer, no_dist=True)
    return state


def main():
    root = sys.argv[1]
    for case, world in [("shard0_dist_ws3", 3), ("mesh2x2_dist_ws4", 4), ("single_ws1", 1), ("overwritten_ws2", 2)]:
        out = os.path.join(root, case, "checkpoint")
        os.makedirs(out, exist_ok=True)
        if world == 1:
            expected = single(out)
        else:
            mp.spawn(worker, args=(world, case, out), nprocs=world, join=True)
            expected = {k: t for k, (t, _) in full_tensors(case).items()}
        save_file({k: t.contiguous() for k, t in expected.items()}, os.path.join(root, case, "expected.safetensors"))
        print("wrote", out, sorted(os.listdir(out)))


if __name__ == "__main__":
    main()
