"""Shared helpers for the command-level oracle tests: running ucp-reshard under mpirun, reading
its outputs with an independent reader (json + numpy for safetensors, torch.load for .bin), and
reading DeepSpeed pickles with torch itself (DeepSpeed classes replaced by inert stubs)."""

import json
import os
import pickle
import shutil
import struct
import subprocess
import tempfile
import types

import numpy as np
import torch

UCP = os.environ.get("UCP_RESHARD", "")
GOLDEN = os.environ.get("UCP_GOLDEN_DIR", os.path.join(os.path.dirname(__file__), "..", "golden"))
MPIEXEC = os.environ.get("UCP_MPIEXEC") or "mpirun"
DEEPSPEED = os.path.join(GOLDEN, "deepspeed")


def fixture_names():
    return sorted(n for n in os.listdir(DEEPSPEED)
                  if os.path.isdir(os.path.join(DEEPSPEED, n)) and not n.startswith("resume_"))


def run(args, ranks=1, env=None, prefix=None, timeout=300):
    """Runs `ucp-reshard ARGS` under mpirun with `ranks` ranks; returns CompletedProcess (text).
    `prefix` is shell run in each rank's process just before ucp-reshard (e.g. "ulimit -f 4;")."""
    cmd = [MPIEXEC, "-np", str(ranks), "--oversubscribe", "--bind-to", "none"]
    if os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    if prefix:
        cmd += ["bash", "-c", prefix + ' exec "$@"', "bash"]
    cmd += [UCP] + list(args)
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout, env=e)


# ------------------------------------------------------------------------------------ safetensors

_ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.int16, "I64": np.int64,
              "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def read_safetensors(path):
    """name -> torch tensor, read with json + numpy only (independent of our reader)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    assert header.get("__metadata__", {}).get("format") == "pt", f"{path}: __metadata__ format is not 'pt'"
    assert (8 + n) % 8 == 0, f"{path}: data buffer not 8-byte aligned"
    base = 8 + n
    out = {}
    spans = []
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        spans.append((b, end))
        arr = np.frombuffer(raw[base + b:base + end], dtype=_ST_DTYPES[e["dtype"]]).reshape(e["shape"]).copy()
        t = torch.from_numpy(arr)
        if e["dtype"] == "BF16":
            t = t.view(torch.bfloat16)
        out[name] = t
    spans.sort()
    pos = 0
    for b, end in spans:
        assert b == pos, f"{path}: hole or overlap at {pos}"
        pos = end
    assert base + pos == len(raw), f"{path}: data buffer not fully covered"
    return out


def load_output(out_dir, fmt="safetensors"):
    """Loads an HF-style output dir (single file or index + shards) -> (state dict, file names)."""
    if fmt == "safetensors":
        single, index, reader = "model.safetensors", "model.safetensors.index.json", read_safetensors
    else:
        single, index = "pytorch_model.bin", "pytorch_model.bin.index.json"
        reader = lambda p: torch.load(p, weights_only=True)  # noqa: E731
    files = sorted(os.listdir(out_dir))
    if os.path.exists(os.path.join(out_dir, index)):
        with open(os.path.join(out_dir, index)) as f:
            idx = json.load(f)
        sd = {}
        for shard in sorted(set(idx["weight_map"].values())):
            part = reader(os.path.join(out_dir, shard))
            for k in part:
                assert idx["weight_map"].get(k) == shard, f"{k} is in {shard} but the index says {idx['weight_map'].get(k)}"
            sd.update(part)
        assert set(sd) == set(idx["weight_map"]), "index and shards disagree on the key set"
        return sd, files
    return reader(os.path.join(out_dir, single)), files


# ------------------------------------------------------------------------- DeepSpeed pickles

class _Stub:
    def __init__(self, *args, **kwargs):
        self._args = args

    def __setstate__(self, state):
        self.__dict__["_state"] = state


class _DeepSpeedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module.startswith("deepspeed"):
            return type(name, (_Stub,), {})
        if module in ("__builtin__", "builtins") and name == "getattr":
            return lambda obj, attr: f"{getattr(obj, '__name__', obj)}.{attr}"
        return super().find_class(module, name)


ds_pickle = types.ModuleType("ds_pickle")
ds_pickle.Unpickler = _DeepSpeedUnpickler
ds_pickle.load = pickle.load
ds_pickle.__dict__["__name__"] = "ds_pickle"


def load_deepspeed_file(path):
    """torch.load of a DeepSpeed file without DeepSpeed: its classes become inert stubs."""
    return torch.load(path, pickle_module=ds_pickle)


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


class TempDir:
    def __enter__(self):
        self.path = tempfile.mkdtemp(prefix="ucp-oracle-")
        return self.path

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)
