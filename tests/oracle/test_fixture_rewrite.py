#!/usr/bin/python3
"""Every real DeepSpeed .pt fixture under $UCP_GOLDEN_DIR, read and re-written by ucp-reshard
(`ucp_pt_tool rewrite`), must load in torch to the same tree as the original.

DeepSpeed is not installed, so its classes (LossScaler, ZeroStageEnum, fragment_address, ...) load as
generated stand-ins that record how the pickle built them (class, constructor args, BUILD state,
appended items); everything else (tensors, storages, OrderedDict, torch.Size, dtypes) is torch's own,
through torch.load's zip reader and persistent-id machinery. The two trees must be deep-equal:
tensors bitwise with strides, offsets and whole storages, storage sharing identical. The dumps of
original and rewrite (`ucp_pt_tool dump`) must agree as well (this also compares how each opaque
object is constructed: REDUCE vs NEWOBJ), and the rewritten zips must be well formed.
"""

import glob
import json
import os
import pickle
import sys
import tempfile
import time
import types
import unittest
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_oracle_util as util  # noqa: E402

GOLDEN_DIR = os.environ.get("UCP_GOLDEN_DIR", os.path.join(os.path.dirname(__file__), "..", "golden"))

# Modules whose classes torch.load may import for real; anything else becomes a stand-in.
SAFE_TOP_MODULES = {"torch", "collections", "builtins", "__builtin__", "_codecs", "argparse", "numpy",
                    "copyreg", "copy_reg"}


