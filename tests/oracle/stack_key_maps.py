"""--key-map: HF Llama <-> Meta/Lingua <-> torchtitan names and the q/k rotary permutation, held
against logits.

Tiny random transformers.LlamaForCausalLM models (GQA: 8 heads, 2 kv heads; MHA: 4 and 4; and one
with tied embeddings whose lm_head is not saved) are saved by torch's dcp.save. ucp-reshard converts
them with the presets; the oracle is the logits:
- HF -> Meta (to-dcp, chunked for 3 ranks, 1 and 2 writing ranks) and HF -> torchtitan (to-fp32): a
  Meta-style Llama written here (interleaved complex rotary, as Meta/Lingua/torchtitan apply it)
  loads the result with load_state_dict(strict=True) and its logits equal HF's;
- Meta -> HF: the Meta-named state saved by dcp.save, and our own chunked Meta DCP, converted back
  load into LlamaForCausalLM and give its logits again;
- a wrong n_kv_heads: refused (one line) when the config also gives the width; with only head
  counts known (no head_dim), the rows permute with the wrong head size and the logits differ;
- --lingua-params writes a params.json whose fields give back config.json's model (the Meta model
  is built from it, with Lingua's FFN rule); --like takes a template's keys and dtypes and refuses
  a template key nothing fills."""

import json
import math
import os
import tempfile
import unittest
import warnings

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

import ucp_oracle as uo

# ---------------------------------------------------------------- a Meta-style Llama (own code)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps, self.weight = eps, nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_pairs(x, freqs):
    """Meta's rotary: consecutive pairs (2i, 2i+1) of each head as one complex number."""
    pairs = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * freqs[None, :, None, :]).flatten(3)


