#!/usr/bin/env python3
"""Resume checker (DeepSpeed 0.19 / torch 2.x): can DeepSpeed itself resume training from a given save dir,
bit-for-bit where it should?

    resume_check.py CKPT_DIR CONFIG WORLD_SIZE [--universal] [--vs_ds_universal | --reference_json F] [options]

CKPT_DIR    a DeepSpeed save dir (holds `latest` + `<tag>/`), e.g. a re-partitioned checkpoint written by
            some other tool; with --universal a universal dir (holds `latest_universal` + `<tag>/zero/...`)
CONFIG      the fixture config the checkpoint was derived from, e.g. `gpt_z2_bf16_ws2` (found in
            tests/golden/deepspeed-0.19/ or $UCP_DS_FIXTURES, or give --orig DIR); it fixes model, ZeRO stage,
            precision and DeepSpeed config, and provides the original run's losses after its save
            (train_log.json), its state at the save (train_log.json `at_save`, else read from the original
            checkpoint's files) and the consolidated fp32 weights (fp32_reference.pt, else
            universal/<tag>/zero/*/fp32.pt)
WORLD_SIZE  M, the number of DeepSpeed ranks to launch (gloo on CPU, one process per rank)

What it does: launch M ranks of the same model with the same DeepSpeed config as the fixture generator
(gen_deepspeed_ckpts.py: model, param groups, optimizer, ds_config with the micro batch of world size M),
without any `checkpoint` section - or with `load_universal: true` with --universal -, call
`engine.load_checkpoint(CKPT_DIR)` with default arguments, gather every trainable param's fp32 master
copy and compare it with the original's consolidated fp32 weights, then run the training step(s) the
original run took after its save, on the same global batch (split over M ranks), and compare the losses.

DeepSpeed's own universal resume as the reference (--vs_ds_universal): additionally launch M ranks that
load <orig>/universal (written by DeepSpeed's ds_to_universal) with `load_universal: true`, run the same
steps, and require the same losses step by step (--ref_rtol, default 0: identical floats; --ref_steps K:
only the first K steps required, the others reported). --reference_json F uses the JSON result of an
earlier run of this script instead (e.g. `resume_check.py <orig>/universal CONFIG M --universal --json_out
F`), so that one reference run serves several checks. A run that is itself DeepSpeed's own universal
resume: `resume_check.py <orig>/universal CONFIG M --universal`.
DeepSpeed's own resume of the unconverted original at its own world size N as a second reference
(--vs_ds_native, or --native_reference_json F): losses within --native_rtol (default 1e-4; at M != N the
gradient reduction order differs). Use it where DeepSpeed's universal resume is itself off: DeepSpeed
0.19's ZeRO-3 universal loader gives every param group group 0's hyperparameters (weight_decay ...), so
from the second step on its losses differ for models with several param groups.

Prints one JSON object on stdout:

  ok, load_error, losses, global_steps, skipped_steps, loss_scale, max_abs_diff_of_fp32_master_vs_expected,
  plus expected_* values, loss_rel_diff, at_load, checks (each criterion), rank_errors, reference, timings

Exit status: 0 = ok; 1 = loaded but a check failed; 2 = load_checkpoint raised/failed (load_error says
why); 3 = infrastructure problem (bad arguments, crash, timeout, reference run failed).

Required checks (--require full, the default): the checkpoint loads; the loss of the first step after
the save matches the original within --rtol (fp32, default 1e-6) or --rtol16 (fp16/bf16, default 1e-5);
the fp32 master weights equal the expected ones within --master_atol (default 0: exact); frozen params
and persistent buffers (every rank's copy; not with --universal, where DeepSpeed restores no module
state) equal the zero_to_fp32 reference where it has them; global_steps, skipped_steps, global_samples,
lr, every param group's hyperparameters and the loss scale (and the dynamic loss scaler's counters) right
after the load equal the original's at its save; later steps' losses within --rtol_later (default 1e-5)
of the original's where it logged them, and the final skipped_steps / loss scale equal the original's -
except for fp16 at a world size other than the original's, where per-rank gradient overflow
legitimately depends on the micro batch (reported only); with references: their step losses as above.
--require minimal: only "loads", "first-step loss" and the reference losses are required (everything else
is still reported).

Environment: the interpreter running this script must have DeepSpeed 0.19 and torch 2.x ($UCP_DS_PYTHON
picks another one for the ranks). Same run-time settings as gen_deepspeed_ckpts.py (DS_ACCELERATOR=cpu,
no op built, shm comm op marked incompatible, fp16 CPU accelerator subclass where oneDNN lacks fp16).
"""
import argparse
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the repository
import gen_deepspeed_ckpts as G  # noqa: E402

FIXTURE_ROOTS = [os.path.abspath(p) for p in ([os.environ['UCP_DS_FIXTURES']] if os.environ.get('UCP_DS_FIXTURES')
                                              else []) + [os.path.join(HERE, '..', '..', 'tests', 'golden',
                                                                       'deepspeed-0.19')]]
PY = os.environ.get('UCP_DS_PYTHON') or sys.executable


