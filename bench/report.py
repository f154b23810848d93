#!/usr/bin/env python3
"""Turns one bench/run.sh run into bench/results/results.{json,md,png}.

Inputs (in --run-dir, written by run.sh): machine.json, load_after.txt, checkpoints.jsonl (one line
per generated checkpoint, from ucp-bench-gen), floor.json (ucp-bench-floor), runs.jsonl (one line per
timed run: the `timings:` JSON ucp-reshard printed with --timings, exit code, wall time seen from
outside) and the --dry-run log of each case (planned bytes read / sent / written per rank and the
source data the conversion needs at least).

Numbers, per case (checkpoint config x command x ranks x cache mode), medians over the repetitions:
- wall: the tool's own wall_s (from the start of discovery to the end of commit, all ranks);
  the wall time seen from outside (process start to exit, mpirun included) is kept too.
- GB/s: bytes written / wall (decimal GB).
- floor: the least time this machine needs to read the source data the plan needs and write the
  output, one sequential stream each, at the measured bandwidths (mmap read, warm or cold as the
  run; write into the page cache, which is where ucp-reshard's output lands: it does not fsync);
  "% of floor" = floor / wall (100 % = as fast as the hardware allows).
- phases: the tool's --timings phases (it measures them itself; nothing is estimated here).
- DeepSpeed: anchors measured on this machine with DeepSpeed 0.14.5's own tools at 505M params,
  DP=4, bf16, shown where the command and checkpoint match. They time a whole script, so the
  speedup is anchor / our wall time seen from outside (process start to exit, mpirun included).

Only the Python standard library is needed; the plot needs matplotlib and is skipped without it.
"""

import argparse
import json
import os
import re
import statistics
import sys

