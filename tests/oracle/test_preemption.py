"""Preemption and crashes (issue 19): the kill matrix. A conversion killed at any point leaves OUT as
it was; the same command run again resumes from the rounds every rank finished (or starts over where
it cannot, and says why), writes exactly what an uninterrupted run writes, and leaves no temporary
folder or lock behind.

At 1 and 3 ranks: SIGKILL of one rank during create, the rounds, finalize and commit (the test-only
hook UCP_TEST_FAIL_AT=PHASE:N:RANK makes that rank raise SIGKILL on itself at that point);
SIGTERM to one rank (every rank stops at the next round boundary, exit 10, one line saying how to
resume) and SIGTERM to mpirun. Then what is not this run: another rank count, a changed source
file, --restart, an HDF5 output (the stale folder is removed with its size and why); and the lock: a live owner
refuses a second run with one line naming host and process, a dead owner's lock is taken over.
UCP_TEST_ROUND_BYTES makes rounds of a few KiB so the small fixture has many round boundaries."""

import filecmp
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import ucp_oracle as uo

FIXTURE = os.path.join(uo.DEEPSPEED, "gpt_z2_fp32_ws2", "checkpoint")
ENV = {"UCP_TEST_ROUND_BYTES": "8192"}
INTERRUPTED = 10


def ucp_lines(stderr):
    return [l for l in stderr.splitlines() if l.startswith("ucp-reshard")]


def leftovers(parent, name):
    """Temporary folders and locks of OUT `name` in `parent`."""
    return sorted(e for e in os.listdir(parent) if e.startswith("." + name + ".ucp-"))


def timings(stderr):
    for l in stderr.splitlines():
        if l.startswith("timings: "):
            return json.loads(l[len("timings: "):])
    raise AssertionError("no timings line in:\n" + stderr)


