"""The two ways ranks get data into the output files give the same bytes. With --shared-output yes
(the default when every rank runs on one host) each rank writes the runs it reads straight into the
shared files and hands its zip CRC pieces to the file's owner; with --shared-output no every run
travels to the owner over the communicator. Both, at 2 and 3 ranks, must write exactly what one rank
writes, for every command and output kind (one safetensors file, torch shards whose zip records are
written by several ranks, a universal checkpoint, re-partitioned ZeRO files): the zip headers hold
each record's CRC, so a CRC piece lost on the way to the file's owner shows as a byte difference;
torch reads the shards back as well.
--dry-run shows the difference: nothing is sent with direct writes."""

import filecmp
import os
import re
import tempfile
import unittest

import torch

import ucp_oracle as uo

FIXTURES = ["gpt_z2_bf16_ws2", "gpt_z3_fp16_ws4", "mlp_z1_bf16_bf16opt_ws2"]
COMMANDS = {
    "safetensors": ["to-fp32", "CKPT", "OUT"],
    "torch-shards": ["to-fp32", "CKPT", "OUT", "--format", "torch", "--max-shard-size", "1KB"],
    "universal": ["to-universal", "CKPT", "OUT"],
    "reshard": ["reshard", "CKPT", "OUT", "--target-dp", "3"],
}


def args_for(template, ckpt, out, extra=()):
    return [ckpt if a == "CKPT" else out if a == "OUT" else a for a in template] + ["--no-progress"] + list(extra)


class SharedOutput(unittest.TestCase):
    def assert_same_tree(self, a, b, what):
        self.assertEqual(uo.file_tree(a), uo.file_tree(b), what)
        for rel in sorted(uo.file_tree(a)):
            self.assertTrue(filecmp.cmp(os.path.join(a, rel), os.path.join(b, rel), shallow=False), f"{what}: {rel}")

    def test_every_write_mode_writes_what_one_rank_writes(self):
        for fixture in FIXTURES:
            ckpt = os.path.join(uo.DEEPSPEED, fixture, "checkpoint")
            for kind, template in COMMANDS.items():
                with self.subTest(fixture=fixture, kind=kind), tempfile.TemporaryDirectory() as tmp:
                    # Each output in a folder of its own: to-universal writes latest_universal beside OUT.
                    reference = os.path.join(tmp, "one", "out")
                    os.makedirs(os.path.dirname(reference))
                    p = uo.run(args_for(template, ckpt, reference), 1)
                    self.assertEqual(p.returncode, 0, p.stderr)
                    for ranks in (2, 3):
                        for mode in ("yes", "no"):
                            out = os.path.join(tmp, f"{ranks}-{mode}", "out")
                            os.makedirs(os.path.dirname(out))
                            p = uo.run(args_for(template, ckpt, out, ["--shared-output", mode]), ranks)
                            self.assertEqual(p.returncode, 0, p.stderr)
                            self.assert_same_tree(reference, out, f"{ranks} ranks, --shared-output {mode}")
                    if kind == "torch-shards":
                        shards = sorted(f for f in os.listdir(reference) if f.endswith(".bin"))
                        self.assertGreater(len(shards), 1, "the test needs several shards")
                        for shard in shards:
                            torch.load(os.path.join(tmp, "3-yes", "out", shard), map_location="cpu")

    def test_dry_run_shows_nothing_sent_with_direct_writes(self):
        ckpt = os.path.join(uo.DEEPSPEED, "gpt_z2_bf16_ws2", "checkpoint")
        sent = {}
        for mode in ("yes", "no"):
            with tempfile.TemporaryDirectory() as tmp:
                p = uo.run(["to-fp32", ckpt, os.path.join(tmp, "out"), "--dry-run", "--shared-output", mode], 2)
                self.assertEqual(p.returncode, 0, p.stderr)
                # rank rows: "  <rank>  <read>  <sent>  <received>  <written>  <peak>"
                rows = re.findall(r"^\s+(\d+)\s+(\S+ \S+)\s+(\S+ \S+)\s+(\S+ \S+)", p.stdout, re.M)
                self.assertEqual(len(rows), 2, p.stdout)
                sent[mode] = [row[2] for row in rows]
        self.assertEqual(sent["yes"], ["0 B", "0 B"])
        self.assertNotEqual(sent["no"], ["0 B", "0 B"])


class SharedOutputBadValue(uo.BadInputCase):
    """An unknown --shared-output value, on the command line or in a --config preset: one usage
    error naming the flag and the values it takes, exit 2 from every rank, no output."""

    def test_command_line(self):
        out = os.path.join(self.tmp, "out")
        for ranks in (1, 3):
            with self.subTest(ranks=ranks):
                p = uo.run(["to-fp32", self.ckpt, out, "--shared-output", "maybe", "--no-progress"], ranks)
                self.assertEqual(p.returncode, uo.INVALID_ARGUMENT, p.stderr)
                lines = [l for l in p.stderr.splitlines() if "--shared-output" in l]
                self.assertEqual(lines, ["--shared-output: maybe not in {auto,yes,no}"], p.stderr)
                self.assertFalse(os.path.exists(out))

    def test_config_preset(self):
        cfg = os.path.join(self.tmp, "c.json")
        with open(cfg, "w") as f:
            f.write('{"shared_output": "maybe"}')
        self.check_failure(["reshard", self.ckpt, os.path.join(self.tmp, "out"), "--target-dp", "2", "--config", cfg],
                           uo.INVALID_ARGUMENT, ["key 'shared_output'", "not in {auto,yes,no}"], watch_dir=self.tmp,
                           allowed=("ckpt", "c.json"))


if __name__ == "__main__":
    unittest.main()
