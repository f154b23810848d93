"""Shared driver of stack_hf_trainer_resume.py and stack_lightning_resume.py: `ucp-reshard reshard` of a
framework checkpoint folder (tests/golden/frameworks/<case>/, written by the HF Trainer or by Lightning with
DeepSpeed ZeRO-2/3 at 2 ranks), then the framework's own resume at M ranks through
tools/frameworks/gen_framework_ckpts.py `resume` (HF: trainer.train(resume_from_checkpoint=OUT); Lightning:
trainer.fit(model, ckpt_path=OUT); no flag, no edit), compared with DeepSpeed's own paths.

What `resume` checks itself (its `checks`, all required here): global step 3 at the start (Trainer/Lightning and
DeepSpeed's engine), final step 5, steps 4 and 5 run, every rank's Adam step count 3, the learning rate of steps
4 and 5 equal to the uninterrupted run's (scheduler state), fp32 masters right after the load bit-identical to
DeepSpeed's zero_to_fp32 of the source fixture, fp32 / exp_avg / exp_avg_sq bit-identical to DeepSpeed's
ds_to_universal of the source fixture, and (HF) every rank's Trainer found its rng_state_<r>.pth (rng_state.pth at
M=1) and its CPU generator holds that file's state afterwards.

Loss references (`Run.ref`):
  universal  DeepSpeed's own universal resume (ds_to_universal of the source fixture + checkpoint.load_universal)
             at the same M: steps 4 and 5 equal, tolerance 0 (same M, same micro batches, same fp32 masters and
             Adam state: the same floats on CPU with one thread per rank)
  fixture    the fixture's own uninterrupted 2-rank run, for runs at M = 2: tolerance 0
  fixture~   the fixture's own run at M != 2 where DeepSpeed has no correct path to compare with (HF ZeRO-3:
             DeepSpeed 0.19.8's ZeRO-3 universal load gives both param groups group 0's hyper-parameters and one
             shared Adam step tensor, see tools/frameworks/README.md): step 4 within STEP4_REL relative, step 5
             within STEP5_ABS absolute, see below.
"""

import concurrent.futures
import json
import os
import subprocess
import sys
import time
import unittest

import torch

import ucp_oracle as uo

SCRIPT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "tools", "frameworks",
                                      "gen_framework_ckpts.py"))
FRAMEWORKS = os.path.join(uo.GOLDEN, "frameworks")
WORKERS = int(os.environ.get("UCP_FW_RESUME_WORKERS", "2"))  # framework resumes at once (each runs M processes)
N = 2  # ranks of every framework fixture
TOTAL_STEPS, SAVE_STEP, STEPS_PER_EPOCH_HF, STEPS_PER_EPOCH_PL = 5, 3, 5, 3

# Tolerances of the `fixture~` reference (a resume at M != 2 against the uninterrupted 2-rank run):
# - step 4 is the forward pass of the loaded bf16 weights on the same 12 samples; only the mean of the
#   per-rank mean losses is formed in another order (fp32): seen 0 at M=3 and 4.8e-7 (1.1e-7 relative) at M=1.
STEP4_REL = 1e-6
# - step 5 follows the step-4 update, whose gradients are reduced over M ranks in bf16 (ZeRO's reduce in the
#   gradient dtype; bf16 keeps 8 bits, so each partial sum is rounded to ~4e-3 relative) in another order and
#   with another split than at 2 ranks: Adam's update, and the step-5 loss, move by ~1e-4 (seen for ZeRO-3:
#   2.0e-4 at M=3, 1.9e-5 at M=1; ZeRO-2: 2.2e-5 at M=3; tools/frameworks/README.md: 1e-5 to 3e-4).
#   This bound catches a wrong or missing optimizer state (the step-5 loss then moves by 1e-3 and more); it
#   does NOT separate DeepSpeed's own ZeRO-3 universal defect (2.6e-4 at M=3); the bit-exact fp32-master and
#   Adam-state checks right after the load are what hold the ZeRO-3 runs to exactness.
STEP5_ABS = 5e-4


