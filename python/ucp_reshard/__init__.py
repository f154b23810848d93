"""ucp-reshard for Python: DeepSpeed's zero_to_fp32 functions as drop-ins, without DeepSpeed, and
lazy readers of the checkpoints ucp-reshard reads.

    from ucp_reshard import get_fp32_state_dict_from_zero_checkpoint
    state_dict = get_fp32_state_dict_from_zero_checkpoint("out/checkpoint-100")

    import ucp_reshard
    with ucp_reshard.open_checkpoint("out/checkpoint-100") as ckpt:   # torch optional
        for name, t in ckpt.items():
            print(name, t.dtype, t.shape); a = t.numpy()

One process, no MPI (the C++ core runs with its one-rank communicator); for parallel runs use the
`ucp-reshard` command under mpirun.
"""

from ._core import __version__
from ._errors import CheckpointError, CheckpointNotFoundError, UnsupportedCheckpointError
from ._lazy import LazyTensor
from .reader import Checkpoint, open_checkpoint
from .zero_to_fp32 import (
    convert_zero_checkpoint_to_fp32_state_dict,
    convert_zero_checkpoint_to_state_dict,
    get_fp32_state_dict_from_zero_checkpoint,
    load_state_dict_from_zero_checkpoint,
)

__all__ = [
    "__version__",
    "CheckpointError",
    "CheckpointNotFoundError",
    "UnsupportedCheckpointError",
    "LazyTensor",
    "Checkpoint",
    "open_checkpoint",
    "get_fp32_state_dict_from_zero_checkpoint",
    "load_state_dict_from_zero_checkpoint",
    "convert_zero_checkpoint_to_fp32_state_dict",
    "convert_zero_checkpoint_to_state_dict",
]
