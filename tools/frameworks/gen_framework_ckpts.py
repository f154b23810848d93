#!/usr/bin/env python3
"""Checkpoint fixtures written by the HF Trainer and by Lightning (DeepSpeed ZeRO-2/3, CPU, gloo), and resume checks.

Sub-commands:

  gen      train each case with 2 ranks and keep the checkpoint folder the framework wrote
           (tests/golden/frameworks/<case>/), plus losses.json (steps 1-5; the checkpoint is taken at step 3)
  resume   resume a case from a checkpoint folder (e.g. the output of `ucp-reshard reshard`) with M ranks, print
           JSON: losses of the steps after the resume (vs. the fixture's), the global steps, and, right after the
           load, the fp32 master weights compared bit-exactly with DeepSpeed's own zero_to_fp32 of the source and
           fp32/exp_avg/exp_avg_sq with DeepSpeed's own ds_to_universal of the source; exit status 0 iff all
           checks pass. --universal: resume through DeepSpeed's universal checkpoint instead (comparison path).
  hf-worker / pl-worker   one rank (spawned by gen/resume)

Cases: hf_z2_bf16_ws2, hf_z3_bf16_ws2 (transformers Trainer, TrainingArguments(deepspeed=<dict>, bf16=True,
use_cpu=True)); lightning_z2_ws2, lightning_z3_ws2 (lightning.pytorch Trainer, DeepSpeedStrategy(stage=S),
precision='bf16-mixed'). Model: a tiny LlamaForCausalLM built from a LlamaConfig (no hub access), tokenizer: a
WordLevel `tokenizers` tokenizer wrapped in PreTrainedTokenizerFast. See README.md for the work-arounds.

Everything runs with the interpreter that runs this script (or $UCP_FW_PYTHON for the ranks).
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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'deepspeed-cpu'))
from gen_deepspeed_ckpts import wait_for_ranks  # noqa: E402  (one rank launcher for both generators)

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.abspath(os.path.join(HERE, '..', '..', 'tests', 'golden', 'frameworks'))
PY = os.environ.get('UCP_FW_PYTHON') or sys.executable

# tiny Llama (head_dim 8, grouped-query attention 3 q heads / 1 kv head, untied lm_head)
VOCAB, HID, INTER, LAYERS, HEADS, KV_HEADS, MAXPOS = 97, 24, 40, 2, 3, 1, 16
PAD_ID, BOS_ID, EOS_ID = 1, 2, 3
SEQ = 8
GLOBAL_BATCH = 12  # divisible by 1, 2, 3, 4, 6, 12: the world sizes a case can be resumed at
LR = 2e-2
WEIGHT_DECAY = 0.01
MODEL_SEED = 1234
DATA_SEED = 0
TOTAL_STEPS = 5
SAVE_STEP = 3
# HF: one epoch of 5 steps (60 samples, random sampler seeded by TrainingArguments.seed). Lightning: epochs of
# 3 steps (36 samples, DistributedSampler(shuffle=True)) so that the step-3 checkpoint is at an epoch boundary
# (Lightning does not skip batches of a partly trained epoch when it resumes with a plain DataLoader).
HF_SAMPLES = TOTAL_STEPS * GLOBAL_BATCH
PL_SAMPLES = SAVE_STEP * GLOBAL_BATCH

CASES = {
    'hf_z2_bf16_ws2': {'framework': 'hf', 'stage': 2, 'precision': 'bf16', 'world_size': 2},
    'hf_z3_bf16_ws2': {'framework': 'hf', 'stage': 3, 'precision': 'bf16', 'world_size': 2},
    'lightning_z2_ws2': {'framework': 'lightning', 'stage': 2, 'precision': 'bf16-mixed', 'world_size': 2},
    'lightning_z3_ws2': {'framework': 'lightning', 'stage': 3, 'precision': 'bf16-mixed', 'world_size': 2},
}
RECOVERY_SCRIPTS = ('zero_to_fp32.py', 'zero_to_torch.py')


# ------------------------------------------------------------------------------------------------------------
# rank side: common pieces
# ------------------------------------------------------------------------------------------------------------
def rank_setup():
    """Per-rank work-arounds for DeepSpeed on CPU (same as tools/deepspeed-cpu/gen_deepspeed_ckpts.py):
    DS_ACCELERATOR=cpu etc. come from the launcher's environment; here the optional shared-memory all-reduce op
    (`deepspeed_shm_comm`, JIT-compiled by deepspeed/comm/torch.py build_shm_op when the comm backend is built) is
    marked incompatible in DeepSpeed 0.19's lazily probed and cached `deepspeed.ops.__compatible_ops__`, so the
    plain gloo collectives are used. Must run before any process group is created."""
    import torch
    torch.set_num_threads(1)
    import deepspeed
    getattr(deepspeed.ops, '__compatible_ops__')['deepspeed_shm_comm'] = False


def llama_config():
    from transformers import LlamaConfig
    return LlamaConfig(vocab_size=VOCAB, hidden_size=HID, intermediate_size=INTER, num_hidden_layers=LAYERS,
                       num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=MAXPOS,
                       tie_word_embeddings=False, pad_token_id=PAD_ID, bos_token_id=BOS_ID, eos_token_id=EOS_ID)


def build_tokenizer():
    """A WordLevel tokenizer over the 97 ids (<unk> <pad> <s> </s> w4 .. w96), whitespace pre-tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {'<unk>': 0, '<pad>': PAD_ID, '<s>': BOS_ID, '</s>': EOS_ID}
    vocab.update({f'w{i}': i for i in range(4, VOCAB)})
    tk = Tokenizer(models.WordLevel(vocab, unk_token='<unk>'))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token='<unk>', pad_token='<pad>', bos_token='<s>',
                                   eos_token='</s>', model_max_length=MAXPOS)


