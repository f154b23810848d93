#!/usr/bin/env python3
"""Times ucp_reshard's zero_to_fp32 drop-ins against DeepSpeed 0.19's own functions, in the same
run, on the same checkpoints (default: the bench's 505M ZeRO-2 and ZeRO-3 checkpoints in
$TMPDIR/ucp-bench, made by bench/run.sh or ucp-bench-gen), and writes bench/results/python_dropins.md.

get_fp32_state_dict_lazy materialises every tensor with .contiguous() one at a time and touches
each page of it (so a view of a mapped file is read as well), dropping it before the next.

Each (function, implementation, checkpoint) runs in a fresh python process (imports not timed) that
reports its wall time and peak RSS (VmHWM, which counts mapped file pages too); implementations
alternate, `--reps` times each, the median is reported.

  python_dropins.py [--python PY] [--ckpt DIR ...] [--reps N] [--out FILE]

PY must have torch, DeepSpeed 0.19 and ucp_reshard importable (tests/python/run_pytest.sh installs
the wheel; PYTHONPATH=<that folder>).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

CHILD = r'''
import json, os, sys, time, shutil, tempfile
impl, fn, ckpt = sys.argv[1:4]
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
import torch
if impl == "deepspeed":
    import deepspeed.utils.zero_to_fp32 as m
else:
    import ucp_reshard as m
import ucp_reshard
model = None
if fn == "load_state_dict":
    # The same model for both: parameters of every name and shape (meta shapes from our reader).
    lazy = ucp_reshard.get_fp32_state_dict_from_zero_checkpoint(ckpt, lazy_mode=True)
    root = torch.nn.Module()
    seen = {}
    for name, t in lazy.items():
        mod = root
        parts = name.split(".")
        for p in parts[:-1]:
            if not hasattr(mod, p):
                mod.add_module(p, torch.nn.Module())
            mod = getattr(mod, p)
        if id(t) in seen:
            setattr(mod, parts[-1], seen[id(t)]); continue
        p = torch.nn.Parameter(torch.zeros(t.shape, dtype=t.dtype), requires_grad=False)
        setattr(mod, parts[-1], p); seen[id(t)] = p
    del lazy
    model = root
base = hwm()
out = tempfile.mkdtemp(prefix="ucp-bench-py-", dir=os.environ.get("UCP_BENCH_OUT"))
t0 = time.perf_counter()
if fn == "get_fp32_state_dict":
    sd = m.get_fp32_state_dict_from_zero_checkpoint(ckpt)
    n = sum(v.numel() for v in sd.values())
elif fn == "get_fp32_state_dict_lazy":
    sd = m.get_fp32_state_dict_from_zero_checkpoint(ckpt, lazy_mode=True)
    n = 0
    for k, v in sd.items():
        # Materialise and touch every byte (a view of a mapped file would otherwise read nothing).
        x = v.contiguous(); n += x.numel()
        if x.numel():
            x.view(-1)[:: max(1, 4096 // x.element_size())].sum()
        del x
elif fn == "load_state_dict":
    m.load_state_dict_from_zero_checkpoint(model, ckpt)
    n = sum(p.numel() for p in model.parameters())
elif fn == "convert_safetensors":
    m.convert_zero_checkpoint_to_fp32_state_dict(ckpt, out, safe_serialization=True)
    n = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
elif fn == "convert_bin":
    m.convert_zero_checkpoint_to_fp32_state_dict(ckpt, out)
    n = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
t = time.perf_counter() - t0
shutil.rmtree(out, ignore_errors=True)
print(json.dumps({"seconds": t, "peak": hwm(), "base": base, "n": n}))
'''

FUNCTIONS = ["get_fp32_state_dict", "get_fp32_state_dict_lazy", "load_state_dict", "convert_bin", "convert_safetensors"]


def run(py, impl, fn, ckpt, env):
    p = subprocess.run([py, "-c", CHILD, impl, fn, ckpt], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        lines = [l.strip() for l in p.stderr.strip().splitlines() if l.strip()] or ["?"]
        errors = [l for l in lines if "Error" in l.split(":")[0]]
        return {"error": (errors or lines)[-1][:200]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    tmp = os.environ.get("TMPDIR", "/tmp")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--ckpt", nargs="*", default=[os.path.join(tmp, "ucp-bench", "z2"), os.path.join(tmp, "ucp-bench", "z3")])
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--functions", nargs="*", default=FUNCTIONS)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "python_dropins.md"))
    a = ap.parse_args()
    env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    rows = []
    for ckpt in a.ckpt:
        # Page cache warm: every file of the checkpoint read once before the timed runs.
        subprocess.run(f"cat $(find {ckpt}/ -type f) > /dev/null", shell=True, check=False)
        for fn in a.functions:
            res = {"ucp_reshard": [], "deepspeed": []}
            for _ in range(a.reps):
                for impl in ("ucp_reshard", "deepspeed"):
                    r = run(a.python, impl, fn, ckpt, env)
                    print(os.path.basename(ckpt), fn, impl, r, flush=True)
                    res[impl].append(r)
            rows.append((ckpt, fn, res))
    lines = ["# ucp_reshard's Python drop-ins vs DeepSpeed 0.19's zero_to_fp32 functions", "",
             f"Measured by `bench/python_dropins.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"{os.cpu_count()} CPUs, page cache warm (each checkpoint read before), {a.reps} run(s) each, median. "
             "Peak RSS is VmHWM of the process (imports and, for load_state_dict, the model excluded: growth over "
             "what the process held when the call started).", "",
             "| checkpoint | function | ucp_reshard s | DeepSpeed s | speed-up | ucp_reshard peak growth | DeepSpeed peak growth |",
             "|---|---|---|---|---|---|---|"]

    def med(rs, key):
        vals = [r[key] - (r["base"] if key == "peak" else 0) for r in rs if "error" not in r]
        return statistics.median(vals) if vals else None

    for ckpt, fn, res in rows:
        ours_t, ds_t = med(res["ucp_reshard"], "seconds"), med(res["deepspeed"], "seconds")
        ours_m, ds_m = med(res["ucp_reshard"], "peak"), med(res["deepspeed"], "peak")
        err = [r["error"] for r in res["deepspeed"] + res["ucp_reshard"] if "error" in r]
        fmt_t = lambda v: "failed" if v is None else f"{v:.1f}"
        fmt_m = lambda v: "-" if v is None else f"{v / 2**30:.2f} GiB"
        speed = f"{ds_t / ours_t:.1f}x" if ours_t and ds_t else "-"
        lines.append(f"| {os.path.basename(ckpt)} | {fn} | {fmt_t(ours_t)} | {fmt_t(ds_t)} | {speed} | {fmt_m(ours_m)} | "
                     f"{fmt_m(ds_m)} |" + (f" {err[0]}" if err else ""))
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
