#!/usr/bin/env python3
"""Generate real DeepSpeed checkpoints (written by DeepSpeed itself) as test fixtures.

Port of the DeepSpeed-0.14.5 / torch-1.13 generator to DeepSpeed 0.19.x on torch 2.x (CPU, gloo,
one process per rank). Sub-commands:

  worker    one rank of a data-parallel training job (spawned by `run`/`all`)
  run       train one configuration with N ranks, save a checkpoint, then run DeepSpeed's own
            zero_to_fp32 and ds_to_universal on it
  all       run the matrix (--set base|extras|all) and write results.json + MANIFEST.md
  manifest  rewrite MANIFEST.md from results.json
  resume    load a universal checkpoint with a different world size, step, save

Config names: <model>_z<stage>_<precision>[_bf16opt][_bf16master[_bf16states]][_offload][_sg<N>][_ovf<P>]
[_muon|_sgd][_moe<EP>][_legacy]_ws<N> (see parse_cfg_name and README.md).

DeepSpeed and torch are taken from the interpreter that runs this script (or $UCP_DS_PYTHON for the
ranks and tools); nothing is built (DS_BUILD_OPS=0, DS_ACCELERATOR=cpu).
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.abspath(os.path.join(HERE, '..', '..', 'tests', 'golden', 'deepspeed-0.19'))
# interpreter for the ranks and DeepSpeed's tools: $UCP_DS_PYTHON, else the one running this script
PY = os.environ.get('UCP_DS_PYTHON') or sys.executable


GLOBAL_BATCH = 8
SEQ = 8
VOCAB = 61
HID = 16
NHEAD = 2
LR = 1e-2

# model `llama` (HF LlamaForCausalLM parameter names; see build_model)
L_VOCAB = 97
L_HID = 24
L_INTER = 40
L_LAYERS = 3
L_HEADS = 3  # head_dim 8
L_KV_HEADS = 1  # grouped-query attention: k_proj/v_proj are 8x24
L_SEQ = 7
L_MAXPOS = 16  # length of the int64 `model.position_ids` buffer
L_GLOBAL_BATCH = 60  # divisible by 1..6, so world sizes 3/5/6 get equal micro batches

# variant `_ovf<P>` = fp16 with initial loss scale 2**P (instead of 2**8), hysteresis 1, scale window 1000,
# so the first step(s) overflow and are skipped
OVF_HYSTERESIS = 1
OVF_SCALE_WINDOW = 1000
# variant `_moe<EP>` (gpt only): each block's MLP becomes a DeepSpeed MoE layer with EP-way expert
# parallelism and MOE_EXPERTS_PER_RANK local experts per rank; loss += MOE_AUX_WEIGHT * gate aux losses
MOE_EXPERTS_PER_RANK = 2
MOE_AUX_WEIGHT = 0.01
# variant `_muon`: DeepSpeed's own Muon optimizer (config "type": "Muon" -> MuonWithAuxAdam; 2-D params
# except names with embed/lm_head get Muon, the rest an auxiliary torch AdamW)
MUON_MOMENTUM = 0.95
# variant `_sgd`: client torch.optim.SGD with this momentum (needs zero_allow_untested_optimizer)
SGD_MOMENTUM = 0.9


def global_batch(kind):
    return L_GLOBAL_BATCH if kind == 'llama' else GLOBAL_BATCH


def batch_split(n, ws):
    """(start, size) of each rank's slice of a global batch of n samples; the first n % ws ranks get one
    extra sample when ws does not divide n (then the loss is re-weighted, see loss_weight)."""
    q, r = divmod(n, ws)
    out, start = [], 0
    for i in range(ws):
        size = q + (1 if i < r else 0)
        out.append((start, size))
        start += size
    return out


def loss_weight(kind, rank, ws):
    """Factor for a rank's mean micro-batch loss so that DeepSpeed's gradient average over ranks equals the
    gradient of the mean over the whole global batch (1.0 exactly when ws divides the global batch)."""
    n = global_batch(kind)
    if n % ws == 0:
        return 1.0
    return batch_split(n, ws)[rank][1] * ws / n


# ----------------------------------------------------------------------------------------------
# models (imported lazily inside the worker so that `all` does not need torch/deepspeed)
# ----------------------------------------------------------------------------------------------


def build_model(kind, moe_ep=None):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    # Every layer computes in fp32 (weights are up-cast inside forward), as in the torch 1.13 fixtures
    # (torch 1.13 had no fp16 CPU kernels); parameters, gradients and checkpoints keep the
    # DeepSpeed-chosen dtype (fp32 / fp16 / bf16). Each layer is its own module so that ZeRO-3
    # gathers its parameters via its module hooks.
    class Linear32(nn.Linear):

        def forward(self, x):
            b = self.bias.float() if self.bias is not None else None
            return F.linear(x.float(), self.weight.float(), b)

    class LayerNorm32(nn.LayerNorm):

        def forward(self, x):
            return F.layer_norm(x.float(), self.normalized_shape, self.weight.float(), self.bias.float(), self.eps)

    class Embedding32(nn.Embedding):

        def forward(self, idx):
            return F.embedding(idx, self.weight).float()

    class TiedHead(nn.Module):
        """Uses an existing parameter (weight tying: same Parameter object, two names)."""

        def __init__(self, weight):
            super().__init__()
            self.weight = weight

        def forward(self, x):
            return F.linear(x.float(), self.weight.float())

    class OddMLP(nn.Module):
        """Odd-sized params (7x13, 1x1, 17, ...), a tied weight, frozen params, buffers."""

        def __init__(self):
            super().__init__()
            self.fc1 = Linear32(13, 7)  # weight 7x13, bias 7
            self.fc2 = Linear32(7, 17)  # weight 17x7, bias 17
            self.frozen = Linear32(13, 17)  # frozen: weight 17x13, bias 17
            self.out = Linear32(17, 13)  # weight 13x17, bias 13
            self.head = TiedHead(self.fc1.weight)  # head.weight IS fc1.weight (shared)
            self.scale = nn.Parameter(torch.full((1, 1), 0.5))  # 1x1
            self.gain = nn.Parameter(torch.ones(17))  # 17
            for p in self.frozen.parameters():
                p.requires_grad_(False)
            self.register_buffer('running_mean', torch.linspace(-1.0, 1.0, 5))  # float buffer
            self.register_buffer('calls', torch.zeros((), dtype=torch.int64))  # int buffer
            self.register_buffer('scratch', torch.ones(3), persistent=False)  # not in state_dict

        def forward(self, x, y):
            self.calls += 1
            h = torch.relu(self.fc1(x))
            z = (self.fc2(h) + self.frozen(x)) * self.gain.float()
            w = self.out(torch.tanh(z))
            pred = self.head(w) * self.scale.float()
            return ((pred - y.float())**2).mean()

    class ExpertMLP(nn.Module):
        """The GPT block's MLP (fc 64x16, fc_out 16x64), used as the expert of a DeepSpeed MoE layer."""

        def __init__(self):
            super().__init__()
            self.fc = Linear32(HID, 4 * HID)
            self.fc_out = Linear32(4 * HID, HID)

        def forward(self, x):
            return self.fc_out(F.gelu(self.fc(x)))

    class MoEMLP(nn.Module):
        """deepspeed.moe.layer.MoE with MOE_EXPERTS_PER_RANK * ep experts (top-1 gate, no random token
        selection); keeps the gate's auxiliary loss for the model's loss."""

        def __init__(self, ep):
            super().__init__()
            from deepspeed.moe.layer import MoE
            self.moe = MoE(hidden_size=HID, expert=ExpertMLP(), num_experts=MOE_EXPERTS_PER_RANK * ep, ep_size=ep, k=1,
                           capacity_factor=2.0, eval_capacity_factor=2.0, min_capacity=4, use_rts=False)
            self.l_aux = None

        def forward(self, x):
            out, l_aux, _ = self.moe(x)
            self.l_aux = l_aux
            return out

    class Block(nn.Module):

        def __init__(self):
            super().__init__()
            self.ln1 = LayerNorm32(HID)
            self.qkv = Linear32(HID, 3 * HID)
            self.proj = Linear32(HID, HID)
            self.ln2 = LayerNorm32(HID)
            if moe_ep:
                self.mlp = MoEMLP(moe_ep)
            else:
                self.fc = Linear32(HID, 4 * HID)
                self.fc_out = Linear32(4 * HID, HID)

        def forward(self, x, mask):
            B, T, C = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
            q, k, v = [t.view(B, T, NHEAD, C // NHEAD).transpose(1, 2) for t in (q, k, v)]
            att = (q @ k.transpose(-2, -1)) / (C // NHEAD)**0.5
            att = att.masked_fill(~mask[:T, :T], float('-inf')).softmax(-1)
            a = (att @ v).transpose(1, 2).reshape(B, T, C)
            x = x + self.proj(a)
            if moe_ep:
                return x + self.mlp(self.ln2(x)).float()
            return x + self.fc_out(F.gelu(self.fc(self.ln2(x))))

    class TinyGPT(nn.Module):

        def __init__(self):
            super().__init__()
            self.wte = Embedding32(VOCAB, HID)
            self.wpe = nn.Parameter(torch.randn(SEQ, HID) * 0.02)
            self.blocks = nn.ModuleList([Block() for _ in range(2)])
            self.ln_f = LayerNorm32(HID)
            self.lm_head = TiedHead(self.wte.weight)  # tied lm head
            self.register_buffer('causal_mask', torch.tril(torch.ones(SEQ, SEQ, dtype=torch.bool)))

        def forward(self, idx, targets):
            x = self.wte(idx) + self.wpe.float()[:idx.shape[1]]
            for b in self.blocks:
                x = b(x, self.causal_mask)
            logits = self.lm_head(self.ln_f(x))
            loss = F.cross_entropy(logits.view(-1, VOCAB), targets.reshape(-1))
            if moe_ep:  # + the MoE gates' load-balancing loss
                loss = loss + MOE_AUX_WEIGHT * sum(b.mlp.l_aux.float() for b in self.blocks)
            return loss

    class RMSNorm32(nn.Module):

        def __init__(self, dim, eps=1e-6):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(dim))
            self.eps = eps

        def forward(self, x):
            x = x.float()
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.float()

    class Rotary(nn.Module):

        def __init__(self, dim, base=10000.0):
            super().__init__()
            inv_freq = 1.0 / (base**(torch.arange(0, dim, 2).float() / dim))
            self.register_buffer('inv_freq', inv_freq)  # float buffer, persistent (as in older HF versions)

        def forward(self, position_ids):
            freqs = position_ids.float()[..., None] * self.inv_freq.float()  # [1, T, dim/2]
            emb = torch.cat((freqs, freqs), dim=-1)
            return emb.cos()[:, None], emb.sin()[:, None]  # [1, 1, T, dim]

    def rotate_half(x):
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((-x2, x1), dim=-1)

    class LlamaAttention(nn.Module):

        def __init__(self):
            super().__init__()
            hd = L_HID // L_HEADS
            self.q_proj = Linear32(L_HID, L_HEADS * hd, bias=False)
            self.k_proj = Linear32(L_HID, L_KV_HEADS * hd, bias=False)
            self.v_proj = Linear32(L_HID, L_KV_HEADS * hd, bias=False)
            self.o_proj = Linear32(L_HEADS * hd, L_HID, bias=False)

        def forward(self, x, cos, sin):
            B, T, _ = x.shape
            hd = L_HID // L_HEADS
            q = self.q_proj(x).view(B, T, L_HEADS, hd).transpose(1, 2)
            k = self.k_proj(x).view(B, T, L_KV_HEADS, hd).transpose(1, 2)
            v = self.v_proj(x).view(B, T, L_KV_HEADS, hd).transpose(1, 2)
            q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
            rep = L_HEADS // L_KV_HEADS
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
            att = (q @ k.transpose(-2, -1)) / hd**0.5
            causal = torch.ones(T, T, dtype=torch.bool).tril()
            att = att.masked_fill(~causal, float('-inf')).softmax(-1)
            return self.o_proj((att @ v).transpose(1, 2).reshape(B, T, L_HEADS * hd))

    class LlamaMLP(nn.Module):

        def __init__(self):
            super().__init__()
            self.gate_proj = Linear32(L_HID, L_INTER, bias=False)
            self.up_proj = Linear32(L_HID, L_INTER, bias=False)
            self.down_proj = Linear32(L_INTER, L_HID, bias=False)

        def forward(self, x):
            return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))

    class LlamaDecoderLayer(nn.Module):

        def __init__(self):
            super().__init__()
            self.self_attn = LlamaAttention()
            self.mlp = LlamaMLP()
            self.input_layernorm = RMSNorm32(L_HID)
            self.post_attention_layernorm = RMSNorm32(L_HID)

        def forward(self, x, cos, sin):
            x = x + self.self_attn(self.input_layernorm(x), cos, sin)
            return x + self.mlp(self.post_attention_layernorm(x))

    class LlamaModel(nn.Module):

        def __init__(self):
            super().__init__()
            self.embed_tokens = Embedding32(L_VOCAB, L_HID)
            self.layers = nn.ModuleList([LlamaDecoderLayer() for _ in range(L_LAYERS)])
            self.norm = RMSNorm32(L_HID)
            self.rotary_emb = Rotary(L_HID // L_HEADS)
            self.register_buffer('position_ids', torch.arange(L_MAXPOS, dtype=torch.int64)[None])  # int64, persistent

        def forward(self, idx):
            T = idx.shape[1]
            cos, sin = self.rotary_emb(self.position_ids[:, :T])
            x = self.embed_tokens(idx)
            for layer in self.layers:
                x = layer(x, cos, sin)
            return self.norm(x)

    class LlamaForCausalLM(nn.Module):
        """HF-style names: model.embed_tokens (frozen), model.layers.N.{self_attn,mlp,...}, model.norm,
        lm_head (not tied); buffers model.rotary_emb.inv_freq (float) and model.position_ids (int64)."""

        def __init__(self):
            super().__init__()
            self.model = LlamaModel()
            self.lm_head = Linear32(L_HID, L_VOCAB, bias=False)
            self.model.embed_tokens.weight.requires_grad_(False)  # frozen embeddings

        def forward(self, idx, targets):
            logits = self.lm_head(self.model(idx))
            return F.cross_entropy(logits.reshape(-1, L_VOCAB), targets.reshape(-1))

    if kind == 'llama':
        return LlamaForCausalLM()
    return OddMLP() if kind == 'mlp' else TinyGPT()


def param_groups(model, kind, wd=0.01, moe=False):
    if kind == 'llama':
        # as HF Trainer.create_optimizer builds them: weight decay for everything except biases and
        # (RMS)LayerNorm weights; frozen params left out; decay group first
        nd_mods = {n for n, m in model.named_modules() if type(m).__name__ == 'RMSNorm32'}
        no_decay_names = {f'{mn}.{pn}' for mn in nd_mods for pn, _ in model.get_submodule(mn).named_parameters()}
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        return [{'params': [p for n, p in named if n not in no_decay_names and 'bias' not in n], 'weight_decay': wd},
                {'params': [p for n, p in named if n in no_decay_names or 'bias' in n], 'weight_decay': 0.0}]
    if kind in ('mlp', 'gpt1g'):  # one param group
        return [{'params': [p for p in model.parameters() if p.requires_grad], 'weight_decay': wd}]
    decay, no_decay = [], []  # GPT: the usual two groups (no decay for biases/LN/1-D params)
    for n, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{'params': decay, 'weight_decay': wd}, {'params': no_decay, 'weight_decay': 0.0}]
    if moe:
        # DeepSpeed's ZeRO needs the expert params in their own groups marked 'moe' (partitioned over the
        # expert-data-parallel group); its helper splits each group by the params' expert group name
        from deepspeed.moe.utils import split_params_into_different_moe_groups_for_optimizer
        groups[0]['name'], groups[1]['name'] = 'decay', 'no_decay'
        groups = split_params_into_different_moe_groups_for_optimizer(groups)
    return groups


