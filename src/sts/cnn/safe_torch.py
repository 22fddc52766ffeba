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


MAX_FILE_BYTES = 2**30  # a model.pt or training checkpoint (inception_v3: ~100 MB of weights)
MAX_UNCOMPRESSED_BYTES = 2**30  # torch.save stores members uncompressed: about the file's size


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
    """``torch.load`` restricted to tensors and plain data; anything else raises UnsafeModelError.

    The file is read as an untrusted one (``sts.io.untrusted.read_capped``: a regular file of at
    most ``MAX_FILE_BYTES``) and must be a zip archive (what torch.save writes) whose members
    declare at most ``MAX_UNCOMPRESSED_BYTES`` together: torch allocates each member's declared
    size, so a deflate bomb (10 MB -> 2.9 GB) is refused before torch reads it
    (``sts.io.untrusted.UntrustedFileError``)."""
    import io
    import pickle
    import zipfile

    import torch

    from sts.io.untrusted import UntrustedFileError, read_capped

    data = read_capped(path, MAX_FILE_BYTES, "model file")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as err:
        raise UntrustedFileError(f"{path}: not a model file written by torch.save (a zip archive): {err}") from None
    total = sum(m.file_size for m in members)
    if total > MAX_UNCOMPRESSED_BYTES:
        raise UntrustedFileError(f"{path}: its members unpack to {total} bytes, more than a model can be "
                                 f"({MAX_UNCOMPRESSED_BYTES}): refused")  # fmt: skip
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeModelError(
            f"{path}: refused to load: the file holds objects other than tensors and plain data, and loading "
            "them could run code. Models written by `sts train` (this version) load safely; re-train, or re-save "
            f"the model from a trusted copy. ({str(err).splitlines()[0]})"
        ) from None