# DeepSpeed's own tools on this machine (2 cores, 24 GiB), 505M params, DP=4, bf16 (issue 5).
ANCHORS = [
    {"family": "to-fp32", "stage": 2, "tool": "zero_to_fp32.py", "wall_s": 40.0, "peak_rss_bytes": 6.0e9},
    {"family": "to-fp32", "stage": 3, "tool": "zero_to_fp32.py", "wall_s": 43.0, "peak_rss_bytes": 4.1e9},
    {"family": "to-universal", "stage": 2, "tool": "ds_to_universal.py", "wall_s": 71.0, "peak_rss_bytes": None},
    {"family": "to-universal", "stage": 3, "tool": "ds_to_universal.py", "wall_s": 60.0, "peak_rss_bytes": None},
]
ANCHOR_PARAMS = 505e6
PHASES = ["discover", "metadata", "plan", "prepare", "create", "transfer", "finalize", "extras", "commit"]
UNITS = {"B": 1, "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3, "TiB": 1024 ** 4, "PiB": 1024 ** 5}
SIZE = r"([0-9.]+) (B|KiB|MiB|GiB|TiB|PiB)"


def size_bytes(num, unit):
    return float(num) * UNITS[unit]


def parse_dryrun(path):
    """Planned bytes from a --dry-run log (format of plan::FilePlan::describe). Values are printed
    with 3 significant digits, so they are approximate at that precision."""
    out = {"min_bytes_needed": None, "ranks": []}
    try:
        text = open(path).read()
    except OSError:
        return out
    m = re.search(r"source data needed " + SIZE, text)
    if m:
        out["min_bytes_needed"] = size_bytes(*m.groups())
    row = re.compile(r"^\s*(\d+)\s+" + r"\s+".join([SIZE] * 5) + r"\s*$")
    for line in text.splitlines():
        m = row.match(line)
        if m:
            g = m.groups()
            out["ranks"].append({"rank": int(g[0]), "read": size_bytes(g[1], g[2]), "sent": size_bytes(g[3], g[4]),
                                 "received": size_bytes(g[5], g[6]), "written": size_bytes(g[7], g[8]),
                                 "peak_buffers": size_bytes(g[9], g[10])})
    return out


def read_jsonl(path):
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    rows.append(json.loads(line))
    return rows


def parse_config(cfg):
    m = re.match(r"^z([123])_(fp32|fp16|bf16)(_bf16opt)?_dp(\d+)$", cfg)
    if not m:
        return {}
    return {"stage": int(m.group(1)), "precision": m.group(2), "bf16_optimizer": bool(m.group(3)), "dp": int(m.group(4))}


def anchor_for(command, cfg, params):
    c = parse_config(cfg)
    if not c or c["precision"] != "bf16" or c["bf16_optimizer"] or c["dp"] != 4:
        return None
    if params is None or abs(params - ANCHOR_PARAMS) / ANCHOR_PARAMS > 0.03:
        return None
    family = command.split(":")[0]
    for a in ANCHORS:
        if a["family"] == family and a["stage"] == c["stage"]:
            return a
    return None


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def build_cases(runs, floor, checkpoints):
    params_of = {c["config"]: c.get("params") for c in checkpoints}
    groups = {}
    for r in runs:
        if r.get("skipped"):
            continue
        key = (r["config"], r["command"], r["ranks"], r["cache"])
        groups.setdefault(key, []).append(r)
    cases = []
    for (cfg, command, ranks, cache), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][3], kv[0][2])):
        ok = [r for r in rs if r["rc"] == 0 and r.get("timings")]
        case = {"config": cfg, "command": command, "subcommand": rs[0]["subcommand"], "args": rs[0]["args"],
                "ranks": ranks, "cache": cache, "reps": len(rs), "failed_reps": len(rs) - len(ok)}
        if ok:
            t = [r["timings"] for r in ok]
            case["wall_s"] = median([x["wall_s"] for x in t])
            case["wall_s_all"] = [x["wall_s"] for x in t]
            case["external_wall_s"] = median([r["external_wall_s"] for r in ok])
            # Only the phases the command has (to-fp32 has no extras).
            case["phases_s"] = {p: median([x["phases_s"][p] for x in t if p in x["phases_s"]])
                                for p in PHASES if any(p in x["phases_s"] for x in t)}
            case["bytes_written"] = t[0].get("bytes_written")
            rss = [x.get("peak_rss_bytes") or [] for x in t]
            case["peak_rss_bytes"] = [max(v[i] for v in rss if len(v) > i) for i in range(max(len(v) for v in rss))]
            case["throughput_GBps"] = case["bytes_written"] / case["wall_s"] / 1e9 if case["wall_s"] else None
        dry = parse_dryrun(rs[0].get("dryrun_log", ""))
        case["min_bytes_needed"] = dry["min_bytes_needed"]
        case["bytes_read_planned"] = sum(r["read"] for r in dry["ranks"]) if dry["ranks"] else None
        case["bytes_sent_planned"] = sum(r["sent"] for r in dry["ranks"]) if dry["ranks"] else None
        case["per_rank_planned"] = dry["ranks"]
        # Floor: read the needed source bytes + write the output, sequentially, at measured speeds.
        read_bw = floor.get("mmap_read_warm_GBps") if cache == "warm" else (
            floor.get("mmap_read_cold_GBps") or floor.get("read_cold_GBps"))
        write_bw = floor.get("write_cache_GBps")
        if case.get("bytes_written") and case["min_bytes_needed"] and read_bw and write_bw:
            case["floor_s"] = case["min_bytes_needed"] / (read_bw * 1e9) + case["bytes_written"] / (write_bw * 1e9)
            case["floor_fraction"] = case["floor_s"] / case["wall_s"]
        # The same with the first-pass figures: memory touched for the first time (see the floor notes).
        read_first = floor.get("mmap_read_warm_first_GBps") if cache == "warm" else read_bw
        write_first = floor.get("write_cache_first_GBps")
        if case.get("bytes_written") and case["min_bytes_needed"] and read_first and write_first:
            case["first_pass_floor_s"] = (case["min_bytes_needed"] / (read_first * 1e9) +
                                          case["bytes_written"] / (write_first * 1e9))
            case["first_pass_floor_fraction"] = case["first_pass_floor_s"] / case["wall_s"]
        a = anchor_for(command, cfg, params_of.get(cfg))
        if a and case.get("external_wall_s"):
            case["deepspeed"] = dict(a, speedup=a["wall_s"] / case["external_wall_s"])
        cases.append(case)
    # Scaling relative to 1 rank of the same config / command / cache mode.
    base = {(c["config"], c["command"], c["cache"]): c.get("wall_s") for c in cases if c["ranks"] == 1}
    for c in cases:
        b = base.get((c["config"], c["command"], c["cache"]))
        if b and c.get("wall_s"):
            c["speedup_vs_1_rank"] = b / c["wall_s"]
            c["efficiency"] = c["speedup_vs_1_rank"] / c["ranks"]
    return cases