def make_batch(kind, step, rank, ws):
    import torch
    g = torch.Generator().manual_seed(1000 + step)
    start, size = batch_split(global_batch(kind), ws)[rank]  # == rank*mb, mb when ws divides the batch
    sl = slice(start, start + size)
    if kind == 'llama':
        tok = torch.randint(0, L_VOCAB, (L_GLOBAL_BATCH, L_SEQ + 1), generator=g)
        return tok[sl, :-1], tok[sl, 1:]
    if kind == 'mlp':
        x = torch.randn(GLOBAL_BATCH, 13, generator=g)
        y = torch.randn(GLOBAL_BATCH, 7, generator=g)
        return x[sl], y[sl]
    tok = torch.randint(0, VOCAB, (GLOBAL_BATCH, SEQ + 1), generator=g)
    return tok[sl, :-1], tok[sl, 1:]


# ----------------------------------------------------------------------------------------------
# configurations
# ----------------------------------------------------------------------------------------------
MODELS = ('mlp', 'gpt', 'gpt1g', 'llama')
PRECISIONS = ('fp32', 'fp16', 'bf16')
OPTIMIZERS = ('adamw', 'muon', 'sgd')


def make_spec(model, stage, precision, world_size, bf16_optimizer=False, sub_group_size=None, fp16_overflow=None,
              bf16_master=None, optimizer='adamw', moe_ep=None, legacy=False, offload=False):
    """One fixture configuration. bf16_master: None, 'weights' (bf16_master_weights_and_grads) or
    'weights_states' (+ bf16_optimizer_states). offload: optimizer state on the CPU (ZeRO-Offload) with
    DeepSpeed's CPU Adam (JIT-compiled op)."""
    return {'model': model, 'stage': int(stage), 'precision': precision, 'world_size': int(world_size),
            'bf16_optimizer': bool(bf16_optimizer), 'sub_group_size': sub_group_size, 'fp16_overflow': fp16_overflow,
            'bf16_master': bf16_master, 'optimizer': optimizer, 'moe_ep': moe_ep, 'legacy': bool(legacy),
            'offload': bool(offload)}


def cfg_name(spec):
    s = spec
    parts = [s['model'], f"z{s['stage']}", s['precision']]
    if s['bf16_optimizer']:
        parts.append('bf16opt')
    if s['bf16_master']:
        parts += ['bf16master'] + (['bf16states'] if s['bf16_master'] == 'weights_states' else [])
    if s.get('offload'):
        parts.append('offload')
    if s['sub_group_size']:
        parts.append(f"sg{s['sub_group_size']}")
    if s['fp16_overflow']:
        parts.append(f"ovf{s['fp16_overflow']}")
    if s['optimizer'] != 'adamw':
        parts.append(s['optimizer'])
    if s['moe_ep']:
        parts.append(f"moe{s['moe_ep']}")
    if s['legacy']:
        parts.append('legacy')
    parts.append(f"ws{s['world_size']}")
    return '_'.join(parts)


