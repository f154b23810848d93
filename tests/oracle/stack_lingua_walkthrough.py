"""README's Lingua round trip, command by command, on a tiny transformers Llama (GQA):

1. an HF model folder (save_pretrained: safetensors + config.json) -> `to-dcp --key-map hf-to-lingua
   --lingua-params` -> a DCP Lingua initialises from (its load_from_checkpoint: get_model_state_dict
   under "model", dcp.load) with a params.json;
2. Lingua trains (here: one AdamW step of a Meta-style Llama written in stack_key_maps.py) and saves
   a step folder with torch's dcp.save of {"model", "optim"}, params.json beside it;
3. `to-fp32 STEP STEP/consolidated --format torch` -> consolidated.pth (+ params.json), what Lingua's
   evaluation loads: its ["model"] gives the trained model's logits, its ["optim"] the optimizer state;
4. `to-fp32 STEP HF --key-map lingua-to-hf --hf-config HF_SRC` -> an HF folder that
   LlamaForCausalLM.from_pretrained loads with the trained model's logits."""

import json
import os
import shutil
import tempfile
import unittest

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_state_dict

import ucp_oracle as uo
from stack_key_maps import MetaLlama, hf_model, logits, meta_params


def run(args, ranks=1):
    p = uo.run(args + ["--no-progress"], ranks)
    assert p.returncode == 0, p.stderr
    return p


class LinguaWalkthrough(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ucp-oracle-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def test_hf_to_lingua_and_back(self):
        from transformers import LlamaForCausalLM
        hf = hf_model("gqa")
        hf.save_pretrained(self.path("hf"))
        with open(self.path("hf/config.json")) as f:
            params = meta_params(json.load(f))

        # 1. HF -> a DCP Lingua initialises from, chunked for 2 training ranks.
        run(["to-dcp", self.path("hf"), self.path("init"), "--key-map", "hf-to-lingua",
             "--lingua-params", self.path("hf/config.json"), "--lingua-tokenizer", "tiktoken:/tok/tokenizer.model",
             "--target-world-size", "2"], 2)
        self.assertTrue(os.path.isfile(self.path("init/params.json")))
        model = MetaLlama(params)
        sd = {"model": get_model_state_dict(model)}
        dcp.load(sd, checkpoint_id=self.path("init"), no_dist=True)
        model.load_state_dict(sd["model"])
        torch.testing.assert_close(logits(model.eval()), logits(hf), rtol=1e-5, atol=1e-5)

        # 2. One training step, saved as Lingua saves a step folder.
        model.train()
        optim = torch.optim.AdamW(model.parameters(), lr=1e-2)
        loss = model(torch.randint(0, 96, (2, 12), generator=torch.Generator().manual_seed(5))).float().square().mean()
        loss.backward()
        optim.step()
        msd, osd = get_state_dict(model, optim)
        step = self.path("0000000001")
        dcp.save({"model": msd, "optim": osd}, checkpoint_id=step, no_dist=True)
        shutil.copy(self.path("init/params.json"), os.path.join(step, "params.json"))
        trained = logits(model.eval())

        # 3. The consolidated checkpoint Lingua's evaluation reads.
        run(["to-fp32", step, os.path.join(step, "consolidated"), "--format", "torch"], 2)
        consolidated = torch.load(os.path.join(step, "consolidated", "consolidated.pth"), weights_only=True)
        self.assertTrue(os.path.isfile(os.path.join(step, "consolidated", "params.json")))
        evaluated = MetaLlama(params)
        evaluated.load_state_dict(consolidated["model"])
        torch.testing.assert_close(logits(evaluated.eval()), trained, rtol=0, atol=0)
        for fqn, state in osd["state"].items():
            for k, v in state.items():
                self.assertTrue(uo.bits_equal(consolidated["optim"]["state"][fqn][k], v), f"{fqn} {k}")
        self.assertEqual(consolidated["optim"]["param_groups"], osd["param_groups"])

        # 4. Back to an HF model folder.
        run(["to-fp32", step, self.path("hf-out"), "--key-map", "lingua-to-hf",
             "--model-config", os.path.join(step, "params.json"), "--hf-config", self.path("hf")], 2)
        back = LlamaForCausalLM.from_pretrained(self.path("hf-out"), attn_implementation="eager").eval()
        torch.testing.assert_close(logits(back), trained, rtol=1e-5, atol=1e-5)


if __name__ == "__main__":
    unittest.main()
