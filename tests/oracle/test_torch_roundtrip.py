#!/usr/bin/python3
"""Oracle test of ucp-reshard's torch file I/O against real torch (Debian python3-torch 1.13).

A corpus of objects is written with torch.save at pickle protocols 2, 4 and 5. Then:
  1. torch writes -> we read: `ucp_pt_tool dump` of each file must equal the canonical rendering of
     torch.load(file) (torch_oracle_util.render): every value, type, float bit, tensor byte, stride,
     offset and storage-sharing pattern.
  2. we write -> torch reads: `ucp_pt_tool rewrite` of each file at protocols 2 and 4 must torch.load
     to a tree deep-equal to torch.load(original) (types, dtypes, strides, bitwise values, shared
     storages and shared objects), also through torch.load(weights_only=True) wherever torch's own
     protocol-2 file passes it, and be a well-formed zip (CRCs, 64-byte aligned record data).
Malformed inputs (truncated files, storage types we do not support) must fail with a one-line error.
Run with Debian's /usr/bin/python3 and UCP_BUILD_DIR pointing at a build with target ucp_pt_tool.
"""

import argparse
import collections
import enum
import json
import os
import random
import struct
import sys
import tempfile
import unittest
import warnings
import zipfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_oracle_util as util  # noqa: E402

PROTOCOLS_SAVED = (2, 4, 5)
PROTOCOLS_WRITTEN = (2, 4)


# Classes the corpus pickles as opaque objects (torch.load finds them in __main__).
class Color(enum.Enum):
    RED = 1
    GREEN = "green"


class TaggedList(list):
    pass


class TaggedDict(dict):
    pass


class Slotted:
    __slots__ = ("a", "b")

    def __init__(self, a, b):
        self.a, self.b = a, b


def random_tensor(rng, dtype, shape):
    """Arbitrary bit patterns (NaN payloads, subnormals, negative zero), bool as 0/1."""
    n = 1
    for s in shape:
        n *= s
    if dtype == torch.bool:
        return torch.tensor([rng.random() < 0.5 for _ in range(n)], dtype=torch.bool).reshape(shape)
    size = torch.empty(0, dtype=dtype).element_size()
    raw = bytearray(rng.randbytes(n * size))
    if n == 0:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(raw, dtype=dtype).clone().reshape(shape)


ALL_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int8, torch.int16,
              torch.int32, torch.int64, torch.uint8, torch.bool, torch.complex64, torch.complex128)
# Dtypes torch 2.x saves through _rebuild_tensor_v3 over an untyped storage (absent from torch 1.13).
ALL_DTYPES += tuple(getattr(torch, n) for n in ("uint16", "uint32", "uint64", "float8_e4m3fn", "float8_e5m2")
                    if hasattr(torch, n))
TORCH_2 = int(torch.__version__.split(".")[0]) >= 2