def parse_cfg_name(name):
    """Inverse of cfg_name: '<model>_z<stage>_<precision>[_bf16opt][_bf16master[_bf16states]][_offload][_sg<N>][_ovf<P>]
    [_muon|_sgd][_moe<EP>][_legacy]_ws<N>' -> spec dict. Raises ValueError on anything else."""
    parts = name.split('_')
    if len(parts) < 4 or not parts[1].startswith('z') or not parts[-1].startswith('ws'):
        raise ValueError(f'not a fixture config name: {name!r}')
    if parts[0] not in MODELS or parts[2] not in PRECISIONS or not parts[1][1:].isdigit() or not parts[-1][2:].isdigit():
        raise ValueError(f'not a fixture config name: {name!r}')
    kw = {}
    order = ['bf16opt', 'bf16master', 'bf16states', 'offload', 'sg', 'ovf', 'opt', 'moe', 'legacy']
    last = -1
    for p in parts[3:-1]:
        if p == 'bf16opt':
            key = 'bf16opt'
            kw['bf16_optimizer'] = True
        elif p == 'bf16master':
            key = 'bf16master'
            kw['bf16_master'] = 'weights'
        elif p == 'bf16states':
            key = 'bf16states'
            if kw.get('bf16_master') != 'weights':
                raise ValueError(f"'bf16states' without 'bf16master' in {name!r}")
            kw['bf16_master'] = 'weights_states'
        elif p == 'offload':
            key = 'offload'
            kw['offload'] = True
        elif p.startswith('sg') and p[2:].isdigit():
            key = 'sg'
            kw['sub_group_size'] = int(p[2:])
        elif p.startswith('ovf') and p[3:].isdigit():
            key = 'ovf'
            kw['fp16_overflow'] = int(p[3:])
        elif p in ('muon', 'sgd'):
            key = 'opt'
            kw['optimizer'] = p
        elif p.startswith('moe') and p[3:].isdigit():
            key = 'moe'
            kw['moe_ep'] = int(p[3:])
        elif p == 'legacy':
            key = 'legacy'
            kw['legacy'] = True
        else:
            raise ValueError(f'unknown part {p!r} in config name {name!r}')
        if order.index(key) <= last:
            raise ValueError(f'part {p!r} repeated or out of order in config name {name!r}')
        last = order.index(key)
    spec = make_spec(parts[0], int(parts[1][1:]), parts[2], int(parts[-1][2:]), **kw)
    if cfg_name(spec) != name:
        raise ValueError(f'config name {name!r} is not canonical (expected {cfg_name(spec)!r})')
    return spec


def spec_worker_args(spec):
    s = spec
    out = ['--model', s['model'], '--stage', str(s['stage']), '--precision', s['precision'],
           '--world_size', str(s['world_size'])]
    if s['bf16_optimizer']:
        out.append('--bf16_optimizer')
    if s['sub_group_size']:
        out += ['--sub_group_size', str(s['sub_group_size'])]
    if s['fp16_overflow']:
        out += ['--fp16_overflow', str(s['fp16_overflow'])]
    if s['bf16_master']:
        out += ['--bf16_master', s['bf16_master']]
    if s.get('offload'):
        out.append('--offload')
    if s['optimizer'] != 'adamw':
        out += ['--optimizer', s['optimizer']]
    if s['moe_ep']:
        out += ['--moe_ep', str(s['moe_ep'])]
    if s['legacy']:
        out.append('--legacy_serialization')
    return out


def ds_config(a):
    ws = a.world_size
    mb = -(-global_batch(a.model) // ws)  # ceil: uneven splits (e.g. 8 samples on 3 ranks) round up here
    cfg = {
        'train_batch_size': mb * ws,
        'train_micro_batch_size_per_gpu': mb,
        'gradient_accumulation_steps': 1,
        'gradient_clipping': 1.0,
        'steps_per_print': 1000,
        'zero_optimization': {
            'stage': a.stage
        },
        'scheduler': {
            'type': 'WarmupLR',
            'params': {
                'warmup_min_lr': 0.0,
                'warmup_max_lr': LR,
                'warmup_num_steps': 4
            }
        },
        'checkpoint': {
            'load_universal': bool(a.load_universal)
        },
        'wall_clock_breakdown': False,
    }
    if a.stage == 3:
        # tiny model: make sure every param is actually partitioned (no persistence threshold)
        cfg['zero_optimization'].update({'stage3_param_persistence_threshold': 0, 'stage3_max_live_parameters': 0,
                                         'stage3_prefetch_bucket_size': 0})
        if getattr(a, 'sub_group_size', None):
            cfg['zero_optimization']['sub_group_size'] = a.sub_group_size
        if a.optimizer == 'muon':  # stage3.py: "Muon and reduce scatter cannot be used together"
            cfg['zero_optimization']['reduce_scatter'] = False
    if a.precision == 'fp16' and getattr(a, 'fp16_overflow', None):
        cfg['fp16'] = {'enabled': True, 'loss_scale': 0, 'initial_scale_power': a.fp16_overflow,
                       'loss_scale_window': OVF_SCALE_WINDOW, 'hysteresis': OVF_HYSTERESIS, 'min_loss_scale': 1}
    elif a.precision == 'fp16':
        cfg['fp16'] = {'enabled': True, 'loss_scale': 0, 'initial_scale_power': 8, 'loss_scale_window': 2,
                       'hysteresis': 2, 'min_loss_scale': 1}
    elif a.precision == 'bf16':
        cfg['bf16'] = {'enabled': True}
        if a.bf16_optimizer:  # bf16 + ZeRO-1 + fp32 grad accumulation -> DeepSpeed's BF16_Optimizer
            cfg['data_types'] = {'grad_accum_dtype': 'fp32'}
        if a.bf16_master:  # bf16 master weights (and gradients), optionally bf16 Adam moments
            cfg['bf16']['bf16_master_weights_and_grads'] = True
            if a.bf16_master == 'weights_states':
                cfg['bf16']['bf16_optimizer_states'] = True
    if a.offload:  # ZeRO-Offload: optimizer states on the CPU, DeepSpeed's CPU Adam (built from the config)
        cfg['zero_optimization']['offload_optimizer'] = {'device': 'cpu'}
        if a.optimizer == 'adamw':
            cfg['optimizer'] = {'type': 'AdamW', 'params': {'lr': LR, 'betas': [0.9, 0.95], 'eps': 1e-8,
                                                            'weight_decay': 0.01}}
    if a.optimizer == 'muon':
        # DeepSpeed builds MuonWithAuxAdam itself; torch_adam: the auxiliary Adam is torch.optim.AdamW
        # (DeepSpeed's FusedAdam would be JIT-compiled)
        cfg['optimizer'] = {'type': 'Muon', 'params': {'lr': LR, 'momentum': MUON_MOMENTUM, 'betas': [0.9, 0.95],
                                                       'eps': 1e-8, 'weight_decay': 0.01, 'torch_adam': True}}
    elif a.optimizer == 'sgd':
        cfg['zero_allow_untested_optimizer'] = True
    if a.legacy_serialization:  # torch.save(..., _use_new_zipfile_serialization=False)
        cfg['checkpoint']['checkpoint_serialization'] = False
    return cfg


def install_fp16_cpu_accelerator():
    """DeepSpeed's CPU accelerator reports fp16 support only where oneDNN has fp16 kernels
    (torch.ops.mkldnn._is_mkldnn_fp16_supported(): AVX512-FP16/AMX CPUs); otherwise the engine refuses
    fp16 ("Type fp16 is not supported."). There, register a subclass that allows fp16; nothing else
    changes (the models compute in fp32 internally, see build_model). Returns whether it was needed."""
    import torch
    from deepspeed.accelerator import get_accelerator, set_accelerator
    from deepspeed.accelerator.cpu_accelerator import CPU_Accelerator

    if get_accelerator().is_fp16_supported():
        return False

    class CPUAcceleratorFP16(CPU_Accelerator):

        def is_fp16_supported(self):
            return True

        def supported_dtypes(self):
            return [torch.float, torch.half, torch.bfloat16]

    set_accelerator(CPUAcceleratorFP16())
    return True


def loss_scale_of(engine):
    ls = getattr(engine.optimizer, 'loss_scaler', None)
    return float(ls.cur_scale) if ls is not None else None


def loss_scaler_state(engine):
    """Plain-value attributes of the optimizer's loss scaler (DynamicLossScaler: cur_scale, cur_iter,
    last_overflow_iter, cur_hysteresis, ...; static LossScaler: cur_scale, dynamic)."""
    ls = getattr(engine.optimizer, 'loss_scaler', None)
    if ls is None:
        return None
    out = {'class': type(ls).__name__}
    for k, v in sorted(vars(ls).items()):
        if isinstance(v, (bool, int, float, str)) or v is None:
            out[k] = v
        elif hasattr(v, 'item') and getattr(v, 'numel', lambda: 0)() == 1:
            out[k] = v.item()
        else:
            out[k] = str(v)
    return out


def worker(a):
    import torch
    torch.set_num_threads(1)
    import deepspeed
    import deepspeed.comm as dist
    # The CPU accelerator would JIT-compile DeepSpeed's optional shared-memory all-reduce op
    # (deepspeed_shm_comm) inside init_distributed (comm/torch.py build_shm_op). DeepSpeed 0.19 probes
    # op compatibility lazily on first access of deepspeed.ops.__compatible_ops__ and caches the dict;
    # mark the op incompatible in that cached dict so plain torch.distributed/gloo collectives are used.
    getattr(deepspeed.ops, '__compatible_ops__')['deepspeed_shm_comm'] = False
    fp16_subclass = install_fp16_cpu_accelerator() if a.precision == 'fp16' else False
    deepspeed.init_distributed(dist_backend='gloo')
    rank, ws = dist.get_rank(), dist.get_world_size()
    assert ws == a.world_size

    torch.manual_seed(1234)
    model = build_model(a.model, moe_ep=a.moe_ep)
    groups = param_groups(model, a.model, moe=bool(a.moe_ep))
    cfg = ds_config(a)
    if a.optimizer == 'muon' or a.offload:  # DeepSpeed's own optimizer from the config (Muon: splits the groups)
        engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=groups, config=cfg)
    else:
        if a.optimizer == 'sgd':
            opt = torch.optim.SGD(groups, lr=LR, momentum=SGD_MOMENTUM)
        else:
            opt = torch.optim.AdamW(groups, lr=LR, betas=(0.9, 0.95), eps=1e-8)
        engine, _, _, _ = deepspeed.initialize(model=model, optimizer=opt, config=cfg)

    log = {'losses': {}, 'world_size': ws, 'optimizer_class': type(engine.optimizer).__name__,
           'base_optimizer_class': type(getattr(engine.optimizer, 'optimizer', engine.optimizer)).__name__,
           'fp16_accelerator_subclass': fp16_subclass}
    if a.detailed_log:
        log.update({'ds_config': cfg, 'global_batch': global_batch(a.model), 'per_step': {},
                    'batch_split': [n for _, n in batch_split(global_batch(a.model), ws)]})
    start = 0
    if a.load_dir:
        path, client = engine.load_checkpoint(a.load_dir, tag=a.load_tag)
        assert path is not None, 'load_checkpoint failed'
        start = engine.global_steps
        log['loaded_from'] = path
        log['loaded_global_steps'] = start
        log['client_state_keys'] = sorted(client.keys()) if client else []

    w = loss_weight(a.model, rank, ws)

    def one_step(step):
        x, y = make_batch(a.model, step, rank, ws)
        scale0, skipped0 = loss_scale_of(engine), engine.skipped_steps
        loss = engine(x, y)
        if w != 1.0:  # uneven micro batches: rank loss = sum over its samples * ws / global batch
            loss = loss * w
        engine.backward(loss)
        engine.step()
        l = loss.detach().float().clone()
        dist.all_reduce(l)
        if a.detailed_log:
            log['per_step'][step + 1] = {'loss': l.item() / ws, 'loss_scale_used': scale0,
                                         'skipped': engine.skipped_steps != skipped0,
                                         'lr_after': [float(x) for x in engine.get_lr()]}
        return l.item() / ws

    for s in range(start, start + a.steps):
        log['losses'][s + 1] = one_step(s)
    engine.save_checkpoint(a.save_dir, client_state={'generator': 'gen_deepspeed_ckpts.py', 'kind': a.model})
    if a.detailed_log:
        log['at_save'] = {'global_steps': int(engine.global_steps), 'skipped_steps': int(engine.skipped_steps),
                          'global_samples': int(engine.global_samples), 'lr': [float(x) for x in engine.get_lr()],
                          'loss_scaler': loss_scaler_state(engine)}
    for i in range(a.extra_steps):  # continuity reference: loss of the step(s) after the checkpoint
        s = start + a.steps + i
        log['losses'][s + 1] = one_step(s)
    if hasattr(engine.optimizer, 'loss_scaler') and engine.optimizer.loss_scaler is not None:
        log['final_loss_scale'] = float(engine.optimizer.loss_scaler.cur_scale)
    log['skipped_steps'] = int(engine.skipped_steps)
    log['global_steps'] = int(engine.global_steps)
    if rank == 0 and a.log:
        with open(a.log, 'w') as f:
            json.dump(log, f, indent=1, sort_keys=True)
    dist.barrier()
    # tear the gloo process group down explicitly: leaving it to interpreter exit occasionally aborted a
    # rank with "terminate called without an active exception" (SIGABRT) after a complete run
    torch.distributed.destroy_process_group()