# ----------------------------------------------------------------------------------------------
# rank side
# ----------------------------------------------------------------------------------------------
def rank_main(a):
    rank = int(os.environ['RANK'])
    out = {'rank': rank}

    def dump(name, obj):
        with open(os.path.join(a.workdir, name), 'w') as f:
            json.dump(obj, f, indent=1, sort_keys=True, default=str)

    try:
        import datetime
        import torch
        torch.set_num_threads(1)
        import deepspeed
        import deepspeed.comm as dist
        from deepspeed.utils import safe_get_full_fp32_param
        # no JIT build of the shared-memory all-reduce op: plain gloo collectives (as the generator)
        getattr(deepspeed.ops, '__compatible_ops__')['deepspeed_shm_comm'] = False
        spec = parse_cfg(a.config)
        if spec['precision'] == 'fp16':
            G.install_fp16_cpu_accelerator()
        deepspeed.init_distributed(dist_backend='gloo', timeout=datetime.timedelta(seconds=a.pg_timeout))
        ws = dist.get_world_size()
        assert ws == a.world_size, (ws, a.world_size)

        torch.manual_seed(1234)  # same init as the generator (everything is overwritten by the load anyway)
        model = G.build_model(spec['model'], moe_ep=spec.get('moe_ep'))
        groups = G.param_groups(model, spec['model'], moe=bool(spec.get('moe_ep')))
        ds_cfg = make_ds_config(spec, ws, a.universal)
        if spec.get('optimizer') == 'muon':  # DeepSpeed builds its own optimizer from the config
            engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=groups, config=ds_cfg)
        else:
            if spec.get('optimizer') == 'sgd':
                opt = torch.optim.SGD(groups, lr=G.LR, momentum=G.SGD_MOMENTUM)
            else:
                opt = torch.optim.AdamW(groups, lr=G.LR, betas=(0.9, 0.95), eps=1e-8)
            engine, _, _, _ = deepspeed.initialize(model=model, optimizer=opt, config=ds_cfg)
        out['optimizer_class'] = type(engine.optimizer).__name__
    except Exception as e:  # setup problem, not a load problem
        dump(f'rank{rank}_error.json', {'phase': 'setup', 'error': err_line(e), 'traceback': traceback.format_exc()})
        raise

    try:
        t0 = time.time()
        if a.tag:
            path, _ = engine.load_checkpoint(a.ckpt, tag=a.tag)
        else:
            path, _ = engine.load_checkpoint(a.ckpt)
        if path is None:
            raise RuntimeError('engine.load_checkpoint returned (None, None): no `latest` file (or no model-states '
                               'file for this rank) in the checkpoint dir')
        out['load_s'] = round(time.time() - t0, 2)
    except Exception as e:
        dump(f'rank{rank}_error.json', {'phase': 'load', 'error': err_line(e), 'traceback': traceback.format_exc()})
        raise

    try:
        out['at_load'] = {'global_steps': int(engine.global_steps), 'skipped_steps': int(engine.skipped_steps),
                          'global_samples': int(engine.global_samples), 'loss_scale': G.loss_scale_of(engine),
                          'lr': [float(x) for x in engine.get_lr()], 'loss_scaler': G.loss_scaler_state(engine),
                          'param_groups': group_hparams(base_optimizer(engine).param_groups)}
        # fp32 master weights (collective: every rank takes part, rank 0 compares)
        expected = load_expected(a.expected) if rank == 0 and a.expected else None
        diffs, missing, n_el, stale = {}, [], 0, []
        for n, p in model.named_parameters():
            if not p.requires_grad:
                continue
            full = full_fp32_master(engine, p, dist, torch)
            if not hasattr(p, 'ds_id'):
                ds_full = safe_get_full_fp32_param(p)  # DeepSpeed's accessor, for comparison (see full_fp32_master)
                if ds_full is not None and full is not None and not torch.equal(ds_full.float(), full.float()):
                    stale.append(n)
            if rank != 0 or expected is None:
                continue
            if full is None:
                missing.append(f'{n} (no fp32 master)')
                continue
            e = expected.get(n)
            if e is None:
                missing.append(f'{n} (not in expected)')
                continue
            full, e = full.detach().float().cpu().reshape(-1), e.detach().float().reshape(-1)
            if full.numel() != e.numel():
                diffs[n] = float('inf')
                missing.append(f'{n} (numel {full.numel()} vs expected {e.numel()})')
                continue
            d = (full - e).abs()
            diffs[n] = float('nan') if torch.isnan(d).any() else float(d.max()) if d.numel() else 0.0
            n_el += full.numel()
        if rank == 0:
            out['master'] = {'per_param_max_abs_diff': diffs, 'problems': missing, 'n_params': len(diffs),
                             'n_elements': n_el, 'ds_safe_get_full_fp32_param_differs': stale}

        # frozen params (ZeRO-1: from the module state dict; ZeRO-2/3: from frozen_param_fragments) and
        # persistent buffers (every rank's own copy) as the engine holds them now, vs the zero_to_fp32 reference
        ref = None
        if a.expected and a.expected.startswith('file:'):
            ref = expected if expected is not None else load_expected(a.expected)
        if ref is not None:
            frozen = {}
            for n, p in model.named_parameters():
                if p.requires_grad:
                    continue
                if hasattr(p, 'ds_id'):
                    with deepspeed.zero.GatheredParameters([p]):
                        t = p.data.detach().float().clone()
                else:
                    t = p.data.detach().float().clone()
                if n in ref:
                    frozen[n] = max_abs_diff(torch, t, ref[n])
            bufs = {n: max_abs_diff(torch, b.detach().float(), ref[n]) for n, b in model.named_buffers() if n in ref}
            worst = torch.tensor([max(bufs.values(), default=-1.0)], dtype=torch.float64)
            dist.all_reduce(worst, op=dist.ReduceOp.MAX)  # worst over all ranks' buffers
            if rank == 0:
                out['frozen'] = frozen
                out['buffers'] = {'names': sorted(bufs), 'max_abs_diff_all_ranks': float(worst.item()) if bufs else None}

        # the step(s) after the save, on the same global batch split over this world size
        w = G.loss_weight(spec['model'], rank, ws)
        out['steps'] = {}
        for s in range(a.first_step, a.first_step + a.steps):
            x, y = G.make_batch(spec['model'], s, rank, ws)
            scale0, skipped0 = G.loss_scale_of(engine), engine.skipped_steps
            loss = engine(x, y)
            if w != 1.0:
                loss = loss * w
            engine.backward(loss)
            engine.step()
            l = loss.detach().float().clone()
            dist.all_reduce(l)
            out['steps'][s + 1] = {'loss': l.item() / ws, 'loss_scale_used': scale0,
                                   'skipped': engine.skipped_steps != skipped0}
        out['final'] = {'global_steps': int(engine.global_steps), 'skipped_steps': int(engine.skipped_steps),
                        'loss_scale': G.loss_scale_of(engine)}
        if rank == 0:
            dump('result.json', out)
        dist.barrier()
    except Exception as e:
        dump(f'rank{rank}_error.json', {'phase': 'step', 'error': err_line(e), 'traceback': traceback.format_exc()})
        raise
    # everything is written: skip interpreter/gloo teardown, which now and then dies with SIGABRT
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def base_optimizer(engine):
    """The torch optimizer inside DeepSpeed's wrapper (ZeRO-1/2/3, BF16_Optimizer)."""
    o = engine.optimizer
    return getattr(o, 'optimizer', o)


