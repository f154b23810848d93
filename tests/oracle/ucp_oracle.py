"""Shared helpers for the command-level oracle tests: running ucp-reshard under mpirun, reading
its outputs with an independent reader (json + numpy for safetensors, torch.load for .bin), and
reading DeepSpeed pickles with torch itself (DeepSpeed classes replaced by inert stubs)."""

import importlib.abc
import importlib.machinery
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import types
import unittest

import numpy as np
import torch

from tensor_truth import bits_equal, dcp_tensors, tensors_at_planner_paths  # noqa: F401 (uo.bits_equal, ...)

UCP = os.environ.get("UCP_RESHARD", "")
GOLDEN = os.environ.get("UCP_GOLDEN_DIR", os.path.join(os.path.dirname(__file__), "..", "golden"))
MPIEXEC = os.environ.get("UCP_MPIEXEC") or "mpirun"
# Which fixture set: "deepspeed" (DeepSpeed 0.14.5 on torch 1.13) or "deepspeed-0.19" (DeepSpeed 0.19 on
# torch 2.x); CMake runs each fixture test once per set, the second under the current-stack venv.
FIXTURE_SET = os.environ.get("UCP_FIXTURE_SET", "deepspeed")
DEEPSPEED = os.path.join(GOLDEN, FIXTURE_SET)
CURRENT_STACK = FIXTURE_SET != "deepspeed"


# Exit codes (README "Exit codes").
INVALID_ARGUMENT, NOT_FOUND, DATA_LOSS, UNIMPLEMENTED, FAILED_PRECONDITION, RESOURCE_EXHAUSTED = 2, 3, 4, 5, 6, 7


def spawn_gloo(worker, world, *args):
    """torch.multiprocessing.spawn of `world` ranks that init_process_group("gloo") by env://: on a
    port free now (a fixed one collides with whatever else the machine runs, ctest -j included)."""
    import socket
    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    mp.spawn(worker, args=(world, *args), nprocs=world, join=True)


def rewrite_dcp_metadata(ckpt, change):
    """Damages a (writable) DCP folder's .metadata: `change` edits torch's own Metadata object."""
    import pickle
    path = os.path.join(ckpt, ".metadata")
    with open(path, "rb") as f:
        meta = pickle.load(f)
    change(meta)
    with open(path, "wb") as f:
        pickle.dump(meta, f)


def writable_copy(src, dest):
    """Copies a fixture folder (read-only in shared/) so a test may damage it."""
    shutil.copytree(src, dest)
    for root, _, files in os.walk(dest):
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    return dest


# Fixtures of features refused by design, and the commands that refuse them (stack_refusals.py checks
# each refusal's message): the generic tests leave them out of those commands.
REFUSED = {
    "gpt_z2_fp32_legacy_ws2": {"to-fp32", "to-universal", "reshard"},  # legacy non-zip torch.save
    "gpt_z2_fp32_moe2_ws4": {"to-fp32", "to-universal", "reshard"},  # mixture of experts
    "gpt_z2_bf16_muon_ws2": {"to-universal", "reshard"},  # Muon's ZeRO-2 momentum: not partition-sized
    "mlp_z2_fp32_muon_ws2": {"to-universal", "reshard"},
    "gpt_z3_bf16_muon_ws2": {"to-universal"},  # universal checkpoints hold Adam state only
    "gpt_z2_fp32_sgd_ws2": {"to-universal"},
}


def fixture_names(command=None):
    """The fixture configs of the current set that DeepSpeed saved (a config whose training run
    failed has no checkpoint), less those `command` refuses by design."""
    return sorted(n for n in os.listdir(DEEPSPEED)
                  if os.path.isfile(os.path.join(DEEPSPEED, n, "checkpoint", "latest")) and not n.startswith("resume_")
                  and command not in REFUSED.get(n, ()))


def run(args, ranks=1, env=None, prefix=None, timeout=300):
    """Runs `ucp-reshard ARGS` under mpirun with `ranks` ranks; returns CompletedProcess (text).
    `prefix` is shell run in each rank's process just before ucp-reshard (e.g. "ulimit -f 4;").
    A start that Open MPI itself failed is retried: mpiruns started at the same instant, from this
    process or another test's, race on the session directory ("orte_init failed ... File exists")
    before any rank runs; nothing of ours ran, so the retry hides no failure of ours."""
    cmd = [MPIEXEC, "-np", str(ranks), "--oversubscribe", "--bind-to", "none"]
    if os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    if prefix:
        cmd += ["bash", "-c", prefix + ' exec "$@"', "bash"]
    cmd += [UCP] + list(args)
    e = dict(os.environ)
    e.update(env or {})
    for attempt in range(3):
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout, env=e)
        if p.returncode == 0 or "orte_init failed" not in p.stderr:
            return p
        time.sleep(0.2 + random.random())
    return p


