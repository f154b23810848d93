"""Lazy tensors over a checkpoint read by the C++ core: name, dtype and shape known up front; bytes
read (only the tensor's own) when materialised. Works with torch (torch tensors) or without it
(numpy arrays).

A tensor stored as one contiguous run of its own dtype in one file materialises as a view of that
file's mapping (mmap with copy-on-write: writable, no copy until written); the view keeps the
mapping alive. Every other tensor is assembled by the core (pread of its pieces, converted).
"""

import math
import mmap
import os

import numpy as np

try:  # torch is optional: without it tensors come back as numpy arrays
    import torch
except ImportError:  # pragma: no cover - exercised by the no-torch test in a subprocess
    torch = None

_NUMPY_DTYPES = {
    "float64": np.float64, "float32": np.float32, "float16": np.float16, "int64": np.int64, "int32": np.int32,
    "int16": np.int16, "int8": np.int8, "uint8": np.uint8, "bool": np.bool_, "uint16": np.uint16,
    "uint32": np.uint32, "uint64": np.uint64, "complex64": np.complex64, "complex128": np.complex128,
}
_FLOATING = {"float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2", "complex64", "complex128"}


def numpy_dtype(name):
    """numpy's dtype for torch dtype name `name`; bfloat16 needs ml_dtypes (else raw uint16 bits)."""
    if name in _NUMPY_DTYPES:
        return np.dtype(_NUMPY_DTYPES[name])
    if name in ("bfloat16", "float8_e4m3fn", "float8_e5m2"):
        try:
            import ml_dtypes
            return np.dtype(getattr(ml_dtypes, name))
        except (ImportError, AttributeError):
            return np.dtype(np.uint16 if name == "bfloat16" else np.uint8)
    raise TypeError(f"no numpy dtype for {name}")


_ITEMSIZE = {"bfloat16": 2, "float8_e4m3fn": 1, "float8_e5m2": 1}


def itemsize(name):
    return _ITEMSIZE.get(name) or np.dtype(_NUMPY_DTYPES[name]).itemsize


def torch_dtype(name):
    return getattr(torch, name)


def is_floating(name):
    return name in _FLOATING


class _Mappings:
    """Copy-on-write mappings of just one tensor's bytes (page-aligned), one per view: a view holds
    its own mapping, so dropping the tensor unmaps it and its pages stop counting as ours."""

    def map(self, path, offset, nbytes):
        """(buffer, offset of the first byte in it) for bytes [offset, offset + nbytes) of `path`."""
        start = offset - offset % mmap.ALLOCATIONGRANULARITY
        with open(path, "rb") as f:  # the mapping keeps its own reference to the file
            m = mmap.mmap(f.fileno(), offset - start + nbytes, access=mmap.ACCESS_COPY, offset=start)
        return m, offset - start


class LazyTensor:
    """A tensor of a checkpoint, not read yet. `.contiguous()` (DeepSpeed's GatheredTensor API)
    returns it as a torch tensor, `.numpy()` as a numpy array; each call reads only its bytes.

    dtype: torch dtype (numpy dtype without torch) of what `.contiguous()` returns; shape:
    torch.Size (tuple without torch).
    """

    __slots__ = ("name", "_source", "_index", "_dtype_name", "_shape", "_stored_dtype_name", "_h5_path")

    def __init__(self, source, index, name, shape, stored_dtype_name, dtype_name):
        self._source = source
        self._index = index
        self.name = name
        self._shape = tuple(int(s) for s in shape)
        self._stored_dtype_name = stored_dtype_name
        self._dtype_name = dtype_name

    @property
    def shape(self):
        return torch.Size(self._shape) if torch is not None else self._shape

    @property
    def dtype(self):
        return torch_dtype(self._dtype_name) if torch is not None else numpy_dtype(self._dtype_name)

    @property
    def stored_dtype(self):
        """The dtype the checkpoint stores (torch's name: "bfloat16", ...)."""
        return self._stored_dtype_name

    def numel(self):
        return math.prod(self._shape)

    def size(self, dim=None):
        s = self.shape
        return s if dim is None else s[dim]

    def dim(self):
        return len(self._shape)

    @property
    def nbytes(self):
        return self.numel() * itemsize(self._dtype_name)

    def __repr__(self):
        return f"LazyTensor({self.name!r}, shape={self._shape}, dtype={self._dtype_name})"

    def contiguous(self):
        """The tensor as a torch tensor (needs torch)."""
        if torch is None:
            raise ImportError("torch is not installed: use .numpy()")
        return self._source.materialise(self, "torch")

    def numpy(self):
        """The tensor as a numpy array (bfloat16 as ml_dtypes.bfloat16 when installed, else uint16 bits)."""
        return self._source.materialise(self, "numpy")

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)


class TensorSource:
    """Materialises LazyTensors of one C++ reader (_core.TensorSet)."""

    def __init__(self, core, views=True):
        self.core = core
        self.views = views
        self._maps = _Mappings()

    def materialise(self, t, kind):
        n = t.numel()
        if kind == "torch":
            if n == 0:
                return torch.empty(t._shape, dtype=torch_dtype(t._dtype_name))
            if self.views and t._dtype_name == t._stored_dtype_name:
                run = self.core.source_run(t._index)
                if run is not None:
                    buf, at = self._maps.map(run[0], run[1], n * itemsize(t._dtype_name))
                    return torch.frombuffer(buf, dtype=torch_dtype(t._dtype_name), count=n, offset=at).view(t._shape)
            out = torch.empty(t._shape, dtype=torch_dtype(t._dtype_name))
            self.core.read_into(t._index, out.data_ptr(), out.numel() * out.element_size(), t._dtype_name)
            return out
        dt = numpy_dtype(t._dtype_name)
        if n == 0:
            return np.empty(t._shape, dtype=dt)
        if self.views and t._dtype_name == t._stored_dtype_name:
            run = self.core.source_run(t._index)
            if run is not None:
                buf, at = self._maps.map(run[0], run[1], n * dt.itemsize)
                return np.frombuffer(buf, dtype=dt, count=n, offset=at).reshape(t._shape)
        out = np.empty(t._shape, dtype=dt)
        self.core.read_into(t._index, out.ctypes.data, out.nbytes, t._dtype_name)
        return out

    def read_into(self, t, out):
        """Reads `t` into `out`, a contiguous torch tensor of t's shape and output dtype."""
        if t.numel():
            self.core.read_into(t._index, out.data_ptr(), out.numel() * out.element_size(), t._dtype_name)


def fp32_output_dtype(stored):
    """zero_to_fp32's output dtype: floating tensors in float32, others as stored."""
    return "float32" if is_floating(stored) else stored


def path_str(p):
    return os.fspath(p)