# ----------------------------------------------------------------------------------------------
# launcher side
# ----------------------------------------------------------------------------------------------
def env_for_ds():
    env = dict(os.environ)
    env['DS_ACCELERATOR'] = 'cpu'
    env.setdefault('DS_BUILD_OPS', '0')
    env['OMP_NUM_THREADS'] = '1'
    env['CUDA_VISIBLE_DEVICES'] = ''
    # DeepSpeed's Muon kernels are decorated with torch.compile (inductor would compile C++ on first
    # use); run them eagerly. No other code path used here compiles anything.
    env.setdefault('TORCHDYNAMO_DISABLE', '1')
    env.setdefault('PYTHONHASHSEED', '0')
    return env


def wait_for_ranks(procs, timeout):
    """Exit code of every rank's process; once `timeout` seconds have passed, the rest are killed (-9)."""
    t0 = time.time()
    rcs = []
    for p in procs:
        try:
            rcs.append(p.wait(timeout=max(1, timeout - (time.time() - t0))))
        except subprocess.TimeoutExpired:
            for q in procs:
                if q.poll() is None:
                    q.kill()
            rcs.append(-9)
    return rcs


_port = [29500 + (os.getpid() % 500) * 10]


def launch(ws, worker_args, logfile, timeout=900):
    env = env_for_ds()
    _port[0] += 1
    env.update({'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': str(_port[0]), 'WORLD_SIZE': str(ws),
                'LOCAL_WORLD_SIZE': str(ws)})
    procs, files = [], []
    for r in range(ws):  # rank 0 -> logfile; rank r -> <logfile>_rank<r>.log (kept only on failure)
        files.append(open(logfile if r == 0 else rank_log(logfile, r), 'w'))
        e = dict(env, RANK=str(r), LOCAL_RANK=str(r))
        procs.append(subprocess.Popen([PY, os.path.abspath(__file__), 'worker'] + worker_args, env=e,
                                      stdout=files[-1], stderr=subprocess.STDOUT))
    rcs = wait_for_ranks(procs, timeout)
    for f in files:
        f.close()
    rc = max(rcs, key=abs) if any(rcs) else 0
    if rc == 0:
        for r in range(1, ws):
            os.remove(rank_log(logfile, r))
    return rc


def rank_log(logfile, r):
    return logfile[:-len('.log')] + f'_rank{r}.log' if logfile.endswith('.log') else f'{logfile}_rank{r}'


def train_error(logfile, ws):
    """Error lines of the first rank log (rank 0 first) that has a Python traceback, else of rank 0."""
    for r in range(ws):
        f = logfile if r == 0 else rank_log(logfile, r)
        try:
            text = open(f, errors='replace').read()
        except OSError:
            continue
        if 'Traceback' in text:
            return (f'[rank {r}] ' if r else '') + last_error(f)
    return last_error(logfile)


RECOVERY_SCRIPTS = ('zero_to_fp32.py', 'zero_to_torch.py')


def drop_recovery_scripts(ck, res):
    """DeepSpeed 0.19 copies deepspeed/utils/zero_to_fp32.py and zero_to_torch.py into every checkpoint
    dir. zero_to_fp32.py has been run by now; remove both copies so that no DeepSpeed source lands in the
    fixtures (record their identity)."""
    for name in RECOVERY_SCRIPTS:
        f = os.path.join(ck, name)
        if os.path.exists(f):
            data = open(f, 'rb').read()
            res.setdefault('removed_scripts', {})[name] = {'bytes': len(data),
                                                           'sha256': hashlib.sha256(data).hexdigest()}
            os.remove(f)


def run_tool(cmd, logfile, cwd=None):
    t0 = time.time()
    with open(logfile, 'w') as lf:
        lf.write('$ ' + ' '.join(cmd) + '\n')
        lf.flush()
        rc = subprocess.call(cmd, env=env_for_ds(), stdout=lf, stderr=subprocess.STDOUT, cwd=cwd)
    return rc, time.time() - t0


def last_error(logfile, n=3):
    try:
        lines = [l.rstrip() for l in open(logfile, errors='replace') if l.strip()]
    except OSError:
        return ''
    errs = [l for l in lines if ('Error' in l or 'error' in l or 'assert' in l.lower() or 'Exception' in l)
            and not l.startswith('$') and 'Warning' not in l and 'warn(' not in l]
    return ' | '.join((errs or lines)[-n:])[:600]


