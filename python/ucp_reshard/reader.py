"""Lazy readers: open a checkpoint and iterate its tensors by name, with dtype and shape, reading
each tensor's bytes only when asked (numpy arrays, or torch tensors when torch is installed).

Reads what the command reads from one process: DeepSpeed ZeRO-1/2/3 and BF16_Optimizer checkpoints
(save dir or tag folder) and universal checkpoint folders (DeepSpeed's ds_to_universal or ours).
The HDF5 file of `to-fp32 --format hdf5` needs parallel HDF5, hence MPI, which this module does not
link: read it with h5py. A checkpoint is seen as

- `ckpt` (mapping name -> LazyTensor): the model. ZeRO files: the consolidated model as to-fp32
  writes it (buffers, frozen, trainable, tied names), in the dtypes stored (`fp32=True`: floating
  tensors widened to float32, as zero_to_fp32). Universal: the fp32 parameters (and ZeRO-3 frozen ones).
- `ckpt.optimizer_states` (mapping state -> {name -> LazyTensor}): per-parameter optimizer states
  ("exp_avg", "exp_avg_sq", ...) where the checkpoint holds them.
"""

from . import _core
from ._lazy import LazyTensor, TensorSource, fp32_output_dtype, path_str


class Checkpoint:
    """A checkpoint opened for lazy reading. Mapping-like over the model's tensors: names in order,
    `ckpt[name]` is a LazyTensor (`.dtype`, `.shape`, `.numpy()`, `.contiguous()` for torch)."""

    def __init__(self, path, tag=None, exclude_frozen=False, fp32=False):
        path, tag = path_str(path), "" if tag is None else str(tag)
        if _core.is_universal(path, tag):
            self._core = _core.TensorSet.universal(path, tag)
        else:
            self._core = _core.TensorSet.zero(path, tag, bool(exclude_frozen))
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


def open_checkpoint(path, tag=None, exclude_frozen=False, fp32=False):
    """Opens the checkpoint at `path` for lazy reading (see Checkpoint)."""
    return Checkpoint(path, tag=tag, exclude_frozen=exclude_frozen, fp32=fp32)
