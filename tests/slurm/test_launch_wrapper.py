"""launch/ucp-reshard-run without Slurm: real 2-rank conversions through mpirun (plain and with a
hostfile), checked against DeepSpeed's zero_to_fp32 output (fp32_reference.pt, read with torch);
and the launcher command it composes (--dry-run) for the cases the README promises, each expected
line written out by hand from the rules (one node: bind to cores when N <= cores; hostfile: ranks
spread per node; root: --allow-run-as-root; UCP_*/OMPI_MCA_*/NCCL_* forwarded; srun in Slurm)."""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "oracle"))

import torch  # noqa: E402

import ucp_oracle as uo  # noqa: E402

WRAPPER = os.path.join(REPO, "launch", "ucp-reshard-run")
CKPT = os.path.join(uo.DEEPSPEED, "gpt_z2_bf16_ws2", "checkpoint")
CORES = int(subprocess.run(["nproc"], stdout=subprocess.PIPE, text=True).stdout)
ROOT = ["--allow-run-as-root"] if os.geteuid() == 0 else []


def wrapper(args, env=None, drop=()):
    # Only UCP_RESHARD of ctest's UCP_* variables, so the forwarded list (-x) is known exactly.
    e = {k: v for k, v in os.environ.items()
         if not k.startswith(("SLURM_", "OMPI_MCA_", "NCCL_", "UCP_")) and k not in drop}
    e["UCP_RESHARD"] = uo.UCP
    e.update(env or {})
    return subprocess.run([WRAPPER] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e, timeout=300)


