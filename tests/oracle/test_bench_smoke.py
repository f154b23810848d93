#!/usr/bin/python3
"""Keeps the benchmark runner working: `bench/run.sh --smoke` (a ~1M-parameter ZeRO-2 bf16
checkpoint at DP 2, to-fp32 in both formats at 1 and 2 ranks, one repetition, a 64 MiB floor) must
finish and leave a results.json and results.md that are complete and consistent with each other and
with the run's own logs. Nothing here is a timed assertion: timings only have to be positive and add
up (phases within the wall time, throughput = bytes / wall)."""

import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ucp_oracle  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BUILD_DIR = os.environ.get("UCP_BUILD_DIR", "")


class BenchSmoke(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="ucp_bench_smoke_")
        cls.results = os.path.join(cls.tmp.name, "results")
        cls.proc = None
        if BUILD_DIR and all(os.access(os.path.join(BUILD_DIR, b), os.X_OK)
                             for b in ("ucp-reshard", "ucp-bench-gen", "ucp-bench-floor")):
            env = dict(os.environ)
            if ucp_oracle.MPIEXEC != "mpirun":
                env["PATH"] = os.path.dirname(ucp_oracle.MPIEXEC) + os.pathsep + env.get("PATH", "")
            cls.proc = subprocess.run(
                [os.path.join(REPO, "bench", "run.sh"), "--smoke", "--build-dir", BUILD_DIR, "--no-build", "--no-install",
                 "--work-dir", os.path.join(cls.tmp.name, "work"), "--results", cls.results],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300, env=env)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def setUp(self):
        if self.proc is None:
            self.fail("UCP_BUILD_DIR must hold ucp-reshard, ucp-bench-gen and ucp-bench-floor")
        self.assertEqual(self.proc.returncode, 0, f"bench/run.sh --smoke failed:\n{self.proc.stderr[-4000:]}")
        with open(os.path.join(self.results, "results.json")) as f:
            self.data = json.load(f)
        with open(os.path.join(self.results, "results.md")) as f:
            self.md = f.read()

    def test_every_case_ran_and_is_consistent(self):
        cases = self.data["cases"]
        got = sorted((c["command"], c["ranks"]) for c in cases)
        self.assertEqual(got, [("to-fp32:safetensors", 1), ("to-fp32:safetensors", 2),
                               ("to-fp32:torch", 1), ("to-fp32:torch", 2)])
        self.assertEqual(len(self.data["runs"]), 4)
        for c in cases:
            name = f"{c['command']} n={c['ranks']}"
            self.assertEqual(c["failed_reps"], 0, name)
            self.assertEqual(c["cache"], "warm")
            self.assertGreater(c["wall_s"], 0, name)
            # Each phase is the slowest rank's time in it; wall_s is the slowest rank's total.
            self.assertTrue(all(0 <= v <= c["wall_s"] + 1e-5 for v in c["phases_s"].values()), f"{name}: {c['phases_s']}")
            self.assertGreaterEqual(sum(c["phases_s"].values()), c["wall_s"] - 1e-5 * len(c["phases_s"]), name)
            self.assertGreaterEqual(c["external_wall_s"], c["wall_s"], f"{name}: the wall seen from outside is below the tool's")
            self.assertAlmostEqual(c["throughput_GBps"], c["bytes_written"] / c["wall_s"] / 1e9, places=9)
            self.assertEqual(len(c["peak_rss_bytes"]), c["ranks"], name)
            self.assertTrue(all(1e6 < r < 4e9 for r in c["peak_rss_bytes"]), f"{name}: peak RSS {c['peak_rss_bytes']}")
            # Output: bytes the tool reports = what is on disk (du -sb of the output dir adds the dir itself).
            run = next(r for r in self.data["runs"] if r["command"] == c["command"] and r["ranks"] == c["ranks"])
            self.assertLessEqual(c["bytes_written"], run["output_bytes"], name)
            self.assertLessEqual(run["output_bytes"], c["bytes_written"] + 65536, name)
            # fp32 output of ~1M params, from a checkpoint whose fp32 masters are ~4 MB.
            self.assertTrue(3.5e6 < c["bytes_written"] < 5e6, f"{name}: {c['bytes_written']} bytes written")
            self.assertTrue(3.5e6 < c["min_bytes_needed"] < 5e6, f"{name}: min bytes {c['min_bytes_needed']}")
            self.assertGreaterEqual(c["bytes_read_planned"], 0.99 * c["min_bytes_needed"], name)
            self.assertEqual(len(c["per_rank_planned"]), c["ranks"], name)
            if c["ranks"] == 1:
                self.assertEqual(c["bytes_sent_planned"], 0, name)
                self.assertAlmostEqual(c["speedup_vs_1_rank"], 1.0)
            self.assertTrue(0 < c["floor_s"] and 0 < c["floor_fraction"], name)
            self.assertNotIn("deepspeed", c, "the DeepSpeed anchors are for 505M params only")

    def test_floor_machine_and_checkpoint_are_recorded(self):
        fl = self.data["floor"]
        for k in ("memcpy_GBps", "write_cache_GBps", "write_fsync_GBps", "read_warm_GBps", "mmap_read_warm_GBps"):
            self.assertGreater(fl[k], 0, k)
        self.assertEqual(fl["bytes"], 64 << 20)
        self.assertIn(fl["cold_method"], ("posix_fadvise(DONTNEED)", "none"))
        (ck,) = self.data["checkpoints"]
        self.assertEqual((ck["config"], ck["stage"], ck["precision"], ck["dp"], ck["files"]), ("z2_bf16_dp2", 2, "bf16", 2, 3))
        self.assertTrue(0.8e6 < ck["params"] < 1.2e6, ck["params"])
        self.assertGreater(ck["bytes"], 4 * ck["trainable_params"] * 3, "fp32 masters + 2 Adam moments at least")
        self.assertEqual(self.data["machine"]["cores"], os.cpu_count())

    def test_markdown_has_the_tables(self):
        self.assertIn("## Floor", self.md)
        self.assertIn("## Results", self.md)
        rows = [l for l in self.md.splitlines() if l.startswith("| z2_bf16_dp2 | to-fp32:")]
        self.assertEqual(len(rows), 8, "4 result rows + 4 phase rows")
        for c in self.data["cases"]:
            row = next(l for l in rows if l.startswith(f"| z2_bf16_dp2 | {c['command']} | {c['ranks']} | warm | {c['wall_s']:.2f} |"))
            self.assertNotIn("failed", row)
        header = next(l for l in self.md.splitlines() if l.startswith("| checkpoint | command | ranks |"))
        self.assertEqual(len(re.findall(r"\|", header)), len(re.findall(r"\|", rows[0])), "columns of the result table")


if __name__ == "__main__":
    unittest.main(verbosity=2)