def gb(x, digits=2):
    """Decimal GB, or MB / kB for small sizes (the smoke run), with the unit."""
    if x is None:
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if x >= scale:
            return f"{x / scale:.{digits}f} {unit}"
    return f"{x:.0f} B"


def fmt(x, spec=".2f", none="-"):
    return none if x is None else format(x, spec)


def markdown(data):
    m, fl = data["machine"], data["floor"]
    L = []
    L.append("# ucp-reshard benchmark")
    L.append("")
    L.append(f"Generated by `bench/run.sh` on {m.get('date', '?')}: {m.get('host_cpu', '?')}, {m.get('cores', '?')} cores, "
             f"{fmt((m.get('mem_total_bytes') or 0) / 2**30, '.0f')} GiB RAM, {m.get('kernel', '?')}, work dir on "
             f"{m.get('filesystem', '?')}; {m.get('ucp_reshard', '?')}, {m.get('mpi', '?')}. Load average "
             f"before / after: {m.get('load_before', '?')} / {m.get('load_after', '?')} (other work on the machine "
             "shares its cores and disk: treat small differences as noise). Medians of "
             f"{m.get('reps', '?')} repetition(s); cache: {m.get('cache_modes', '?')}.")
    L.append("")
    L.append("## Floor (what this machine can do at best)")
    L.append("")
    cols = [("memcpy", "memcpy_GBps"), ("write (page cache)", "write_cache_GBps"), ("write + fsync", "write_fsync_GBps"),
            ("read warm", "read_warm_GBps"), ("mmap read warm", "mmap_read_warm_GBps"), ("read cold", "read_cold_GBps"),
            ("mmap read cold", "mmap_read_cold_GBps")]
    L.append("| | " + " | ".join(c for c, _ in cols) + " |")
    L.append("|---|" + "---|" * len(cols))
    cell = lambda k: (fmt(fl.get(k), ".2f") + " GB/s") if fl.get(k) is not None else "n/a"  # noqa: E731
    L.append(f"| best of {fl.get('reps', 1)} | " + " | ".join(cell(k) for _, k in cols) + " |")
    firsts = {"memcpy_GBps": "memcpy_first_touch_GBps", "write_cache_GBps": "write_cache_first_GBps",
              "mmap_read_warm_GBps": "mmap_read_warm_first_GBps"}
    if any(fl.get(v) is not None for v in firsts.values()):
        L.append("| first pass | " + " | ".join(cell(firsts[k]) if k in firsts else "" for _, k in cols) + " |")
    L.append("")
    L.append(f"Measured with {gb(fl.get('bytes'))} in 16 MiB sequential requests on the work dir's filesystem "
             "(memcpy: 256 MiB buffers, one thread). The floor used below is the best pass. The first pass pays "
             "for memory the system touches for the first time (memcpy's first pass copies into freshly "
             "allocated memory): where it is far slower, as on a VM whose host hands memory out lazily, a "
             "process that allocates and fills large buffers pays that price too. "
             f"Cold reads: pages dropped with {fl.get('cold_method')}; writing /proc/sys/vm/drop_caches is "
             f"{'possible' if fl.get('drop_caches_writable') else 'not possible'} here. On a virtual disk the host "
             "may still cache what the guest dropped, so cold figures are an upper bound.")
    L.append("")
    L.append("## Checkpoints (ucp-bench-gen)")
    L.append("")
    L.append("| config | params | layers x hidden, vocab | files | size | generated in |")
    L.append("|---|---|---|---|---|---|")
    for c in data["checkpoints"]:
        L.append(f"| {c['config']} | {c['params'] / 1e6:.1f}M | {c['layers']} x {c['hidden']}, {c['vocab']} | {c['files']} | "
                 f"{gb(c['bytes'])} | {fmt(c.get('seconds'), '.1f')} s |")
    L.append("")
    L.append("## Results")
    L.append("")
    L.append("| checkpoint | command | ranks | cache | wall s (range) | GB/s | % of floor (first pass) | read / min needed | "
             "sent between ranks | peak RSS per rank | vs 1 rank | DeepSpeed | speedup vs DeepSpeed (wall seen from outside) |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for c in data["cases"]:
        if "wall_s" not in c:
            L.append(f"| {c['config']} | {c['command']} | {c['ranks']} | {c['cache']} | failed ({c['failed_reps']} of {c['reps']}) "
                     "| | | | | | | | |")
            continue
        ds = c.get("deepspeed")
        ds_txt = f"{ds['tool']} {ds['wall_s']:.0f} s" + (f", {ds['peak_rss_bytes'] / 1e9:.1f} GB RSS" if ds.get("peak_rss_bytes") else "") if ds else "-"
        rss = " / ".join(gb(x, 2) for x in c.get("peak_rss_bytes", []))
        frac = f"{100 * c['floor_fraction']:.0f} %" if c.get("floor_fraction") is not None else "-"
        if c.get("first_pass_floor_fraction") is not None:
            frac += f" ({100 * c['first_pass_floor_fraction']:.0f} %)"
        scal = f"{c['speedup_vs_1_rank']:.2f}x" if c.get("speedup_vs_1_rank") else "-"
        walls = c.get("wall_s_all") or []
        spread = f" ({min(walls):.2f}-{max(walls):.2f})" if len(walls) > 1 else ""
        L.append(f"| {c['config']} | {c['command']} | {c['ranks']} | {c['cache']} | {c['wall_s']:.2f}{spread} | "
                 f"{fmt(c.get('throughput_GBps'))} | {frac} | {gb(c.get('bytes_read_planned'))} / {gb(c.get('min_bytes_needed'))} | "
                 f"{gb(c.get('bytes_sent_planned'))} | {rss} | {scal} | {ds_txt} | "
                 f"{(format(ds['speedup'], '.1f') + 'x') if ds else '-'} |")
    L.append("")
    L.append("## Time per phase (s, medians; from --timings)")
    L.append("")
    L.append("| checkpoint | command | ranks | cache | " + " | ".join(PHASES) + " | wall | wall seen from outside |")
    L.append("|---|---|---|---|" + "---|" * (len(PHASES) + 2))
    for c in data["cases"]:
        if "wall_s" not in c:
            continue
        L.append(f"| {c['config']} | {c['command']} | {c['ranks']} | {c['cache']} | " +
                 " | ".join(fmt(c["phases_s"].get(p), ".2f") for p in PHASES) +
                 f" | {c['wall_s']:.2f} | {fmt(c.get('external_wall_s'))} |")
    L.append("")
    if data["skipped"]:
        L.append("Not measured (subcommand not in this build): " + ", ".join(sorted({s['command'] for s in data['skipped']})) + ".")
        L.append("")
    L.append("## How to read this")
    L.append("")
    L.append("- **wall s**: ucp-reshard's own wall time (`--timings` wall_s: discovery to commit); the phase table also "
             "gives the time seen from outside, mpirun start-up included. **GB/s**: output bytes / wall.")
    L.append("- **% of floor**: time this machine needs at least to read the source data the plan needs (mmap read, "
             "warm or cold as the run) and to write the output into the page cache, one sequential stream each, "
             "divided by the measured wall time; in brackets the same with the first-pass figures of the floor "
             "table (fresh memory).")
    L.append("- **read / min needed**: bytes the plan reads (all ranks, from `--dry-run`) vs the source bytes the "
             "conversion needs at least; **sent between ranks**: bytes the plan moves over MPI. Planned figures, "
             "printed by the dry run with 3 significant digits.")
    L.append("- Every run (and the floor) starts after a `sync`, so that write-back of earlier output does not "
             "throttle it; the output itself stays in the page cache (ucp-reshard does not fsync), as the floor's "
             "write figure assumes.")
    L.append("- **peak RSS per rank**: as reported by each rank (max over repetitions); it includes the mapped "
             "checkpoint pages the rank touched.")
    L.append("- **phases**: each is the slowest rank's time in it (so they can add up to more than the wall "
             "time at several ranks); `transfer` is reading, exchanging and writing the tensor data, overlapped (the tool "
             "does not split them); `create` creates and sizes the output files and allocates the transfer "
             "buffers (up to --max-memory, 1 GiB by default).")
    L.append("- **DeepSpeed**: DeepSpeed 0.14.5's own tools timed on this machine at 505M params, DP=4, bf16 "
             "(zero_to_fp32.py: 40 s ZeRO-2 / 43 s ZeRO-3, 6.0 / 4.1 GB peak RSS; ds_to_universal.py: 71 s / 60 s); "
             "speedup = anchor / ours. zero_to_fp32.py writes a torch .bin, so the `to-fp32:torch` rows are the "
             "like-for-like comparison.")
    L.append("")
    return "\n".join(L) + "\n"


def plot(data, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as e:  # matplotlib missing: the tables are still written
        print(f"report.py: matplotlib not available ({e}); skipping the plot", file=sys.stderr)
        return False
    cases = [c for c in data["cases"] if "wall_s" in c]
    if not cases:
        return False
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 5.5), gridspec_kw={"width_ratios": [1, 1.4]})
    series = {}
    for c in cases:
        series.setdefault((c["config"], c["command"], c["cache"]), []).append(c)
    for (cfg, cmd, cache), cs in sorted(series.items()):
        cs.sort(key=lambda c: c["ranks"])
        line, = ax1.plot([c["ranks"] for c in cs], [c["throughput_GBps"] for c in cs], marker="o",
                         label=f"{cfg} {cmd}" + ("" if cache == "warm" else f" ({cache})"))
        for key, style in (("floor_s", ":"), ("first_pass_floor_s", "--")):
            fl = [c["bytes_written"] / c[key] / 1e9 for c in cs if c.get(key)]
            if fl:
                ax1.axhline(max(fl), color=line.get_color(), linestyle=style, linewidth=1)
    ax1.set_xlabel("ranks (mpirun -np)")
    ax1.set_ylabel("output GB/s (log)")
    ax1.set_yscale("log")
    ax1.set_xticks(sorted({c["ranks"] for c in cases}))
    ax1.set_xticklabels([str(n) for n in sorted({c["ranks"] for c in cases})])
    ax1.set_title("Throughput vs ranks (floor: dotted best, dashed first pass)", fontsize=10)
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=7)
    labels, left = [], None
    bottoms = [0.0] * len(cases)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, p in enumerate(PHASES):
        vals = [c["phases_s"].get(p) or 0.0 for c in cases]
        ax2.barh(range(len(cases)), vals, left=bottoms, label=p, color=colors[i % len(colors)])
        bottoms = [b + v for b, v in zip(bottoms, vals)]
    for c in cases:
        labels.append(f"{c['config']} {c['command']} n={c['ranks']}" + ("" if c["cache"] == "warm" else f" {c['cache']}"))
    ax2.set_yticks(range(len(cases)))
    ax2.set_yticklabels(labels, fontsize=7)
    ax2.invert_yaxis()
    ax2.set_xlabel("seconds (median)")
    ax2.set_title("Time by phase (--timings)")
    ax2.legend(fontsize=7, ncol=4, loc="lower right")
    ax2.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--results", required=True)
    a = ap.parse_args()
    d = a.run_dir
    machine = json.load(open(os.path.join(d, "machine.json")))
    if os.path.exists(os.path.join(d, "load_after.txt")):
        machine["load_after"] = open(os.path.join(d, "load_after.txt")).read().strip()
    floor = json.load(open(os.path.join(d, "floor.json")))
    checkpoints = read_jsonl(os.path.join(d, "checkpoints.jsonl"))
    runs = read_jsonl(os.path.join(d, "runs.jsonl"))
    cases = build_cases(runs, floor, checkpoints)
    data = {"machine": machine, "floor": floor, "checkpoints": checkpoints, "anchors": ANCHORS, "cases": cases,
            "skipped": [r for r in runs if r.get("skipped")], "runs": [r for r in runs if not r.get("skipped")]}
    os.makedirs(a.results, exist_ok=True)
    with open(os.path.join(a.results, "results.json"), "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    with open(os.path.join(a.results, "results.md"), "w") as f:
        f.write(markdown(data))
    png = os.path.join(a.results, "results.png")
    if not plot(data, png) and os.path.exists(png):
        os.remove(png)  # never leave a plot of an older run next to new tables
    failed = sum(c["failed_reps"] for c in cases)
    print(f"report.py: {len(cases)} case(s), {failed} failed run(s) -> {a.results}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
