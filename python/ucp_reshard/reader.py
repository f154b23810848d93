"""Lazy readers: open a checkpoint and iterate its tensors by name, with dtype and shape, reading
each tensor's bytes only when asked (numpy arrays, or torch tensors when torch is installed).

Reads DeepSpeed ZeRO-1/2/3 and BF16_Optimizer checkpoints (save dir or tag folder), PyTorch DCP
folders and universal checkpoint folders (DeepSpeed's ds_to_universal or ours) with the C++ core, and the HDF5 file of
`to-fp32 --format hdf5` (`model.h5`, or the folder holding it) through h5py when it is installed
(the core's HDF5 reader needs parallel HDF5, hence MPI, which this module does not link). A
checkpoint is seen as

- `ckpt` (mapping name -> LazyTensor): the model. ZeRO files: the consolidated model as to-fp32
  writes it (buffers, frozen, trainable, tied names); DCP: every tensor item by its key; in the dtypes stored (`fp32=True`: floating
  tensors widened to float32, as zero_to_fp32). Universal: the fp32 parameters (and ZeRO-3 frozen ones).
- `ckpt.optimizer_states` (mapping state -> {name -> LazyTensor}): per-parameter optimizer states
  ("exp_avg", "exp_avg_sq", ...) where the checkpoint holds them.
"""

import os

from . import _core
from ._lazy import LazyTensor, TensorSource, _Mappings, fp32_output_dtype, numpy_dtype, path_str, torch, torch_dtype


class Checkpoint:
    """A checkpoint opened for lazy reading. Mapping-like over the model's tensors: names in order,
    `ckpt[name]` is a LazyTensor (`.dtype`, `.shape`, `.numpy()`, `.contiguous()` for torch)."""

    def __init__(self, path, tag=None, exclude_frozen=False, fp32=False):
        path, tag = path_str(path), "" if tag is None else str(tag)
        if _core.is_universal(path, tag):
            self._core = _core.TensorSet.universal(path, tag)
        else:
            self._core = _core.TensorSet.model(path, tag, bool(exclude_frozen))
        self._source = TensorSource(self._core, views=True)
        groups = {}
        made = {}
        for index, (name, shape, dtype, role, alias_of, group) in enumerate(self._core.tensors()):
            if role == "alias":
                t = made[alias_of]
            else:
                t = LazyTensor(self._source, index, name, shape, dtype, fp32_output_dtype(dtype) if fp32 else dtype)
            made[index] = t
            groups.setdefault(group, {})[name] = t
        self._tensors = groups.pop("model", {})
        self.optimizer_states = groups
        self.format = self._core.format
        self.tag = self._core.tag
        self.location = self._core.location
        self.zero_stage = self._core.zero_stage
        self.dp = self._core.dp

    def __repr__(self):
        return (f"Checkpoint({self.location!r}, {self.format}, ZeRO stage {self.zero_stage}, dp {self.dp}, "
                f"{len(self)} tensors, optimizer states {sorted(self.optimizer_states)})")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __len__(self):
        return len(self._tensors)

    def __iter__(self):
        return iter(self._tensors)

    def __contains__(self, name):
        return name in self._tensors

    def __getitem__(self, name):
        return self._tensors[name]

    def keys(self):
        return self._tensors.keys()

    def items(self):
        return self._tensors.items()

    def values(self):
        return self._tensors.values()


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _hdf5_file(path):
    """The HDF5 file `path` names (the file, or model.h5 in the folder), else None."""
    if os.path.isdir(path):
        path = os.path.join(path, "model.h5")
    try:
        with open(path, "rb") as f:
            return path if f.read(8) == _HDF5_SIGNATURE else None
    except OSError:
        return None