def error_site(logfile):
    """'path:line in func' of the innermost traceback frame above the first occurrence of the log's final
    exception line (for a process-pool failure: the remote traceback), path relative to site-packages or
    the checkpoint dir; '' when the log has no Python traceback."""
    import re
    try:
        lines = [l.rstrip('\n') for l in open(logfile, errors='replace')]
    except OSError:
        return ''
    exc = re.compile(r'^(\[rank\d+\]: )?([A-Za-z_][\w.]*(Error|Exception|Interrupt)|AssertionError)(:|$)')
    finals = [i for i, l in enumerate(lines) if exc.match(l)]
    if not finals:
        return ''
    first = next(i for i in finals if lines[i] == lines[finals[-1]])
    frame = re.compile(r'^(\[rank\d+\]: )?\s*File "([^"]+)", line (\d+), in (\S+)')
    for l in reversed(lines[:first]):
        m = frame.match(l)
        if m:
            path = m.group(2)
            for marker in ('site-packages/', 'dist-packages/'):
                if marker in path:
                    path = path.split(marker, 1)[1]
                    break
            else:
                # the copy DeepSpeed put into the checkpoint dir: name the file it was copied from
                path = 'deepspeed/utils/' + os.path.basename(path) if '/checkpoint/' in path else path
            return f'{path}:{m.group(3)} in {m.group(4)}'
    return ''


def run_zero_to_fp32(d, ck, res):
    """DeepSpeed's zero_to_fp32.py command line (the copy in the checkpoint dir), output into a temporary
    directory with a max shard size large enough for one `pytorch_model.bin`, moved to fp32_reference.pt."""
    tmp = os.path.join(d, 'zero_to_fp32_out')
    shutil.rmtree(tmp, ignore_errors=True)
    log = os.path.join(d, 'logs', 'zero_to_fp32.log')
    cmd = [PY, 'checkpoint/zero_to_fp32.py', 'checkpoint', 'zero_to_fp32_out', '--max_shard_size', '1000GB']
    rc, sec = run_tool(cmd, log, cwd=d)
    res['zero_to_fp32_rc'], res['zero_to_fp32_s'] = rc, round(sec, 1)
    res['zero_to_fp32_cmd'] = ('python checkpoint/zero_to_fp32.py checkpoint zero_to_fp32_out --max_shard_size 1000GB'
                               ' && mv zero_to_fp32_out/pytorch_model.bin fp32_reference.pt')
    if rc:
        res['zero_to_fp32_error'] = last_error(log)
    else:
        files = sorted(os.listdir(tmp)) if os.path.isdir(tmp) else []
        if files != ['pytorch_model.bin']:
            res['zero_to_fp32_rc'] = 99
            res['zero_to_fp32_error'] = f'unexpected output files {files}'
        else:
            shutil.move(os.path.join(tmp, 'pytorch_model.bin'), os.path.join(d, 'fp32_reference.pt'))
    shutil.rmtree(tmp, ignore_errors=True)


def run_ds_to_universal(d, ck, tag, res):
    uo = os.path.join('universal', tag)
    log = os.path.join(d, 'logs', 'ds_to_universal.log')
    cmd = [PY, '-m', 'deepspeed.checkpoint.ds_to_universal', '--input_folder', os.path.join('checkpoint', tag),
           '--output_folder', uo, '--inject_missing_state', '--num_extract_workers', '2', '--num_merge_workers', '2']
    rc, sec = run_tool(cmd, log, cwd=d)
    res['ds_to_universal_rc'], res['ds_to_universal_s'] = rc, round(sec, 1)
    res['ds_to_universal_cmd'] = ' '.join(['python'] + cmd[1:])
    if rc:
        res['ds_to_universal_error'] = last_error(log)
        shutil.rmtree(os.path.join(d, 'universal'), ignore_errors=True)


def run_config(out_root, spec, steps=3, universal=True, extra_steps=1, detailed_log=False):
    name = cfg_name(spec)
    d = os.path.join(out_root, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, 'logs'))
    res = dict(spec, name=name, steps=steps)
    if extra_steps != 1 or detailed_log:
        res.update({'extra_steps': extra_steps, 'detailed_log': detailed_log})
    wargs = spec_worker_args(spec) + ['--steps', str(steps), '--save_dir', os.path.join(d, 'checkpoint'),
                                      '--extra_steps', str(extra_steps), '--log', os.path.join(d, 'train_log.json')]
    wargs += ['--detailed_log'] if detailed_log else []
    t0 = time.time()
    tlog = os.path.join(d, 'logs', 'train.log')
    rc = launch(spec['world_size'], wargs, tlog)
    if rc != 0 and not any('Traceback' in open(f, errors='replace').read()
                           for f in [tlog] + [rank_log(tlog, r) for r in range(1, spec['world_size'])]
                           if os.path.exists(f)):
        # a crash without a Python error (e.g. SIGABRT at process exit): record it and try once more
        res['train_retried'] = {'rc': rc, 'error': train_error(tlog, spec['world_size'])}
        shutil.rmtree(os.path.join(d, 'checkpoint'), ignore_errors=True)
        rc = launch(spec['world_size'], wargs, tlog)
    res['train_rc'], res['train_s'] = rc, round(time.time() - t0, 1)
    ws = spec['world_size']
    res['train_cmd'] = f'WORLD_SIZE={ws} RANK=0..{ws-1} python gen_deepspeed_ckpts.py worker ' + ' '.join(
        x if not x.startswith('/') else os.path.relpath(x, out_root) for x in wargs)
    ck = os.path.join(d, 'checkpoint')
    if rc != 0:
        res['train_error'] = train_error(os.path.join(d, 'logs', 'train.log'), ws)
        shutil.rmtree(ck, ignore_errors=True)  # partial output
        return res
    try:
        tl = json.load(open(os.path.join(d, 'train_log.json')))
        res['optimizer_class'] = tl.get('optimizer_class')
        res['base_optimizer_class'] = tl.get('base_optimizer_class')
        res['fp16_accelerator_subclass'] = tl.get('fp16_accelerator_subclass')
    except (OSError, ValueError):
        pass
    tag = open(os.path.join(ck, 'latest')).read().strip()
    res['tag'] = tag
    res['checkpoint_files'] = sorted(os.listdir(os.path.join(ck, tag)))
    run_zero_to_fp32(d, ck, res)
    drop_recovery_scripts(ck, res)
    if universal:
        run_ds_to_universal(d, ck, tag, res)
    return res


def run_resume(out_root, src_name, ws_new):
    """Load <src>/universal with another world size, take 1 step, save (+1 extra step for loss)."""
    spec = dict(parse_cfg_name(src_name), world_size=ws_new)
    src = os.path.join(out_root, src_name)
    name = f'resume_{src_name}_to_ws{ws_new}'
    d = os.path.join(out_root, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, 'logs'))
    wargs = spec_worker_args(spec) + ['--steps', '1', '--save_dir', os.path.join(d, 'checkpoint'), '--extra_steps',
                                      '1', '--log', os.path.join(d, 'train_log.json'), '--load_dir',
                                      os.path.join(src, 'universal'), '--load_universal']
    res = {'name': name, 'source': src_name, 'world_size': ws_new}
    rc = launch(ws_new, wargs, os.path.join(d, 'logs', 'train.log'))
    res['train_rc'] = rc
    res['train_cmd'] = f'WORLD_SIZE={ws_new} RANK=0..{ws_new-1} python gen_deepspeed_ckpts.py worker ' + ' '.join(
        x if not x.startswith('/') else os.path.relpath(x, out_root) for x in wargs)
    if rc:
        res['train_error'] = train_error(os.path.join(d, 'logs', 'train.log'), ws_new)
        return res
    ck = os.path.join(d, 'checkpoint')
    run_zero_to_fp32(d, ck, res)
    drop_recovery_scripts(ck, res)
    # continuity: original run's losses for steps 1..4 vs resumed run's losses for steps 4..5
    orig = json.load(open(os.path.join(src, 'train_log.json')))['losses']
    new = json.load(open(os.path.join(d, 'train_log.json')))['losses']
    res['orig_losses'], res['resumed_losses'] = orig, new
    return res


# ----------------------------------------------------------------------------------------------
def dir_size(path):
    return sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(path) for f in fs)


def versions():
    code = ('import importlib.metadata as md, sys, torch, deepspeed, numpy, pydantic\n'
            'out = {"deepspeed": deepspeed.__version__, "deepspeed_git_hash": deepspeed.git_hash, '
            '"torch": torch.__version__, "numpy": numpy.__version__, "pydantic": pydantic.VERSION, '
            '"python": sys.version.split()[0]}\n'
            'for p in ("huggingface_hub", "safetensors"):\n'
            '    try:\n        out[p] = md.version(p)\n    except Exception:\n        pass\n'
            'print("VERSIONS " + __import__("json").dumps(out))')
    r = subprocess.run([PY, '-c', code], env=env_for_ds(), capture_output=True, text=True)
    for line in r.stdout.splitlines():
        if line.startswith('VERSIONS '):
            return json.loads(line[len('VERSIONS '):])
    return {}


def variant_text(r):
    out = []
    if r.get('bf16_optimizer'):
        out.append('BF16_Optimizer')
    if r.get('bf16_master'):
        out.append('bf16 master' + (' + bf16 states' if r['bf16_master'] == 'weights_states' else ''))
    if r.get('offload'):
        out.append('CPU offload + DeepSpeedCPUAdam')
    if r.get('sub_group_size'):
        out.append(f"sub_group_size {r['sub_group_size']}")
    if r.get('fp16_overflow'):
        out.append(f"overflow 2^{r['fp16_overflow']}")
    if r.get('optimizer', 'adamw') != 'adamw':
        out.append({'muon': 'Muon', 'sgd': 'SGD momentum'}[r['optimizer']])
    if r.get('moe_ep'):
        out.append(f"MoE ep {r['moe_ep']}")
    if r.get('legacy'):
        out.append('legacy serialization')
    return ', '.join(out) or '-'


