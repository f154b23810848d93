"""Writes tests/golden/dcp/legacy_torch113/dcp: a DCP folder in torch 1.13's dialect (the
prototype torch.distributed._shard.checkpoint: classes under that module, no planner_data, no
flattening, one data file per item), plus legacy_torch113/expected.pt: the tensors as that torch
reads them back (load_state_dict), saved with torch.save for tests that run without torch 1.13.

Run with Debian bookworm's /usr/bin/python3 (torch 1.13): python3 make_legacy_fixture.py OUT_DIR.
torch 1.13 predates Python 3.11's dataclass check (a dataclass instance as a field default is
"mutable"), so importing its checkpoint module fails there; the shim below turns such defaults into
default factories, in this process only, before the import.
"""
import copy
import dataclasses
import os
import sys

_field = dataclasses.field


def _field_with_factory(*args, **kwargs):
    default = kwargs.get("default", dataclasses.MISSING)
    if dataclasses.is_dataclass(default) and not isinstance(default, type):
        kwargs.pop("default")
        kwargs["default_factory"] = lambda d=default: copy.deepcopy(d)
    return _field(*args, **kwargs)


dataclasses.field = _field_with_factory

import torch  # noqa: E402
import torch.distributed._shard.checkpoint as legacy  # noqa: E402


def state():
    g = torch.Generator().manual_seed(113)
    return {
        "model.w": torch.randn((3, 5), generator=g),
        "model.b": torch.randn((5,), generator=g).to(torch.bfloat16),
        "ids": torch.arange(4, dtype=torch.int64),
        "step": 9,
    }


def main():
    root = sys.argv[1]
    out = os.path.join(root, "legacy_torch113", "dcp")  # not "checkpoint": torch 2.x cannot read it
    os.makedirs(out, exist_ok=True)
    legacy.save_state_dict(state(), legacy.FileSystemWriter(out), no_dist=True)
    back = {k: torch.zeros_like(v) if isinstance(v, torch.Tensor) else 0 for k, v in state().items()}
    legacy.load_state_dict(back, legacy.FileSystemReader(out), no_dist=True)
    torch.save({k: v for k, v in back.items() if isinstance(v, torch.Tensor)},
               os.path.join(root, "legacy_torch113", "expected.pt"))
    print("wrote", out, sorted(os.listdir(out)), "step read back as", back["step"])


if __name__ == "__main__":
    main()
