"""Drop-ins for DeepSpeed's `deepspeed.utils.zero_to_fp32` functions, without DeepSpeed.

Same names, parameters, defaults and results as DeepSpeed 0.19's, with these differences:

- Nothing is unpickled by Python: the C++ core reads the checkpoint's pickles with a VM that never
  executes anything, so DeepSpeed need not be installed and a malicious pickle cannot run code.
- DeepSpeed's known defects are fixed (README, "to-fp32"): frozen parameters of ZeRO-1 and
  BF16_Optimizer checkpoints are restored from the model weights (DeepSpeed drops them), and
  BF16_Optimizer checkpoints are read (DeepSpeed: "not a zero checkpoint"). Frozen 16-bit parameters
  are widened to float32 exactly and integer/bool buffers keep their dtype (DeepSpeed 0.19 does so
  on its own checkpoints, and leaves frozen parameters of older checkpoints in 16-bit); bf16 master
  weights (`bf16.bf16_master_weights_and_grads`) are widened to float32 too, where DeepSpeed returns
  them in bfloat16.
- `checkpoint_dir` may also be the tag folder itself.
- Errors are `ucp_reshard.CheckpointError` (a ValueError; a missing file is also a
  FileNotFoundError) with a one-line message naming the file and what was expected.
"""

import concurrent.futures
import os
import shutil
import tempfile

from . import _core
from ._lazy import LazyTensor, TensorSource, fp32_output_dtype, path_str

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

__all__ = [
    "get_fp32_state_dict_from_zero_checkpoint",
    "load_state_dict_from_zero_checkpoint",
    "convert_zero_checkpoint_to_fp32_state_dict",
    "convert_zero_checkpoint_to_state_dict",
    "to_torch_tensor",
]


def _need_torch(fn):
    if torch is None:
        raise ImportError(f"{fn} returns torch tensors: install torch (or use ucp_reshard.open_checkpoint for numpy)")


def _resolve_tag(checkpoint_dir, tag):
    # DeepSpeed: the tag comes from `latest` unless given; our core also takes the tag folder itself.
    return "" if tag is None else str(tag)


def _lazy_state_dict(checkpoint_dir, tag, exclude_frozen_parameters, views):
    core = _core.TensorSet.model(path_str(checkpoint_dir), _resolve_tag(checkpoint_dir, tag), bool(exclude_frozen_parameters))
    source = TensorSource(core, views=views)
    state_dict = {}
    made = {}
    for index, (name, shape, dtype, role, alias_of, group) in enumerate(core.tensors()):
        if group != "model":
            continue
        if role == "alias":
            # Tied names share one tensor, as in DeepSpeed's state dict.
            t = made[alias_of]
        else:
            t = LazyTensor(source, index, name, shape, dtype, fp32_output_dtype(dtype))
        made[index] = t
        state_dict[name] = t
    return state_dict, source


def get_fp32_state_dict_from_zero_checkpoint(checkpoint_dir, tag=None, exclude_frozen_parameters=False, lazy_mode=False):
    """The consolidated fp32 state dict of a DeepSpeed ZeRO-1/2/3 or BF16_Optimizer checkpoint.

    Drop-in for DeepSpeed's function of the same name (see the module docstring for how ours
    differs: nothing executed, frozen ZeRO-1/BF16_Optimizer parameters restored, BF16_Optimizer read).

    Args:
        checkpoint_dir: the save dir holding `latest` (or the tag folder itself).
        tag: the tag folder to read instead of the one `latest` names.
        exclude_frozen_parameters: leave out parameters with requires_grad=False.
        lazy_mode: return `LazyTensor`s instead of tensors: `.contiguous()` reads that tensor's
            bytes only (a tensor stored as one fp32 run is a copy-on-write view of the mapped file,
            no copy at all: writable, but the file must not be truncated while the view lives);
            `.dtype` and `.shape` need no read.

    Returns:
        dict name -> torch.Tensor (lazy_mode: name -> LazyTensor), in DeepSpeed's order (buffers,
        frozen, trainable, tied names); tied names share one tensor.
    """
    _need_torch("get_fp32_state_dict_from_zero_checkpoint")
    lazy, source = _lazy_state_dict(checkpoint_dir, tag, exclude_frozen_parameters, views=True)
    if lazy_mode:
        return lazy
    return _read_all(lazy, source)


