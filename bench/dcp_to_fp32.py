#!/usr/bin/env python3
"""DCP in and out, same run, same checkpoint: `ucp-reshard to-fp32` of a PyTorch DCP folder against
torch's format_utils.dcp_to_torch_save, and `ucp-reshard to-dcp` (re-chunked for 8 ranks) against
torch_save_to_dcp of torch's own consolidated .pt; writes bench/results/dcp_to_fp32.md.

The checkpoint: a 405M-parameter Llama-shaped state dict (vocab 50304, hidden 1024, 24 layers,
untied embeddings, fp32 weights, 1.51 GiB) saved by torch's dcp.save on 4 gloo ranks with FSDP2's
Shard(0) placement, into $TMPDIR/ucp-bench/dcp405m (made once, reused).

Each run is a fresh process; wall time and peak RSS (VmHWM of the process, or of the largest rank)
come from /usr/bin/time. torch writes one nested .pt (dcp_to_torch_save); ucp-reshard writes the
same tensors as a torch .bin (--format torch) or safetensors, at 1 and 2 ranks; runs alternate,
`--reps` times each, the median is reported.

  dcp_to_fp32.py --python VENV_PYTHON --ucp BUILD/ucp-reshard [--reps 3] [--out FILE]
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

MAKE = r'''
import os, sys, torch, torch.distributed as dist, torch.distributed.checkpoint as dcp
import torch.multiprocessing as mp
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Shard, distribute_tensor

def shapes(vocab=50304, hidden=1024, layers=24):
    yield "tok_embeddings.weight", (vocab, hidden)
    for i in range(layers):
        p = f"layers.{i}."
        for n in ("attention.wq", "attention.wk", "attention.wv", "attention.wo"):
            yield p + n + ".weight", (hidden, hidden)
        yield p + "feed_forward.w1.weight", (4 * hidden, hidden)
        yield p + "feed_forward.w2.weight", (hidden, 4 * hidden)
        yield p + "attention_norm.weight", (hidden,)
        yield p + "ffn_norm.weight", (hidden,)
    yield "norm.weight", (hidden,)
    yield "output.weight", (vocab, hidden)

def worker(rank, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29533")
    dist.init_process_group("gloo", rank=rank, world_size=4)
    mesh = init_device_mesh("cpu", (4,))
    g = torch.Generator().manual_seed(0)
    sd = {n: distribute_tensor(torch.randn(s, generator=g), mesh, [Shard(0)]) for n, s in shapes()}
    dcp.save({"model": sd}, checkpoint_id=out)
    dist.destroy_process_group()

if __name__ == "__main__":
    mp.spawn(worker, args=(sys.argv[1],), nprocs=4, join=True)
'''

TORCH = r'''
import sys
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
dcp_to_torch_save(sys.argv[1], sys.argv[2])
'''

TORCH_TO_DCP = r'''
import sys
from torch.distributed.checkpoint.format_utils import torch_save_to_dcp
torch_save_to_dcp(sys.argv[1], sys.argv[2])
'''


def timed(cmd):
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", p.stderr)
    h, m, s = wall.groups()
    seconds = int(h or 0) * 3600 + int(m) * 60 + float(s)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1)) * 1024
    return seconds, rss


def write_results(out, title, setup, reps, results, footer=()):
    """The results table (run -> [(wall, rss)]) as markdown in `out`, and on stdout."""
    lines = [title, "",
             f"{setup}; page cache warm, `sync` before every run; median of {reps} alternating runs; peak RSS of the "
             "process (the largest rank under mpirun).",
             "",
             "| run | wall (s), in run order | median (s) | peak RSS (MiB, median) |",
             "|---|---|---|---|"]
    for name, runs in results.items():
        walls = [w for w, _ in runs]
        rss = statistics.median(r for _, r in runs) / 2**20
        lines.append(f"| {name} | {' '.join(f'{w:.2f}' for w in walls)} | {statistics.median(walls):.2f} | {rss:.0f} |")
    lines += list(footer)
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", required=True)
    ap.add_argument("--ucp", required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "dcp_to_fp32.md"))
    a = ap.parse_args()
    ckpt = os.path.join(os.environ.get("TMPDIR", "/tmp"), "ucp-bench", "dcp405m")
    if not os.path.isfile(os.path.join(ckpt, ".metadata")):
        os.makedirs(ckpt, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:  # spawn needs the worker in a file
            script = os.path.join(tmp, "make_dcp405m.py")
            with open(script, "w") as f:
                f.write(MAKE)
            subprocess.run([a.python, script, ckpt], check=True)
    size = sum(os.path.getsize(os.path.join(ckpt, f)) for f in os.listdir(ckpt))
    consolidated = ckpt + ".pt"  # torch_save_to_dcp's input: torch's own consolidation (made once)
    if not os.path.isfile(consolidated):
        subprocess.run([a.python, "-c", TORCH, ckpt, consolidated], check=True)
    mpirun = ["mpirun", "-np", "2", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none"]
    cases = {
        "torch dcp_to_torch_save (one .pt)": lambda o: [a.python, "-c", TORCH, ckpt, o + ".pt"],
        "ucp-reshard to-fp32 --format torch, 1 rank": lambda o: [a.ucp, "to-fp32", ckpt, o, "--format", "torch", "--no-progress"],
        "ucp-reshard to-fp32 --format torch, 2 ranks": lambda o: [*mpirun, a.ucp, "to-fp32", ckpt, o, "--format", "torch", "--no-progress"],
        "ucp-reshard to-fp32 (safetensors), 1 rank": lambda o: [a.ucp, "to-fp32", ckpt, o, "--no-progress"],
        "torch torch_save_to_dcp (.pt -> DCP, one file)": lambda o: [a.python, "-c", TORCH_TO_DCP, consolidated, o],
        "ucp-reshard to-dcp --target-world-size 8 (DCP -> DCP), 1 rank":
            lambda o: [a.ucp, "to-dcp", ckpt, o, "--target-world-size", "8", "--no-progress"],
        "ucp-reshard to-dcp --target-world-size 8, 2 ranks":
            lambda o: [*mpirun, a.ucp, "to-dcp", ckpt, o, "--target-world-size", "8", "--no-progress"],
    }
    results = {k: [] for k in cases}
    for _ in range(a.reps):
        for name, cmd in cases.items():
            work = tempfile.mkdtemp(prefix="ucp-dcp-bench-")
            subprocess.run(["sh", "-c", f"cat {ckpt}/* > /dev/null; sync"], check=True)
            results[name].append(timed(cmd(os.path.join(work, "out"))))
            shutil.rmtree(work)
    write_results(a.out, "# DCP in and out: ucp-reshard against torch's dcp_to_torch_save and torch_save_to_dcp",
                  f"`bench/dcp_to_fp32.py`: a 405M-parameter fp32 model ({size / 2**30:.2f} GiB) saved by `dcp.save` "
                  "on 4 gloo ranks with `Shard(0)`", a.reps, results)


if __name__ == "__main__":
    main()
