"""What the tests count as equal, and torch's own reading of a DCP folder: shared by the oracle tests
(through ucp_oracle) and the Python package's tests (tests/python). No stubs, no environment: safe
to import beside the real DeepSpeed."""

import os
import tempfile

import torch


def dcp_tensors(folder, tmp):
    """fqn -> tensor of a PyTorch DCP folder as torch's own dcp_to_torch_save rebuilds them, the
    nested result flattened by the keys .metadata's planner_data gives (torch 2.x only)."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
    fd, path = tempfile.mkstemp(suffix=".pt", dir=tmp)
    os.close(fd)
    dcp_to_torch_save(folder, path)
    nested = torch.load(path, weights_only=False)
    os.remove(path)
    return tensors_at_planner_paths(nested, folder)


def tensors_at_planner_paths(nested, folder):
    """fqn -> tensor of a nested state (dcp_to_torch_save's, or ours) found where the DCP folder's
    .metadata planner_data puts each tensor item."""
    from torch.distributed.checkpoint import FileSystemReader
    meta = FileSystemReader(folder).read_metadata()
    out = {}
    for fqn, item in meta.state_dict_metadata.items():
        if hasattr(item, "chunks"):
            value = nested
            for key in meta.planner_data[fqn]:
                value = value[key]
            out[fqn] = value
    return out


def seeded_values(shape, dtype, seed):
    """A deterministic tensor of any dtype (fixture generators and tests that make their sources)."""
    g = torch.Generator().manual_seed(seed)
    if dtype.is_floating_point:
        return torch.randn(shape, generator=g).to(dtype)
    return torch.randint(-1000, 1000, shape, generator=g, dtype=dtype)


def bits_equal(a, b):
    """Same dtype, shape and bytes (NaN payloads included)."""
    if a.dtype != b.dtype or tuple(a.shape) != tuple(b.shape):
        return False
    if a.numel() == 0:
        return True
    if a.dtype == torch.bool:
        return torch.equal(a, b)
    width = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
    return torch.equal(a.contiguous().view(width), b.contiguous().view(width))