class _StubMeta(type):
    """Metaclass of the stand-ins: attribute lookups on the class (Python 3.11 pickles an enum member
    as getattr(EnumClass, 'NAME')) return a recorded reference instead of failing."""

    def __getattr__(cls, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _StubAttr(cls._ucp_module, cls._ucp_name, attr)


class _StubAttr:
    def __init__(self, module, name, attr):
        self.ref = (module, name, attr)

    def _ucp_stub_fields(self):
        return ("getattr",) + self.ref


_stub_classes = {}


def stub_class(module, name):
    key = (module, name)
    if key in _stub_classes:
        return _stub_classes[key]

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj._ucp_args, obj._ucp_kwargs = args, kwargs
        obj._ucp_state, obj._ucp_items, obj._ucp_setitems = None, [], []
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self._ucp_state = state

    def append(self, item):
        self._ucp_items.append(item)

    def extend(self, items):
        self._ucp_items.extend(items)

    def __setitem__(self, k, v):
        self._ucp_setitems.append((k, v))

    def _ucp_stub_fields(self):
        return (module, name, self._ucp_args, self._ucp_kwargs, self._ucp_state, self._ucp_items,
                self._ucp_setitems)

    def __repr__(self):
        return f"<stand-in {module}.{name} args={self._ucp_args!r:.100} state={self._ucp_state!r:.100}>"

    cls = _StubMeta(name, (), {
        "__new__": __new__, "__init__": __init__, "__setstate__": __setstate__, "append": append,
        "extend": extend, "__setitem__": __setitem__, "_ucp_stub_fields": _ucp_stub_fields,
        "__repr__": __repr__, "_ucp_module": module, "_ucp_name": name})
    _stub_classes[key] = cls
    return cls


class StubUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module.split(".")[0] in SAFE_TOP_MODULES:
            return super().find_class(module, name)
        return stub_class(module, name)


# torch's zip loader subclasses pickle_module.Unpickler and adds torch's own persistent_load.
stub_pickle = types.ModuleType("ucp_stub_pickle")
stub_pickle.Unpickler = StubUnpickler
stub_pickle.load = pickle.load
stub_pickle.__name__ = "ucp_stub_pickle"


def load(path):
    """torch.load's zip path with our find_class. (Debian's torch 1.13 torch.load ignores its
    pickle_module argument, so this calls the function torch.load hands zip files to.)"""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.serialization._open_zipfile_reader(path) as zf:
            return torch.serialization._load(zf, None, stub_pickle, encoding="utf-8")


class FixtureRewrite(unittest.TestCase):
    def setUp(self):
        util.require_tool(self)
        # The fixture set of this stack; the legacy non-zip files are refused by design (stack_refusals.py).
        fixture_set = os.path.join(GOLDEN_DIR, os.environ.get("UCP_FIXTURE_SET", "deepspeed"))
        self.files = sorted(f for f in glob.glob(os.path.join(fixture_set, "**", "*.pt"), recursive=True)
                            if "_legacy_" not in f)
        self.assertGreater(len(self.files), 100, f"no fixtures under {GOLDEN_DIR}")
        self.tmp = tempfile.TemporaryDirectory(prefix="ucp_fixture_rewrite_")
        self.addCleanup(self.tmp.cleanup)

    def _rewrite_all(self, files, protocol):
        """Rewrites `files` in one tool process; on a failure, file by file to name every failing one."""
        outs = []
        for f in files:
            rel = os.path.relpath(f, GOLDEN_DIR).replace(os.sep, "__")
            outs.append(os.path.join(self.tmp.name, f"p{protocol}", rel))
        os.makedirs(os.path.join(self.tmp.name, f"p{protocol}"), exist_ok=True)
        listing = os.path.join(self.tmp.name, f"list_p{protocol}.txt")
        with open(listing, "w") as fh:
            fh.writelines(f"{i}\t{o}\n" for i, o in zip(files, outs))
        rc, _, err = util.run_tool("rewrite-list", listing, "--protocol", str(protocol), check=False)
        failures = {}
        if rc != 0:
            for i, o in zip(files, outs):
                rc1, _, err1 = util.run_tool("rewrite", i, o, "--protocol", str(protocol), check=False)
                if rc1 != 0:
                    failures[i] = f"rewrite at protocol {protocol} failed (rc {rc1}): {err1.strip()}"
            if not failures:
                failures[files[0]] = f"rewrite-list failed but each rewrite alone passed: {err.strip()}"
        return outs, failures

    def _dump_all(self, paths):
        try:
            return util.dump_files(paths), {}
        except AssertionError:
            dumps, failures = [], {}
            for p in paths:
                rc, out, err = util.run_tool("dump", p, check=False)
                dumps.append(json.loads(out) if rc == 0 else None)
                if rc != 0:
                    failures[p] = f"dump failed (rc {rc}): {err.strip()}"
            return dumps, failures

    def _check(self, files, protocol):
        start = time.monotonic()
        outs, failures = self._rewrite_all(files, protocol)
        problems = [f"{os.path.relpath(f, GOLDEN_DIR)}: {m}" for f, m in failures.items()]
        ok = [(f, o) for f, o in zip(files, outs) if f not in failures]

        dumps_in, fail_in = self._dump_all([f for f, _ in ok])
        dumps_out, fail_out = self._dump_all([o for _, o in ok])
        problems += [f"{p}: {m}" for p, m in {**fail_in, **fail_out}.items()]

        for (f, o), din, dout in zip(ok, dumps_in, dumps_out):
            rel = os.path.relpath(f, GOLDEN_DIR)
            for problem in util.zip_problems(o):
                problems.append(f"{rel} (ours, protocol {protocol}): zip: {problem}")
            if din is not None and dout is not None:
                d = util.json_diff(util.normalize(din), util.normalize(dout))
                if d:
                    problems.append(f"{rel} (protocol {protocol}): dump of rewrite differs at {d}")
            try:
                original = load(f)
            except Exception as e:  # the oracle itself must handle every fixture
                problems.append(f"{rel}: torch.load of the ORIGINAL failed: {type(e).__name__}: {e}")
                continue
            try:
                ours = load(o)
            except Exception as e:
                problems.append(f"{rel} (protocol {protocol}): torch.load of our rewrite failed: "
                                f"{type(e).__name__}: {e}")
                continue
            d = util.DeepCompare().diff(original, ours)
            if d:
                problems.append(f"{rel} (protocol {protocol}): loaded trees differ: {d}")
        # The opaque-object path was exercised: DeepSpeed's classes were met and stood in for.
        self.assertTrue(any(m.startswith("deepspeed.") for m, _ in _stub_classes),
                        "no DeepSpeed class met: are these the DeepSpeed fixtures?")
        elapsed = time.monotonic() - start
        print(f"\n  protocol {protocol}: {len(files)} fixtures in {elapsed:.1f} s", file=sys.stderr)
        if problems:
            shown = "\n".join(problems[:40])
            more = f"\n... and {len(problems) - 40} more" if len(problems) > 40 else ""
            self.fail(f"{len(problems)} problems in {len(files)} fixtures:\n{shown}{more}")

    def test_rewrite_every_fixture_protocol2(self):
        # DeepSpeed's own protocol: every file.
        self._check(self.files, 2)

    def test_rewrite_checkpoint_files_protocol4(self):
        # Protocol 4 for the files with the varied content (DeepSpeed objects, enums, shared views);
        # the thousands of one-tensor universal files add nothing at a second protocol.
        files = [f for f in self.files if "/universal/" not in f or f.endswith("optimizer_state.pt")]
        self._check(files, 4)


if __name__ == "__main__":
    unittest.main(verbosity=2)