class Run:
    """One framework resume. chain: the --target-dp of each `ucp-reshard reshard` from the fixture's
    checkpoint folder (the last one is M); None: DeepSpeed's own universal resume of the fixture at M.
    reshard_ranks: ranks of each ucp-reshard run (0: a plain process, no mpirun)."""

    def __init__(self, case, m, chain=None, ref="universal", covers="", reshard_ranks=1):
        self.case, self.m, self.chain, self.ref, self.covers = case, m, chain, ref, covers
        self.reshard_ranks = reshard_ranks
        self.universal = chain is None
        self.rc, self.res, self.seconds, self.prep_error, self.out = None, {}, 0.0, None, None

    @property
    def name(self):
        if self.universal:
            return f"{self.case} DS-universal@{self.m}"
        return f"{self.case} reshard {'->'.join(str(x) for x in [N] + self.chain)}"

    @property
    def framework(self):
        return "hf" if self.case.startswith("hf_") else "lightning"

    @property
    def fixture_ckpt(self):
        d = os.path.join(FRAMEWORKS, self.case)
        name = "checkpoint-3" if self.framework == "hf" else "epoch=0-step=3.ckpt"
        return os.path.join(d, name)

    def source_of_rank(self, r):
        """The fixture rank whose per-rank framework files new rank r should hold: ucp-reshard gives new rank r
        source rank r mod N at each step of the chain."""
        sizes = [N] + self.chain
        for n in reversed(sizes[:-1]):
            r %= n
        return r


def standard_runs(case, universal_is_right=True, shrink_note=""):
    """The resumes every case gets: grow 2 -> 3 (not a multiple), shrink to 1 (converted by a plain
    process), and 2 -> 4 -> 2 (exactly the uninterrupted run). The first two are compared with
    DeepSpeed's own universal resume at the same M, or, where that is wrong (ZeRO-3 with two param
    groups), with the fixture's own run within the tolerances above ("fixture~")."""
    stage = "ZeRO-3" if "_z3_" in case else "ZeRO-2"
    ref = "universal" if universal_is_right else "fixture~"
    runs = []
    for m, covers in ((3, "grow 2->3 (not a multiple)"), (1, "shrink to 1" + shrink_note)):
        runs.append(Run(case, m, [m], ref=ref, covers=f"{stage} {covers}", reshard_ranks=2 if m > 1 else 0))
        if universal_is_right:
            runs.append(Run(case, m))
    runs.append(Run(case, 2, [4, 2], ref="fixture", covers=f"{stage} 2->4, then shrink 4->2", reshard_ranks=2))
    return runs


def ucp(args, ranks):
    """ranks 0: a plain process, no launcher (uo.run_alone); else uo.run_from_threads."""
    return uo.run_alone(args) if ranks == 0 else uo.run_from_threads(args, ranks)


def log_tail(logdir, n=25):
    out = []
    for name in sorted(os.listdir(logdir)) if os.path.isdir(logdir) else []:
        with open(os.path.join(logdir, name), errors="replace") as f:
            lines = f.read().splitlines()
        if any("Traceback" in l for l in lines) or name == "rank0.log":
            out.append(f"--- {name}\n" + "\n".join(lines[-n:]))
    return "\n".join(out)


def execute(run, root):
    d = os.path.join(root, run.name.replace(" ", "_").replace("->", "-").replace("@", "_at_"))
    os.makedirs(d)
    ckpt = run.fixture_ckpt
    if not run.universal:
        for i, m in enumerate(run.chain):
            out = os.path.join(d, f"step{i}_dp{m}" + ("" if run.framework == "hf" else ".ckpt"))
            p = ucp(["reshard", ckpt, out, "--target-dp", str(m), "--no-progress"], run.reshard_ranks)
            if p.returncode != 0:
                run.prep_error = f"ucp-reshard reshard {ckpt} -> dp {m}: exit {p.returncode}: {p.stderr.strip()}"
                return run
            ckpt = out
        run.out = ckpt
    logs = os.path.join(d, "logs")
    cmd = [sys.executable, SCRIPT, "resume", "--case", run.case, "--ckpt", ckpt, "--world-size", str(run.m),
           "--out", FRAMEWORKS, "--log-dir", logs]
    if run.universal:
        cmd += ["--universal", "--no-optim-check"]  # a reference: its Adam state is not what is tested
    t0 = time.time()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=900)
    run.seconds = time.time() - t0
    run.rc = p.returncode
    try:
        run.res = json.loads(p.stdout)
    except ValueError:
        run.res = {"error": f"no JSON on stdout; stderr tail: {p.stderr[-2000:]}"}
    if p.returncode != 0:
        run.res["log_tail"] = log_tail(logs)
    return run


