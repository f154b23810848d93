#!/usr/bin/env python3
"""DeepSpeed -> DCP and DCP -> consolidated on the 505M checkpoint, same run: what a user runs today
against ucp-reshard; writes bench/results/dcp_505m.md.

Today's way from DeepSpeed to DCP is two Python steps: DeepSpeed's
convert_zero_checkpoint_to_fp32_state_dict (one pytorch_model.bin), then torch's torch_save_to_dcp.
ucp-reshard does it in one: `to-dcp` (model only, re-chunked for 8 ranks), or
`to-dcp --layout lingua --with-optimizer` (plus Adam's state, which no torch or DeepSpeed tool
converts). The way back: torch's dcp_to_torch_save of the DCP torch wrote, against `to-fp32
--format torch` of the same folder.

The checkpoint: `ucp-bench-gen --params 505M --precision bf16 --dp 4` at ZeRO-2 (bench/README.md),
by default $TMPDIR/ucp-bench/z2. Fresh process per run, wall time and peak RSS from /usr/bin/time
(the largest rank under mpirun), page cache warm, `sync` before every run, runs alternate, median
of --reps.

  dcp_505m.py --python VENV_PYTHON --ucp BUILD/ucp-reshard [--ckpt DIR] [--reps 3] [--out FILE]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dcp_to_fp32 import TORCH, TORCH_TO_DCP, timed, write_results  # noqa: E402  (one timing and table for both)

DEEPSPEED = r'''
import sys
from deepspeed.utils.zero_to_fp32 import convert_zero_checkpoint_to_fp32_state_dict
convert_zero_checkpoint_to_fp32_state_dict(sys.argv[1], sys.argv[2], safe_serialization=False, max_shard_size="100GB")
'''


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", required=True)
    ap.add_argument("--ucp", required=True)
    ap.add_argument("--ckpt", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "ucp-bench", "z2"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "dcp_505m.md"))
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="ucp-dcp505-")
    torch_dcp = os.path.join(work, "torch-dcp")  # torch's DCP of the consolidated model, the source of the way back
    env = dict(os.environ, DS_ACCELERATOR="cpu")
    subprocess.run([a.python, "-c", DEEPSPEED, a.ckpt, os.path.join(work, "bin")], check=True, env=env)
    subprocess.run([a.python, "-c", TORCH_TO_DCP, os.path.join(work, "bin", "pytorch_model.bin"), torch_dcp], check=True)
    mpirun = ["mpirun", "-np", "2", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none"]
    ucp = lambda *args: [a.ucp, *args, "--no-progress"]  # noqa: E731
    steps = {
        "DeepSpeed convert_zero_checkpoint_to_fp32_state_dict (step 1 of 2)":
            lambda o: [a.python, "-c", DEEPSPEED, a.ckpt, o],
        "torch torch_save_to_dcp of its .bin (step 2 of 2)":
            lambda o: [a.python, "-c", TORCH_TO_DCP, os.path.join(work, "bin", "pytorch_model.bin"), o],
        "ucp-reshard to-dcp --target-world-size 8, 1 rank": lambda o: ucp("to-dcp", a.ckpt, o, "--target-world-size", "8"),
        "ucp-reshard to-dcp --target-world-size 8, 2 ranks":
            lambda o: [*mpirun, *ucp("to-dcp", a.ckpt, o, "--target-world-size", "8")],
        "ucp-reshard to-dcp --layout lingua --with-optimizer --target-world-size 8, 1 rank":
            lambda o: ucp("to-dcp", a.ckpt, o, "--target-world-size", "8", "--layout", "lingua", "--with-optimizer"),
        "torch dcp_to_torch_save of torch's DCP (one .pt)": lambda o: [a.python, "-c", TORCH, torch_dcp, o + ".pt"],
        "ucp-reshard to-fp32 --format torch of torch's DCP, 1 rank": lambda o: ucp("to-fp32", torch_dcp, o, "--format", "torch"),
        "ucp-reshard to-fp32 --format torch of torch's DCP, 2 ranks":
            lambda o: [*mpirun, *ucp("to-fp32", torch_dcp, o, "--format", "torch")],
    }
    results = {k: [] for k in steps}
    for _ in range(a.reps):
        for name, cmd in steps.items():
            out = tempfile.mkdtemp(prefix="run-", dir=work)
            subprocess.run(["sh", "-c", f"cat {a.ckpt}/*/* {torch_dcp}/* > /dev/null; sync"], check=True)
            results[name].append(timed(cmd(os.path.join(out, "out"))))
            shutil.rmtree(out)
    shutil.rmtree(work)
    median = {k: statistics.median(w for w, _ in v) for k, v in results.items()}
    keys = list(steps)
    write_results(a.out, "# DeepSpeed -> DCP and DCP -> .pt on the 505M checkpoint: ucp-reshard against today's tools",
                  f"`bench/dcp_505m.py`, checkpoint `{a.ckpt}` (ucp-bench-gen 505M bf16, ZeRO-2, DP 4)", a.reps, results,
                  ["", f"DeepSpeed -> DCP (model): today's two steps {median[keys[0]] + median[keys[1]]:.2f} s, "
                       f"ucp-reshard {median[keys[2]]:.2f} s at 1 rank. DCP -> .pt: torch {median[keys[5]]:.2f} s, "
                       f"ucp-reshard {median[keys[6]]:.2f} s at 1 rank."])


if __name__ == "__main__":
    main()