_MPIRUN_LOCK = threading.Lock()


def run_from_threads(args, ranks):
    """run() for tests that convert from several threads: one mpirun at a time, so that the
    session-directory race run() retries stays rare."""
    with _MPIRUN_LOCK:
        return run(args, ranks)


def file_tree(root):
    """The set of paths, relative to root, of every file under it."""
    return {os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files}


# What mpirun, srun and MPICH's hydra put in a rank's environment; without them the process is on its own.
LAUNCHER_VARIABLE_PREFIXES = ("OMPI_", "PMIX_", "PMI_", "SLURM_", "HYDRA_", "MPI_LOCAL")


def run_alone(args, env=None, timeout=300):
    """Runs `ucp-reshard ARGS` as a plain process, no launcher and none of a launcher's variables."""
    e = {k: v for k, v in os.environ.items() if not k.startswith(LAUNCHER_VARIABLE_PREFIXES)}
    e.update(env or {})
    return subprocess.run([UCP] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=timeout, env=e)


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

# Debian's torch 1.13 ignores torch.load's pickle_module, so DeepSpeed's classes are provided as
# importable stand-ins: any `deepspeed.*` module resolves to a stub module whose classes record
# their construction and state, and compare by content.
class _StubMeta(type):
    def __getattr__(cls, attr):  # ZeroStageEnum.optimizer_states via __builtin__.getattr
        if attr.startswith("__"):
            raise AttributeError(attr)
        return f"{cls.__name__}.{attr}"


class DeepSpeedStub(metaclass=_StubMeta):
    def __init__(self, *args, **kwargs):
        self._args = args

    def __setstate__(self, state):
        self.__dict__["_state"] = state

    def __eq__(self, other):
        return type(self).__name__ == type(other).__name__ and self.__dict__ == other.__dict__

    def __repr__(self):
        return f"{type(self).__name__}({self.__dict__})"


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        cls = _StubMeta(name, (DeepSpeedStub,), {})
        setattr(self, name, cls)
        return cls


class _DeepSpeedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        real = sys.modules.get("deepspeed")
        if real is not None and not isinstance(real, _StubModule):
            return None  # a test that imported the real DeepSpeed first (to run its converters) keeps it
        if fullname == "deepspeed" or fullname.startswith("deepspeed."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        m = _StubModule(spec.name)
        m.__path__ = []
        return m

    def exec_module(self, module):
        pass


if not any(isinstance(f, _DeepSpeedFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _DeepSpeedFinder())


def load_deepspeed_file(path):
    """torch.load of a DeepSpeed file without DeepSpeed: its classes become inert stubs."""
    return torch.load(path, weights_only=False)


class TempDir:
    def __enter__(self):
        self.path = tempfile.mkdtemp(prefix="ucp-oracle-")
        return self.path

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)


class BadInputCase(unittest.TestCase):
    """Base of the bad-input tests: a writable copy of a fixture per test, and a check that a run
    fails with one error line holding every fragment, the same exit code from every rank, and
    nothing but `allowed` left in `watch_dir` (no temporary output)."""

    SRC = os.path.join(DEEPSPEED, "mlp_z2_fp16_ws4", "checkpoint")
    TAG = "global_step3"

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ucp-oracle-")
        self.ckpt = writable_copy(self.SRC, os.path.join(self.tmp, "ckpt"))
        self.tag_dir = os.path.join(self.ckpt, self.TAG)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def existing_output(self, out):
        """Makes OUT a folder the user already filled (keep.txt); returns a check that a refused run
        left it exactly as it was."""
        os.mkdir(out)
        keep = os.path.join(out, "keep.txt")
        with open(keep, "w") as f:
            f.write("mine")

        def untouched():
            self.assertEqual(os.listdir(out), ["keep.txt"])
            with open(keep) as f:
                self.assertEqual(f.read(), "mine")
        return untouched

    def check_failure(self, args, code, fragments, watch_dir, allowed, ranks_list=(1, 3), prefix=None):
        for ranks in ranks_list:
            with self.subTest(ranks=ranks):
                p = run([*args, "--no-progress"], ranks, prefix=prefix)
                self.assertEqual(p.returncode, code, p.stderr)
                errors = [line for line in p.stderr.splitlines() if "error:" in line]
                self.assertEqual(len(errors), 1, f"expected exactly one error line, got:\n{p.stderr}")
                for fragment in fragments:
                    self.assertIn(fragment, errors[0])
                leftovers = [n for n in os.listdir(watch_dir) if n not in allowed]
                self.assertEqual(leftovers, [], "temporary output left behind")