class Wrapper(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ucp-run-")
        self.ref = torch.load(os.path.join(uo.DEEPSPEED, "gpt_z2_bf16_ws2", "fp32_reference.pt"), weights_only=False)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def check_fp32(self, out):
        sd, _ = uo.load_output(out)
        self.assertEqual(sorted(sd), sorted(self.ref))
        for name, want in self.ref.items():
            got = sd[name]
            self.assertTrue(uo.bits_equal(got.float() if got.dtype == torch.bool else got, want), name)

    def dry(self, args, env=None):
        r = wrapper(["--dry-run"] + args, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "")
        return r.stderr.strip()

    # ------------------------------------------------------------------------------ real runs

    def test_two_ranks_on_this_node(self):
        out = os.path.join(self.tmp, "out")
        r = wrapper(["-n", "2", "--verbose", "--", "to-fp32", CKPT, out])
        self.assertEqual(r.returncode, 0, r.stderr)
        bind = ["--bind-to", "core"] if CORES >= 2 else ["--oversubscribe", "--bind-to", "none"]
        self.assertIn(" ".join(["+ mpirun"] + ROOT + ["-np", "2"] + bind), r.stderr)
        self.assertIn("| 2 rank(s),", r.stderr)
        self.check_fp32(out)

    def test_hostfile_run_matches_the_plain_run_byte_for_byte(self):
        plain, hosted = os.path.join(self.tmp, "plain"), os.path.join(self.tmp, "hosted")
        hostfile = os.path.join(self.tmp, "hosts")
        with open(hostfile, "w") as f:
            f.write("# one host, two slots\nlocalhost slots=2\n")
        r = wrapper(["-n", "2", "--", "to-fp32", CKPT, plain, "--format", "torch"])
        self.assertEqual(r.returncode, 0, r.stderr)
        r = wrapper(["--hostfile", hostfile, "-v", "to-fp32", CKPT, hosted, "--format", "torch"])  # N = 2 slots
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"-np 2 --hostfile {hostfile} --map-by ppr:2:node --bind-to core", r.stderr)
        self.assertIn("| 2 rank(s),", r.stderr)
        self.assertEqual(sorted(os.listdir(plain)), sorted(os.listdir(hosted)))
        for name in os.listdir(plain):
            with open(os.path.join(plain, name), "rb") as a, open(os.path.join(hosted, name), "rb") as b:
                self.assertEqual(a.read(), b.read(), name)

    def test_exit_code_of_ucp_reshard_comes_through(self):
        r = wrapper(["-n", "2", "to-fp32", os.path.join(self.tmp, "missing"), os.path.join(self.tmp, "out")])
        self.assertEqual(r.returncode, uo.NOT_FOUND, r.stderr)
        self.assertEqual(r.stderr.count("ucp-reshard to-fp32: error:"), 1, r.stderr)

    # ------------------------------------------------------------------- composed commands

    def test_default_rank_count_is_the_core_count(self):
        self.assertEqual(self.dry(["inspect", CKPT]),
                         " ".join(["+ mpirun"] + ROOT + ["-np", str(CORES), "--bind-to", "core", "-x", "UCP_RESHARD", uo.UCP, "inspect", CKPT]))

    def test_more_ranks_than_cores_oversubscribe_unbound(self):
        n = CORES + 1
        self.assertEqual(self.dry(["-n", str(n), "inspect", CKPT]),
                         " ".join(["+ mpirun"] + ROOT + ["-np", str(n), "--oversubscribe", "--bind-to", "none", "-x", "UCP_RESHARD",
                                                         uo.UCP, "inspect", CKPT]))

    def test_hostfile_spreads_ranks_per_node_and_forwards_the_environment(self):
        hostfile = os.path.join(self.tmp, "hosts")
        with open(hostfile, "w") as f:
            f.write("node1 slots=4  # GPU box\n\n# spare\nnode2 slots=4 max_slots=8\nnode3 slots=4\n")
        env = {"UCP_EXTRA": "1", "OMPI_MCA_btl_tcp_if_include": "eth0", "NCCL_DEBUG": "INFO", "UNRELATED": "x"}
        got = self.dry(["--hostfile", hostfile, "--", "to-fp32", "a b", "out"], env=env)
        path = ["-x", "PATH"] + (["-x", "LD_LIBRARY_PATH"] if os.environ.get("LD_LIBRARY_PATH") else [])
        want = (["+ mpirun"] + ROOT + ["-np", "12", "--hostfile", hostfile, "--map-by", "ppr:4:node", "--bind-to", "core"] + path +
                ["-x", "NCCL_DEBUG", "-x", "OMPI_MCA_btl_tcp_if_include", "-x", "UCP_EXTRA", "-x", "UCP_RESHARD",
                 uo.UCP, "to-fp32", "a\\ b", "out"])
        self.assertEqual(got, " ".join(want))
        # 7 ranks over 3 nodes: ceil(7/3) = 3 per node, within 4 slots.
        self.assertIn("-np 7 --hostfile " + hostfile + " --map-by ppr:3:node --bind-to core",
                      self.dry(["--hostfile", hostfile, "-n", "7", "inspect", "x"]))
        # 15 ranks: 5 per node > 4 slots.
        self.assertIn("--map-by ppr:5:node --oversubscribe --bind-to none",
                      self.dry(["--hostfile", hostfile, "-n", "15", "inspect", "x"]))

    def test_srun_inside_a_slurm_allocation(self):
        self.assertEqual(self.dry(["-n", "4", "inspect", "x"], env={"SLURM_JOB_ID": "42"}),
                         f"+ srun --mpi=pmix -n 4 {uo.UCP} inspect x")
        self.assertEqual(self.dry(["inspect", "x"], env={"SLURM_JOB_ID": "42", "UCP_SRUN_MPI": "pmix_v4"}),
                         f"+ srun --mpi=pmix_v4 {uo.UCP} inspect x")
        # --launcher mpirun forces mpirun inside an allocation (e.g. an MPI without PMIx support in Slurm).
        self.assertTrue(self.dry(["--launcher", "mpirun", "-n", "1", "inspect", "x"], env={"SLURM_JOB_ID": "42"})
                        .startswith("+ mpirun"))

    def test_usage_errors(self):
        for args, fragment in [(["-n", "0", "inspect", "x"], "-n: expected a positive integer, got '0'"),
                               (["--hostfile", os.path.join(self.tmp, "nope"), "inspect", "x"], "--hostfile: cannot read"),
                               (["--launcher", "ssh", "inspect", "x"], "--launcher: expected auto, mpirun or srun"),
                               ([], "usage: ucp-reshard-run")]:
            r = wrapper(args)
            self.assertEqual(r.returncode, 2, args)
            self.assertIn(fragment, r.stderr, args)

    def test_binary_without_ucp_reshard_set(self):
        # Next: <repo>/build/ucp-reshard (what launch/build.sh makes), else PATH, else a clear error.
        r = wrapper(["--dry-run", "inspect", "x"], env={"UCP_RESHARD": "", "PATH": "/usr/bin:/bin"})
        built = os.path.join(REPO, "build", "ucp-reshard")
        if os.path.exists(built):
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertTrue(r.stderr.rstrip().endswith(f"{built} inspect x"), r.stderr)
        else:
            self.assertEqual(r.returncode, 2)
            self.assertIn("ucp-reshard not found", r.stderr)


if __name__ == "__main__":
    if not uo.UCP:
        print("SKIPPED: UCP_RESHARD is not set (run through ctest)")
        sys.exit(77)
    unittest.main(verbosity=2)
