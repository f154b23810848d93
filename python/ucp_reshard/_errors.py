"""Exceptions carrying ucp-reshard's one-line messages (base::Status of the C++ core).

Every error is a CheckpointError (a ValueError, as DeepSpeed's zero_to_fp32 raises for a bad
checkpoint); missing files and folders are also FileNotFoundError, valid but unsupported input is
also NotImplementedError; the other codes get subclasses named after them (CheckpointDataLossError,
...). `code` is the Status code name ("DataLoss", "NotFound", ...).
"""


class CheckpointError(ValueError):
    """A checkpoint could not be read or converted; str(e) is ucp-reshard's one-line message."""

    code = "Unknown"


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    code = "NotFound"


class UnsupportedCheckpointError(CheckpointError, NotImplementedError):
    code = "Unimplemented"


_BY_CODE = {}


def error_class(code):
    """The exception class for Status code `code` (called by the C++ core)."""
    cls = _BY_CODE.get(code)
    if cls is None:
        if code == "NotFound":
            cls = CheckpointNotFoundError
        elif code == "Unimplemented":
            cls = UnsupportedCheckpointError
        else:
            name = f"Checkpoint{code}Error"  # CheckpointDataLossError, CheckpointInvalidArgumentError, ...
            cls = type(name, (CheckpointError,), {"code": code, "__module__": __name__, "__qualname__": name})
        _BY_CODE[code] = cls
    return cls