def token_dataset(n):
    """n sequences of SEQ ordinary tokens (ids 4..96): a random first token, then a fixed permutation of the 93
    ordinary ids (next = 4 + (5 * (prev - 4) + 7) mod 93), so that the loss drops within a few steps; labels =
    input_ids (the model shifts them)."""
    import torch

    class TokenDataset(torch.utils.data.Dataset):

        def __init__(self):
            n_ord = VOCAB - 4
            first = torch.randint(0, n_ord, (n, ), generator=torch.Generator().manual_seed(DATA_SEED))
            cols = [first]
            for _ in range(SEQ - 1):
                cols.append((5 * cols[-1] + 7) % n_ord)
            self.ids = torch.stack(cols, 1) + 4

        def __len__(self):
            return n

        def __getitem__(self, i):
            return {'input_ids': self.ids[i], 'labels': self.ids[i].clone(), 'attention_mask': torch.ones(SEQ, dtype=torch.long)}

    return TokenDataset()


def state_check(named_params, ref_dir, univ_dir=None):
    """Collective (every rank calls it with the same parameter order), right after the (resume) load:

    - `fp32_master`: the fp32 master copy of each trainable parameter as DeepSpeed now holds it
      (deepspeed.utils.safe_get_full_fp32_param, gathered over the ranks) vs. DeepSpeed's own zero_to_fp32 of the
      source checkpoint (get_fp32_state_dict_from_zero_checkpoint(ref_dir)), bit-exact;
    - `optimizer` (when univ_dir, DeepSpeed's ds_to_universal of the source, is given): fp32 / exp_avg / exp_avg_sq
      (safe_get_full_fp32_param / safe_get_full_optimizer_state) vs. univ_dir/zero/<name>/<key>.pt, bit-exact,
      and the Adam step counts of the local optimizer partitions vs. univ_dir/zero/<name>/step.pt.
    Returns the summary on rank 0, None elsewhere."""
    import torch
    import torch.distributed as dist
    from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_optimizer_state
    rank = dist.get_rank()
    ref = None
    if rank == 0 and ref_dir:
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
        ref = get_fp32_state_dict_from_zero_checkpoint(ref_dir)

    def same_bits(a, b):
        return (a.dtype == b.dtype and a.shape == b.shape
                and torch.equal(a.contiguous().view(-1).view(torch.uint8), b.contiguous().view(-1).view(torch.uint8)))

    def diff(a, b):
        return (a.float() - b.float()).abs().max().item() if a.shape == b.shape and a.numel() else None

    fm = {'reference': ref_dir, 'n_params': 0, 'n_exact': 0, 'mismatched': [], 'not_in_reference': [],
          'no_fp32_master': []}
    op = {'reference': univ_dir, 'n_checked': 0, 'n_exact': 0, 'mismatched': [], 'missing': []} if univ_dir else None
    seen = set()
    for name, p in named_params:
        if not p.requires_grad:
            continue
        full = safe_get_full_fp32_param(p)
        states = {k: safe_get_full_optimizer_state(p, k) for k in ('exp_avg', 'exp_avg_sq')} if univ_dir else {}
        if rank != 0:
            continue
        fm['n_params'] += 1
        seen.add(name)
        if full is None:
            fm['no_fp32_master'].append(name)
            continue
        full = full.detach().cpu()
        if ref is not None:
            if name not in ref:
                fm['not_in_reference'].append(name)
            elif same_bits(full, ref[name]):
                fm['n_exact'] += 1
            else:
                fm['mismatched'].append({'name': name, 'dtype': str(full.dtype), 'ref_dtype': str(ref[name].dtype),
                                         'shape': list(full.shape), 'ref_shape': list(ref[name].shape),
                                         'max_abs_diff': diff(full, ref[name])})
        if univ_dir:
            for key, t in [('fp32', full)] + list(states.items()):
                f = os.path.join(univ_dir, 'zero', name, f'{key}.pt')
                if t is None or not os.path.exists(f):
                    op['missing'].append(f'{name}/{key}')
                    continue
                u = torch.load(f, map_location='cpu', weights_only=False)
                u = u['param'] if isinstance(u, dict) else u  # ZeRO-1/2: {'param', 'cat_dim'}; ZeRO-3: flat tensor
                t = t.detach().cpu().reshape(u.shape) if t.numel() == u.numel() else t.detach().cpu()
                op['n_checked'] += 1
                if same_bits(t, u):
                    op['n_exact'] += 1
                else:
                    op['mismatched'].append({'name': f'{name}/{key}', 'max_abs_diff': diff(t, u)})
    if rank == 0:
        if ref is not None:
            fm['reference_only'] = sorted(k for k in ref if k not in seen)
            fm['all_exact'] = (fm['n_exact'] == fm['n_params'] and not fm['mismatched']
                               and not fm['not_in_reference'] and not fm['no_fp32_master'])
        if op is not None:
            ustep = set()
            for name in seen:
                f = os.path.join(univ_dir, 'zero', name, 'step.pt')
                if os.path.exists(f):
                    v = torch.load(f, map_location='cpu', weights_only=False)  # ZeRO-1/2 only
                    ustep.add(float(v.item() if hasattr(v, 'item') else v))
            op['reference_steps'] = sorted(ustep)
            op['all_exact'] = op['n_exact'] == op['n_checked'] and not op['mismatched'] and not op['missing']
        return {'fp32_master': fm, 'optimizer': op}
    return None