def group_hparams(groups):
    """A param group's hyperparameters (lr, weight_decay, betas, eps, ...): plain values only, no 'params'."""
    out = []
    for g in groups:
        h = {}
        for k, v in g.items():
            if k == 'params':
                continue
            if isinstance(v, tuple):
                v = list(v)
            if v is None or isinstance(v, (bool, int, float, str)) or (
                    isinstance(v, list) and all(isinstance(x, (bool, int, float)) for x in v)):
                h[k] = v
        out.append(h)
    return out


def param_group_diffs(got, want):
    """Differences between the hyperparameters at load and the saved ones (keys present in both)."""
    if len(got) != len(want):
        return [f'{len(got)} param groups at load, {len(want)} saved']
    bad = []
    for i, (g, w) in enumerate(zip(got, want)):
        for k in sorted(set(g) & set(w)):
            if g[k] != w[k]:
                bad.append(f'group {i} {k}: {g[k]!r} at load, {w[k]!r} saved')
    return bad


def full_fp32_master(engine, p, dist, torch):
    """Full fp32 master copy of a trainable param (collective over the param's data-parallel group).

    ZeRO-3: DeepSpeed's safe_get_full_fp32_param (reads the flat fp32 sub-group partitions).
    ZeRO-1/2 and BF16_Optimizer: rebuilt from the optimizer's flat fp32 partition (the buffer the optimizer
    steps) and the param's fragment addresses, so that the check reads what training will use. DeepSpeed's
    own safe_get_full_fp32_param is run too and any difference is reported (`ds_safe_get_full_fp32_param_differs`):
    after a universal load DeepSpeed re-points the fragment mappings (base_optimizer.py
    load_hp_checkpoint_state_from_checkpoint_dir -> tensor_fragment.map_to_flat_opt_states).
    """
    from deepspeed.utils import safe_get_full_fp32_param
    if hasattr(p, 'ds_id'):
        return safe_get_full_fp32_param(p)
    if not hasattr(p, '_hp_mapping'):
        return None
    opt = engine.optimizer
    buf = torch.zeros(p.numel(), dtype=torch.float32)
    m = p._hp_mapping
    if m is not None:
        flats = getattr(opt, 'single_partition_of_fp32_groups', None) or getattr(opt, 'fp32_groups_flat_partition')
        flat = flats[m.param_group_index]
        lp, hp = m.lp_fragment_address, m.hp_fragment_address
        buf.narrow(0, lp.start, lp.numel).copy_(flat.detach().reshape(-1).narrow(0, hp.start, hp.numel).float())
    dist.all_reduce(buf, group=p._dp_group)
    return buf.view(p.shape)


def max_abs_diff(torch, t, e):
    t, e = t.reshape(-1).float(), e.detach().reshape(-1).float()
    if t.numel() != e.numel():
        return float('inf')
    if t.numel() == 0:
        return 0.0
    d = (t - e).abs()
    return float('inf') if torch.isnan(d).any() else float(d.max())


def err_line(e):
    msg = ' '.join(str(e).split())
    if not msg:  # e.g. a bare `assert`: say where it fired
        tb = traceback.extract_tb(e.__traceback__)
        if tb:
            fr = tb[-1]
            parts = fr.filename.split(os.sep)
            where = os.sep.join(parts[parts.index('deepspeed'):]) if 'deepspeed' in parts else os.path.basename(fr.filename)
            msg = f'(raised at {where}:{fr.lineno}: {fr.line})'
    return f'{type(e).__name__}: {msg}'[:1500]


def load_expected(spec):
    """spec: 'file:<fp32 state dict .pt>' or 'universal:<dir with zero/<param>/fp32.pt>'"""
    import torch
    kind, path = spec.split(':', 1)
    if kind == 'file':
        return torch.load(path, map_location='cpu', weights_only=False)
    out = {}
    for f in sorted(glob.glob(os.path.join(path, 'zero', '*', 'fp32.pt'))):
        t = torch.load(f, map_location='cpu', weights_only=False)
        out[os.path.basename(os.path.dirname(f))] = t['param'] if isinstance(t, dict) else t
    return out


# ----------------------------------------------------------------------------------------------
# launcher side
# ----------------------------------------------------------------------------------------------
def parse_cfg(name):
    return G.parse_cfg_name(name)