def _reader_threads():
    return max(1, min(4, os.cpu_count() or 1))


def _read_all(lazy, source):
    """Every tensor of `lazy` read into fresh memory; tensors shared by several names read once.
    The core releases the GIL while reading, so a few threads overlap reads, conversion and the
    first touch of the new memory."""
    state_dict, unique, done = {}, [], {}
    for name, t in lazy.items():
        key = id(t)
        if key not in done:
            done[key] = torch.empty(t.shape, dtype=t.dtype)
            unique.append((t, done[key]))
        state_dict[name] = done[key]
    threads = _reader_threads()
    if threads == 1 or len(unique) < 2:
        for t, out in unique:
            source.read_into(t, out)
    else:
        # Largest first, so the threads end together.
        unique.sort(key=lambda p: -p[0].nbytes)
        with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
            for f in [pool.submit(source.read_into, t, out) for t, out in unique]:
                f.result()
    return state_dict


def to_torch_tensor(state_dict, return_empty_tensor=False, dtype=None):
    """DeepSpeed's helper for lazy state dicts: every lazy tensor materialised (tied names share
    one tensor); `return_empty_tensor`: uninitialised tensors of the right shapes instead; `dtype`:
    floating tensors cast to it (others keep theirs)."""
    _need_torch("to_torch_tensor")
    target = None if dtype is None else getattr(torch, _dtype_name(dtype))
    out, done = {}, {}
    for name, t in state_dict.items():
        key = id(t)
        if key not in done:
            cast = target if (target is not None and t.dtype.is_floating_point) else None
            if return_empty_tensor:
                done[key] = torch.empty(t.shape, dtype=cast or t.dtype)
            else:
                x = t.contiguous()
                done[key] = x.to(cast) if cast is not None else x
        out[name] = done[key]
    return out


# Tensor bytes load_state_dict_from_zero_checkpoint materialises at once.
_LOAD_CHUNK_BYTES = 256 << 20


def load_state_dict_from_zero_checkpoint(model, checkpoint_dir, tag=None):
    """Moves `model` to the CPU, loads the checkpoint's fp32 weights into it (strict=False, as
    DeepSpeed does) and returns it.

    Drop-in for DeepSpeed's function. Unlike DeepSpeed's, the whole fp32 state dict is never held:
    tensors are read lazily and loaded in chunks of at most 256 MiB (a larger tensor alone), so peak
    memory is the model plus one chunk. The result is the same as one load_state_dict call with
    strict=False; a shape mismatch raises torch's RuntimeError for the chunk holding that tensor.
    """
    _need_torch("load_state_dict_from_zero_checkpoint")
    lazy, _ = _lazy_state_dict(checkpoint_dir, tag, False, views=True)
    model = model.cpu()
    chunk, chunk_bytes, loaded = {}, 0, {}

    def flush():
        nonlocal chunk, chunk_bytes
        if chunk:
            model.load_state_dict(chunk, strict=False)
        chunk, chunk_bytes = {}, 0

    for name, t in lazy.items():
        key = id(t)
        if key not in loaded:
            loaded[key] = t.contiguous()
            chunk_bytes += t.nbytes
        chunk[name] = loaded[key]
        if chunk_bytes >= _LOAD_CHUNK_BYTES:
            flush()
            loaded.clear()
    flush()
    return model