def write_manifest(out_root):
    results = json.load(open(os.path.join(out_root, 'results.json')))
    rpath = os.path.join(out_root, 'resume_results.json')
    resumes = json.load(open(rpath)) if os.path.exists(rpath) else {}
    v = versions()
    removed = {}
    for r in results.values():
        for k, x in (r.get('removed_scripts') or {}).items():
            removed.setdefault(k, set()).add((x['bytes'], x['sha256']))
    rm_text = '; '.join(f"`{k}` {b} bytes, sha256 {h}" for k in sorted(removed) for b, h in sorted(removed[k]))
    L = ['# DeepSpeed 0.19 checkpoint fixtures', '',
         'Real checkpoints written by DeepSpeed itself (CPU, gloo, 1 process per rank) and the reference',
         "conversions produced by DeepSpeed's own tools. Generated by `tools/deepspeed-cpu/gen_deepspeed_ckpts.py` "
         '(see `tools/deepspeed-cpu/README.md`); commands below are a record of how.', '',
         f"- DeepSpeed {v.get('deepspeed')} (PyPI wheel, git_hash {v.get('deepspeed_git_hash')}; DS_ACCELERATOR=cpu, "
         'no op built)',
         f"- torch {v.get('torch')} (PyPI build, run on CPU), numpy {v.get('numpy')}, pydantic {v.get('pydantic')}, "
         f"huggingface_hub {v.get('huggingface_hub')}, Python {v.get('python')}",
         '- environment of every rank and tool: DS_ACCELERATOR=cpu, OMP_NUM_THREADS=1, CUDA_VISIBLE_DEVICES=, '
         'TORCHDYNAMO_DISABLE=1 (Muon kernels run eagerly), shm comm op marked incompatible (gloo only)',
         '- optimizer (unless the config says otherwise): torch.optim.AdamW (client optimizer, betas 0.9/0.95, lr 1e-2 '
         'via WarmupLR, wd 0.01), gradient_clipping 1.0, train_batch_size 8 (micro batch 8/world_size), 3 steps then '
         'save (tag global_step3), then one more step (step-4 loss in train_log.json)',
         '- fp16: dynamic loss scaling (initial_scale_power 8, loss_scale_window 2, hysteresis 2); '
         '`train_log.json` `fp16_accelerator_subclass` says whether the CPU accelerator had to be subclassed to '
         'report fp16 support (it reports it itself where oneDNN has fp16 kernels)', '',
         '## Layout of each `<config>/`', '',
         '- `checkpoint/` - exactly what `engine.save_checkpoint(<dir>)` wrote (`latest`, `global_step3/*.pt`), '
         'except the two scripts DeepSpeed 0.19 copies there from `deepspeed/utils/` '
         f'({rm_text}): zero_to_fp32.py was run, then both were deleted so that no DeepSpeed source is kept here',
         '- `fp32_reference.pt` - `python checkpoint/zero_to_fp32.py checkpoint zero_to_fp32_out --max_shard_size '
         '1000GB` (run in the config dir before the script was removed; writes one `pytorch_model.bin`), then '
         '`mv zero_to_fp32_out/pytorch_model.bin fp32_reference.pt`',
         '- `universal/global_step3/` + `universal/latest_universal` - `python -m deepspeed.checkpoint.ds_to_universal '
         '--input_folder checkpoint/global_step3 --output_folder universal/global_step3 --inject_missing_state '
         '--num_extract_workers 2 --num_merge_workers 2` (run in the config dir)',
         '- `train_log.json` - mean loss per step (steps 1-3 before the save, step 4 after it), final loss scale, '
         'the optimizer classes DeepSpeed chose',
         '- `logs/` - stdout/stderr of rank 0 and of both tools', '',
         '## Config names', '',
         '`<model>_z<stage>_<precision>[_bf16opt][_bf16master[_bf16states]][_offload][_sg<N>][_ovf<P>][_muon|_sgd]'
         '[_moe<EP>]'
         '[_legacy]_ws<world size>`, parts in this order (`parse_cfg_name` in the generator):', '',
         '- models: `mlp` = odd-sized MLP (7x13, 1x1, 17, ...; tied `head.weight`=`fc1.weight`; frozen `frozen.*`; '
         'float, int64 and non-persistent buffers; 1 param group), `gpt` = tiny GPT (vocab 61, hidden 16, 2 blocks, '
         'tied `lm_head.weight`=`wte.weight`, bool causal-mask buffer, 2 param groups decay/no-decay), `gpt1g` = '
         'same GPT with 1 param group',
         '- `_bf16opt` = bf16 + ZeRO-1 + `data_types.grad_accum_dtype: fp32`, which DeepSpeed routes to its '
         'BF16_Optimizer (files `bf16_zero_*`)',
         '- `_bf16master` = `bf16.bf16_master_weights_and_grads: true`; `_bf16master_bf16states` = also '
         '`bf16.bf16_optimizer_states: true` (no offload)',
         '- `_offload` = `zero_optimization.offload_optimizer: {device: cpu}` with the optimizer from the config '
         '(`"type": "AdamW"`, lr 1e-2, betas 0.9/0.95, eps 1e-8, weight_decay 0.01 -> DeepSpeedCPUAdam, whose '
         '`cpu_adam` op DeepSpeed JIT-compiles with g++/ninja on first use; the model\'s param groups are passed as '
         '`model_parameters`)',
         '- `_sg<N>` = ZeRO-3 `sub_group_size: N` (elements)',
         '- `_ovf<P>` = fp16 with initial loss scale 2^P, hysteresis 1 (overflowing first steps)',
         f'- `_muon` = DeepSpeed\'s Muon (`"optimizer": {{"type": "Muon", "params": {{lr 1e-2, momentum {MUON_MOMENTUM}, '
         'betas 0.9/0.95, eps 1e-8, weight_decay 0.01, torch_adam true}}` -> `MuonWithAuxAdam`; 2-D params whose '
         'names lack embed/lm_head use Muon, the others an auxiliary torch AdamW; the model\'s param groups are '
         'passed as `model_parameters`)',
         f'- `_sgd` = client `torch.optim.SGD(lr 1e-2, momentum {SGD_MOMENTUM})` with '
         '`zero_allow_untested_optimizer: true`',
         f'- `_moe<EP>` (gpt only) = each block\'s MLP replaced by `deepspeed.moe.layer.MoE` (expert = the block MLP '
         f'fc 64x16 + fc_out 16x64, {MOE_EXPERTS_PER_RANK}*EP experts, top-1, capacity factor 2, no RTS), expert '
         f'parallel size EP; loss += {MOE_AUX_WEIGHT} * gate aux loss; param groups split with '
         '`split_params_into_different_moe_groups_for_optimizer` (groups named decay/no_decay)',
         '- `_legacy` = `checkpoint.checkpoint_serialization: false` (torch legacy non-zip format)', '',
         '## Configurations', '',
         '| config | stage | prec | ws | variant | train | zero_to_fp32 | ds_to_universal | ckpt bytes | fp32 ref bytes | universal bytes |',
         '|---|---|---|---|---|---|---|---|---|---|---|']
    failures = []
    total = 0
    logs = {'train': 'train.log', 'zero_to_fp32': 'zero_to_fp32.log', 'ds_to_universal': 'ds_to_universal.log'}
    for name in sorted(results):
        r = results[name]
        d = os.path.join(out_root, name)
        ck = dir_size(os.path.join(d, 'checkpoint')) if os.path.isdir(os.path.join(d, 'checkpoint')) else 0
        fr = os.path.getsize(os.path.join(d, 'fp32_reference.pt')) if os.path.exists(os.path.join(d, 'fp32_reference.pt')) else 0
        un = dir_size(os.path.join(d, 'universal')) if os.path.isdir(os.path.join(d, 'universal')) else 0
        total += dir_size(d) if os.path.isdir(d) else 0
        st = lambda k: 'ok' if r.get(k) == 0 else ('FAIL' if k in r else '-')
        L.append(f"| {name} | {r['stage']} | {r['precision']} | {r['world_size']} | {variant_text(r)} "
                 f"| {st('train_rc')} | {st('zero_to_fp32_rc')} | {st('ds_to_universal_rc')} "
                 f"| {ck or '-'} | {fr or '-'} | {un or '-'} |")
        for tool, lf in logs.items():
            if f'{tool}_error' in r:
                lp = os.path.join(d, 'logs', lf)
                site = ''
                if tool == 'train':  # the rank whose log has the traceback (see train_error)
                    for rr in range(r['world_size']):
                        f = lp if rr == 0 else rank_log(lp, rr)
                        if os.path.exists(f) and 'Traceback' in open(f, errors='replace').read():
                            site = error_site(f)
                            break
                else:
                    site = error_site(lp)
                failures.append((name, tool, site, r[f'{tool}_error'].replace(out_root + '/', '')))
    L += ['', f'Total size of this directory: {dir_size(out_root)/2**20:.1f} MiB '
          f'(configs: {total/2**20:.1f} MiB; files listed per config above).', '']
    L += ['## Failures', '',
          'Failed outputs are removed (a failed training run leaves only `logs/`); the logs are kept in '
          '`<config>/logs/`. The line quoted is the last error line(s) of the log.', '']
    if not failures:
        L.append('none')
    for name, tool, site, err in failures:
        L.append(f'- `{name}` {tool}' + (f' at `{site}`' if site else '') + f': `{err}`')
    L += ['', '## What the files contain (checked on these files)', ''] + [f'- {x}' for x in OBSERVATIONS]
    if resumes:
        L += ['', '## Universal-checkpoint resume (different world size)', '']
        for name, r in sorted(resumes.items()):
            o, n = r.get('orig_losses', {}), r.get('resumed_losses', {})
            if r.get('train_rc') == 0:
                L.append(f"- `{name}` (source `{r['source']}`, ws {r['world_size']}): ok; step-4 loss source "
                         f"{o.get('4')} vs resumed {n.get('4')}; resumed step 5 {n.get('5')}; "
                         f"zero_to_fp32 on the new checkpoint rc={r.get('zero_to_fp32_rc')}")
            else:
                L.append(f"- `{name}` (source `{r['source']}`, ws {r['world_size']}): FAIL `{r.get('train_error')}`")
    L += ['', '## Exact commands', '', 'Whole set (from the repository root; `python` = an interpreter with '
          'DeepSpeed 0.19.8 and torch 2.15):', '', '```',
          'python tools/deepspeed-cpu/gen_deepspeed_ckpts.py all --set all --out tests/golden/deepspeed-0.19',
          'python tools/deepspeed-cpu/gen_deepspeed_ckpts.py manifest --out tests/golden/deepspeed-0.19', '```', '',
          'Per config (paths relative to this directory; the launcher sets RANK/LOCAL_RANK/WORLD_SIZE/'
          'MASTER_ADDR=127.0.0.1/MASTER_PORT and the environment above for each rank):', '']
    for name in sorted(results):
        r = results[name]
        L += [f'- `{name}`: `{r.get("train_cmd", "")}`']
    L.append('')
    open(os.path.join(out_root, 'MANIFEST.md'), 'w').write('\n'.join(L))