def optimizer_steps(engine):
    """Distinct Adam 'step' values in this rank's (partitioned) base optimizer state."""
    opt = getattr(engine.optimizer, 'optimizer', engine.optimizer)
    out = set()
    for st in opt.state.values():
        if 'step' in st:
            v = st['step']
            out.add(float(v.item() if hasattr(v, 'item') else v))
    return sorted(out)


def link_optimizer_state_views(engine):
    """ZeRO-1/2 only: DeepSpeed links each parameter's views into the partitioned Adam state lazily, at the
    first optimizer step (stage_1_and_2.py step -> _lazy_init_hp_params_optimizer_state); after a native load and
    before that step safe_get_full_optimizer_state fails (`'NoneType' is not iterable`,
    tensor_fragment.py get_optim_state_fragment). Create those views now with DeepSpeed's own public helper
    deepspeed.utils.lazy_init_hp_params_optimizer_state, exactly as the step would (read-only: it only narrows
    the loaded state tensors; the step redoes it)."""
    from deepspeed.utils import lazy_init_hp_params_optimizer_state
    opt = engine.optimizer
    if hasattr(opt, 'single_partition_of_fp32_groups') and hasattr(opt, 'bit16_groups'):
        for i in range(len(opt.optimizer.param_groups)):
            lazy_init_hp_params_optimizer_state(opt.bit16_groups[i], opt.single_partition_of_fp32_groups[i],
                                                opt.optimizer.state)


def probe_after_load(engine, a, out):
    """Collective: state_check + every rank's Adam step counts, into out (rank 0)."""
    import torch.distributed as dist
    if a.univ_ref:
        link_optimizer_state_views(engine)
    res = state_check(list(engine.module.named_parameters()), a.ref, a.univ_ref)
    steps = [None] * dist.get_world_size()
    dist.all_gather_object(steps, optimizer_steps(engine))
    if res is not None:
        out.update(res)
        out['optimizer_steps_per_rank'] = steps


def allreduce_mean(x):
    import torch
    import torch.distributed as dist
    t = x.detach().float().reshape(1).clone()
    dist.all_reduce(t)
    return t.item() / dist.get_world_size()


def versions():
    import importlib.metadata as md
    out = {'python': sys.version.split()[0]}
    for p in ('torch', 'deepspeed', 'transformers', 'accelerate', 'lightning', 'tokenizers', 'safetensors'):
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            pass
    return out


# ------------------------------------------------------------------------------------------------------------
# HF Trainer rank
# ------------------------------------------------------------------------------------------------------------
def hf_ds_config(stage, load_universal=False):
    """A DeepSpeed config as the HF docs write it ("auto" values filled in from TrainingArguments). No "optimizer"
    / "scheduler" section: the Trainer builds torch AdamW and its linear schedule and hands both to DeepSpeed."""
    zero = {'stage': stage, 'overlap_comm': False, 'contiguous_gradients': True, 'reduce_bucket_size': 'auto'}
    if stage == 2:
        zero.update({'allgather_partitions': True, 'allgather_bucket_size': 5e8, 'reduce_scatter': True})
    else:
        zero.update({'sub_group_size': 1e9, 'stage3_prefetch_bucket_size': 'auto',
                     'stage3_param_persistence_threshold': 'auto', 'stage3_max_live_parameters': 1e9,
                     'stage3_max_reuse_distance': 1e9, 'stage3_gather_16bit_weights_on_model_save': True})
    cfg = {'bf16': {'enabled': 'auto'}, 'zero_optimization': zero, 'gradient_accumulation_steps': 'auto',
           'gradient_clipping': 'auto', 'train_batch_size': 'auto', 'train_micro_batch_size_per_gpu': 'auto',
           'steps_per_print': 1000, 'wall_clock_breakdown': False}
    if load_universal:  # resume --universal: DeepSpeed's own universal-checkpoint load (the oracle path)
        cfg['checkpoint'] = {'load_universal': True}
    return cfg