def execute_all(runs, root):
    """Runs every Run, WORKERS at a time, the slowest (largest M) first; returns the wall time."""
    t0 = time.time()
    order = sorted(runs, key=lambda r: -r.m)
    with concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS) as pool:
        for f in [pool.submit(execute, r, root) for r in order]:
            f.result()
    return time.time() - t0


def reference_of(run, runs):
    """(label, {step: loss}) of the run's loss reference."""
    if run.ref == "universal":
        u = next(r for r in runs if r.universal and r.case == run.case and r.m == run.m)
        return f"DS-universal@{run.m}", (u.res.get("losses") or {}), u
    with open(os.path.join(FRAMEWORKS, run.case, "losses.json")) as f:
        e = json.load(f)["losses"]
    return "fixture@2", {k: e[k] for k in ("4", "5")}, None


def loss_verdict(run, runs):
    """None if the losses of steps 4-5 meet the run's reference, else why not."""
    label, ref, _ = reference_of(run, runs)
    got = run.res.get("losses") or {}
    if sorted(got) != ["4", "5"] or sorted(ref) != ["4", "5"]:
        return f"steps {sorted(got)} vs reference {label} steps {sorted(ref)}"
    bad = []
    for k in ("4", "5"):
        d = abs(got[k] - ref[k])
        if run.ref == "fixture~":
            tol = STEP4_REL * abs(ref[k]) if k == "4" else STEP5_ABS
        else:
            tol = 0.0
        if d > tol:
            bad.append(f"step {k}: {got[k]!r} vs {label} {ref[k]!r} (|diff| {d:.3g} > {tol:.3g})")
    return "; ".join(bad) or None


def failed_checks(run):
    return [k for k, v in (run.res.get("checks") or {}).items() if not v]


def tolerance_text(run):
    return f"4: {STEP4_REL:g} rel, 5: {STEP5_ABS:g} abs" if run.ref == "fixture~" else "0"


def fmt(x):
    return "-" if x is None else repr(float(x))


def loss_table(title, runs, wall):
    fixture = {}
    rows = [("run", "M", "covers", "step 4", "step 5", "reference", "ref step 4", "ref step 5", "max |diff|",
             "tolerance", "s", "verdict")]
    for run in runs:
        if run.case not in fixture:
            with open(os.path.join(FRAMEWORKS, run.case, "losses.json")) as f:
                fixture[run.case] = json.load(f)["losses"]
            fl = fixture[run.case]
            rows.append((f"{run.case} fixture (uninterrupted, 2 ranks)", "2", "", fmt(fl["4"]), fmt(fl["5"]), "", "",
                         "", "", "", "", ""))
        l = run.res.get("losses") or {}
        ok = run.rc == 0 and run.res.get("ok") and not run.prep_error
        if run.universal:
            rows.append((run.name, str(run.m), "reference", fmt(l.get("4")), fmt(l.get("5")), "", "", "", "", "",
                         f"{run.seconds:.0f}", "ok" if ok else f"FAILED: {run.res.get('error')}"[:160]))
            continue
        label, ref, _ = reference_of(run, runs)
        diffs = [abs(l[k] - ref[k]) for k in ("4", "5") if k in l and k in ref]
        why = run.prep_error or (None if ok else f"{run.res.get('error') or failed_checks(run)}")
        why = why or loss_verdict(run, runs)
        rows.append((run.name, str(run.m), run.covers, fmt(l.get("4")), fmt(l.get("5")), label, fmt(ref.get("4")),
                     fmt(ref.get("5")), f"{max(diffs):.3g}" if diffs else "-", tolerance_text(run),
                     f"{run.seconds:.0f}", "PASS" if not why else f"FAIL: {why}"[:200]))
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["", title]
    lines += [" | ".join(x.ljust(w[i]) for i, x in enumerate(r)).rstrip() for r in rows]
    lines.append(f"wall time {wall:.0f} s, {WORKERS} framework runs at once")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ checks
REQUIRED_CHECKS = ["global_step_at_begin", "final_global_step", "steps_after_resume", "adam_step_counts",
                   "learning_rates", "fp32_master_equals_zero_to_fp32", "optimizer_states_equal_ds_to_universal"]