class _Hdf5Source:
    """LazyTensors of a model.h5 (README "HDF5 output"): datasets are contiguous, so a tensor whose
    output dtype is the stored one is a view of the mapped file; bfloat16 is stored as uint16 bits
    with attribute dtype="bfloat16"."""

    def __init__(self, path):
        import h5py  # optional: only HDF5 files need it
        self.path = path
        self.file = h5py.File(path, "r")
        self._maps = _Mappings()

    def dataset(self, t):
        return self.file[t._h5_path]

    def materialise(self, t, kind):
        import numpy as np
        ds = self.dataset(t)
        stored = t._stored_dtype_name
        raw = np.dtype(np.uint16) if stored == "bfloat16" else ds.dtype
        offset = ds.id.get_offset() if ds.size else None
        if offset is not None:
            buf, at = self._maps.map(self.path, offset, ds.size * raw.itemsize)
            a = np.frombuffer(buf, dtype=raw, count=ds.size, offset=at).reshape(t._shape)
        else:
            a = np.asarray(ds[()], dtype=raw).reshape(t._shape)
        if kind == "torch":
            x = torch.from_numpy(a)
            if stored == "bfloat16":
                x = x.view(torch.bfloat16)
            return x if t._dtype_name == stored else x.to(torch_dtype(t._dtype_name))
        if stored == "bfloat16":
            if t._dtype_name == "float32":  # widen the bits exactly: bf16 is the top half of fp32
                return (a.astype(np.uint32) << 16).view(np.float32)
            return a.view(numpy_dtype("bfloat16"))
        return a if t._dtype_name == stored else a.astype(numpy_dtype(t._dtype_name))


_TORCH_NAMES = {"f": {2: "float16", 4: "float32", 8: "float64"}, "i": {1: "int8", 2: "int16", 4: "int32", 8: "int64"},
                "u": {1: "uint8", 2: "uint16", 4: "uint32", 8: "uint64"}, "b": {1: "bool"}, "c": {8: "complex64", 16: "complex128"}}


class Hdf5Checkpoint(Checkpoint):
    """model.h5 of `to-fp32 --format hdf5`: /model/<name> datasets (tied names are hard links: one
    LazyTensor), /optimizer/<param>/{fp32,exp_avg,exp_avg_sq} with --with-optimizer."""

    def __init__(self, path, fp32=False):  # noqa: super().__init__ reads with the core; not here
        self._source = _Hdf5Source(path)
        f = self._source.file
        self._tensors = {}
        self.optimizer_states = {}
        made = {}

        def lazy(h5_path, name):
            ds = f[h5_path]
            key = ds.id  # hard links share one object id
            if key in made:
                return made[key]
            stored = "bfloat16" if ds.attrs.get("dtype") in ("bfloat16", b"bfloat16") else _TORCH_NAMES[ds.dtype.kind][ds.dtype.itemsize]
            t = LazyTensor(self._source, -1, name, ds.shape, stored, fp32_output_dtype(stored) if fp32 else stored)
            t._h5_path = h5_path
            made[key] = t
            return t

        for name in f["model"]:
            self._tensors[name] = lazy(f"model/{name}", name)
        if "optimizer" in f:
            for param in f["optimizer"]:
                for state in f["optimizer"][param]:
                    self.optimizer_states.setdefault(state, {})[param] = lazy(f"optimizer/{param}/{state}", param)
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        self.format = "HDF5 (ucp-reshard to-fp32)"
        self.tag = str(attrs.get("tag", ""))
        self.location = path
        self.zero_stage = int(attrs.get("zero_stage", 0))
        self.dp = int(attrs.get("dp_world_size", 0))


def open_checkpoint(path, tag=None, exclude_frozen=False, fp32=False):
    """Opens the checkpoint at `path` for lazy reading (see Checkpoint): DeepSpeed ZeRO files, a
    universal folder, a PyTorch DCP folder, or model.h5 of `to-fp32 --format hdf5` (needs h5py)."""
    h5 = _hdf5_file(path_str(path))
    if h5 is not None:
        return Hdf5Checkpoint(h5, fp32=fp32)
    return Checkpoint(path, tag=tag, exclude_frozen=exclude_frozen, fp32=fp32)
