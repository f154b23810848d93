"""to-dcp: a DCP folder chunked for M training ranks, read back by torch itself.

Sources: DeepSpeed ZeRO fixtures of the current stack and the DCP fixtures torch wrote
(tests/golden/dcp). For M = 1..4, written by 1 and 3 ranks (direct writes on and off):
- torch's dcp_to_torch_save of our folder gives every tensor of the source, bit for bit in its own
  dtype (the reference: torch's own reading of a DCP source, or our to-fp32 of a DeepSpeed source,
  which the to-fp32 tests hold against DeepSpeed's zero_to_fp32);
- .metadata lists each tensor's chunks as FSDP2 cuts them (torch.chunk along dimension 0), chunk
  of rank r in __{r}_0.distcp;
- M gloo ranks dcp.load it into DTensors placed Shard(0) (the state dict an FSDP2 run holds), and
  each rank's local shard equals its rows of the source.
--dtype casts floating tensors as torch's .to() does; a bad --target-world-size is a usage error."""

import os
import tempfile
import unittest

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemReader

import ucp_oracle as uo

DCP = os.path.join(uo.GOLDEN, "dcp")
DS_FIXTURES = ["gpt_z2_bf16_ws2", "gpt_z3_fp16_ws4", "mlp_z1_bf16_bf16opt_ws2"]
DCP_FIXTURES = ["mesh2x2_ws4", "shard0_uneven_ws4", "flat_ws1"]


flat_dcp = uo.dcp_tensors


def source_tensors(name, tmp):
    """(fqn -> tensor in its stored dtype or, for DeepSpeed, fp32 values, exact_dtype)."""
    if name in DCP_FIXTURES:
        return flat_dcp(os.path.join(DCP, name, "checkpoint"), tmp), True
    out = os.path.join(tmp, f"to-fp32-{name}")
    p = uo.run(["to-fp32", os.path.join(uo.DEEPSPEED, name, "checkpoint"), out, "--no-progress"], 1)
    assert p.returncode == 0, p.stderr
    sd, _ = uo.load_output(out)
    return sd, False


def source_path(name):
    return os.path.join(DCP if name in DCP_FIXTURES else uo.DEEPSPEED, name, "checkpoint")