def same(a, b):
    """Deep equality of loaded torch/pickle objects (tensors by value and dtype; numpy arrays; containers)."""
    import numpy as np
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
                and a.shape == b.shape and torch.equal(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and set(a) == set(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def check_common(tc, run, runs):
    """The resume succeeded, every check of `resume` passed (and was made), the losses meet the reference."""
    tc.assertIsNone(run.prep_error, run.prep_error)
    why = (f"exit {run.rc}; error {run.res.get('error')}; failed checks {failed_checks(run)}\n"
           f"{run.res.get('log_tail', '')}")
    tc.assertEqual(run.rc, 0, why)
    tc.assertTrue(run.res.get("ok"), why)
    checks = run.res["checks"]
    required = REQUIRED_CHECKS + (["rng_state_restored_every_rank"] if run.framework == "hf" else [])
    for name in required:
        tc.assertIn(name, checks, f"{name} was not checked")
        tc.assertTrue(checks[name], f"{name} failed: {why}")
    tc.assertEqual(run.res["world_size"], run.m)
    tc.assertEqual(run.res["trainer_global_step_at_begin"], SAVE_STEP)
    tc.assertEqual(run.res["deepspeed_global_steps_at_begin"], SAVE_STEP)
    tc.assertEqual(run.res["final_global_step"], TOTAL_STEPS)
    fm = run.res["fp32_master"]
    tc.assertEqual((fm["n_exact"], fm["n_params"], fm["mismatched"]), (21, 21, []))
    op = run.res["optimizer"]
    tc.assertEqual((op["n_exact"], op["n_checked"], op["mismatched"], op["missing"]), (63, 63, [], []))
    tc.assertEqual(run.res["optimizer_steps_per_rank"], [[float(SAVE_STEP)]] * run.m)
    _, _, uref = reference_of(run, runs)
    if uref is not None:  # DeepSpeed's own universal resume must itself have run
        tc.assertEqual(uref.rc, 0, f"DeepSpeed's universal resume at M={run.m} failed: {uref.res.get('error')}\n"
                       f"{uref.res.get('log_tail', '')}")
        tc.assertTrue(uref.res.get("ok"), uref.res.get("checks"))
        # learning rates and epoch positions as DeepSpeed's own path has them
        tc.assertEqual(run.res["learning_rates"], uref.res["learning_rates"])
        tc.assertEqual(run.res["epochs"], uref.res["epochs"])
        tc.assertEqual(run.res["epoch_at_begin"], uref.res["epoch_at_begin"])
    verdict = loss_verdict(run, runs)
    tc.assertIsNone(verdict, verdict)


def file_bytes(path):
    with open(path, "rb") as f:
        return f.read()


class ResumeCase(unittest.TestCase):
    """Runs RUNS once for the class (reshard chains, then the framework's resumes), prints the loss
    table at the end; subclasses add test_resume with their framework's own file checks."""

    RUNS = []
    TITLE = ""

    @classmethod
    def setUpClass(cls):
        cls.missing = [r.fixture_ckpt for r in cls.RUNS if not os.path.isdir(r.fixture_ckpt)]
        cls.wall = 0.0
        if cls.missing:
            return
        cls.tmp = uo.TempDir()
        root = cls.tmp.__enter__()
        try:
            cls.wall = execute_all(cls.RUNS, root)
        except BaseException:
            cls.tmp.__exit__(None, None, None)
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.missing:
            return
        try:
            print(loss_table(cls.TITLE, cls.RUNS, cls.wall), flush=True)
        finally:
            cls.tmp.__exit__(None, None, None)

    def setUp(self):
        if self.missing:
            self.fail(f"framework fixtures missing: {self.missing}")

    def check_framework(self, run):
        """The framework's own files and state after resuming `run` (subclasses)."""
        raise NotImplementedError

    def test_resume(self):
        for run in self.RUNS:
            if run.universal:
                continue
            with self.subTest(run=run.name, m=run.m, covers=run.covers):
                check_common(self, run, self.RUNS)
                self.check_framework(run)

    def test_deepspeed_universal_references_ran(self):
        for run in self.RUNS:
            if run.universal:
                with self.subTest(run=run.name):
                    self.assertEqual(run.rc, 0, f"{run.res.get('error')}\n{run.res.get('log_tail', '')}")
                    self.assertEqual(sorted(run.res["losses"]), ["4", "5"])