def make_ds_config(spec, ws, universal):
    # the generator's worker options: the spec's fields (+ its `legacy` under the worker's option name)
    ns = argparse.Namespace(**dict(spec, world_size=ws, load_universal=universal,
                                   legacy_serialization=spec.get('legacy', False)))
    ds = G.ds_config(ns)
    if universal:
        ds['checkpoint'] = {'load_universal': True}
    else:
        ds.pop('checkpoint', None)  # nothing about universal loading: DeepSpeed's defaults
    return ds


def find_orig(config, orig):
    if orig:
        return os.path.abspath(orig)
    for root in FIXTURE_ROOTS:
        d = os.path.join(root, config)
        if os.path.isdir(d):
            return d
    return None


def ckpt_state_at_save(d, tag):
    """State at the save, read from the original checkpoint's own files (model states + rank-0 optimizer
    states): global_steps, skipped_steps, global_samples, lr per param group, loss scaler."""
    import torch
    tdir = os.path.join(d, 'checkpoint', tag)
    out = {}
    ms = sorted(glob.glob(os.path.join(tdir, 'mp_rank_*_model_states.pt')) +
                glob.glob(os.path.join(tdir, 'zero_pp_rank_0_mp_rank_*_model_states.pt')))
    if ms:
        m = torch.load(ms[0], map_location='cpu', weights_only=False)
        for k in ('global_steps', 'skipped_steps', 'global_samples'):
            if k in m:
                out[k] = int(m[k])
    opt = sorted(glob.glob(os.path.join(tdir, '*zero_pp_rank_0_mp_rank_*optim_states.pt')))
    if opt:
        o = torch.load(opt[0], map_location='cpu', weights_only=False).get('optimizer_state_dict') or {}
        pg = find_param_groups(o)
        if pg:
            out['lr'] = [float(g['lr']) for g in pg]
            out['param_groups'] = group_hparams(pg)
        ls = o.get('loss_scaler')
        if ls is not None:
            st = {k: v for k, v in vars(ls).items() if isinstance(v, (bool, int, float)) and not isinstance(v, type)}
            out['loss_scaler'] = st
            out['loss_scale'] = float(st['cur_scale']) if 'cur_scale' in st else None
    return out


def find_param_groups(o, depth=0):
    if isinstance(o, dict):
        if 'param_groups' in o and isinstance(o['param_groups'], list):
            return o['param_groups']
        for v in o.values():
            r = find_param_groups(v, depth + 1) if depth < 3 else None
            if r:
                return r
    if isinstance(o, (list, tuple)) and o and depth < 3:
        return find_param_groups(o[0], depth + 1)
    return None


def orig_facts(d):
    """What the original run recorded: save step, losses after it, state at the save, final state."""
    log = json.load(open(os.path.join(d, 'train_log.json')))
    f = {'losses': {int(k): v for k, v in log['losses'].items()}, 'world_size': log.get('world_size'),
         'final': {'global_steps': log.get('global_steps'), 'skipped_steps': log.get('skipped_steps'),
                   'loss_scale': log.get('final_loss_scale')}}
    tag = None
    latest = os.path.join(d, 'checkpoint', 'latest')
    if os.path.exists(latest):
        tag = open(latest).read().strip()
    at = log.get('at_save')
    if at:
        f['save_step'] = at['global_steps']
        f['at_save'] = {'global_steps': at['global_steps'], 'skipped_steps': at['skipped_steps'],
                        'global_samples': at.get('global_samples'),
                        'loss_scale': (at.get('loss_scaler') or {}).get('cur_scale'), 'lr': at.get('lr'),
                        'loss_scaler': at.get('loss_scaler')}
        f['at_save_source'] = 'train_log.json at_save'
        if tag:  # what the log lacks (param group hyperparameters, ...) from the checkpoint's own files
            for k, v in ckpt_state_at_save(d, tag).items():
                if f['at_save'].get(k) is None:
                    f['at_save'][k] = v
    elif tag:
        f['at_save'] = ckpt_state_at_save(d, tag)
        f['save_step'] = f['at_save'].get('global_steps', int(tag.replace('global_step', '')))
        f['at_save_source'] = f'checkpoint/{tag} files'
    else:
        f['save_step'] = max(f['losses']) - 1
        f['at_save'] = {'global_steps': f['save_step']}
        f['at_save_source'] = 'losses'
    f['tag'] = tag
    return f


def expected_source(d, tag, explicit):
    if explicit:
        return f'file:{os.path.abspath(explicit)}'
    if d and os.path.exists(os.path.join(d, 'fp32_reference.pt')):
        return f"file:{os.path.join(d, 'fp32_reference.pt')}"
    if d and tag and glob.glob(os.path.join(d, 'universal', tag, 'zero', '*', 'fp32.pt')):
        return f"universal:{os.path.join(d, 'universal', tag)}"
    return None


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def launch_ranks(a, workdir, ckpt, universal, ws):
    env = G.env_for_ds()
    env.update({'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': str(free_port()), 'WORLD_SIZE': str(ws),
                'LOCAL_WORLD_SIZE': str(ws)})
    args = [PY, os.path.abspath(__file__), '_rank', '--workdir', workdir, '--ckpt', ckpt,
            '--config', a.config, '--world_size', str(ws), '--first_step', str(a.first_step),
            '--steps', str(a.steps), '--pg_timeout', str(a.pg_timeout)]
    args += (['--universal'] if universal else []) + (['--tag', a.tag] if a.tag else []) + (
        ['--expected', a.expected] if a.expected else [])
    procs = []
    for r in range(ws):
        lf = open(os.path.join(workdir, f'rank{r}.log'), 'w')
        procs.append((subprocess.Popen(args, env=dict(env, RANK=str(r), LOCAL_RANK=str(r)), stdout=lf,
                                       stderr=subprocess.STDOUT), lf))
    t0, first_fail, timed_out = time.time(), None, False
    while True:
        rcs = [p.poll() for p, _ in procs]
        if all(rc is not None for rc in rcs):
            break
        if first_fail is None and any(rc not in (None, 0) for rc in rcs):
            first_fail = time.time()
        # a failed rank leaves the others waiting in a collective: give them a moment to report, then stop them
        if (first_fail is not None and time.time() - first_fail > a.grace) or time.time() - t0 > a.timeout:
            timed_out = first_fail is None
            for p, _ in procs:
                if p.poll() is None:
                    p.kill()
            for p, _ in procs:
                p.wait()
            break
        time.sleep(0.1)
    for _, lf in procs:
        lf.close()
    return [p.returncode for p, _ in procs], timed_out, time.time() - t0