def expected_chunks(shape, world):
    if len(shape) == 0:
        return [((), ())]
    rows = shape[0]
    size = -(-rows // world)
    out = []
    for r in range(world):
        b, e = min(rows, r * size), min(rows, (r + 1) * size)
        if e > b and all(d > 0 for d in shape[1:]):
            out.append(((b,) + (0,) * (len(shape) - 1), (e - b,) + tuple(shape[1:])))
    return out


def load_worker(rank, world, folder, shapes, result_dir):
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Replicate, Shard
    mesh = init_device_mesh("cpu", (world,))
    sd = {}
    for fqn, (shape, dtype) in shapes.items():
        if len(shape) == 0:
            sd[fqn] = DTensor.from_local(torch.zeros((), dtype=dtype), mesh, [Replicate()])
            continue
        local = list(torch.empty(shape, dtype=dtype, device="meta").chunk(world, 0))
        rows = local[rank].shape[0] if rank < len(local) else 0
        sd[fqn] = DTensor.from_local(torch.zeros((rows, *shape[1:]), dtype=dtype), mesh, [Shard(0)],
                                     shape=torch.Size(shape), stride=torch.empty(shape, device="meta").stride())
    dcp.load(sd, checkpoint_id=folder)
    torch.save({k: v.to_local().clone() for k, v in sd.items()}, os.path.join(result_dir, f"rank{rank}.pt"))
    dist.barrier()  # rank 0 hosts the store: no rank tears down while another still talks to it
    dist.destroy_process_group()


class ToDcp(unittest.TestCase):
    def check_folder(self, out, ref, exact_dtype, world):
        ours = flat_dcp(out, self.tmp)
        self.assertEqual(set(ours), set(ref))
        for fqn, t in ref.items():
            o = ours[fqn]
            if exact_dtype or not t.is_floating_point():
                self.assertTrue(uo.bits_equal(o, t.contiguous()), fqn)
            else:  # DeepSpeed: the stored dtype (fp32 masters, 16-bit frozen/buffers); values exact
                self.assertTrue(torch.equal(o.float(), t), fqn)
        meta = FileSystemReader(out).read_metadata()
        for fqn, item in meta.state_dict_metadata.items():
            if not hasattr(item, "chunks"):
                continue  # a non-tensor item carried from a DCP source (stack_dcp_items.py checks them)
            got = [(tuple(c.offsets), tuple(c.sizes)) for c in item.chunks]
            self.assertEqual(got, expected_chunks(tuple(item.size), world), fqn)
            for c in item.chunks:
                info = meta.storage_data[type(next(iter(meta.storage_data)))(fqn, c.offsets)]
                rank = 0 if len(c.offsets) == 0 else c.offsets[0] // -(-item.size[0] // world)
                self.assertEqual(info.relative_path, f"__{rank}_0.distcp", fqn)

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ucp-oracle-")

    def tearDown(self):
        import shutil
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_torch_reads_every_tensor_back(self):
        for name in DS_FIXTURES + DCP_FIXTURES:
            ref, exact = source_tensors(name, self.tmp)
            for world in (1, 2, 3, 4):
                for ranks, extra in ((1, []), (3, ["--shared-output", "yes"]), (2, ["--shared-output", "no"])):
                    if world in (1, 4) and ranks != 1 and name not in ("gpt_z2_bf16_ws2", "mesh2x2_ws4"):
                        continue  # every (M, write mode) on two sources; M = 2, 3 on all
                    with self.subTest(source=name, M=world, ranks=ranks, extra=extra):
                        out = os.path.join(self.tmp, f"{name}-{world}-{ranks}")
                        p = uo.run(["to-dcp", source_path(name), out, "--target-world-size", str(world),
                                    "--no-progress", *extra], ranks)
                        self.assertEqual(p.returncode, 0, p.stderr)
                        self.assertEqual(sorted(f for f in os.listdir(out) if f.endswith(".distcp")),
                                         [f"__{r}_0.distcp" for r in range(world)])
                        self.check_folder(out, ref, exact, world)

    def test_dtensor_ranks_load_their_shards(self):
        for name in ("gpt_z2_bf16_ws2", "mesh2x2_ws4"):
            ref, _ = source_tensors(name, self.tmp)
            for world in (2, 3):
                with self.subTest(source=name, M=world):
                    out = os.path.join(self.tmp, f"load-{name}-{world}")
                    p = uo.run(["to-dcp", source_path(name), out, "--target-world-size", str(world), "--no-progress"], 2)
                    self.assertEqual(p.returncode, 0, p.stderr)
                    meta = FileSystemReader(out).read_metadata()
                    shapes = {k: (tuple(v.size), v.properties.dtype) for k, v in meta.state_dict_metadata.items()}
                    results = os.path.join(self.tmp, f"loaded-{name}-{world}")
                    os.makedirs(results)
                    uo.spawn_gloo(load_worker, world, out, shapes, results)
                    for rank in range(world):
                        local = torch.load(os.path.join(results, f"rank{rank}.pt"))
                        for fqn, t in ref.items():
                            want = t if t.dim() == 0 else (list(t.chunk(world, 0)) + [t[:0]] * world)[rank]
                            got = local[fqn]
                            self.assertTrue(torch.equal(got.float() if got.is_floating_point() else got,
                                                        want.float() if want.is_floating_point() else want),
                                            f"{fqn} rank {rank}")

    def test_dtype_cast_as_torch_casts(self):
        name = "mesh2x2_ws4"
        ref, _ = source_tensors(name, self.tmp)
        out = os.path.join(self.tmp, "bf16")
        p = uo.run(["to-dcp", source_path(name), out, "--target-world-size", "2", "--dtype", "bf16", "--no-progress"], 1)
        self.assertEqual(p.returncode, 0, p.stderr)
        ours = flat_dcp(out, self.tmp)
        for fqn, t in ref.items():
            want = t.to(torch.bfloat16) if t.is_floating_point() else t
            self.assertTrue(uo.bits_equal(ours[fqn], want.contiguous()), fqn)

    def test_bad_target_world_size(self):
        out = os.path.join(self.tmp, "bad")
        for value in ("0", "-2", "x"):
            p = uo.run(["to-dcp", source_path("flat_ws1"), out, "--target-world-size", value], 1)
            self.assertEqual(p.returncode, uo.INVALID_ARGUMENT, p.stderr)
            self.assertFalse(os.path.exists(out))


if __name__ == "__main__":
    unittest.main()