# Facts read from the generated files (kept here so that `manifest` reproduces MANIFEST.md).
OBSERVATIONS = [
    'Every `.pt` is a torch zip (pickle protocol 2) with the records `data.pkl`, `.format_version` (`1`), '
    '`.storage_alignment` (`64`), `byteorder` (`little`), `data/<k>` in numeric order (0, 1, ..., 9, 10), `version` '
    '(`3`) and `.data/serialization_id` (random per save) - except `gpt_z2_fp32_legacy_ws2`, whose three files are '
    "torch's legacy non-zip format (they start with the pickled magic number 0x1950a86a20f9469cfc6c).",
    'ZeRO-3: every `fp32_flat_groups[i]` is pickled as `torch._tensor._rebuild_from_type_v2(torch._utils.'
    '_rebuild_tensor_v2, torch.Tensor, (...), {"ds_id": "<first>_<last>"})` with requires_grad=True, in all 23 '
    'ZeRO-3 configs (the ds_id string can run backwards, e.g. `10_0` under Muon, which reorders params). No other '
    'tensor in any file carries Python state. The ZeRO-1/2 fp32 partitions are plain `_rebuild_tensor_v2` with '
    'requires_grad=True.',
    'Pickle globals: model-state files `collections.OrderedDict`, `torch.Size`, `torch._utils._rebuild_tensor_v2`, '
    '`torch.{Float,Half,BFloat16,Bool,Long}Storage`; optimizer files add `__builtin__.getattr` + '
    '`deepspeed.runtime.zero.config.ZeroStageEnum`, `deepspeed.runtime.fp16.loss_scaler.LossScaler` / '
    '`DynamicLossScaler` (fp16; its `dtype` attribute pickles `torch.float16`), '
    '`deepspeed.utils.tensor_fragment.fragment_address` (ZeRO-1/2, BF16_Optimizer), and at ZeRO-3 '
    '`torch._tensor._rebuild_from_type_v2` + `torch.Tensor`. MoE expert files: OrderedDict, FloatStorage, '
    '_rebuild_tensor_v2 only.',
    'Model-state files gain `checkpoint_parallel_dimensions` = `{"pp_degree": 1, "tp_degree": 1}`; `ds_version` '
    'is `0.19.8`. ZeRO-1/2 optimizer dicts gain `param_alignment_paddings`; BF16_Optimizer and ZeRO-3 dicts have '
    'the same keys as under 0.14.5. torch 2.15 AdamW param groups add `differentiable`, `fused` and '
    '`decoupled_weight_decay` (True); Adam `step` is still a 0-d float32 tensor.',
    'bf16 (all stages) and BF16_Optimizer name the optimizer files `bf16_zero_pp_rank_<r>_mp_rank_00_optim_states.pt`; '
    'bf16 + ZeRO-1 + `grad_accum_dtype: fp32` is still BF16_Optimizer in 0.19.8 (train_log `optimizer_class`).',
    'zero_to_fp32 0.19.8 output (fp32_reference.pt) differs from 0.14.5: int64/bool buffers keep their dtype '
    '(`calls` int64, `causal_mask` bool; 0.14.5 made them float32), frozen params at ZeRO-2/3 are float32 (0.14.5: '
    'training dtype), bf16-master checkpoints give float32 (dtype argument defaults to float32). ZeRO-1 still '
    'stores no frozen params (`mlp_z1_*`: 11 keys, ZeRO-2/3: 13). It still refuses BF16_Optimizer files '
    '("is not a zero checkpoint").',
    'ds_to_universal 0.19.8 converts every base config, including ZeRO-3 with 2 param groups and with sub-groups '
    '(0.14.5 could not), and the ZeRO-3 ws4 `scale` (1x1) now has 1 value. New for ZeRO-1/2 and BF16_Optimizer: '
    '`zero/<name>/fp32.pt` = `{"param": float32 tensor}` (no `cat_dim`, no optimizer state) also for buffers '
    '(`calls`, `running_mean`, `causal_mask` - as float32), frozen params (`frozen.*`) and tied names '
    '(`head.weight`, `lm_head.weight`). ZeRO-3 universal output has trainable params only (bare 1-D tensors) and '
    'its `zero/optimizer_state.pt` carries rank 0\'s whole optimizer dict including `fp32_flat_groups`.',
    'DeepSpeed copies two scripts into every checkpoint dir: zero_to_fp32.py and (new) zero_to_torch.py; both '
    'removed here (sizes and hashes above).',
    'ZeRO-3 sub-groups: `gpt_z3_bf16_sg1000_ws2` has 4 sub-groups in the decay group + 1 (no-decay) = 5, '
    '`mlp_z3_fp32_sg200_ws2` 2 sub-groups in its only group: `fp32_flat_groups`, the Adam state and `param_shapes` have one entry per '
    'sub-group and `param_groups[g]["params"]` lists the sub-group indices of group g.',
    '`_bf16master` (bf16 master weights without bf16 optimizer states) does not run without offload: DeepSpeed '
    'asserts ZeRO-Offload + DeepSpeedCPUAdam (see Failures); `_bf16master_offload` is that setting with '
    'ZeRO-Offload. `_bf16master_bf16states`: ZeRO-1/2 `single_partition_of_fp32_groups` and ZeRO-3 '
    '`fp32_flat_groups` are bfloat16 tensors (names unchanged), torch AdamW `exp_avg`/`exp_avg_sq` bfloat16, '
    '`step` float32 tensor. `_bf16master_offload`: masters bfloat16 as well, DeepSpeedCPUAdam state '
    '`{"step": <Python int>, "exp_avg": float32, "exp_avg_sq": float32}` and param groups `lr`, `betas` (a list), '
    '`eps`, `weight_decay`, `bias_correction`, `amsgrad`; its universal `step.pt` holds the int 3. zero_to_fp32 '
    'of every bf16-master checkpoint is float32 (plus the bool buffer).',
    'Muon (`_muon`): DeepSpeed splits the params into `muon-params` / `adam-params` groups (`group<i>-muon-params` '
    '/ `group<i>-adam-params` when the model passes several groups; 2-D params whose names lack embed/lm_head are '
    'Muon, so `wte.weight` and mlp\'s 1x1 `scale` are Muon params) '
    '(param-group keys `use_muon`, `name`, `lr`, `momentum`, `weight_decay`, `ns_method` (`gram`) for Muon; '
    'Adam groups also `betas`, `eps`, torch AdamW keys). Muon sorts its group\'s params by `param.size()` '
    'descending, so `param_shapes` and the flat order are not module order. Muon state is `{"momentum_buffer"}` '
    'only (no `step`), in the training dtype (bf16 under bf16): at ZeRO-1/2 sized by the params that touch the '
    "rank's partition (ws2 gpt: 3792 / 4224 elements for 3624-element partitions; mlp fp32: 340 for 216), at "
    'ZeRO-3 one per sub-group, '
    'partition-sized. Adam groups hold `step`/`exp_avg`/`exp_avg_sq` as usual. ds_to_universal fails '
    '(`KeyError: \'exp_avg\'`); zero_to_fp32 works.',
    'SGD (`_sgd`): `base_optimizer_state.state[g] = {"momentum_buffer": fp32 partition-sized tensor}` (no '
    '`step`); param groups `momentum`, `dampening`, `nesterov`, ... ds_to_universal fails (`KeyError: \'exp_avg\'`).',
    'MoE (`gpt_z2_fp32_moe2_ws4`): expert weights are in `layer_<L>_expert_<E>_mp_rank_00_model_states.pt` with '
    'global expert ids (E = ep_rank * local + local id, also rewritten inside the keys); the main '
    '`mp_rank_00_model_states.pt` has `param_shapes` (4 groups: decay, no_decay, then the moe decay/no_decay '
    'groups), `num_experts` ([4, 4]) and `ds_autoep_layers` (None), and its `module` has no expert tensors. With '
    'ZeRO the optimizer files keep the `zero_pp_rank_<r>` names (no `expp_rank_*`); the 2 MoE groups are '
    'partitioned over the expert-data-parallel group (size 2): every rank holds 4096 elements of them. '
    'zero_to_fp32 refuses the expert files, ds_to_universal concatenates both expert-parallel ranks\' '
    'partitions of a local expert (see Failures).',
    '`_legacy`: DeepSpeed itself loads the legacy files (same-size resume reproduces step 4); zero_to_fp32 fails '
    '(its `torch.load(mmap=True)` needs the zip format); ds_to_universal converts them.',
    'Losses: step 1 equals the 0.14.5 fixtures; later steps differ slightly from them (the WarmupLR lrs seen here '
    'are 0, 0, 0.005, 0.0079 for steps 1-4).',
    'Loading on CPU needs no shim: `engine.load_checkpoint` at the same world size reproduced the step-4 loss '
    'exactly for gpt_z3_bf16, gpt_z2_fp16, gpt_z2_bf16_muon, gpt_z2_fp32_moe2_ws4, gpt_z2_fp32_legacy and '
    'mlp_z1_bf16_bf16opt; universal resume ws2->ws4 did too for gpt_z2_fp32, gpt_z3_bf16 (2 groups) and '
    'mlp_z1_bf16_bf16opt. After a ZeRO-3 universal load DeepSpeed 0.19.8 gives every group group 0\'s '
    '`weight_decay` (no-decay group saved with 0.01) and puts one shared `step` tensor into every sub-group\'s '
    'state, so AdamW increments it once per sub-group per step (`step` 5 instead of 4 after one step with 2 '
    'groups). It now saves per-rank model-state files under their own names after a universal load.',
]