def hf_worker(a):
    rank_setup()
    import torch
    import torch.distributed as dist
    from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments

    ws = a.world_size
    resume = a.mode == 'resume'
    save = (not resume) or bool(a.output_dir_keep)
    # Work-around (README.md): with use_cpu=True accelerate creates the gloo process group itself
    # (accelerate/state.py, MULTI_CPU branch: torch.distributed.init_process_group) instead of through
    # deepspeed.init_distributed as its GPU DeepSpeed branch does, so deepspeed.comm is not initialized when
    # from_config runs under deepspeed.zero.Init (ZeRO-3): DeepSpeedConfig then takes world_size 1 and fails
    # "train_batch_size is not equal to micro_batch_per_gpu * gradient_acc_step * world_size 12 != 6 * 1 * 1"
    # (deepspeed/runtime/config.py _batch_assertion). Initializing deepspeed.comm first, as accelerate does on
    # GPUs, fixes it; accelerate then finds torch.distributed initialized and uses that group.
    import deepspeed
    deepspeed.init_distributed(dist_backend='gloo')
    # use_cpu=True is what lets DeepSpeed run here: without it TrainingArguments refuses bf16 on a machine
    # without a bf16 GPU (training_args.py _validate_args). PartialState(cpu=True) then sets up a gloo
    # MULTI_CPU process group, and the Trainer's Accelerator(deepspeed_plugin=...) switches the state to
    # DistributedType.DEEPSPEED (see README.md).
    args = TrainingArguments(
        output_dir=a.output_dir, per_device_train_batch_size=GLOBAL_BATCH // ws, gradient_accumulation_steps=1,
        max_steps=TOTAL_STEPS, learning_rate=LR, weight_decay=WEIGHT_DECAY, lr_scheduler_type='linear',
        warmup_steps=0, max_grad_norm=1.0, bf16=True, use_cpu=True, deepspeed=hf_ds_config(a.stage, a.load_universal),
        save_strategy='steps' if save else 'no', save_steps=SAVE_STEP, logging_steps=1, report_to='none',
        seed=42, disable_tqdm=True, dataloader_num_workers=0)
    assert args.world_size == ws, (args.world_size, ws)
    # built after TrainingArguments (as the HF docs ask for ZeRO-3): from_config then runs under zero.Init
    torch.manual_seed(MODEL_SEED)
    model = AutoModelForCausalLM.from_config(llama_config())
    tok = build_tokenizer()
    out = {'rank0_only': True}

    class Probe(TrainerCallback):
        """Right after the (resume) load: global steps and the fp32 master weights; per step: nothing (the
        Trainer's own logged loss is used, it is the mean over the ranks at full precision)."""

        def on_train_begin(self, args_, state, control, **kw):
            eng = trainer.model_wrapped
            out['engine_class'] = type(eng).__name__
            out['optimizer_class'] = type(eng.optimizer).__name__
            out['accelerate_distributed_type'] = str(trainer.accelerator.distributed_type)
            out['trainer_global_step_at_begin'] = int(state.global_step)
            out['deepspeed_global_steps_at_begin'] = int(getattr(eng, 'global_steps', -1))
            out['epoch_at_begin'] = state.epoch
            if resume:
                probe_after_load(eng, a, out)

    trainer = Trainer(model=model, args=args, train_dataset=token_dataset(HF_SAMPLES), processing_class=tok,
                      callbacks=[Probe()])
    rng = {'rank': dist.get_rank(), 'calls': []}
    if resume:
        # observe (not change) the Trainer's own RNG restore: which file it looks for (rng_state_<process_index>.pth,
        # or rng_state.pth at world size 1), whether it is there, and whether the CPU generator holds that file's
        # state afterwards
        load_rng = trainer._load_rng_state

        def load_rng_observed(checkpoint):
            name = f'rng_state_{args.process_index}.pth' if args.world_size > 1 else 'rng_state.pth'
            f = os.path.join(checkpoint, name) if checkpoint else None
            call = {'file': name, 'exists': bool(f) and os.path.isfile(f)}
            load_rng(checkpoint)
            if call['exists']:
                saved = torch.load(f, weights_only=False)
                call['cpu_state_restored'] = bool(torch.equal(torch.random.get_rng_state(), saved['cpu']))
            rng['calls'].append(call)

        trainer._load_rng_state = load_rng_observed
    trainer.train(resume_from_checkpoint=a.ckpt if resume else None)
    hist = trainer.state.log_history
    if resume:
        rng_all = [None] * dist.get_world_size()
        dist.all_gather_object(rng_all, rng)
        out['rng_restore'] = rng_all
    out['losses'] = {str(h['step']): h['loss'] for h in hist if 'loss' in h}
    out['epoch'] = {str(h['step']): h.get('epoch') for h in hist if 'loss' in h}
    out['grad_norm'] = {str(h['step']): h.get('grad_norm') for h in hist if 'loss' in h}
    out['learning_rate'] = {str(h['step']): h.get('learning_rate') for h in hist if 'loss' in h}
    out['final_global_step'] = int(trainer.state.global_step)
    out['deepspeed_global_steps_final'] = int(trainer.model_wrapped.global_steps)
    out['world_size'] = ws
    if dist.get_rank() == 0:
        json.dump(out, open(a.result, 'w'), indent=1)
    dist.barrier()
    dist.destroy_process_group()