def _parse_max_shard_size(max_shard_size):
    """huggingface_hub's rule (what DeepSpeed passes it to): int bytes, or "<number>TB|GB|MB|KB"
    (decimal, unit case-insensitive); None: one file."""
    if max_shard_size is None:
        return ""
    if isinstance(max_shard_size, int):
        return str(max_shard_size)
    text = str(max_shard_size).strip()
    units = {"TB": 10**12, "GB": 10**9, "MB": 10**6, "KB": 10**3}
    unit = text[-2:].upper()
    if unit not in units:
        raise ValueError(f"Unit '{unit}' not supported. Supported units are TB, GB, MB, KB. Got '{text}'.")
    try:
        value = float(text[:-2].strip())
    except ValueError as e:
        raise ValueError(f"Could not parse the size value from '{text}': {e}") from e
    return str(int(value * units[unit]))


_DTYPE_NAMES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16", "half": "float16",
                "bfloat16": "bfloat16", "bf16": "bfloat16"}


def _dtype_name(dtype):
    if torch is not None and isinstance(dtype, torch.dtype):
        name = str(dtype).replace("torch.", "")
    else:
        name = str(dtype).lower()
    if name not in _DTYPE_NAMES:
        raise ValueError(f"Unsupported dtype {dtype!r}: use float32, float16 or bfloat16")
    return _DTYPE_NAMES[name]


def _is_weights_file(name):
    return (name.startswith(("model", "pytorch_model")) and
            (name.endswith((".safetensors", ".bin")) or name.endswith((".safetensors.index.json", ".bin.index.json"))))


def convert_zero_checkpoint_to_state_dict(checkpoint_dir, output_dir, dtype="float32", max_shard_size="5GB",
                                          safe_serialization=False, tag=None, exclude_frozen_parameters=False):
    """Writes the consolidated state dict into `output_dir` as DeepSpeed 0.19's function does:
    `pytorch_model.bin` (`model.safetensors` with safe_serialization), or shards
    `pytorch_model-0000k-of-0000n.bin` + `pytorch_model.bin.index.json` when larger than
    `max_shard_size` (huggingface_hub's greedy split in state-dict order; None: one file). Floating
    tensors in `dtype` (float32, float16, bfloat16; round to nearest even), others as stored.

    Runs ucp-reshard's to-fp32 in this process (one rank, no MPI): bounded memory (1 GiB of tensor
    data at a time), nothing unpickled by Python. `output_dir` is created if needed; files of the
    same names are replaced, other files left alone (as DeepSpeed). Tied weights in safetensors are
    written once per name (DeepSpeed's safetensors writer refuses shared tensors).
    """
    fmt = "safetensors" if safe_serialization else "torch"
    shard = _parse_max_shard_size(max_shard_size)
    dtype_name = _dtype_name(dtype)
    output_dir = path_str(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".ucp-reshard-", dir=output_dir)
    try:
        out = os.path.join(work, "out")
        _core.convert_to_model_folder(path_str(checkpoint_dir), out, _resolve_tag(checkpoint_dir, tag), fmt, shard,
                                      bool(exclude_frozen_parameters), dtype_name)
        names = sorted(os.listdir(out))
        # The index last, so a reader never sees an index naming shards not there yet.
        for name in sorted(names, key=lambda n: n.endswith(".index.json")):
            if _is_weights_file(name):
                os.replace(os.path.join(out, name), os.path.join(output_dir, name))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def convert_zero_checkpoint_to_fp32_state_dict(checkpoint_dir, output_dir, max_shard_size="5GB", safe_serialization=False,
                                               tag=None, exclude_frozen_parameters=False):
    """Drop-in for DeepSpeed's function: convert_zero_checkpoint_to_state_dict with float32."""
    return convert_zero_checkpoint_to_state_dict(checkpoint_dir, output_dir, dtype="float32",
                                                 max_shard_size=max_shard_size, safe_serialization=safe_serialization,
                                                 tag=tag, exclude_frozen_parameters=exclude_frozen_parameters)