def tail(path, n=15):
    try:
        return ''.join(open(path, errors='replace').readlines()[-n:])
    except OSError:
        return ''


def rel(a, b):
    if a is None or b is None:
        return None
    return abs(a - b) / max(abs(b), 1e-30)


def within(x, tol):
    return x is not None and x == x and x <= tol


def jsonable(o):
    """NaN/inf are not JSON: write them as strings."""
    if isinstance(o, float) and (o != o or o in (float('inf'), float('-inf'))):
        return str(o)
    if isinstance(o, dict):
        return {k: jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [jsonable(v) for v in o]
    return o


def run_once(a, ckpt, universal, res, key_prefix='', ws=None):
    """Launch the ranks (M, or ws) once; returns (rank-0 result or None, exit code if it failed)."""
    ws = ws or a.world_size
    workdir = tempfile.mkdtemp(prefix='resume_check_', dir=a.workdir) if a.workdir else tempfile.mkdtemp(
        prefix='resume_check_')
    try:
        rcs, timed_out, wall = launch_ranks(a, workdir, ckpt, universal, ws)
        res[key_prefix + 'rank_returncodes'] = rcs
        res[key_prefix + 'wall_s'] = round(wall, 1)
        errs = {}
        for r in range(ws):
            p = os.path.join(workdir, f'rank{r}_error.json')
            if os.path.exists(p):
                errs[r] = json.load(open(p))
        if errs:
            by_msg = {}
            for r, e in sorted(errs.items()):
                by_msg.setdefault((e['phase'], e['error']), []).append(r)
            res[key_prefix + 'rank_errors'] = [{'phase': ph, 'error': msg, 'ranks': rs} for (ph, msg), rs in by_msg.items()]
            first = errs[min(errs)]
            res[key_prefix + 'error_traceback_rank%d' % min(errs)] = first['traceback'].strip().split('\n')[-14:]
            if any(e['phase'] == 'load' for e in errs.values()):
                res[key_prefix + 'load_error'] = next(e['error'] for r, e in sorted(errs.items()) if e['phase'] == 'load')
                return None, 2
            res[key_prefix + 'error'] = f"{first['phase']} failed: {first['error']}"
            return None, 3
        if not timed_out and any(rcs) and os.path.exists(os.path.join(workdir, 'result.json')):
            # all steps done and reported; a rank died afterwards (teardown)
            res[key_prefix + 'rank_exit_warning'] = f'rank return codes {rcs} after the result was complete'
        elif timed_out or any(rcs) or not os.path.exists(os.path.join(workdir, 'result.json')):
            res[key_prefix + 'error'] = ('timed out' if timed_out else f'rank return codes {rcs}') + ' without an error report'
            res[key_prefix + 'rank0_log_tail'] = tail(os.path.join(workdir, 'rank0.log')).split('\n')
            return None, 3
        return json.load(open(os.path.join(workdir, 'result.json'))), 0
    finally:
        if a.keep_workdir or a.workdir:
            res[key_prefix + 'workdir'] = workdir
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def reference_summary(out):
    """The parts of a run's rank-0 result that another run is compared with."""
    return {'losses': {int(s): v['loss'] for s, v in out['steps'].items()},
            'at_load': {k: out['at_load'].get(k) for k in ('global_steps', 'skipped_steps', 'global_samples',
                                                           'loss_scale', 'lr', 'param_groups')},
            'final': out['final']}


def get_reference(a, res, d, which):
    """which = 'universal': DeepSpeed's own universal resume of <orig>/universal at M (or --reference_json);
    'native': DeepSpeed's own resume of the unconverted <orig>/checkpoint at the original world size N (or
    --native_reference_json). Returns (summary or None, exit code if it could not be had)."""
    key = 'reference' if which == 'universal' else 'native_reference'
    js = a.reference_json if which == 'universal' else a.native_reference_json
    if js:
        try:
            ref = load_reference_json(js)
        except (OSError, ValueError) as e:
            res['error'] = f'{key} json: {e}'
            return None, 3
        ref['source'] = f'json:{os.path.abspath(js)}'
        return ref, 0
    if not (a.vs_ds_universal if which == 'universal' else a.vs_ds_native):
        return None, 0
    if which == 'universal':
        ckpt, universal, ws = os.path.join(d, 'universal'), True, a.world_size
        if not os.path.exists(os.path.join(ckpt, 'latest_universal')):
            res['error'] = f'--vs_ds_universal: no DeepSpeed universal checkpoint at {ckpt}'
            return None, 3
        text = "DeepSpeed's own universal resume of <orig>/universal (ds_to_universal output) at M"
    else:
        ckpt, universal, ws = os.path.join(d, 'checkpoint'), False, res['source_world_size']
        text = "DeepSpeed's own resume of the unconverted <orig>/checkpoint at its world size N"
    rres = {}
    rout, rrc = run_once(a, ckpt, universal, rres, ws=ws)
    res[key + '_run'] = rres
    if rout is None:
        res['error'] = f"{key}: {text} failed: " + str(rres.get('load_error') or rres.get('error'))
        return None, 3
    ref = reference_summary(rout)
    ref.update({'source': text, 'checkpoint': ckpt, 'universal': universal, 'world_size': ws})
    return ref, 0


def load_reference_json(path):
    r = json.load(open(path))
    if r.get('losses') is None or r.get('at_load') is None:
        raise ValueError(f'{path}: not a successful resume_check result (no losses / at_load)')
    return {'losses': {int(s): v for s, v in r['losses'].items()}, 'at_load': r['at_load'],
            'final': {'global_steps': r.get('global_steps'), 'skipped_steps': r.get('skipped_steps'),
                      'loss_scale': r.get('loss_scale')},
            'config': r.get('config'),
            'checkpoint': r.get('checkpoint'), 'universal': r.get('universal'), 'world_size': r.get('world_size')}


def check(a):
    t_start = time.time()
    res = {'ok': False, 'load_error': None, 'losses': None, 'global_steps': None, 'skipped_steps': None,
           'loss_scale': None, 'max_abs_diff_of_fp32_master_vs_expected': None}
    try:
        spec = parse_cfg(a.config)
    except ValueError as e:
        res['error'] = str(e)
        return res, 3
    if a.world_size > G.global_batch(spec['model']):
        res['error'] = (f"world size {a.world_size} > global batch {G.global_batch(spec['model'])} of model "
                        f"{spec['model']}: some rank would get no sample")
        return res, 3
    a.ckpt = os.path.abspath(a.ckpt)
    res.update({'checkpoint': a.ckpt, 'config': a.config, 'world_size': a.world_size, 'universal': a.universal,
                'stage': spec['stage'], 'precision': spec['precision'] + ('+bf16_optimizer' if spec['bf16_optimizer'] else '')})
    if not os.path.isdir(a.ckpt):
        res['load_error'] = f'not a directory: {a.ckpt}'
        return res, 2
    d = find_orig(a.config, a.orig)
    if d is None or not os.path.exists(os.path.join(d, 'train_log.json')):
        res['error'] = f'original fixture dir for {a.config} not found (looked in {FIXTURE_ROOTS}; use --orig)'
        return res, 3
    facts = orig_facts(d)
    res['source_world_size'] = facts['world_size']
    a.expected = expected_source(d, facts['tag'], a.expected)
    res['expected_fp32_source'] = a.expected.split(':', 1)[0] + ':' + os.path.relpath(a.expected.split(':', 1)[1], d) \
        if a.expected else None
    a.first_step = facts['save_step']
    later = sorted(s for s in facts['losses'] if s > a.first_step)
    if a.steps is None:
        a.steps = max(1, len(later))
    exp_losses = {s: facts['losses'].get(s) for s in range(a.first_step + 1, a.first_step + a.steps + 1)}

    if a.workdir:
        os.makedirs(a.workdir, exist_ok=True)

    out, rc = run_once(a, a.ckpt, a.universal, res)
    if out is None:
        return res, rc
    reference, rc = get_reference(a, res, d, 'universal')
    if rc:
        return res, rc
    native_ref, rc = get_reference(a, res, d, 'native')
    if rc:
        return res, rc

    # ---- compare -------------------------------------------------------------------------------
    steps = {int(k): v for k, v in out['steps'].items()}
    res['optimizer_class'] = out.get('optimizer_class')
    res['load_s_rank0'] = out.get('load_s')
    res['losses'] = {s: v['loss'] for s, v in sorted(steps.items())}
    res['expected_losses'] = exp_losses
    res['loss_rel_diff'] = {s: rel(res['losses'].get(s), e) for s, e in exp_losses.items()}
    res['skipped_per_step'] = {s: v['skipped'] for s, v in sorted(steps.items())}
    res['loss_scale_per_step'] = {s: v['loss_scale_used'] for s, v in sorted(steps.items())}
    fin = out['final']
    res['global_steps'], res['skipped_steps'], res['loss_scale'] = fin['global_steps'], fin['skipped_steps'], fin['loss_scale']
    res['at_load'] = {k: out['at_load'][k] for k in ('global_steps', 'skipped_steps', 'global_samples', 'loss_scale', 'lr',
                                                     'param_groups')}
    res['loss_scaler_at_load'] = out['at_load'].get('loss_scaler')
    res['expected_at_load'] = facts['at_save']
    res['expected_at_load_source'] = facts['at_save_source']
    full_run = a.steps == len(later)
    res['expected_final'] = facts['final'] if full_run else None
    m = out.get('master')
    if m and m['per_param_max_abs_diff']:
        vals = list(m['per_param_max_abs_diff'].values())
        res['max_abs_diff_of_fp32_master_vs_expected'] = float('nan') if any(v != v for v in vals) else max(vals)
        worst = max(m['per_param_max_abs_diff'].items(), key=lambda kv: (kv[1] != kv[1], kv[1]))
        res['fp32_master'] = {'params_compared': m['n_params'], 'elements_compared': m['n_elements'],
                              'worst_param': worst[0] if worst[1] != 0 else None, 'problems': m['problems']}
        if m.get('ds_safe_get_full_fp32_param_differs'):
            res['fp32_master']['note'] = (
                f"DeepSpeed's safe_get_full_fp32_param returns something else than the flat fp32 partition for "
                f"{len(m['ds_safe_get_full_fp32_param_differs'])} params "
                f"({', '.join(m['ds_safe_get_full_fp32_param_differs'][:4])}...); compared the flat partitions")
    elif m:
        res['fp32_master'] = {'params_compared': 0, 'problems': m['problems']}
    if 'frozen' in out:
        res['frozen_params_max_abs_diff'] = out['frozen']
        res['buffers_max_abs_diff'] = out['buffers']
    if reference is not None:
        res['reference'] = reference
        res['reference_loss_rel_diff'] = {s: rel(res['losses'].get(s), v) for s, v in sorted(reference['losses'].items())}
    if native_ref is not None:
        res['native_reference'] = native_ref
        res['native_reference_loss_rel_diff'] = {s: rel(res['losses'].get(s), v)
                                                 for s, v in sorted(native_ref['losses'].items())}

    # ---- verdict -------------------------------------------------------------------------------
    prec = spec['precision']
    rtol = a.rtol if prec == 'fp32' else a.rtol16
    first = a.first_step + 1
    same_ws = a.world_size == facts['world_size']
    full = a.require == 'full'
    C = {}  # name -> (passed, required)
    C['loaded'] = (True, True)
    if exp_losses.get(first) is None:
        C[f'step{first}_loss'] = (False, True)
        res['note'] = f'original run logged no loss for step {first}'
    else:
        C[f'step{first}_loss'] = (within(res['loss_rel_diff'][first], rtol), True)
    mx = res['max_abs_diff_of_fp32_master_vs_expected']
    if a.expected:
        C['fp32_master'] = (within(mx, a.master_atol) and not (m or {}).get('problems'), full)
    if out.get('frozen'):
        C['frozen_params'] = (all(within(v, a.master_atol) for v in out['frozen'].values()), full)
    if (out.get('buffers') or {}).get('names'):
        # a universal load restores no module state at all (engine.py _load_checkpoint: `if not
        # self.load_universal_checkpoint(): self.load_module_state_dict(...)`), so buffers keep their init values
        C['buffers'] = (within(out['buffers']['max_abs_diff_all_ranks'], 0.0), full and not a.universal)
        if a.universal:
            res['note_buffers'] = ("universal load: DeepSpeed restores no module buffers (engine.py _load_checkpoint "
                                   "skips load_module_state_dict), so buffers are reported, not required")
    ea = facts['at_save']
    for k in ('global_steps', 'skipped_steps', 'global_samples', 'loss_scale'):
        if ea.get(k) is not None:
            C[f'{k}_at_load'] = (res['at_load'][k] == ea[k], full)
    if ea.get('lr') is not None:
        C['lr_at_load'] = (len(res['at_load']['lr']) == len(ea['lr']) and
                           all(abs(x - y) <= 1e-12 for x, y in zip(res['at_load']['lr'], ea['lr'])), full)
    els, ls = ea.get('loss_scaler') or {}, res['loss_scaler_at_load'] or {}
    if els.get('dynamic'):  # the dynamic loss scaler's counters decide the next scale change
        keys = [k for k in ('cur_iter', 'last_overflow_iter', 'cur_hysteresis', 'scale_window', 'delayed_shift')
                if k in els]
        res['loss_scaler_compared'] = {k: [ls.get(k), els[k]] for k in keys}
        C['loss_scaler_at_load'] = (all(ls.get(k) == els[k] for k in keys), full)
    overflow_may_differ = prec == 'fp16' and not same_ws
    for s, e in exp_losses.items():
        if s != first and e is not None:
            C[f'step{s}_loss'] = (within(res['loss_rel_diff'][s], a.rtol_later), full and not overflow_may_differ)
    if full_run:
        for k in ('global_steps', 'skipped_steps', 'loss_scale'):
            if facts['final'].get(k) is not None:
                C[f'final_{k}'] = (res[k] == facts['final'][k], full and not overflow_may_differ)
    if ea.get('param_groups') is not None:
        got = res['at_load'].get('param_groups') or []
        bad = param_group_diffs(got, ea['param_groups'])
        res['param_groups_vs_saved'] = bad or 'equal'
        # DeepSpeed 0.19's ZeRO-3 universal loader gives every param group the hyperparameters of group 0
        # (zero/stage3.py load_hp_checkpoint_state_from_checkpoint_dir_stage3: `for param_group in
        # self.optimizer.param_groups: for key, value in optim_sd[...]["param_groups"][0].items()`)
        z3u = a.universal and spec['stage'] == 3
        C['param_groups_at_load'] = (not bad, full and not z3u)
        if z3u and bad:
            res['note_param_groups'] = ("ZeRO-3 universal load: DeepSpeed 0.19 copies param group 0's hyperparameters "
                                        "into every group (zero/stage3.py load_hp_checkpoint_state_from_checkpoint_dir_"
                                        "stage3); reported, not required")
    ref_steps = sorted(res['losses'])[:a.ref_steps] if a.ref_steps is not None else sorted(res['losses'])
    if reference is not None:
        for s in sorted(res['losses']):
            rv = reference['losses'].get(s)
            C[f'step{s}_loss_vs_reference'] = (rv is not None and within(rel(res['losses'][s], rv), a.ref_rtol),
                                               s in ref_steps)
    if native_ref is not None:
        for s in sorted(res['losses']):
            rv = native_ref['losses'].get(s)
            C[f'step{s}_loss_vs_native_reference'] = (rv is not None and within(rel(res['losses'][s], rv),
                                                                                a.native_rtol), True)
    res['checks'] = {k: {'passed': bool(p), 'required': r} for k, (p, r) in C.items()}
    res['tolerances'] = {f'step{first}_loss_rtol': rtol, 'later_steps_rtol': a.rtol_later, 'master_atol': a.master_atol,
                         'reference_rtol': a.ref_rtol, 'reference_steps': ref_steps, 'native_reference_rtol': a.native_rtol}
    if overflow_may_differ:
        res['note_fp16'] = ('fp16 at a world size other than the original: whether a step overflows depends on the '
                            'per-rank micro batch, so later losses / skipped_steps / loss scale are reported, not required')
    res['ok'] = all(p for p, r in C.values() if r)
    res['failed_checks'] = [k for k, (p, r) in C.items() if r and not p]
    res['elapsed_s'] = round(time.time() - t_start, 1)
    return res, 0 if res['ok'] else 1


def main():
    if len(sys.argv) > 1 and sys.argv[1] == '_rank':
        ap = argparse.ArgumentParser()
        ap.add_argument('_rank')
        for k in ('--workdir', '--ckpt', '--config', '--tag', '--expected'):
            ap.add_argument(k)
        for k in ('--world_size', '--first_step', '--steps', '--pg_timeout'):
            ap.add_argument(k, type=int)
        ap.add_argument('--universal', action='store_true')
        return rank_main(ap.parse_args())

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('ckpt', help='DeepSpeed save dir (or universal dir with --universal)')
    ap.add_argument('config', help='fixture config name it derives from, e.g. gpt_z2_bf16_ws2')
    ap.add_argument('world_size', type=int, help='number of ranks M to resume with')
    ap.add_argument('--universal', action='store_true', help="DeepSpeed's universal resume (load_universal: true)")
    ap.add_argument('--vs_ds_universal', action='store_true',
                    help="also run DeepSpeed's own universal resume of <orig>/universal at M and require the same "
                    'losses (within --ref_rtol)')
    ap.add_argument('--reference_json', help='compare the losses with this earlier resume_check JSON result instead')
    ap.add_argument('--ref_rtol', type=float, default=0.0, help='losses vs the reference (default 0: identical)')
    ap.add_argument('--ref_steps', type=int, help='require only the first K steps to match the reference (the '
                    'others are reported)')
    ap.add_argument('--vs_ds_native', action='store_true',
                    help="also run DeepSpeed's own resume of the unconverted <orig>/checkpoint at its own world size N "
                    'and require the same losses within --native_rtol')
    ap.add_argument('--native_reference_json', help='the JSON result of such a run, instead of --vs_ds_native')
    ap.add_argument('--native_rtol', type=float, default=1e-4,
                    help='losses vs the native reference (default 1e-4: at M != N the gradient reduction order differs, '
                    'so later steps may differ in the last bits, more so in bf16/fp16)')
    ap.add_argument('--orig', help='original fixture dir (default: tests/golden/deepspeed-0.19/CONFIG)')
    ap.add_argument('--expected', help='fp32 state dict to compare the fp32 master weights with '
                    '(default: <orig>/fp32_reference.pt, else <orig>/universal/<tag>/zero/*/fp32.pt)')
    ap.add_argument('--tag', help='passed to load_checkpoint (default: none, i.e. the `latest` file decides)')
    ap.add_argument('--steps', type=int, help='steps to run after loading (default: as many as the original '
                    'logged after its save: 1 for the fixtures)')
    ap.add_argument('--require', choices=['full', 'minimal'], default='full')
    ap.add_argument('--rtol', type=float, default=1e-6, help='first-step loss, fp32 (default 1e-6)')
    ap.add_argument('--rtol16', type=float, default=1e-5, help='first-step loss, fp16/bf16 (default 1e-5)')
    ap.add_argument('--rtol_later', type=float, default=1e-5, help='losses of later steps (default 1e-5)')
    ap.add_argument('--master_atol', type=float, default=0.0, help='fp32 master vs expected (default 0: exact)')
    ap.add_argument('--timeout', type=float, default=600, help='seconds for each launch of the ranks')
    ap.add_argument('--grace', type=float, default=15, help='seconds to wait for other ranks after one failed')
    ap.add_argument('--pg_timeout', type=int, default=120, help='gloo collective timeout (seconds)')
    ap.add_argument('--workdir', help='keep rank logs/results under this dir (default: a temp dir, removed)')
    ap.add_argument('--keep_workdir', action='store_true')
    ap.add_argument('--json_out', help='also write the JSON result to this file')
    a = ap.parse_args()
    if a.world_size < 1:
        ap.error('world_size must be >= 1')
    if a.vs_ds_universal and a.reference_json:
        ap.error('--vs_ds_universal and --reference_json exclude each other')
    if a.vs_ds_native and a.native_reference_json:
        ap.error('--vs_ds_native and --native_reference_json exclude each other')
    # stdout carries the JSON only: anything else (DeepSpeed's logger, which binds sys.stdout when it is
    # first imported, e.g. while unpickling the original's files) goes to stderr
    real_stdout, sys.stdout = sys.stdout, sys.stderr
    try:
        res, rc = check(a)
    except Exception as e:  # never leave a caller without JSON
        res, rc = {'ok': False, 'load_error': None, 'error': err_line(e), 'traceback': traceback.format_exc()}, 3
    text = json.dumps(jsonable(res), indent=1, default=str)
    real_stdout.write(text + '\n')
    real_stdout.flush()
    if a.json_out:
        with open(a.json_out, 'w') as f:
            f.write(text + '\n')
    sys.exit(rc)


if __name__ == '__main__':
    main()
