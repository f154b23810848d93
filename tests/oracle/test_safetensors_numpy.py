"""Oracle test of our safetensors reader and writer (through tests/tools/ucp_st_tool).

The `safetensors` Python package is not installed, so this file carries its own small reader and
writer, written from the format description (huggingface/safetensors README "Format",
docs in /work/shared/spec/formats.md section 1) with json + struct + numpy; tensor values come from
numpy and torch. Three directions:
  1. files written here (all dtypes, 0-d, empty, non-ASCII names, metadata, unsorted and unpadded
     headers) -> `ucp_st_tool dump` must report the same tensors, bytes and metadata;
  2. files written by `ucp_st_tool write` -> parsed here: 8-aligned buffer, space padding, exact
     coverage, reference ordering, identical bytes, byte-identical to this file's reference-style
     serializer, and torch values equal to the originals;
  3. malformed files -> `ucp_st_tool dump` exits non-zero naming the problem.
"""

import json
import os
import struct
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import torch

BUILD_DIR = os.environ.get("UCP_BUILD_DIR", "")
TOOL = os.path.join(BUILD_DIR, "tests", "ucp_st_tool")

# dtype string -> (element size, numpy dtype or None for raw bytes)
DTYPES = {
    "BOOL": (1, np.dtype("bool")),
    "U8": (1, np.dtype("<u1")),
    "I8": (1, np.dtype("<i1")),
    "F8_E5M2": (1, None),
    "F8_E4M3": (1, None),
    "I16": (2, np.dtype("<i2")),
    "U16": (2, np.dtype("<u2")),
    "F16": (2, np.dtype("<f2")),
    "BF16": (2, None),  # numpy has no bfloat16: bits come from torch
    "I32": (4, np.dtype("<i4")),
    "U32": (4, np.dtype("<u4")),
    "F32": (4, np.dtype("<f4")),
    "C64": (8, np.dtype("<c8")),
    "F64": (8, np.dtype("<f8")),
    "I64": (8, np.dtype("<i8")),
    "U64": (8, np.dtype("<u8")),
}
# Order of the reference implementation's Dtype enum (increasing alignment), from the format docs.
REFERENCE_ENUM = ["BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0",
                  "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "C64", "F64", "I64", "U64"]


# ---------------------------------------------------------------- independent implementation

def make_values(dtype, shape, seed):
    """Deterministic little-endian bytes for a tensor, with special values for float types."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    size, npdt = DTYPES[dtype]
    if dtype == "BF16":
        t = torch.from_numpy(rng.standard_normal(n).astype(np.float32)).to(torch.bfloat16)
        if n >= 3:
            t[:3] = torch.tensor([float("inf"), -0.0, 65504.0], dtype=torch.bfloat16)
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    if npdt is None:
        return rng.integers(0, 256, size=n, dtype=np.uint8).tobytes()
    if npdt.kind == "b":
        arr = rng.integers(0, 2, size=n).astype(bool)
    elif npdt.kind in "iu":
        info = np.iinfo(npdt)
        arr = rng.integers(info.min, info.max, size=n, dtype=npdt, endpoint=True)
        if n >= 2:
            arr[0], arr[1] = info.min, info.max
    elif npdt.kind == "c":
        arr = (rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(npdt)
    else:
        arr = rng.standard_normal(n).astype(npdt)
        if n >= 4:
            arr[:4] = [np.inf, -np.inf, -0.0, np.nan]
    data = arr.astype(npdt).tobytes()
    assert len(data) == n * size
    return data


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def py_write(path, tensors, metadata=None, *, order="reference", pad=True, separators=(",", ":"),
             buffer_order=None):
    """Writes a safetensors file. tensors: list of (name, dtype, shape, bytes).

    order: "reference" (descending enum rank, then name) or "input"; buffer_order, if given, a
    permutation deciding where each tensor's bytes go in the buffer (independent of header order).
    """
    items = list(tensors)
    if order == "reference":
        items.sort(key=lambda t: (-REFERENCE_ENUM.index(t[1]), t[0].encode("utf-8")))
    placement = list(range(len(items))) if buffer_order is None else buffer_order
    offsets = {}
    cursor = 0
    for i in placement:
        name, _, _, data = items[i]
        offsets[name] = (cursor, cursor + len(data))
        cursor += len(data)
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, _ in items:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets[name])}
    text = json.dumps(header, separators=separators, ensure_ascii=False).encode("utf-8")
    if pad:
        text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for i in placement:
            f.write(items[i][3])
    return items


class PyFile:
    """A safetensors file parsed and fully validated here."""

    def __init__(self, path):
        with open(path, "rb") as f:
            raw = f.read()
        if len(raw) < 8:
            raise ValueError("too small")
        (n,) = struct.unpack("<Q", raw[:8])
        if n > 100_000_000 or 8 + n > len(raw):
            raise ValueError("bad header length")
        self.header_len = n
        self.header_bytes = raw[8:8 + n]
        if not self.header_bytes.startswith(b"{"):
            raise ValueError("header must start with {")
        pairs_seen = []

        def hook(pairs):
            keys = [k for k, _ in pairs]
            if len(keys) != len(set(keys)):
                raise ValueError("duplicate keys")
            pairs_seen.append(keys)
            return dict(pairs)

        self.header = json.loads(self.header_bytes.decode("utf-8"), object_pairs_hook=hook)
        self.keys = pairs_seen[-1]  # the top-level object is closed last
        self.metadata = self.header.get("__metadata__")
        if self.metadata is not None and not (
                isinstance(self.metadata, dict) and all(isinstance(v, str) for v in self.metadata.values())):
            raise ValueError("__metadata__ must map strings to strings")
        self.buffer = raw[8 + n:]
        self.tensors = []  # header order: (name, dtype, shape, bytes, begin, end)
        spans = []
        for name in self.keys:
            if name == "__metadata__":
                continue
            info = self.header[name]
            dtype, shape, (b, e) = info["dtype"], info["shape"], info["data_offsets"]
            size = DTYPES[dtype][0]
            if not (0 <= b <= e <= len(self.buffer)) or e - b != numel(shape) * size:
                raise ValueError(f"bad offsets for {name}")
            spans.append((b, e, name))
            self.tensors.append((name, dtype, shape, self.buffer[b:e], b, e))
        cursor = 0
        for b, e, name in sorted(spans):
            if b != cursor:
                raise ValueError(f"hole or overlap at {name}")
            cursor = e
        if cursor != len(self.buffer):
            raise ValueError("buffer not fully covered")


def as_torch(dtype, shape, data):
    """The tensor torch sees for these bytes (via numpy, as the loader would build it)."""
    if dtype == "BF16":
        arr = np.frombuffer(data, dtype="<i2").copy()
        return torch.from_numpy(arr).view(torch.bfloat16).reshape(shape)
    arr = np.frombuffer(data, dtype=DTYPES[dtype][1]).copy()
    return torch.from_numpy(arr).reshape(shape)


# ---------------------------------------------------------------- tool

def run_tool(*args):
    proc = subprocess.run([TOOL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    return proc.returncode, proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8", "replace")


def sample_tensors():
    """Every dtype in several shapes, scalars, empty tensors, awkward names."""
    out = []
    seed = 0
    for dtype in DTYPES:
        for shape in ([3, 5], [7], [], [0], [2, 0, 3], [1, 1, 1, 2]):
            seed += 1
            name = f"layers.{seed}.{dtype.lower()}.{'x'.join(map(str, shape)) or 'scalar'}"
            out.append((name, dtype, shape, make_values(dtype, shape, seed)))
    out.append(("模型.权重.ü", "F32", [2, 2], make_values("F32", [2, 2], 1000)))
    out.append(("emoji 😀 \"quoted\" \\ back\nslash\ttab", "I8", [3], make_values("I8", [3], 1001)))
    out.append(("Z-upper", "F32", [1], make_values("F32", [1], 1002)))
    return out


class SafetensorsOracleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not BUILD_DIR:
            raise AssertionError("UCP_BUILD_DIR is not set (run through ctest, or export it)")
        if not os.access(TOOL, os.X_OK):
            raise AssertionError(f"{TOOL} is missing: build the ucp_st_tool target first")
        cls.tmp = tempfile.TemporaryDirectory(prefix="ucp_st_oracle_")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def dump(self, path):
        rc, out, err = run_tool("dump", path)
        self.assertEqual(rc, 0, f"ucp_st_tool dump {path} failed: {err}")
        return json.loads(out)

    # ---- 1. our reader on files written here

    def check_dump_matches(self, path, metadata):
        ref = PyFile(path)  # our own writer's output must pass our own reader first
        got = self.dump(path)
        self.assertEqual(got["metadata"], metadata or {})
        expected = [{"name": n, "dtype": d, "shape": s, "hex": data.hex()} for n, d, s, data, _, _ in ref.tensors]
        self.assertEqual(len(got["tensors"]), len(expected))
        for g, e in zip(got["tensors"], expected):
            self.assertEqual(g, e)

    def test_reader_reference_layout(self):
        tensors = sample_tensors()
        meta = {"format": "pt", "note": "héllo \"world\"", "empty": ""}
        p = self.path("ref_layout.safetensors")
        py_write(p, tensors, meta)
        self.check_dump_matches(p, meta)

    def test_reader_keeps_header_order_with_shuffled_buffer_and_no_padding(self):
        tensors = sample_tensors()
        rng = np.random.default_rng(7)
        perm = [int(i) for i in rng.permutation(len(tensors))]
        p = self.path("shuffled.safetensors")
        items = py_write(p, tensors, None, order="input", pad=False, separators=(", ", ": "),
                         buffer_order=perm)
        got = self.dump(p)
        self.assertEqual([t["name"] for t in got["tensors"]], [t[0] for t in items])
        self.check_dump_matches(p, None)

    def test_reader_empty_file_and_only_metadata(self):
        p = self.path("empty.safetensors")
        py_write(p, [], None)
        self.assertEqual(self.dump(p), {"metadata": {}, "tensors": []})
        p = self.path("meta_only.safetensors")
        py_write(p, [], {"format": "pt"})
        self.assertEqual(self.dump(p), {"metadata": {"format": "pt"}, "tensors": []})

    # ---- 2. our writer, checked here

    def write_with_tool(self, name, tensors, metadata=None):
        spec = [{"name": n, "dtype": d, "shape": s, "hex": data.hex()} for n, d, s, data in tensors]
        if metadata is not None:
            spec = {"metadata": metadata, "tensors": spec}
        spec_path = self.path(name + ".spec.json")
        with open(spec_path, "w", encoding="utf-8") as f:
            json.dump(spec, f, ensure_ascii=False)
        out = self.path(name)
        rc, _, err = run_tool("write", out, spec_path)
        self.assertEqual(rc, 0, f"ucp_st_tool write failed: {err}")
        return out

    def test_writer_output_parses_and_matches(self):
        tensors = sample_tensors()
        out = self.write_with_tool("ours.safetensors", tensors)
        f = PyFile(out)
        # Header: length prefix + JSON + spaces so that the buffer starts 8-aligned.
        self.assertEqual((8 + f.header_len) % 8, 0)
        stripped = f.header_bytes.rstrip(b" ")
        self.assertLess(len(f.header_bytes) - len(stripped), 8)
        self.assertTrue(stripped.endswith(b"}"))
        self.assertEqual(f.keys[0], "__metadata__")
        self.assertEqual(f.metadata, {"format": "pt"})
        # Reference ordering: descending enum rank, then name bytewise; buffer in the same order.
        names = [t[0] for t in f.tensors]
        by_name = {t[0]: t for t in tensors}
        expected = sorted(names, key=lambda n: (-REFERENCE_ENUM.index(by_name[n][1]), n.encode("utf-8")))
        self.assertEqual(names, expected)
        self.assertEqual([t[4] for t in f.tensors], sorted(t[4] for t in f.tensors))
        # Each tensor is aligned to its element size in the file, and its bytes are ours.
        self.assertEqual(len(f.tensors), len(tensors))
        for name, dtype, shape, data, b, _ in f.tensors:
            self.assertEqual((8 + f.header_len + b) % DTYPES[dtype][0], 0, name)
            self.assertEqual(shape, by_name[name][2], name)
            self.assertEqual(dtype, by_name[name][1], name)
            self.assertEqual(data, by_name[name][3], name)
        # Byte-identical to the reference-style serializer implemented here.
        mine = self.path("mine.safetensors")
        py_write(mine, tensors, {"format": "pt"})
        with open(out, "rb") as a, open(mine, "rb") as b:
            self.assertEqual(a.read(), b.read())

    def test_writer_values_through_torch(self):
        originals = {
            "f32": torch.randn(4, 3, generator=torch.Generator().manual_seed(1)),
            "f64": torch.randn(5, dtype=torch.float64, generator=torch.Generator().manual_seed(2)),
            "f16": torch.randn(2, 3, generator=torch.Generator().manual_seed(3)).half(),
            "bf16": torch.randn(3, 2, generator=torch.Generator().manual_seed(4)).bfloat16(),
            "scalar": torch.tensor(3.25),
            "empty": torch.zeros(0, 4),
            "i64": torch.arange(-3, 3, dtype=torch.int64),
            "flag": torch.tensor([True, False, True]),
        }
        code = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
                torch.int64: "I64", torch.bool: "BOOL"}
        tensors = []
        for name, t in originals.items():
            if t.dtype == torch.bfloat16:
                data = t.view(torch.int16).numpy().tobytes()
            else:
                data = t.numpy().tobytes()
            tensors.append((name, code[t.dtype], list(t.shape), data))
        out = self.write_with_tool("torch.safetensors", tensors, {"format": "pt", "by": "oracle"})
        f = PyFile(out)
        self.assertEqual(f.metadata, {"format": "pt", "by": "oracle"})
        for name, dtype, shape, data, _, _ in f.tensors:
            got = as_torch(dtype, shape, data)
            self.assertEqual(got.dtype, originals[name].dtype, name)
            self.assertEqual(tuple(got.shape), tuple(originals[name].shape), name)
            self.assertTrue(torch.equal(got, originals[name]), name)

    def test_writer_round_trips_through_our_reader(self):
        tensors = sample_tensors()
        out = self.write_with_tool("rt.safetensors", tensors, {})
        f = PyFile(out)
        self.assertIsNone(f.metadata)  # empty metadata is omitted, as the reference does with None
        got = self.dump(out)
        self.assertEqual({t["name"]: t["hex"] for t in got["tensors"]}, {n: d.hex() for n, _, _, d in tensors})

    def test_writer_rejects_wrong_data_size(self):
        spec_path = self.path("badsize.spec.json")
        with open(spec_path, "w") as f:
            json.dump([{"name": "w", "dtype": "F32", "shape": [2], "hex": "00" * 7}], f)
        out = self.path("badsize.safetensors")
        rc, _, err = run_tool("write", out, spec_path)
        self.assertNotEqual(rc, 0)
        self.assertIn("InvalidArgument", err)
        self.assertIn("'w'", err)
        self.assertFalse(os.path.exists(out))

    # ---- 3. malformed files

    def expect_rejected(self, label, raw, code, fragment):
        p = self.path(f"bad_{label}.safetensors")
        with open(p, "wb") as f:
            f.write(raw)
        with self.assertRaises(Exception, msg=f"{label}: the Python reader must reject it too"):
            PyFile(p)
        rc, out, err = run_tool("dump", p)
        self.assertNotEqual(rc, 0, f"{label}: accepted, printed {out[:200]}")
        self.assertEqual(out, "", label)
        self.assertIn(f"{code}: ", err, label)
        self.assertIn(p, err, f"{label}: message must name the file")
        self.assertIn(fragment, err, label)

    def test_rejects_malformed_files(self):
        def entry(name, dtype, shape, b, e):
            return {name: {"dtype": dtype, "shape": shape, "data_offsets": [b, e]}}

        def image(header, buffer_len, length=None):
            text = header if isinstance(header, bytes) else json.dumps(header).encode()
            n = len(text) if length is None else length
            return struct.pack("<Q", n) + text + bytes(range(256)) * (buffer_len // 256) + bytes(buffer_len % 256)

        good = entry("a", "F32", [2], 0, 8)
        cases = [
            ("truncated_length", b"\x10\x00\x00", "DataLoss", "too small"),
            ("truncated_header", image(good, 8)[:20], "DataLoss", "runs past end of file"),
            ("truncated_data", image(good, 8)[:-1], "DataLoss", "past the end of the data buffer"),
            ("header_huge", image(good, 8, length=2**63 + 5), "DataLoss", "100000000-byte limit"),
            ("header_over_cap", image(good, 8, length=100_000_001), "DataLoss", "100000000-byte limit"),
            ("json_array", image(b"[1, 2, 3]", 0), "DataLoss", "starting with '{'"),
            ("json_garbage", image(b"{not json}", 0), "DataLoss", "not valid JSON"),
            ("overlap", image({**entry("a", "F32", [2], 0, 8), **entry("b", "F32", [2], 4, 12)}, 12),
             "DataLoss", "overlap tensor 'a'"),
            ("hole", image({**entry("a", "F32", [1], 0, 4), **entry("b", "F32", [1], 8, 12)}, 12),
             "DataLoss", "hole [4, 8)"),
            ("trailing_bytes", image(good, 16), "DataLoss", "8 trailing bytes"),
            ("wrong_size_for_shape", image(entry("a", "F32", [3], 0, 8), 8), "DataLoss", "need 12"),
            ("unknown_dtype", image(entry("a", "F4", [2], 0, 1), 1), "Unimplemented", "dtype 'F4'"),
            ("duplicate_key", image(b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                                    b'"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', 2),
             "DataLoss", "duplicate key 'a'"),
            ("metadata_not_strings", image({"__metadata__": {"n": 1}}, 0), "DataLoss", "expected a string"),
        ]
        for label, raw, code, fragment in cases:
            with self.subTest(label):
                self.expect_rejected(label, raw, code, fragment)

    def test_missing_file(self):
        rc, _, err = run_tool("dump", self.path("does_not_exist.safetensors"))
        self.assertNotEqual(rc, 0)
        self.assertIn("NotFound", err)


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    sys.exit(0 if result.wasSuccessful() else 1)