class Attention(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.h, self.kv, self.hd = p["n_heads"], p["n_kv_heads"], p["head_dim"]
        self.wq = nn.Linear(p["dim"], self.h * self.hd, bias=False)
        self.wk = nn.Linear(p["dim"], self.kv * self.hd, bias=False)
        self.wv = nn.Linear(p["dim"], self.kv * self.hd, bias=False)
        self.wo = nn.Linear(self.h * self.hd, p["dim"], bias=False)

    def forward(self, x, freqs):
        b, t, _ = x.shape
        q = rotate_pairs(self.wq(x).view(b, t, self.h, self.hd), freqs)
        k = rotate_pairs(self.wk(x).view(b, t, self.kv, self.hd), freqs)
        v = self.wv(x).view(b, t, self.kv, self.hd)
        k, v = (z.repeat_interleave(self.h // self.kv, dim=2) for z in (k, v))
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        return self.wo(o.transpose(1, 2).reshape(b, t, -1))


class FeedForward(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.attention, self.feed_forward = Attention(p), FeedForward(p["dim"], p["hidden"])
        self.attention_norm, self.ffn_norm = RMSNorm(p["dim"], p["eps"]), RMSNorm(p["dim"], p["eps"])

    def forward(self, x, freqs):
        h = x + self.attention(self.attention_norm(x), freqs)
        return h + self.feed_forward(self.ffn_norm(h))


class MetaLlama(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.p = p
        self.tok_embeddings = nn.Embedding(p["vocab"], p["dim"])
        self.layers = nn.ModuleList(Block(p) for _ in range(p["n_layers"]))
        self.norm = RMSNorm(p["dim"], p["eps"])
        self.output = nn.Linear(p["dim"], p["vocab"], bias=False)

    def forward(self, tokens):
        hd, t = self.p["head_dim"], tokens.shape[1]
        inv = 1.0 / self.p["theta"] ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd)
        freqs = torch.polar(torch.ones(t, hd // 2), torch.outer(torch.arange(t, dtype=torch.float32), inv))
        h = self.tok_embeddings(tokens)
        for layer in self.layers:
            h = layer(h, freqs)
        return self.output(self.norm(h))


# ---------------------------------------------------------------- fixtures

CASES = {  # name -> (heads, kv heads, tied, seed)
    "gqa": (8, 2, False, 1),
    "mha": (4, 4, False, 2),
    "tied": (4, 2, True, 3),
}
# LMTransformerArgs' fields (facebookresearch/lingua 437d680e: BaseTransformerArgs in lingua/transformer.py
# and LMTransformerArgs in apps/main/transformer.py). Lingua builds it with strict=False, so a
# misspelt key would be ignored silently: every key we write must be one of these.
LINGUA_MODEL_FIELDS = {"dim", "n_layers", "head_dim", "n_heads", "n_kv_heads", "ffn_dim_multiplier", "multiple_of",
                       "norm_eps", "rope_theta", "init_base_std", "init_std_factor", "max_seqlen", "seed", "vocab_size",
                       "weight_tying", "sliding_window"}
TOKENS = torch.randint(0, 96, (2, 12), generator=torch.Generator().manual_seed(0))


def hf_model(name):
    from transformers import LlamaConfig, LlamaForCausalLM
    heads, kv, tied, seed = CASES[name]
    cfg = LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                      num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=64,
                      rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=tied, attn_implementation="eager")
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # weights large enough that a misplaced row moves the logits
        for n, p in model.named_parameters():
            p.copy_(1 + 0.1 * torch.randn_like(p) if "norm" in n else torch.randn_like(p) / math.sqrt(p.shape[-1]))
    return model


def meta_params(config):
    heads = config["num_attention_heads"]
    return {"dim": config["hidden_size"], "n_layers": config["num_hidden_layers"], "n_heads": heads,
            "n_kv_heads": config["num_key_value_heads"], "head_dim": config["hidden_size"] // heads,
            "hidden": config["intermediate_size"], "vocab": config["vocab_size"], "eps": config["rms_norm_eps"],
            "theta": 10000.0}


def logits(model):
    with torch.no_grad():
        out = model(TOKENS)
    return (out.logits if hasattr(out, "logits") else out).float()


def save_dcp(state, folder):
    warnings.filterwarnings("ignore", message="torch.distributed is disabled")  # one process, on purpose
    dcp.save({k: v.detach().clone().contiguous() for k, v in state.items()}, checkpoint_id=folder, no_dist=True)


def ucp(args, ranks=1):
    p = uo.run(args + ["--no-progress"], ranks)
    return p


class KeyMaps(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.models, cls.sources, cls.configs = {}, {}, {}
        for name in CASES:
            model = hf_model(name)
            state = model.state_dict()
            if CASES[name][2]:
                state.pop("lm_head.weight")  # as save_pretrained leaves a tied lm_head out
            folder = os.path.join(cls.tmp.name, f"hf-{name}")
            save_dcp(state, folder)
            config_path = os.path.join(cls.tmp.name, f"config-{name}.json")
            model.config.to_json_file(config_path)
            with open(config_path) as f:
                cls.configs[name] = json.load(f)
            cls.models[name], cls.sources[name] = model, folder

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def out(self, name):
        return os.path.join(self.tmp.name, name)

    def config(self, name):
        return os.path.join(self.tmp.name, f"config-{name}.json")

    def meta_model(self, state, params):
        model = MetaLlama(params).eval()
        if "output.weight" not in state:  # a tied source: the output reads the embedding
            state = dict(state, **{"output.weight": state["tok_embeddings.weight"]})
        model.load_state_dict(state, strict=True)
        return model

    def assert_same_logits(self, model, name):
        torch.testing.assert_close(logits(model), logits(self.models[name]), rtol=1e-5, atol=1e-5)

    def test_hf_to_meta_dcp_gives_hf_logits(self):
        for name in CASES:
            for ranks in (1, 2):
                with self.subTest(name=name, ranks=ranks):
                    out = self.out(f"meta-{name}-{ranks}")
                    p = ucp(["to-dcp", self.sources[name], out, "--key-map", "hf-to-meta", "--model-config",
                             self.config(name), "--target-world-size", "3"], ranks)
                    self.assertEqual(p.returncode, 0, p.stderr)
                    state = uo.dcp_tensors(out, self.tmp.name)
                    self.assertNotIn("lm_head.weight", state)
                    self.assert_same_logits(self.meta_model(state, meta_params(self.configs[name])), name)

    def test_hf_to_torchtitan_gives_hf_logits(self):
        for name in CASES:
            with self.subTest(name=name):
                out = self.out(f"titan-{name}")
                p = ucp(["to-fp32", self.sources[name], out, "--key-map", "hf-to-torchtitan", "--model-config",
                         self.config(name)])
                self.assertEqual(p.returncode, 0, p.stderr)
                titan = load_file(os.path.join(out, "model.safetensors"))
                self.assertIn("layers.1.attention.qkv_linear.wk.weight", titan)
                self.assertIn("lm_head.weight", titan)
                # torchtitan's names are Meta's with qkv_linear and lm_head: renamed here to load.
                state = {k.replace("qkv_linear.", "").replace("lm_head.", "output."): v for k, v in titan.items()}
                self.assert_same_logits(self.meta_model(state, meta_params(self.configs[name])), name)

    def test_meta_to_hf_gives_hf_logits(self):
        from transformers import LlamaForCausalLM
        for name in ("gqa", "mha"):
            with self.subTest(name=name):
                meta = self.out(f"meta-src-{name}")
                p = ucp(["to-dcp", self.sources[name], meta, "--key-map", "hf-to-meta", "--model-config", self.config(name),
                         "--target-world-size", "3"])
                self.assertEqual(p.returncode, 0, p.stderr)
                meta_state = uo.dcp_tensors(meta, self.tmp.name)
                resaved = self.out(f"meta-dcp-save-{name}")
                save_dcp(meta_state, resaved)  # torch's own writing of the Meta-named state
                for source in (resaved, meta):  # ... and our chunked one (Shard(0) over 3 ranks)
                    back = self.out(f"hf-back-{name}-{os.path.basename(source)}")
                    p = ucp(["to-fp32", source, back, "--key-map", "meta-to-hf", "--model-config", self.config(name)])
                    self.assertEqual(p.returncode, 0, p.stderr)
                    hf = LlamaForCausalLM(self.models[name].config).eval()
                    hf.load_state_dict(load_file(os.path.join(back, "model.safetensors")), strict=True)
                    self.assert_same_logits(hf, name)

    def test_wrong_kv_heads(self):
        # With the model's width known, wk's rows cannot be n_kv_heads x head_dim: a refusal.
        bad = dict(self.configs["gqa"], num_key_value_heads=4)
        bad_path = self.out("config-bad-kv.json")
        with open(bad_path, "w") as f:
            json.dump(bad, f)
        out = self.out("meta-bad-kv")
        p = ucp(["to-dcp", self.sources["gqa"], out, "--key-map", "hf-to-meta", "--model-config", bad_path], 2)
        self.assertNotEqual(p.returncode, 0)
        self.assertFalse(os.path.exists(out))
        lines = [line for line in p.stderr.splitlines() if "n_kv_heads" in line]
        self.assertTrue(lines, p.stderr)
        self.assertIn("layers.0.self_attn.k_proj.weight", lines[0])
        # Only head counts (a params.json without dim or head_dim): wk's 16 rows split into 4 heads
        # of 4, which divides, so it converts, and the logits differ.
        counts = self.out("params-counts.json")
        with open(counts, "w") as f:
            json.dump({"n_heads": 8, "n_kv_heads": 4}, f)
        out = self.out("meta-bad-kv-counts")
        p = ucp(["to-dcp", self.sources["gqa"], out, "--key-map", "hf-to-meta", "--model-config", counts])
        self.assertEqual(p.returncode, 0, p.stderr)
        model = self.meta_model(uo.dcp_tensors(out, self.tmp.name), meta_params(self.configs["gqa"]))
        self.assertGreater((logits(model) - logits(self.models["gqa"])).abs().max().item(), 1e-2)
        # No heads at all: refused, naming what to give.
        p = ucp(["to-dcp", self.sources["gqa"], self.out("meta-no-heads"), "--key-map", "hf-to-meta"])
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("--model-config", p.stderr)

    def test_config_json_in_the_source_folder_gives_heads(self):
        import shutil
        src = self.out("hf-gqa-with-config")
        shutil.copytree(self.sources["gqa"], src)
        shutil.copy(self.config("gqa"), os.path.join(src, "config.json"))
        out = self.out("meta-auto-heads")
        p = ucp(["to-dcp", src, out, "--key-map", "hf-to-meta"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assert_same_logits(self.meta_model(uo.dcp_tensors(out, self.tmp.name), meta_params(self.configs["gqa"])), "gqa")

    def test_lingua_params_describe_the_model(self):
        out = self.out("lingua-gqa")
        p = ucp(["to-dcp", self.sources["gqa"], out, "--key-map", "hf-to-lingua", "--model-config", self.config("gqa"),
                 "--lingua-params", self.config("gqa"), "--lingua-tokenizer", "tiktoken:/tok/tokenizer.model"])
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(os.path.join(out, "params.json")) as f:
            params = json.load(f)
        m, cfg = params["model"], self.configs["gqa"]
        self.assertLessEqual(set(m), LINGUA_MODEL_FIELDS)
        self.assertEqual((m["dim"], m["n_layers"], m["n_heads"], m["n_kv_heads"], m["vocab_size"]),
                         (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"],
                          cfg["num_key_value_heads"], cfg["vocab_size"]))
        self.assertEqual((m["norm_eps"], m["rope_theta"], m["weight_tying"]), (cfg["rms_norm_eps"], 10000.0, False))
        self.assertEqual(params["distributed"]["model_dtype"], "fp32")
        self.assertEqual(params["data"]["tokenizer"], {"name": "tiktoken", "path": "/tok/tokenizer.model"})
        # Lingua's FFN rule (lingua/transformer.py) on these fields gives intermediate_size.
        hidden = int(2 * 4 * m["dim"] / 3)
        if m["ffn_dim_multiplier"] is not None:
            hidden = int(m["ffn_dim_multiplier"] * hidden)
        hidden = m["multiple_of"] * ((hidden + m["multiple_of"] - 1) // m["multiple_of"])
        self.assertEqual(hidden, cfg["intermediate_size"])
        # The Meta model built from params.json alone loads the model.* keys and gives HF's logits.
        built = {"dim": m["dim"], "n_layers": m["n_layers"], "n_heads": m["n_heads"], "n_kv_heads": m["n_kv_heads"],
                 "head_dim": m["head_dim"], "hidden": hidden, "vocab": m["vocab_size"], "eps": m["norm_eps"],
                 "theta": m["rope_theta"]}
        state = uo.dcp_tensors(out, self.tmp.name)
        self.assertTrue(all(k.startswith("model.") for k in state), sorted(state)[:3])
        self.assert_same_logits(self.meta_model({k[len("model."):]: v for k, v in state.items()}, built), "gqa")

    def test_tied_model_to_lingua_and_back(self):
        from transformers import LlamaForCausalLM
        out = self.out("lingua-tied")
        p = ucp(["to-dcp", self.sources["tied"], out, "--key-map", "hf-to-lingua", "--model-config", self.config("tied"),
                 "--lingua-params", self.config("tied"), "--lingua-tokenizer", "bytes", "--target-world-size", "2"])
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(os.path.join(out, "params.json")) as f:
            self.assertIs(json.load(f)["model"]["weight_tying"], True)
        state = uo.dcp_tensors(out, self.tmp.name)
        # Lingua's TiedLinear keeps the embedding as a submodule: its key, not an output.weight.
        self.assertNotIn("model.output.weight", state)
        self.assertTrue(torch.equal(state["model.output.tied_module.weight"], state["model.tok_embeddings.weight"]))
        back = self.out("hf-from-lingua-tied")
        p = ucp(["to-fp32", out, back, "--key-map", "lingua-to-hf", "--model-config", self.config("tied")], 3)
        self.assertEqual(p.returncode, 0, p.stderr)
        hf = LlamaForCausalLM(self.models["tied"].config).eval()
        hf.load_state_dict(load_file(os.path.join(back, "model.safetensors")), strict=True)
        self.assert_same_logits(hf, "tied")

    def test_like_takes_the_template(self):
        params = meta_params(self.configs["gqa"])
        template = MetaLlama(params).to(torch.bfloat16).state_dict()
        seed = self.out("seed-bf16")
        save_dcp(template, seed)
        out = self.out("meta-like")
        p = ucp(["to-dcp", self.sources["gqa"], out, "--key-map", "hf-to-meta", "--model-config", self.config("gqa"),
                 "--like", seed, "--target-world-size", "2"])
        self.assertEqual(p.returncode, 0, p.stderr)
        state = uo.dcp_tensors(out, self.tmp.name)
        self.assertEqual(sorted(state), sorted(template))
        self.assertTrue(all(v.dtype == torch.bfloat16 for v in state.values()))
        model = self.meta_model({k: v.float() for k, v in state.items()}, params)
        torch.testing.assert_close(logits(model), logits(self.models["gqa"]), rtol=0.05, atol=0.1)  # bf16 weights
        # The template's non-tensor items come along, where the template nests them.
        seed_items = self.out("seed-items")
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.save({**{k: v.clone() for k, v in template.items()}, "extra": {"step": 7, "tag": "seed", "betas": (0.9, 0.95)}},
                 checkpoint_id=seed_items, no_dist=True)
        out_items = self.out("meta-like-items")
        p = ucp(["to-dcp", self.sources["gqa"], out_items, "--key-map", "hf-to-meta", "--model-config", self.config("gqa"),
                 "--like", seed_items], 2)
        self.assertEqual(p.returncode, 0, p.stderr)
        whole = os.path.join(self.tmp.name, "meta-like-items.pt")
        dcp_to_torch_save(out_items, whole)
        got = torch.load(whole, weights_only=True)
        self.assertEqual(got["extra"], {"step": 7, "tag": "seed", "betas": (0.9, 0.95)})
        self.assertEqual(list(got), list(template) + ["extra"])
        # A template key nothing fills (an old torchtitan's freqs_cis buffer): one line naming it.
        with_buffer = dict(template, freqs_cis=torch.zeros(4, 2))
        seed2 = self.out("seed-freqs")
        save_dcp(with_buffer, seed2)
        p = ucp(["to-dcp", self.sources["gqa"], self.out("meta-like-bad"), "--key-map", "hf-to-meta",
                 "--model-config", self.config("gqa"), "--like", seed2], 2)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("'freqs_cis'", p.stderr)
        self.assertFalse(os.path.exists(self.out("meta-like-bad")))



class KeyMapRefusals(uo.BadInputCase):
    """Bad key-map, model-config, template and Lingua options: one error line on 1 and 3 ranks."""
    SRC = os.path.join(uo.GOLDEN, "dcp", "flat_ws1", "checkpoint")
    TAG = ""

    def refused(self, args, fragments):
        self.check_failure(["to-dcp", self.ckpt, os.path.join(self.tmp, "out"), *args], uo.INVALID_ARGUMENT, fragments,
                           self.tmp, {"ckpt", "bad.json"})

    def test_unknown_preset(self):
        self.refused(["--key-map", "no-such-preset"], ["no-such-preset", "hf-to-meta"])

    def test_malformed_key_map_file(self):
        path = os.path.join(self.tmp, "bad.json")
        with open(path, "w") as f:
            f.write('{"rename": 3}')
        self.refused(["--key-map", path], [path, "rename"])

    def test_unreadable_model_config(self):
        self.refused(["--key-map", "hf-to-meta", "--model-config", "/nonexistent/config.json"],
                     ["/nonexistent/config.json"])

    def test_lingua_params_without_a_tokenizer(self):
        self.refused(["--lingua-params", "/nonexistent/config.json"], ["--lingua-tokenizer"])

    def test_like_is_not_a_dcp_folder(self):
        self.refused(["--like", self.tmp], ["--like", "not a DCP folder"])


if __name__ == "__main__":
    unittest.main()
