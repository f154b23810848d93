"""Shared helpers of the torch-file oracle tests (test_torch_roundtrip.py, test_fixture_rewrite.py).

The oracle is real torch (Debian's python3-torch 1.13): torch.save writes the inputs, torch.load reads
our outputs, and this module renders what torch.load returned in the same canonical JSON form that
`ucp_pt_tool dump` prints for what our reader returned, so the two can be compared exactly.
"""

import collections
import copyreg
import enum
import json
import os
import struct
import subprocess
import types
import zipfile

import torch

BUILD_DIR = os.environ.get("UCP_BUILD_DIR", "")
TOOL = os.path.join(BUILD_DIR, "tests", "ucp_pt_tool")


def require_tool(testcase):
    if not BUILD_DIR:
        testcase.fail("UCP_BUILD_DIR is not set (run through ctest, or export it)")
    if not os.access(TOOL, os.X_OK):
        testcase.fail(f"{TOOL} is missing: build the ucp_pt_tool target first")


def run_tool(*args, check=True):
    """Runs ucp_pt_tool; returns (returncode, stdout, stderr). With check, a failure raises."""
    proc = subprocess.run([TOOL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
    out, err = proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
    if check and proc.returncode != 0:
        raise AssertionError(f"ucp_pt_tool {' '.join(args[:4])}{' ...' if len(args) > 4 else ''} "
                             f"exited {proc.returncode}: {err.strip()}")
    return proc.returncode, out, err


def dump_files(paths, chunk=400):
    """`ucp_pt_tool dump` of each path (batched), parsed: one JSON value per path."""
    result = []
    for i in range(0, len(paths), chunk):
        part = paths[i:i + chunk]
        _, out, _ = run_tool("dump", *part)
        lines = out.splitlines()
        if len(lines) != len(part):
            raise AssertionError(f"dump printed {len(lines)} lines for {len(part)} files")
        result.extend(json.loads(line) for line in lines)
    return result


# ----------------------------------------------------------------------------- canonical rendering

def float_bits(x):
    return "%016x" % struct.unpack("<Q", struct.pack("<d", x))[0]


def tensor_hex(t):
    """Row-major element bytes of `t` (little-endian, as torch stores them)."""
    c = t.detach().contiguous()
    if c.dtype == torch.bfloat16:  # numpy has no bfloat16; same-size reinterpretation
        c = c.view(torch.int16)
    elif c.dtype not in _NUMPY_DTYPES:  # torch 2.x only: float8, unsigned 16-64 bit
        c = c.reshape(-1).view(torch.uint8)
    return c.numpy().tobytes().hex()


_NUMPY_DTYPES = {torch.float64, torch.float32, torch.float16, torch.int64, torch.int32, torch.int16, torch.int8,
                 torch.uint8, torch.bool, torch.complex64, torch.complex128}


def storage_hex(s):
    return tensor_hex(torch.empty(0, dtype=s.dtype).set_(s))


def dtype_name(dt):
    return str(dt)[len("torch."):]


def global_name(obj, protocol):
    """The 'module.name' of a class or function as an unpickler sees it: protocol < 3 pickles spell
    modules the Python 2 way ("__builtin__"), and readers (Python's with fix_imports, and ours)
    translate them back, so the Python 3 name is expected at every protocol."""
    del protocol
    return f"{obj.__module__}.{obj.__qualname__}"


def render(x, protocol):
    """Canonical JSON form of a torch.load result; must equal `ucp_pt_tool dump` for the same file."""
    t = type(x)
    if x is None or t is bool or t is str:
        return x
    if t is int:
        return x if -2**63 <= x < 2**63 else {"bigint": str(x)}
    if t is float:
        return {"float": float_bits(x)}
    if t is bytes:
        return {"bytes": x.hex()}
    if t is bytearray:
        return {"bytearray": x.hex()}
    if t is tuple:
        return {"tuple": [render(v, protocol) for v in x]}
    if t is list:
        return {"list": [render(v, protocol) for v in x]}
    if t is set:
        return {"set": [render(v, protocol) for v in x]}
    if t is frozenset:
        return {"frozenset": [render(v, protocol) for v in x]}
    if t is torch.Size:
        return {"size": list(x)}
    if t is dict:
        return {"dict": [[render(k, protocol), render(v, protocol)] for k, v in x.items()]}
    if t is collections.OrderedDict:
        out = {"odict": [[render(k, protocol), render(v, protocol)] for k, v in x.items()]}
        if vars(x):  # pickled as BUILD state (state_dict()._metadata)
            out["state"] = render(dict(vars(x)), protocol)
        return out
    if isinstance(x, torch.dtype):
        return {"global": "torch." + dtype_name(x)}
    if t is torch.Tensor or t is torch.nn.Parameter:
        st = x.storage()
        out = {"tensor": {
            "dtype": dtype_name(x.dtype), "shape": list(x.shape), "stride": list(x.stride()),
            "storage_offset": x.storage_offset(), "storage_key": f"py{st._cdata}",
            "storage_numel": st.size(), "requires_grad": x.requires_grad,
            "parameter": t is torch.nn.Parameter, "hex": tensor_hex(x)}}
        if t is torch.Tensor and vars(x):  # Python attributes (kept by torch >= 2.0 only)
            out["tensor"]["attrs"] = render(dict(vars(x)), protocol)
        return out
    if isinstance(x, torch.storage.TypedStorage):
        return {"storage": {"dtype": dtype_name(x.dtype), "numel": x.size(),
                            "storage_key": f"py{x._cdata}", "hex": storage_hex(x)}}
    if isinstance(x, (type, types.FunctionType, types.BuiltinFunctionType)):
        return {"global": global_name(x, protocol)}
    return render_object(x, protocol)


def render_object(x, protocol):
    """An instance of any other class, rendered the way pickle constructs it (__reduce_ex__)."""
    rv = x.__reduce_ex__(protocol)
    rv = tuple(rv) + (None,) * (5 - len(rv))
    func, args, state, listitems, dictitems = rv[:5]
    out = {}
    if func is copyreg.__newobj__:
        out["kind"], out["callable"], args = "newobj", args[0], args[1:]
    elif func is copyreg.__newobj_ex__:
        cls, args, kwargs = args
        out["kind"], out["callable"] = "newobj_ex", cls
        out["kwargs"] = render(dict(kwargs), protocol)
    else:
        out["kind"], out["callable"] = "reduce", func
    out["callable"] = render(out["callable"], protocol)
    out["args"] = render(tuple(args), protocol)
    if state is not None:
        out["state"] = render(state, protocol)
    items = list(listitems) if listitems is not None else []
    if items:
        out["list_items"] = [render(v, protocol) for v in items]
    entries = list(dictitems) if dictitems is not None else []
    if entries:
        out["dict_items"] = [[render(k, protocol), render(v, protocol)] for k, v in entries]
    return {"object": out}


def normalize(tree):
    """Replaces storage keys by their order of first appearance (so ours and torch's compare by
    sharing pattern, not by name) and sorts set members canonically."""
    ordinals = {}

    def walk(v):
        if isinstance(v, list):
            return [walk(e) for e in v]
        if isinstance(v, dict):
            out = {}
            for k in sorted(v):
                if k == "storage_key":
                    out[k] = "S%d" % ordinals.setdefault(v[k], len(ordinals))
                else:
                    out[k] = walk(v[k])
            if set(out) == {"set"} or set(out) == {"frozenset"}:
                (tag, items), = out.items()
                out[tag] = sorted(items, key=lambda e: json.dumps(e, sort_keys=True))
            return out
        return v

    return walk(tree)


def _short(v, limit=300):
    s = json.dumps(v, sort_keys=True, ensure_ascii=False)
    return s if len(s) <= limit else s[:limit] + f"... ({len(s)} chars)"


def json_diff(a, b, path="$"):
    """First difference between two JSON trees as 'path: a vs b', or None."""
    if type(a) is not type(b):
        return f"{path}: {_short(a)} vs {_short(b)}"
    if isinstance(a, dict):
        if set(a) != set(b):
            return f"{path}: keys {sorted(a)} vs {sorted(b)}"
        for k in sorted(a):
            d = json_diff(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list):
        for i, (x, y) in enumerate(zip(a, b)):
            d = json_diff(x, y, f"{path}[{i}]")
            if d:
                return d
        if len(a) != len(b):
            return f"{path}: length {len(a)} vs {len(b)}"
        return None
    if a != b:
        if isinstance(a, str) and len(a) > 64 and len(a) == len(b):
            i = next(i for i in range(len(a)) if a[i] != b[i])
            return f"{path}: strings of {len(a)} chars first differ at char {i}: " \
                   f"...{a[max(0, i - 16):i + 32]}... vs ...{b[max(0, i - 16):i + 32]}..."
        return f"{path}: {_short(a)} vs {_short(b)}"
    return None


# ----------------------------------------------------------------------------- deep comparison

class DeepCompare:
    """Compares two loaded trees: exact types, values bitwise, tensors by dtype/shape/stride/offset/
    requires_grad/storage bytes, and identity structure: tensors sharing a storage on one side share
    it on the other (a bijection of storages), and objects referenced twice (memoised) on one side are
    referenced twice on the other (a bijection of container/tensor/object identities)."""

    def __init__(self):
        self.storages = ({}, {})
        self.ids = ({}, {})
        self.keep = []  # keeps compared objects alive so id()s stay unique

    def _biject(self, maps, ka, kb, what, path):
        fwd, rev = maps
        if fwd.setdefault(ka, kb) != kb or rev.setdefault(kb, ka) != ka:
            return f"{path}: {what} sharing differs (shared on one side, not on the other)"
        return None

    def diff(self, a, b, path="$"):
        ta, tb = type(a), type(b)
        if ta is not tb:
            return f"{path}: type {ta.__name__} vs {tb.__name__}"
        if a is None or ta in (bool, int, str, bytes, bytearray):
            return None if a == b else f"{path}: {a!r:.200} vs {b!r:.200}"
        if ta is float:
            return None if float_bits(a) == float_bits(b) else f"{path}: {a!r} vs {b!r} (bitwise)"
        if isinstance(a, torch.dtype) or isinstance(a, (type, types.FunctionType, types.BuiltinFunctionType)):
            return None if a is b else f"{path}: {a!r} vs {b!r}"
        if ta is torch.Size:
            return None if tuple(a) == tuple(b) else f"{path}: {a} vs {b}"
        if ta in (list, dict, collections.OrderedDict, set, frozenset, torch.Tensor, torch.nn.Parameter) \
                or isinstance(a, torch.storage.TypedStorage) or not isinstance(a, tuple):
            self.keep.append((a, b))
            d = self._biject(self.ids, id(a), id(b), "object", path)
            if d:
                return d
        if ta in (tuple, list):
            if len(a) != len(b):
                return f"{path}: length {len(a)} vs {len(b)}"
            for i, (x, y) in enumerate(zip(a, b)):
                d = self.diff(x, y, f"{path}[{i}]")
                if d:
                    return d
            return None
        if ta in (set, frozenset):
            ka = sorted(json.dumps(render(v, 4), sort_keys=True) for v in a)
            kb = sorted(json.dumps(render(v, 4), sort_keys=True) for v in b)
            return None if ka == kb else f"{path}: set {ka} vs {kb}"
        if ta in (dict, collections.OrderedDict):
            if len(a) != len(b):
                return f"{path}: {len(a)} entries vs {len(b)}"
            for i, ((k1, v1), (k2, v2)) in enumerate(zip(a.items(), b.items())):
                d = self.diff(k1, k2, f"{path}.key#{i}")
                if d:
                    return d
                d = self.diff(v1, v2, f"{path}[{k1!r:.80}]")
                if d:
                    return d
            if ta is collections.OrderedDict:
                return self.diff(dict(vars(a)), dict(vars(b)), f"{path}.__dict__")
            return None
        if ta in (torch.Tensor, torch.nn.Parameter):
            return self._tensor(a, b, path)
        if isinstance(a, torch.storage.TypedStorage):
            return self._storage(a, b, path)
        if ta is tuple or isinstance(a, tuple):  # namedtuple and friends
            return self.diff(tuple(a), tuple(b), path)
        return self._object(a, b, path)

    def _storage(self, a, b, path):
        if a.dtype != b.dtype or a.size() != b.size():
            return f"{path}: storage {a.dtype}[{a.size()}] vs {b.dtype}[{b.size()}]"
        d = self._biject(self.storages, a._cdata, b._cdata, "storage", path)
        if d:
            return d
        ha, hb = storage_hex(a), storage_hex(b)
        if ha != hb:
            i = next(i for i in range(min(len(ha), len(hb))) if ha[i] != hb[i]) // 2
            return f"{path}: storage bytes differ from byte {i}"
        return None

    def _tensor(self, a, b, path):
        for what, fa, fb in (("dtype", a.dtype, b.dtype), ("shape", tuple(a.shape), tuple(b.shape)),
                             ("stride", a.stride(), b.stride()),
                             ("storage_offset", a.storage_offset(), b.storage_offset()),
                             ("requires_grad", a.requires_grad, b.requires_grad),
                             ("device", a.device, b.device)):
            if fa != fb:
                return f"{path}: tensor {what} {fa} vs {fb}"
        ha, hb = tensor_hex(a), tensor_hex(b)
        if ha != hb:
            i = next(i for i in range(len(ha)) if ha[i] != hb[i]) // 2
            return f"{path}: tensor values differ from byte {i} of the row-major data"
        d = self.diff(dict(vars(a)), dict(vars(b)), f"{path}.__dict__")  # Python attributes (torch >= 2.0)
        if d:
            return d
        return self._storage(a.storage(), b.storage(), f"{path}.storage()")

    def _object(self, a, b, path):
        if hasattr(a, "_ucp_stub_fields"):  # test_fixture_rewrite's stand-ins for absent classes
            return self.diff(a._ucp_stub_fields(), b._ucp_stub_fields(), path)
        if isinstance(a, enum.Enum):
            return None if a is b else f"{path}: {a!r} vs {b!r}"
        ra, rb = a.__reduce_ex__(4), b.__reduce_ex__(4)
        ra = tuple(ra) + (None,) * (5 - len(ra))
        rb = tuple(rb) + (None,) * (5 - len(rb))
        fields = ("callable", "args", "state", "listitems", "dictitems")
        for i, name in enumerate(fields):
            x, y = ra[i], rb[i]
            if i >= 3:
                x = list(x) if x is not None else []
                y = list(y) if y is not None else []
            d = self.diff(x, y, f"{path}<{type(a).__name__}>.{name}")
            if d:
                return d
        return None


# ----------------------------------------------------------------------------- zip structure

def zip_problems(path, alignment=64):
    """Structural checks of a torch zip we wrote: CRCs valid (zipfile.testzip), records stored, every
    record's data offset aligned, one archive folder with data.pkl and version. Returns problems."""
    problems = []
    with zipfile.ZipFile(path) as z, open(path, "rb") as f:
        bad = z.testzip()
        if bad is not None:
            problems.append(f"CRC mismatch in record {bad}")
        infos = z.infolist()
        prefixes = {i.filename.split("/", 1)[0] for i in infos}
        if len(prefixes) != 1:
            problems.append(f"records under several top folders: {sorted(prefixes)}")
        prefix = sorted(prefixes)[0] if prefixes else ""
        names = {i.filename for i in infos}
        for required in ("data.pkl", "version"):
            if f"{prefix}/{required}" not in names:
                problems.append(f"missing record {prefix}/{required}")
        if len(names) != len(infos):
            problems.append("duplicate record names")
        for info in infos:
            if info.compress_type != zipfile.ZIP_STORED:
                problems.append(f"{info.filename}: compress_type {info.compress_type}")
            f.seek(info.header_offset)
            header = f.read(30)
            if header[:4] != b"PK\x03\x04":
                problems.append(f"{info.filename}: no local header at {info.header_offset}")
                continue
            name_len, extra_len = struct.unpack("<HH", header[26:30])
            data_offset = info.header_offset + 30 + name_len + extra_len
            if data_offset % alignment:
                problems.append(f"{info.filename}: data at offset {data_offset}, not a multiple of {alignment}")
        if f"{prefix}/version" in names:
            version = z.read(f"{prefix}/version")
            if version.strip() not in (b"3", b"2", b"1"):
                problems.append(f"version record holds {version!r}")
    return problems