# ------------------------------------------------------------------------------------------------------------
# Lightning rank
# ------------------------------------------------------------------------------------------------------------
def pl_worker(a):
    rank_setup()
    import torch
    import torch.distributed as dist
    import lightning.pytorch as pl
    from lightning.pytorch.accelerators import CUDAAccelerator
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.strategies import DeepSpeedStrategy
    from transformers import LlamaForCausalLM

    ws = a.world_size
    resume = a.mode == 'resume'

    class CPUAsCUDAAccelerator(CUDAAccelerator):
        """Work-around (README.md): lightning/pytorch/strategies/deepspeed.py DeepSpeedStrategy.setup_environment
        raises "The DeepSpeed strategy is only supported on CUDA GPUs but `CPUAccelerator` is used." unless the
        accelerator is a CUDAAccelerator, and with CPU devices (index None) _validate_device_index_selection
        raises and deepspeed.initialize(args=Namespace(device_rank=None)) fails (`None >= 0`). This accelerator
        passes the isinstance check and gives rank r the device torch.device('cpu', r) (tensors on it are plain
        CPU tensors; DeepSpeed's CPU accelerator ignores the index). No CUDA call is made."""

        def setup_device(self, device):
            pass

        def setup(self, trainer):
            pass

        def teardown(self):
            pass

        def get_device_stats(self, device):
            return {}

        @staticmethod
        def parse_devices(devices):
            return list(range(devices)) if isinstance(devices, int) else list(devices)

        @staticmethod
        def get_parallel_devices(devices):
            return [torch.device('cpu', i) for i in devices]

        @staticmethod
        def auto_device_count():
            return 1

        @staticmethod
        def is_available():
            return True

    class TinyLlamaModule(pl.LightningModule):

        def __init__(self):
            super().__init__()
            torch.manual_seed(MODEL_SEED)
            self.model = LlamaForCausalLM(llama_config())

        def training_step(self, batch, batch_idx):
            return self.model(**batch).loss

        def configure_optimizers(self):
            opt = torch.optim.AdamW(self.parameters(), lr=LR, weight_decay=WEIGHT_DECAY, foreach=False)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / TOTAL_STEPS))
            return {'optimizer': opt, 'lr_scheduler': {'scheduler': sched, 'interval': 'step'}}

        def train_dataloader(self):
            # Lightning replaces the sampler by DistributedSampler(shuffle=True, seed=PL_GLOBAL_SEED)
            return torch.utils.data.DataLoader(token_dataset(PL_SAMPLES), batch_size=GLOBAL_BATCH // ws, shuffle=True)

    out = {'losses': {}, 'lr': {}}

    class Probe(pl.Callback):

        def on_train_start(self, trainer, pl_module):
            eng = trainer.strategy.deepspeed_engine
            out['engine_class'] = type(eng).__name__
            out['optimizer_class'] = type(eng.optimizer).__name__
            out['trainer_global_step_at_begin'] = int(trainer.global_step)
            out['deepspeed_global_steps_at_begin'] = int(eng.global_steps)
            out['epoch_at_begin'] = int(trainer.current_epoch)
            if resume:
                probe_after_load(eng, a, out)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            loss = outputs['loss'] if isinstance(outputs, dict) else outputs
            out['losses'][str(trainer.global_step)] = allreduce_mean(loss)
            out['lr'][str(trainer.global_step)] = trainer.optimizers[0].param_groups[0]['lr']
            out.setdefault('epoch', {})[str(trainer.global_step)] = int(trainer.current_epoch)

    pl.seed_everything(42, workers=True)
    callbacks = [Probe()]
    if not resume:
        # the step-3 checkpoint (a folder <dirpath>/epoch=0-step=3.ckpt/ written by DeepSpeed's save_checkpoint)
        callbacks.append(ModelCheckpoint(dirpath=a.output_dir, every_n_train_steps=SAVE_STEP, save_top_k=-1))
    strategy = DeepSpeedStrategy(stage=a.stage, process_group_backend='gloo')
    if a.load_universal:  # resume --universal: DeepSpeed's own universal-checkpoint load (the oracle path)
        strategy.config.setdefault('checkpoint', {})['load_universal'] = True
    trainer = pl.Trainer(accelerator=CPUAsCUDAAccelerator(), devices=ws, num_nodes=1, strategy=strategy,
                         precision=a.precision, max_steps=TOTAL_STEPS, gradient_clip_val=1.0, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
                         default_root_dir=a.output_dir, enable_checkpointing=not resume, num_sanity_val_steps=0)
    trainer.fit(TinyLlamaModule(), ckpt_path=a.ckpt if resume else None)
    if resume and a.output_dir_keep:
        trainer.save_checkpoint(os.path.join(a.output_dir, f'step={trainer.global_step}.ckpt'))
    out['final_global_step'] = int(trainer.global_step)
    out['deepspeed_global_steps_final'] = int(trainer.strategy.deepspeed_engine.global_steps)
    out['world_size'] = ws
    if dist.get_rank() == 0:
        json.dump(out, open(a.result, 'w'), indent=1)
    dist.barrier()
    dist.destroy_process_group()


# ------------------------------------------------------------------------------------------------------------
# launcher side
# ------------------------------------------------------------------------------------------------------------
def rank_env():
    env = dict(os.environ)
    env.update({'DS_ACCELERATOR': 'cpu', 'OMP_NUM_THREADS': '1', 'CUDA_VISIBLE_DEVICES': '',
                'TORCHDYNAMO_DISABLE': '1', 'TOKENIZERS_PARALLELISM': 'false', 'HF_HUB_OFFLINE': '1',
                'TRANSFORMERS_OFFLINE': '1', 'PYTHONHASHSEED': '0'})
    env.setdefault('DS_BUILD_OPS', '0')
    return env


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def launch(ws, worker_argv, logdir, cwd, timeout=600):
    """One process per rank (RANK/LOCAL_RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT, as torchrun would set them);
    rank r logs to <logdir>/rank<r>.log. Returns the exit status (0 if every rank exited 0)."""
    env = rank_env()
    env.update({'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': str(free_port()), 'WORLD_SIZE': str(ws),
                'LOCAL_WORLD_SIZE': str(ws), 'NODE_RANK': '0', 'GROUP_RANK': '0'})
    os.makedirs(logdir, exist_ok=True)
    procs, files = [], []
    for r in range(ws):
        files.append(open(os.path.join(logdir, f'rank{r}.log'), 'w'))
        procs.append(subprocess.Popen([PY, os.path.abspath(__file__)] + worker_argv,
                                      env=dict(env, RANK=str(r), LOCAL_RANK=str(r)), cwd=cwd, stdout=files[-1],
                                      stderr=subprocess.STDOUT))
    rcs = wait_for_ranks(procs, timeout)
    for f in files:
        f.close()
    return next((rc for rc in rcs if rc), 0)


def last_error(logdir):
    """The last exception line of the first rank log that has a traceback (and its innermost frame)."""
    import re
    for f in sorted(glob.glob(os.path.join(logdir, 'rank*.log'))):
        lines = [re.sub(r'^\[rank\d+\]: ', '', l.rstrip()) for l in open(f, errors='replace')]
        if any(l.startswith('Traceback') for l in lines):
            errs = [i for i, l in enumerate(lines) if l and not l.startswith(' ') and ('Error' in l or 'Exception' in l)]
            i = errs[-1] if errs else len(lines) - 1
            frames = [l.strip() for l in lines[:i] if l.strip().startswith('File "')]
            return f'{os.path.basename(f)}: ' + lines[i] + (f' (at {frames[-1]})' if frames else '')
    return ''


def worker_argv(case, mode, world_size, output_dir, result, ckpt=None, ref=None, keep=False, univ_ref=None,
                load_universal=False):
    c = CASES[case]
    argv = ['hf-worker' if c['framework'] == 'hf' else 'pl-worker', '--stage', str(c['stage']), '--precision',
            c['precision'], '--world-size', str(world_size), '--mode', mode, '--output-dir', output_dir,
            '--result', result]
    if ckpt:
        argv += ['--ckpt', ckpt]
    if ref:
        argv += ['--ref', ref]
    if keep:
        argv.append('--output-dir-keep')
    if univ_ref:
        argv += ['--univ-ref', univ_ref]
    if load_universal:
        argv.append('--load-universal')
    return argv


def ds_to_universal(ckpt, out_dir, logfile):
    """DeepSpeed's own `python -m deepspeed.checkpoint.ds_to_universal` on <ckpt>/<tag in latest>; returns
    out_dir/<tag> (None on failure)."""
    tag = open(os.path.join(ckpt, 'latest')).read().strip()
    dst = os.path.join(out_dir, tag)
    cmd = [PY, '-m', 'deepspeed.checkpoint.ds_to_universal', '--input_folder', os.path.join(ckpt, tag),
           '--output_folder', dst, '--inject_missing_state', '--num_extract_workers', '1', '--num_merge_workers', '1']
    with open(logfile, 'w') as lf:
        rc = subprocess.call(cmd, env=rank_env(), stdout=lf, stderr=subprocess.STDOUT)
    return dst if rc == 0 else None


def universal_checkpoint_dir(ckpt, dst, logfile):
    """A copy of the framework checkpoint folder ckpt in which DeepSpeed's files are replaced by DeepSpeed's
    universal checkpoint of them (<dst>/<tag>/ + <dst>/latest_universal); the framework's own files (trainer
    state, RNG states, scheduler, config, tokenizer) are copied as they are."""
    tag = open(os.path.join(ckpt, 'latest')).read().strip()
    os.makedirs(dst)
    for name in os.listdir(ckpt):
        if name in (tag, 'latest') or name in RECOVERY_SCRIPTS:
            continue
        src = os.path.join(ckpt, name)
        (shutil.copytree if os.path.isdir(src) else shutil.copy)(src, os.path.join(dst, name))
    if ds_to_universal(ckpt, dst, logfile) is None:
        return None
    with open(os.path.join(dst, 'latest_universal'), 'w') as f:
        f.write(tag)
    return dst


def checkpoint_dir(case_dir, case):
    """The checkpoint folder of a generated case: <case>/checkpoint-3 (HF) or <case>/epoch=0-step=3.ckpt."""
    pat = f'checkpoint-{SAVE_STEP}' if CASES[case]['framework'] == 'hf' else f'*step={SAVE_STEP}.ckpt'
    hits = sorted(glob.glob(os.path.join(case_dir, pat)))
    return hits[0] if hits else None


def tree_listing(d):
    out = {}
    for root, _, files in os.walk(d):
        for f in files:
            p = os.path.join(root, f)
            out[os.path.relpath(p, d)] = os.path.getsize(p)
    return dict(sorted(out.items()))


def gen_case(case, out_root, keep_logs=True):
    c = CASES[case]
    ws = c['world_size']
    case_dir = os.path.join(out_root, case)
    # fixed scratch path: Lightning's ModelCheckpoint stores its (absolute) dirpath in the checkpoint
    stage_root = os.path.join(tempfile.gettempdir(), f'ucp_fw_gen_{case}')
    shutil.rmtree(stage_root, ignore_errors=True)
    os.makedirs(stage_root)
    try:
        # the rank processes run in a scratch dir with a relative output_dir (=case name): the Trainer's
        # training_args.bin then holds no absolute path
        res_file = os.path.join(stage_root, 'result.json')
        argv = worker_argv(case, 'train', ws, case, res_file)
        t0 = time.time()
        rc = launch(ws, argv, os.path.join(stage_root, 'logs'), cwd=stage_root)
        dt = time.time() - t0
        cmd = f'{os.path.basename(PY)} tools/frameworks/gen_framework_ckpts.py gen --cases {case}'
        if rc != 0:
            err = last_error(os.path.join(stage_root, 'logs'))
            if os.path.isdir(case_dir):
                shutil.rmtree(case_dir)
            os.makedirs(os.path.join(case_dir, 'logs'))
            for f in glob.glob(os.path.join(stage_root, 'logs', '*.log')):
                shutil.copy(f, os.path.join(case_dir, 'logs'))
            return {'case': case, 'rc': rc, 'error': err, 'seconds': round(dt, 1)}
        res = json.load(open(res_file))
        src = checkpoint_dir(os.path.join(stage_root, case), case)
        assert src, f'no step-{SAVE_STEP} checkpoint in {os.path.join(stage_root, case)}'
        if os.path.isdir(case_dir):
            shutil.rmtree(case_dir)
        os.makedirs(case_dir)
        dst = os.path.join(case_dir, os.path.basename(src))
        shutil.copytree(src, dst)
        removed = {}
        for name in RECOVERY_SCRIPTS:  # DeepSpeed copies these scripts into every checkpoint folder
            f = os.path.join(dst, name)
            if os.path.exists(f):
                removed[name] = os.path.getsize(f)
                os.remove(f)
        others = sorted(set(os.listdir(os.path.join(stage_root, case))) - {os.path.basename(src)})
        info = {
            'case': case, **c, 'checkpoint': os.path.basename(dst), 'saved_at_step': SAVE_STEP,
            'losses': res['losses'], 'losses_after_save': {k: v for k, v in res['losses'].items() if int(k) > SAVE_STEP},
            'grad_norm': res.get('grad_norm'), 'learning_rate': res.get('learning_rate') or res.get('lr'),
            'final_global_step': res['final_global_step'], 'engine_class': res.get('engine_class'),
            'optimizer_class': res.get('optimizer_class'),
            'accelerate_distributed_type': res.get('accelerate_distributed_type'),
            'global_batch': GLOBAL_BATCH, 'seq_len': SEQ,
            'removed_from_checkpoint': removed, 'not_kept': others, 'files': tree_listing(dst),
            'command': cmd, 'seconds': round(dt, 1), 'versions': versions(),
        }
        json.dump(info, open(os.path.join(case_dir, 'losses.json'), 'w'), indent=1)
        if keep_logs:
            os.makedirs(os.path.join(case_dir, 'logs'))
            shutil.copy(os.path.join(stage_root, 'logs', 'rank0.log'), os.path.join(case_dir, 'logs', 'rank0.log'))
        return {'case': case, 'rc': 0, 'seconds': round(dt, 1), 'losses': res['losses']}
    finally:
        shutil.rmtree(stage_root, ignore_errors=True)


def run_resume(case, ckpt, world_size, ref=None, expect=None, out_root=DEFAULT_OUT, keep_dir=None, log_dir=None,
               universal=False, optim_check=True):
    c = CASES[case]
    if GLOBAL_BATCH % world_size:
        raise SystemExit(f'--world-size must divide the global batch {GLOBAL_BATCH}')
    fixture = os.path.join(out_root, case)
    if ref is None:
        ref = checkpoint_dir(fixture, case)
    if expect is None and os.path.exists(os.path.join(fixture, 'losses.json')):
        expect = os.path.join(fixture, 'losses.json')
    scratch = tempfile.mkdtemp(prefix=f'ucp_fw_resume_{case}_')
    try:
        res_file = os.path.join(scratch, 'result.json')
        outdir = keep_dir or os.path.join(scratch, 'out')
        logs = log_dir or os.path.join(scratch, 'logs')
        os.makedirs(logs, exist_ok=True)
        r = {'case': case, 'framework': c['framework'], 'stage': c['stage'], 'world_size': world_size,
             'checkpoint': os.path.abspath(ckpt), 'reference': ref and os.path.abspath(ref),
             'load': 'deepspeed universal (ds_to_universal + checkpoint.load_universal)' if universal else 'native'}
        univ_ref = None
        if ref and optim_check:  # DeepSpeed's own full optimizer states of the source (ds_to_universal)
            univ_ref = ds_to_universal(ref, os.path.join(scratch, 'ref_universal'),
                                       os.path.join(logs, 'ds_to_universal_ref.log'))
            if univ_ref is None:
                r.update({'rc': 1, 'ok': False, 'error': 'ds_to_universal of the reference failed (see its log)'})
                return r
        load_from = os.path.abspath(ckpt)
        if universal:
            load_from = universal_checkpoint_dir(load_from, os.path.join(scratch, 'universal_ckpt'),
                                                 os.path.join(logs, 'ds_to_universal_ckpt.log'))
            if load_from is None:
                r.update({'rc': 1, 'ok': False, 'error': 'ds_to_universal of the checkpoint failed (see its log)'})
                return r
        argv = worker_argv(case, 'resume', world_size, os.path.abspath(outdir), res_file, load_from,
                           os.path.abspath(ref) if ref else None, keep=bool(keep_dir), univ_ref=univ_ref,
                           load_universal=universal)
        t0 = time.time()
        rc = launch(world_size, argv, logs, cwd=scratch)
        r.update({'rc': rc, 'seconds': round(time.time() - t0, 1)})
        if rc != 0:
            r['error'] = last_error(logs)
            r['ok'] = False
            return r
        w = json.load(open(res_file))
        r.update({k: w.get(k) for k in ('trainer_global_step_at_begin', 'deepspeed_global_steps_at_begin',
                                         'final_global_step', 'deepspeed_global_steps_final', 'engine_class',
                                         'optimizer_class', 'accelerate_distributed_type', 'optimizer_steps_per_rank',
                                         'fp32_master', 'optimizer', 'epoch_at_begin', 'rng_restore')})
        r['losses'] = {k: v for k, v in w['losses'].items() if int(k) > SAVE_STEP}
        lrs = w.get('learning_rate') or w.get('lr') or {}
        r['learning_rates'] = {k: v for k, v in lrs.items() if int(k) > SAVE_STEP}
        r['epochs'] = {k: v for k, v in (w.get('epoch') or {}).items() if int(k) > SAVE_STEP}
        expected_lr = None
        if expect:
            ej = json.load(open(expect))
            e = ej['losses']
            r['expected_losses'] = {k: e[k] for k in r['losses'] if k in e}
            diffs = [abs(r['losses'][k] - e[k]) for k in r['losses'] if k in e]
            r['loss_max_abs_diff'] = max(diffs) if diffs else None
            r['losses_bit_equal'] = bool(diffs) and all(d == 0.0 for d in diffs)
            if ej.get('learning_rate'):
                expected_lr = {k: ej['learning_rate'][k] for k in r['learning_rates'] if k in ej['learning_rate']}
                r['expected_learning_rates'] = expected_lr
        checks = {
            'global_step_at_begin': r['trainer_global_step_at_begin'] == SAVE_STEP
            and r['deepspeed_global_steps_at_begin'] == SAVE_STEP,
            'final_global_step': r['final_global_step'] == TOTAL_STEPS,
            'steps_after_resume': sorted(r['losses'], key=int) == [str(s) for s in range(SAVE_STEP + 1, TOTAL_STEPS + 1)],
            'adam_step_counts': all(v == [float(SAVE_STEP)] for v in (r['optimizer_steps_per_rank'] or [[]])),
        }
        if expected_lr:  # the scheduler state came through: same lr at every step after the resume
            checks['learning_rates'] = r['learning_rates'] == expected_lr
        if c['framework'] == 'hf' and not universal:
            # the Trainer found rng_state_<rank>.pth (rng_state.pth at world size 1) for every rank and restored it
            # (DeepSpeed's universal path copies the framework files unchanged, so there it is only reported)
            calls = [cl for rr in (r['rng_restore'] or []) for cl in rr['calls']]
            checks['rng_state_restored_every_rank'] = (
                len(r['rng_restore'] or []) == world_size and all(rr['calls'] for rr in r['rng_restore'])
                and all(cl['exists'] and cl.get('cpu_state_restored') for cl in calls))
        if ref:
            checks['fp32_master_equals_zero_to_fp32'] = bool((r['fp32_master'] or {}).get('all_exact'))
        if univ_ref:
            checks['optimizer_states_equal_ds_to_universal'] = bool((r['optimizer'] or {}).get('all_exact'))
        r['checks'] = checks
        r['ok'] = all(checks.values())
        if universal and c['stage'] == 3:
            r['note'] = ('DeepSpeed 0.19.8 ZeRO-3 universal load (stage3.py '
                         'load_hp_checkpoint_state_from_checkpoint_dir_stage3) gives every param group the '
                         'hyper-parameters of group 0 and one shared Adam step tensor (incremented once per group '
                         'per step): with >1 param group (HF: decay/no-decay) the steps after the load are not a '
                         'reference')
        return r
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest='cmd', required=True)
    for name in ('hf-worker', 'pl-worker'):
        w = sub.add_parser(name)
        w.add_argument('--stage', type=int, required=True)
        w.add_argument('--precision', required=True)
        w.add_argument('--world-size', type=int, required=True)
        w.add_argument('--mode', choices=['train', 'resume'], required=True)
        w.add_argument('--output-dir', required=True)
        w.add_argument('--output-dir-keep', action='store_true')
        w.add_argument('--result', required=True)
        w.add_argument('--ckpt')
        w.add_argument('--ref')
        w.add_argument('--univ-ref')
        w.add_argument('--load-universal', action='store_true')
    g = sub.add_parser('gen', help='generate fixtures')
    g.add_argument('--out', default=DEFAULT_OUT)
    g.add_argument('--cases', default=','.join(CASES), help='comma-separated case names')
    r = sub.add_parser('resume', help='resume a case from a checkpoint folder at another world size')
    r.add_argument('--case', required=True, choices=list(CASES))
    r.add_argument('--ckpt', required=True, help='checkpoint folder (HF checkpoint-K, Lightning *.ckpt dir, or the '
                   'output of ucp-reshard reshard on one)')
    r.add_argument('--world-size', type=int, required=True)
    r.add_argument('--ref', help='DeepSpeed checkpoint whose zero_to_fp32 state dict the fp32 master weights must '
                   'equal (default: the fixture checkpoint of the case)')
    r.add_argument('--expect', help='losses.json with the uninterrupted run (default: the fixture\'s)')
    r.add_argument('--out', default=DEFAULT_OUT, help='fixture root (for the defaults of --ref/--expect)')
    r.add_argument('--keep-dir', help='save the resumed run\'s final checkpoint there')
    r.add_argument('--log-dir', help='keep the rank logs there')
    r.add_argument('--universal', action='store_true', help='oracle path: convert --ckpt with DeepSpeed\'s own '
                   'ds_to_universal and resume with checkpoint.load_universal (instead of loading --ckpt natively)')
    r.add_argument('--no-optim-check', action='store_true', help='skip the Adam-state comparison with '
                   'ds_to_universal of --ref')
    a = ap.parse_args()

    if a.cmd == 'hf-worker':
        return hf_worker(a)
    if a.cmd == 'pl-worker':
        return pl_worker(a)
    if a.cmd == 'gen':
        os.makedirs(a.out, exist_ok=True)
        allres = []
        for case in [c for c in a.cases.split(',') if c]:
            if case not in CASES:
                raise SystemExit(f'unknown case {case!r}; known: {", ".join(CASES)}')
            res = gen_case(case, a.out)
            allres.append(res)
            print(json.dumps(res), flush=True)
        sys.exit(0 if all(r['rc'] == 0 for r in allres) else 1)
    if a.cmd == 'resume':
        res = run_resume(a.case, a.ckpt, a.world_size, a.ref, a.expect, a.out, a.keep_dir, a.log_dir, a.universal,
                         not a.no_optim_check)
        print(json.dumps(res, indent=1))
        sys.exit(0 if res.get('ok') else 1)


if __name__ == '__main__':
    main()