class Preemption(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ucp-preempt-")
        cls.ref = os.path.join(cls.tmp, "ref")
        p = uo.run(cls.args(cls.ref) + ["--timings"], 1, env=ENV)
        assert p.returncode == 0, p.stderr
        cls.full = timings(p.stderr)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @staticmethod
    def args(out, ckpt=FIXTURE, extra=()):
        return ["reshard", ckpt, out, "--target-dp", "3", "--no-progress", "--overwrite"] + list(extra)

    def fresh_out(self, name):
        """OUT with an old content (--overwrite replaces it only when a run completes)."""
        out = os.path.join(self.tmp, name)
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        with open(os.path.join(out, "old.txt"), "w") as f:
            f.write("old")
        return out

    def assert_untouched(self, out):
        self.assertEqual(os.listdir(out), ["old.txt"])

    def assert_done(self, out):
        self.assertEqual(uo.file_tree(out), uo.file_tree(self.ref))
        for rel in sorted(uo.file_tree(self.ref)):
            self.assertTrue(filecmp.cmp(os.path.join(out, rel), os.path.join(self.ref, rel), shallow=False), rel)
        self.assertEqual(leftovers(self.tmp, os.path.basename(out)), [])

    def kill(self, out, ranks, spec, ckpt=FIXTURE):
        p = uo.run(self.args(out, ckpt), ranks, env=dict(ENV, UCP_TEST_FAIL_AT=spec))
        self.assertNotEqual(p.returncode, 0, p.stderr)
        self.assert_untouched(out)
        temps = [e for e in leftovers(self.tmp, os.path.basename(out)) if ".ucp-tmp-" in e]
        self.assertEqual(len(temps), 1, leftovers(self.tmp, os.path.basename(out)))
        return p

    def test_kill_matrix(self):
        for ranks in (1, 3):
            last = ranks - 1
            cases = [
                (f"create:0:{last}", "starting over"),
                (f"transfer:3:{last}", "3 of "),
                ("transfer:0:0", "0 of "),
                (f"finalize:0:{last}", "rounds were done"),
                ("commit:0:0", "and finalized"),
            ]
            for spec, said in cases:
                with self.subTest(ranks=ranks, kill=spec):
                    out = self.fresh_out(f"kill-{ranks}-{spec.replace(':', '-')}")
                    self.kill(out, ranks, spec)
                    p = uo.run(self.args(out) + ["--timings"], ranks, env=ENV)
                    self.assertEqual(p.returncode, 0, p.stderr)
                    self.assertIn("resuming the interrupted run in", p.stderr)
                    self.assertIn(said, p.stderr)
                    self.assert_done(out)
                    t = timings(p.stderr)
                    if spec.startswith("transfer:3"):
                        # Only the rounds left were read and written.
                        self.assertEqual(t["resumed_rounds"], 3)
                        self.assertLess(t["tensor_bytes_written"], self.full["tensor_bytes_written"])
                        self.assertLess(t["tensor_bytes_read"], self.full["tensor_bytes_read"])
                    if spec.startswith(("finalize", "commit")):
                        self.assertEqual(t["tensor_bytes_written"], 0)

    def test_no_sync_resumes_too(self):
        # --no-sync: nothing synced, journal included; a process kill loses nothing (page cache).
        out = self.fresh_out("no-sync")
        p = uo.run(self.args(out, extra=["--no-sync"]), 3, env=dict(ENV, UCP_TEST_FAIL_AT="transfer:3:2"))
        self.assertNotEqual(p.returncode, 0, p.stderr)
        self.assert_untouched(out)
        p = uo.run(self.args(out, extra=["--no-sync"]), 3, env=ENV)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("3 of ", p.stderr)
        self.assert_done(out)

    def test_sigterm_on_a_rank_stops_every_rank_at_a_round_boundary(self):
        for ranks, sig in ((1, "TERM"), (3, "TERM"), (3, "INT")):
            with self.subTest(ranks=ranks, signal=sig):
                out = self.fresh_out(f"term-{ranks}")
                p = uo.run(self.args(out), ranks, env=dict(ENV, UCP_TEST_FAIL_AT=f"transfer:2:{ranks - 1}:{sig}"))
                self.assertEqual(p.returncode, INTERRUPTED, p.stderr)
                lines = [l for l in ucp_lines(p.stderr) if "interrupted" in l]
                self.assertEqual(len(lines), 1, p.stderr)
                # The hook raises SIGTERM while round 2 is recorded: the ranks stop at the next boundary.
                m = re.match(r"^ucp-reshard reshard: interrupted: stopped by SIG" + sig + r" after (\d+) of \d+ rounds; "
                             r"the finished rounds are kept in '.*\.ucp-tmp-.*': run the same command again to resume", lines[0])
                self.assertTrue(m, lines[0])
                self.assertIn(int(m.group(1)), (3, 4))
                self.assert_untouched(out)
                self.assertFalse(any(e.endswith(".ucp-lock") for e in leftovers(self.tmp, "term-%d" % ranks)))
                p = uo.run(self.args(out), ranks, env=ENV)
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertIn(f": {m.group(1)} of ", p.stderr)
                self.assert_done(out)

    def test_sigterm_to_mpirun(self):
        for ranks in (1, 3):
            with self.subTest(ranks=ranks):
                out = self.fresh_out(f"mpirun-term-{ranks}")
                cmd = [uo.MPIEXEC, "-np", str(ranks), "--oversubscribe", "--bind-to", "none"]
                if os.geteuid() == 0:
                    cmd.append("--allow-run-as-root")
                env = dict(os.environ, **ENV, UCP_TEST_ROUND_DELAY_MS="150")
                proc = subprocess.Popen(cmd + [uo.UCP] + self.args(out), stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, env=env)
                # Signal once a round is journaled.
                deadline = time.time() + 60
                while time.time() < deadline and proc.poll() is None:
                    temps = [e for e in leftovers(self.tmp, os.path.basename(out)) if ".ucp-tmp-" in e]
                    log = os.path.join(self.tmp, temps[0], ".ucp-journal", "rank-0") if temps else ""
                    if log and os.path.exists(log) and os.path.getsize(log) > 40:
                        break
                    time.sleep(0.05)
                proc.send_signal(signal.SIGTERM)
                _, stderr = proc.communicate(timeout=120)
                self.assertNotEqual(proc.returncode, 0, stderr)
                self.assert_untouched(out)
                p = uo.run(self.args(out), ranks, env=ENV)
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertIn("resuming the interrupted run in", p.stderr)
                self.assert_done(out)

    def test_a_different_run_removes_the_stale_folder_and_starts_fresh(self):
        ckpt_copy = uo.writable_copy(os.path.dirname(FIXTURE), os.path.join(self.tmp, "src"))
        ckpt = os.path.join(ckpt_copy, "checkpoint")
        out = self.fresh_out("stale")
        why = {
            "ranks": "it was another run (its command, options, rank count or source files differ)",
            "restart": "--restart",
        }
        # Another rank count.
        self.kill(out, 3, "transfer:3:1", ckpt)
        p = uo.run(self.args(out, ckpt), 2, env=ENV)
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = [l for l in ucp_lines(p.stderr) if "removing the stale" in l]
        self.assertEqual(len(lines), 1, p.stderr)
        self.assertRegex(lines[0], r"^ucp-reshard reshard: removing the stale temporary folder '.*/\.stale\.ucp-tmp-[^']*' "
                         r"\(\d+(\.\d+)? KiB\) of an earlier run: " + why["ranks"].replace("(", r"\(").replace(")", r"\)") + "$")
        self.assert_done(out)
        # A changed source file (its mtime).
        out = self.fresh_out("stale")
        self.kill(out, 3, "transfer:3:1", ckpt)
        latest_states = [os.path.join(d, f) for d, _, fs in os.walk(ckpt) for f in fs if f.endswith("optim_states.pt")]
        st = os.stat(latest_states[0])
        os.utime(latest_states[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        p = uo.run(self.args(out, ckpt), 3, env=ENV)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(why["ranks"], p.stderr)
        self.assertNotIn("resuming", p.stderr)
        self.assert_done(out)
        # --restart.
        out = self.fresh_out("stale")
        self.kill(out, 3, "transfer:3:1", ckpt)
        p = uo.run(self.args(out, ckpt, ["--restart"]), 3, env=ENV)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("of an earlier run: --restart", p.stderr)
        self.assert_done(out)
        # Another command into the same OUT.
        other = self.fresh_out("stale-command")
        self.kill(other, 3, "transfer:3:1", ckpt)
        p = uo.run(["to-universal", ckpt, other, "--no-progress", "--overwrite"], 3, env=ENV)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("of an earlier run: " + why["ranks"], p.stderr)
        self.assertNotIn("resuming", p.stderr)
        self.assertEqual(leftovers(self.tmp, "stale-command"), [])

    def test_an_hdf5_output_restarts_and_says_why(self):
        if "parallel HDF5" not in subprocess.run([uo.UCP, "--version"], capture_output=True, text=True).stdout:
            self.skipTest("built without parallel HDF5")
        out = os.path.join(self.tmp, "h5")
        args = ["to-fp32", FIXTURE, out, "--format", "hdf5", "--no-progress"]
        p = uo.run(args, 3, env=dict(ENV, UCP_TEST_FAIL_AT="commit:0:0"))
        self.assertNotEqual(p.returncode, 0, p.stderr)
        self.assertFalse(os.path.exists(out))
        p = uo.run(args, 3, env=ENV)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stderr, r"removing the stale temporary folder '[^']*' \([0-9.]+ KiB\) of an earlier run: "
                         r"an HDF5 output cannot resume \(parallel HDF5 writes it without a journal\)")
        self.assertEqual(leftovers(self.tmp, "h5"), [])
        self.assertTrue(os.listdir(out))

    def test_lock_refuses_a_live_owner_and_takes_over_a_dead_ones(self):
        out = os.path.join(self.tmp, "locked")
        lock = os.path.join(self.tmp, ".locked.ucp-lock")
        with open("/proc/self/stat") as f:
            start = f.read().rsplit(")", 1)[1].split()[19]
        with open(lock, "w") as f:
            f.write(f"host {socket.gethostname()}\npid {os.getpid()}\nstart {start}\ntemp x\n")
        for ranks in (1, 3):
            with self.subTest(ranks=ranks, owner="alive"):
                p = uo.run(self.args(out), ranks, env=ENV)
                self.assertEqual(p.returncode, uo.FAILED_PRECONDITION, p.stderr)
                lines = ucp_lines(p.stderr)[2:]  # after the transport and header lines
                self.assertEqual(len(lines), 1, p.stderr)
                self.assertIn(f"is being written by process {os.getpid()} on host {socket.gethostname()}", lines[0])
                self.assertFalse(os.path.exists(out))
        dead = subprocess.Popen(["true"])
        dead.wait()
        with open(lock, "w") as f:
            f.write(f"host {socket.gethostname()}\npid {dead.pid}\nstart 1\ntemp x\n")
        p = uo.run(self.args(out), 3, env=ENV)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assert_done(out)


if __name__ == "__main__":
    unittest.main()