def base_matrix():
    cfgs = []
    for model in ('mlp', 'gpt'):
        for stage in (1, 2, 3):
            for prec in ('fp32', 'fp16', 'bf16'):
                for ws in (1, 2, 4):
                    cfgs.append(make_spec(model, stage, prec, ws))
    cfgs.append(make_spec('gpt1g', 3, 'bf16', 2))  # 1 param group at ZeRO-3
    return cfgs


def extras_matrix():
    cfgs = []
    for model in ('mlp', 'gpt'):  # BF16_Optimizer layout (bf16_zero_* files)
        for ws in (2, 4):
            cfgs.append(make_spec(model, 1, 'bf16', ws, bf16_optimizer=True))
    cfgs += [make_spec('gpt', 3, 'bf16', 2, sub_group_size=1000),  # ZeRO-3 sub-groups (>= 2 per param group)
             make_spec('mlp', 3, 'fp32', 2, sub_group_size=200)]
    for stage in (2, 3):  # bf16 master weights, with and without bf16 optimizer states
        for m in ('weights', 'weights_states'):
            cfgs.append(make_spec('gpt', stage, 'bf16', 2, bf16_master=m))
    for stage in (2, 3):  # bf16 master weights without bf16 states need ZeRO-Offload + DeepSpeedCPUAdam
        cfgs.append(make_spec('gpt', stage, 'bf16', 2, bf16_master='weights', offload=True))
    cfgs += [make_spec('gpt', 2, 'bf16', 2, optimizer='muon'), make_spec('gpt', 3, 'bf16', 2, optimizer='muon'),
             make_spec('mlp', 2, 'fp32', 2, optimizer='muon'),
             make_spec('gpt', 2, 'fp32', 2, optimizer='sgd'),
             make_spec('gpt', 2, 'fp32', 4, moe_ep=2),
             make_spec('gpt', 2, 'fp32', 2, legacy=True)]
    return cfgs


def matrix(which):
    return {'base': base_matrix, 'extras': extras_matrix, 'all': lambda: base_matrix() + extras_matrix()}[which]()


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest='cmd', required=True)

    def variant_args(p):
        p.add_argument('--bf16_optimizer', action='store_true')
        p.add_argument('--sub_group_size', type=int)
        p.add_argument('--fp16_overflow', type=int, metavar='P', help='initial_scale_power P (`_ovf<P>`)')
        p.add_argument('--bf16_master', choices=['weights', 'weights_states'])
        p.add_argument('--optimizer', choices=list(OPTIMIZERS), default='adamw')
        p.add_argument('--moe_ep', type=int, help='MoE expert-parallel size (gpt only)')
        p.add_argument('--legacy_serialization', action='store_true')
        p.add_argument('--offload', action='store_true', help='offload_optimizer cpu + DeepSpeedCPUAdam (JIT op)')

    w = sub.add_parser('worker')
    w.add_argument('--model', choices=list(MODELS), required=True)
    w.add_argument('--stage', type=int, required=True)
    w.add_argument('--precision', choices=list(PRECISIONS), required=True)
    w.add_argument('--world_size', type=int, required=True)
    w.add_argument('--steps', type=int, default=3)
    w.add_argument('--extra_steps', type=int, default=0)
    w.add_argument('--save_dir', required=True)
    w.add_argument('--log')
    w.add_argument('--load_dir')
    w.add_argument('--load_tag')
    w.add_argument('--load_universal', action='store_true')
    w.add_argument('--detailed_log', action='store_true')
    variant_args(w)
    r = sub.add_parser('run')
    r.add_argument('--config', help='a config name (instead of the options below)')
    r.add_argument('--model', choices=list(MODELS))
    r.add_argument('--stage', type=int)
    r.add_argument('--precision', choices=list(PRECISIONS))
    r.add_argument('--world_size', type=int)
    variant_args(r)
    r.add_argument('--extra_steps', type=int, default=1)
    r.add_argument('--detailed_log', action='store_true')
    r.add_argument('--no_record', action='store_true', help='do not add the result to results.json')
    r.add_argument('--out', default=DEFAULT_OUT)
    al = sub.add_parser('all')
    al.add_argument('--out', default=DEFAULT_OUT)
    al.add_argument('--set', choices=['base', 'extras', 'all'], default='all')
    al.add_argument('--only', default='', help='comma-separated substrings of config names')
    al.add_argument('--skip_done', action='store_true', help='skip configs already in results.json')
    mf = sub.add_parser('manifest')
    mf.add_argument('--out', default=DEFAULT_OUT)
    rs = sub.add_parser('resume')
    rs.add_argument('--out', default=DEFAULT_OUT)
    rs.add_argument('--src', required=True, help='config name, e.g. gpt_z2_fp32_ws2')
    rs.add_argument('--world_size', type=int, required=True)
    a = ap.parse_args()

    if a.cmd == 'worker':
        if a.moe_ep and a.model != 'gpt':
            sys.exit('--moe_ep needs --model gpt')
        return worker(a)
    a.out = os.path.abspath(a.out)
    rpath = os.path.join(a.out, 'results.json')

    def record(res):
        results = json.load(open(rpath)) if os.path.exists(rpath) else {}
        results[res['name']] = res
        json.dump(results, open(rpath, 'w'), indent=1, sort_keys=True)

    if a.cmd == 'run':
        if a.config:
            spec = parse_cfg_name(a.config)
        else:
            if None in (a.model, a.stage, a.precision, a.world_size):
                sys.exit('run: give --config NAME or --model/--stage/--precision/--world_size')
            spec = make_spec(a.model, a.stage, a.precision, a.world_size, a.bf16_optimizer, a.sub_group_size,
                             a.fp16_overflow, a.bf16_master, a.optimizer, a.moe_ep, a.legacy_serialization,
                             a.offload)
        os.makedirs(a.out, exist_ok=True)
        res = run_config(a.out, spec, extra_steps=a.extra_steps, detailed_log=a.detailed_log)
        if not a.no_record:
            record(res)
        print(json.dumps(res, indent=1))
        return
    if a.cmd == 'resume':
        res = run_resume(a.out, a.src, a.world_size)
        print(json.dumps(res, indent=1))
        rp = os.path.join(a.out, 'resume_results.json')
        allr = json.load(open(rp)) if os.path.exists(rp) else {}
        allr[res['name']] = res
        json.dump(allr, open(rp, 'w'), indent=1, sort_keys=True)
        return
    if a.cmd == 'manifest':
        return write_manifest(a.out)
    if a.cmd == 'all':
        os.makedirs(a.out, exist_ok=True)
        done = set(json.load(open(rpath))) if (a.skip_done and os.path.exists(rpath)) else set()
        for spec in matrix(a.set):
            name = cfg_name(spec)
            if a.only and not any(s in name for s in a.only.split(',')):
                continue
            if name in done:
                continue
            t0 = time.time()
            res = run_config(a.out, spec)
            record(res)
            print(f"{name}: train={res.get('train_rc')} z2fp32={res.get('zero_to_fp32_rc')} "
                  f"univ={res.get('ds_to_universal_rc')} ({time.time()-t0:.0f}s)", flush=True)
        write_manifest(a.out)


if __name__ == '__main__':
    main()
