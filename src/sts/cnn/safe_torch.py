"""Load model files and checkpoints without running code from them.

``torch.load(weights_only=False)`` unpickles arbitrary objects: a ``model.pt`` sent by a
colleague (or altered by another user of a shared disk) could run any command inside
``sts predict``. Everything we save is tensors and plain data (dict, list, str, numbers,
None), so it loads with ``weights_only=True``; ``plain`` turns numpy values into Python ones
before saving so that this stays true.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class UnsafeModelError(ValueError):
    """A model or checkpoint file that holds more than tensors and plain data; never executed."""


def plain(obj):
    """``obj`` with numpy scalars and arrays turned into Python numbers and lists (tensors kept)."""
    if isinstance(obj, dict):
        return {plain(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def safe_load(path: str | Path, map_location="cpu"):
    """``torch.load`` restricted to tensors and plain data; anything else raises UnsafeModelError."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeModelError(
            f"{path}: refused to load: the file holds objects other than tensors and plain data, and loading "
            "them could run code. Models written by `sts train` (this version) load safely; re-train, or re-save "
            f"the model from a trusted copy. ({str(err).splitlines()[0]})"
        ) from None