def build_corpus():
    """name -> object to torch.save. Deterministic."""
    rng = random.Random(1234)
    corpus = {}

    corpus["dtypes"] = {str(dt): {
        "matrix": random_tensor(rng, dt, (2, 3)),
        "scalar": random_tensor(rng, dt, ()),
        "empty": random_tensor(rng, dt, (0,)),
        "empty_3x0": random_tensor(rng, dt, (3, 0)),
        "cube": random_tensor(rng, dt, (2, 1, 3)),
    } for dt in ALL_DTYPES}

    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    row = torch.arange(6, dtype=torch.int32).reshape(1, 6)
    cube = random_tensor(rng, torch.float64, (2, 3, 4))
    corpus["views"] = {
        "base": base, "t": base.t(), "step": base[:, ::2], "tail": base[1:], "corner": base[1:, 2:],
        "column": base[:, 3], "element": base[2, 5], "empty_view": base[4:],
        "expanded": row.expand(4, 6), "permuted": cube.permute(2, 0, 1), "stepped3": cube[:, ::2, 1::2],
    }

    # DeepSpeed-like: parameters as views into one flat buffer at non-zero offsets, one tied twice,
    # padding at the end of the storage that no view covers.
    flat16 = random_tensor(rng, torch.float16, (64,))
    w = flat16[0:12].view(3, 4)
    flatbf = random_tensor(rng, torch.bfloat16, (40,))
    corpus["flat_buffer"] = {
        "w": w, "w_tied": w, "w_again": flat16[0:12].view(3, 4), "b": flat16[12:20],
        "empty_at_20": flat16[20:20], "odd": flat16[20:37].view(17), "one": flat16[37:38].view(1, 1),
        "bf_groups": [flatbf[0:10], flatbf[10:30].view(4, 5), flatbf[5]],
        "other_flat": flatbf,
    }

    shared_list = [1, 2, 3]
    deep = "bottom"
    for i in range(60):
        deep = [deep, i] if i % 2 else {"level": deep}
    corpus["nested"] = {
        "list": [1, [2, [3, []]], (), {}], "tuples": [(), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4)],
        "dict_keys": {1: "int", -5: "neg", (1, "a"): "tuple", None: "none", False: "bool", 2.5: "float",
                      b"k": "bytes"},
        "odict": collections.OrderedDict([("z", 1), ("a", [collections.OrderedDict()])]),
        "sets": [{1, 2, 3}, set(), frozenset({"a", "b"}), frozenset(), {(1, 2), (3, 4)}],
        "shared": [shared_list, shared_list, {"again": shared_list}],
        "deep": deep, "empty_list": [], "empty_dict": {}, "empty_tuple": (),
        "tensors_in_tuple": (torch.ones(2), [torch.zeros(1, dtype=torch.int64)]),
    }

    corpus["scalars"] = {
        "ints": [0, 1, -1, 255, 256, 65535, 65536, 2**31 - 1, 2**31, -2**31, -2**31 - 1, 2**63 - 1,
                 -2**63, 2**63, -2**63 - 1, 2**64, 2**100, -2**70, 2**2100 + 12345, -2**2100, -(2**64)],
        "floats": [0.0, -0.0, 0.1, -2.5, float("nan"), -float("nan"), float("inf"), -float("inf"),
                   5e-324, 1.7976931348623157e308, 2.2250738585072014e-308,
                   struct_float(0x7ff4000000000123), struct_float(0xfff8000000000001)],
        "none_true_false": [None, True, False],
    }

    corpus["strings"] = {
        "héllo": "wörld", "名前": "値", "🤖": "🚀 emoji 👩‍👩‍👧", "": "", "ctrl\n\t\0": "x\r\0y",
        "long": "ß" * 300, "very_long": "abc€" * 20000,
        "bytes": [b"", b"\x00\xff\x80", bytes(range(256)) * 2, b"k" * 70000],
        "bytearray": [bytearray(b"\x01\x02"), bytearray()],
        "sizes": [torch.Size([2, 3]), torch.Size([]), torch.Size([0, 5])],
        "dtype_values": [torch.float16, torch.bfloat16, torch.bool, torch.int64, torch.float32],
    }

    p = torch.nn.Parameter(random_tensor(rng, torch.float32, (3, 4)))
    frozen = torch.nn.Parameter(random_tensor(rng, torch.float16, (5,)), requires_grad=False)
    leaf = random_tensor(rng, torch.float32, (2, 2)).requires_grad_(True)
    corpus["parameters"] = {"p": p, "p_view": p.data[1:], "frozen": frozen, "leaf_grad": leaf,
                            "p_again": p}

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(11, 4), torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3),
                                torch.nn.Linear(3, 4), torch.nn.Linear(4, 11, bias=False))
    model[4].weight = model[0].weight  # tied, like lm_head / wte
    model.register_buffer("mask", torch.tril(torch.ones(3, 3, dtype=torch.bool)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.tensor([1, 2, 3]))[0].sum().backward()
    opt.step()
    corpus["state_dict"] = model.state_dict()
    corpus["training_checkpoint"] = {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                     "step": 1, "lr": 1e-3}

    corpus["objects"] = {
        "namespace": argparse.Namespace(lr=0.5, name="run", layers=[1, 2]), "empty_ns": argparse.Namespace(),
        "enum": [Color.RED, Color.GREEN, Color.RED], "tagged_list": tagged_list(), "tagged_dict": tagged_dict(),
        "counter": collections.Counter("abracadabra"), "slotted": Slotted(1, "two"),
        "deque": collections.deque([1, 2]),
    }

    s = random_tensor(rng, torch.float32, (8,))
    corpus["bare_storage"] = {"storage": s.storage(), "view": s[2:6], "lone": torch.arange(3.).storage()}

    corpus["large"] = {"big": random_tensor(rng, torch.float32, (512, 300)), "ints": torch.arange(70000)}
    if TORCH_2:
        # Tensors with Python attributes, as DeepSpeed's ZeRO-3 fp32 partitions (`ds_id`): torch >= 2.0
        # pickles them through torch._tensor._rebuild_from_type_v2 (torch 1.13 drops the attribute).
        groups = [random_tensor(rng, torch.float32, (5,)), random_tensor(rng, torch.float32, (3,))]
        for i, g in enumerate(groups):
            g.ds_id = f"{i * 10}_{i * 10 + 9}"
        shared = random_tensor(rng, torch.float32, (6,))
        tagged_view = shared[2:]
        tagged_view.note = {"a": [1, 2], "b": None}
        corpus["python_attrs"] = {"fp32_flat_groups": groups, "plain_on_same_storage": shared,
                                  "tagged_view": tagged_view, "again": groups[0]}
    corpus["root_tensor"] = base.t()
    corpus["root_list"] = [base, 1, "x"]
    corpus["root_int"] = 2**80
    return corpus


def struct_float(bits):
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


def tagged_list():
    x = TaggedList([1, "a", torch.ones(1)])
    x.tag = "hello"
    return x


def tagged_dict():
    x = TaggedDict(a=1, b=[2])
    x.tag = 7
    return x


class TorchRoundTrip(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="ucp_oracle_")
        cls.dir = cls.tmp.name
        cls.corpus = build_corpus()
        cls.files = {}  # (name, protocol) -> path
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name, obj in cls.corpus.items():
                for proto in PROTOCOLS_SAVED:
                    path = os.path.join(cls.dir, f"{name}_p{proto}.pt")
                    torch.save(obj, path, pickle_protocol=proto)
                    cls.files[(name, proto)] = path

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def setUp(self):
        util.require_tool(self)

    def _report(self, failures):
        if failures:
            self.fail(f"{len(failures)} failing cases:\n" + "\n".join(failures))

    def _load(self, path, **kw):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kw.setdefault("weights_only", False)  # the corpus holds arbitrary objects on purpose
            return torch.load(path, **kw)

    def test_01_corpus_sanity(self):
        # The oracle's own premises: torch round-trips its own files, and the renderer is exact.
        for (name, proto), path in self.files.items():
            with self.subTest(case=name, protocol=proto):
                loaded = self._load(path)
                d = util.DeepCompare().diff(loaded, self._load(path))
                self.assertIsNone(d)
                a = util.normalize(util.render(loaded, proto))
                self.assertIsNone(util.json_diff(a, util.normalize(util.render(self._load(path), proto))))
                self.assertEqual(json.loads(json.dumps(a)), a)  # survives JSON as is

    def test_01b_comparators_see_differences(self):
        # The comparisons below would hide bugs if they were blind to these; each pair must differ.
        base = torch.arange(6.0)
        nan1 = torch.tensor([struct_float(0x7ff8000000000001)], dtype=torch.float64)
        nan2 = torch.tensor([struct_float(0x7ff8000000000002)], dtype=torch.float64)
        m = base.reshape(2, 3)
        shared = [1]
        od_meta = collections.OrderedDict(a=1)
        od_meta._metadata = {"": {"version": 1}}
        pairs = {
            "storage sharing": ({"a": base[:3], "b": base[3:]}, {"a": base[:3].clone(), "b": base[3:]}),
            "nan payload": (nan1, nan2),
            "negative zero": (0.0, -0.0),
            "strides": (m.t(), m.t().contiguous()),
            "offset": (base[1:3], base[1:3].clone()),
            "requires_grad": (base.clone().requires_grad_(True), base.clone()),
            "parameter": (torch.nn.Parameter(base.clone()), base.clone()),
            "object identity": ([shared, shared], [[1], [1]]),
            "odict metadata": (od_meta, collections.OrderedDict(a=1)),
            "dict order": ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
            "tuple vs list": ((1,), [1]),
            "padding outside the view": (base[:2], torch.arange(2.0)),
        }
        for what, (a, b) in pairs.items():
            with self.subTest(what=what):
                self.assertIsNotNone(util.DeepCompare().diff(a, b))
        # The JSON side: sharing pattern and float bits survive normalize().
        one = util.normalize(util.render({"a": base[:3], "b": base[3:]}, 2))
        two = util.normalize(util.render({"a": base[:3], "b": base.clone()[3:]}, 2))
        self.assertIsNotNone(util.json_diff(one, two))
        self.assertIsNotNone(util.json_diff(util.render(nan1, 2), util.render(nan2, 2)))

    def test_02_we_read_what_torch_wrote(self):
        failures = []
        keys = sorted(self.files)
        dumps = {}
        for key in keys:  # one file at a time: a failure names its case
            rc, out, err = util.run_tool("dump", self.files[key], check=False)
            if rc != 0:
                failures.append(f"{key[0]} (protocol {key[1]}): dump failed (rc {rc}): {err.strip()}")
                continue
            dumps[key] = json.loads(out)
        for key, ours in dumps.items():
            name, proto = key
            theirs = util.render(self._load(self.files[key]), proto)
            d = util.json_diff(util.normalize(theirs), util.normalize(ours))
            if d:
                failures.append(f"{name} (protocol {proto}): torch.load vs ucp dump differ at {d}")
        self._report(failures)

    def test_03_torch_reads_what_we_wrote(self):
        failures = []
        for (name, proto), path in sorted(self.files.items()):
            original = self._load(path)
            # torch 1.13's weights-only unpickler knows protocol-2 opcodes only (no FRAME, MEMOIZE,
            # STACK_GLOBAL, BINFLOAT): where it loads torch's own protocol-2 file it must load ours.
            weights_only_ok = False
            if proto == 2:
                try:
                    self._load(path, weights_only=True)
                    weights_only_ok = True
                except Exception:  # torch's own file is outside the weights-only subset
                    pass
            for out_proto in PROTOCOLS_WRITTEN:
                case = f"{name} (saved at protocol {proto}, rewritten at protocol {out_proto})"
                out = os.path.join(self.dir, f"{name}_p{proto}_ours_p{out_proto}.pt")
                rc, _, err = util.run_tool("rewrite", path, out, "--protocol", str(out_proto), check=False)
                if rc != 0:
                    failures.append(f"{case}: rewrite failed (rc {rc}): {err.strip()}")
                    continue
                for problem in util.zip_problems(out):
                    failures.append(f"{case}: zip: {problem}")
                try:
                    ours = self._load(out)
                except Exception as e:
                    failures.append(f"{case}: torch.load failed: {type(e).__name__}: {e}")
                    continue
                d = util.DeepCompare().diff(original, ours)
                if d:
                    failures.append(f"{case}: differs from torch's: {d}")
                if weights_only_ok and out_proto == 2:
                    try:
                        ours_wo = self._load(out, weights_only=True)
                    except Exception as e:
                        failures.append(f"{case}: torch.load(weights_only=True) loads torch's file but "
                                        f"not ours: {type(e).__name__}: {str(e)[:300]}")
                        continue
                    d = util.DeepCompare().diff(original, ours_wo)
                    if d:
                        failures.append(f"{case}: weights_only load differs: {d}")
                # Records hold exactly the distinct storages, one each, whole.
                storages = {}
                collect_storages(ours, storages)
                with zipfile.ZipFile(out) as z:
                    data = [i for i in z.infolist() if "/data/" in i.filename]
                if len(data) != len(storages):
                    failures.append(f"{case}: {len(data)} data records for {len(storages)} distinct storages")
        self._report(failures)

    def test_04_rewrite_is_a_fixed_point(self):
        # Our output read back by us: same dump as the original, whatever protocol we wrote.
        failures = []
        for (name, proto), path in sorted(self.files.items()):
            if proto != 2:
                continue
            first = os.path.join(self.dir, f"{name}_fix_a.pt")
            second = os.path.join(self.dir, f"{name}_fix_b.pt")
            try:
                util.run_tool("rewrite", path, first, "--protocol", "4")
                util.run_tool("rewrite", first, second, "--protocol", "2")
                a, b, c = util.dump_files([path, first, second])
            except AssertionError as e:
                failures.append(f"{name}: {e}")
                continue
            for label, other in (("p4 rewrite", b), ("p4->p2 rewrite", c)):
                d = util.json_diff(util.normalize(a), util.normalize(other))
                if d:
                    failures.append(f"{name}: dump of {label} differs from the original's at {d}")
        self._report(failures)

    def test_05_malformed_inputs_fail_cleanly(self):
        path = self.files[("views", 2)]
        with open(path, "rb") as f:
            data = f.read()
        failures = []
        cuts = sorted({0, 1, 21, 22, 100, len(data) // 3, len(data) // 2, len(data) - 23, len(data) - 22,
                       len(data) - 1})
        for cut in cuts:
            bad = os.path.join(self.dir, f"truncated_{cut}.pt")
            with open(bad, "wb") as f:
                f.write(data[:cut])
            rc, out, err = util.run_tool("dump", bad, check=False)
            if rc <= 0 or not err.strip() or len(err.strip().splitlines()) != 1 or "truncated_" not in err:
                failures.append(f"truncated at {cut}/{len(data)}: rc {rc}, stderr {err!r:.300} "
                                f"(want exit > 0 and one line naming the file)")
        # Flipped byte inside a storage record: the reader does not CRC-check on open (zero copy), but
        # a rewrite must still produce a loadable file; a flipped byte inside data.pkl must fail cleanly
        # or decode to something else, never crash.
        with zipfile.ZipFile(path) as z:
            pkl = next(i for i in z.infolist() if i.filename.endswith("data.pkl"))
        for delta in range(0, pkl.file_size, max(1, pkl.file_size // 25)):
            bad = os.path.join(self.dir, f"flipped_{delta}.pt")
            mutated = bytearray(data)
            offset = pkl.header_offset + 30 + len(pkl.filename.encode()) + len(pkl.extra) + delta
            mutated[offset] ^= 0xFF
            with open(bad, "wb") as f:
                f.write(mutated)
            rc, out, err = util.run_tool("dump", bad, check=False)
            if rc < 0 or (rc > 0 and len(err.strip().splitlines()) != 1):
                failures.append(f"byte {delta} of data.pkl flipped: rc {rc}, stderr {err!r:.300}")
        # A file saved on a big-endian machine (torch >= 2.1 records it) must be refused, not misread.
        big = os.path.join(self.dir, "big_endian.pt")
        with zipfile.ZipFile(path) as zin, zipfile.ZipFile(big, "w") as zout:
            names = [i.filename for i in zin.infolist()]
            archive = names[0].split("/")[0]
            for name in names:
                if not name.endswith("/byteorder"):
                    zout.writestr(name, zin.read(name))
            zout.writestr(f"{archive}/byteorder", b"big")
        rc, out, err = util.run_tool("dump", big, check=False)
        if rc <= 0 or len(err.strip().splitlines()) != 1 or "big" not in err or "big_endian.pt" not in err:
            failures.append(f"big-endian file: rc {rc}, stderr {err!r:.300} (want one line naming the file and 'big')")
        # A storage type outside the supported set (quantized) must be refused with a message.
        q = os.path.join(self.dir, "quantized.pt")
        torch.save({"q": torch.quantize_per_tensor(torch.arange(4.), 0.5, 0, torch.qint8)}, q)
        rc, out, err = util.run_tool("dump", q, check=False)
        if rc == 0:
            failures.append(f"quantized tensor file was accepted; dump: {out[:300]}")
        elif rc < 0 or len(err.strip().splitlines()) != 1:
            failures.append(f"quantized tensor file: rc {rc}, stderr {err!r:.300}")
        self._report(failures)


def collect_storages(x, out, seen=None):
    seen = set() if seen is None else seen
    if id(x) in seen:
        return
    seen.add(id(x))
    if isinstance(x, torch.Tensor):
        out[x.storage()._cdata] = True
    elif isinstance(x, torch.storage.TypedStorage):
        out[x._cdata] = True
    elif isinstance(x, dict):
        for k, v in x.items():
            collect_storages(k, out, seen)
            collect_storages(v, out, seen)
        collect_storages(getattr(x, "__dict__", None), out, seen)
    elif isinstance(x, (list, tuple, set, frozenset)):
        for v in x:
            collect_storages(v, out, seen)
    elif hasattr(x, "__dict__"):
        collect_storages(vars(x), out, seen)


if __name__ == "__main__":
    unittest.main(verbosity=2)
