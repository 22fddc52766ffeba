"""Reading a file someone else wrote (a model folder sent by a colleague): bounded, never blocking.

Every model-side file ``sts predict`` reads (model.pt, the LightGBM model.txt and model.json,
a fusion's model.json, calibration.json) goes through ``read_capped``: it must be a regular
file once symlinks are resolved (``/dev/zero`` would be read forever, a FIFO would block the
open), and at most ``max_bytes`` long, read with at most ``max_bytes + 1`` bytes asked for
whatever ``st_size`` says. JSON is parsed strictly (no NaN/Infinity) and to a bounded nesting
depth (``MAX_JSON_DEPTH``): a deeply nested document is a refusal, not a RecursionError that
loses the whole batch. Anything refused raises ``UntrustedFileError`` (a ValueError) with one
line naming the file and the reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

MAX_JSON_DEPTH = 32  # sts writes at most ~5 levels (model.json's ood, calibration's scores)
MAX_MODEL_BYTES = 2 * 2**30  # any model file read or hashed whole (the largest, inception_v3's model.pt: ~100 MB)
_CHUNK = 1 << 20


class UntrustedFileError(ValueError):
    """A model-side file that is not a bounded regular file, or not strict JSON of bounded depth."""


def _open_regular(path: Path, max_bytes: int, what: str) -> tuple[int, int]:
    """(descriptor, size) of a regular file of at most ``max_bytes``; O_NONBLOCK so that opening
    a FIFO returns at once (it is then refused by its type)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UntrustedFileError(f"{path}: no such file") from None
    except OSError as err:
        raise UntrustedFileError(f"{path}: cannot open the {what}: {err.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UntrustedFileError(f"{path}: the {what} is not a regular file (a device, FIFO, socket or folder): "
                                     "refused")  # fmt: skip
        if st.st_size > max_bytes:
            raise UntrustedFileError(f"{path}: {st.st_size} bytes, more than a {what} can be ({max_bytes})")
    except BaseException:
        os.close(fd)
        raise
    return fd, st.st_size


def _chunks(fd: int, path: Path, max_bytes: int, what: str):
    """The file's bytes in blocks, at most ``max_bytes`` (a file that grows past it is refused)."""
    left = max_bytes + 1
    while left > 0:
        block = os.read(fd, min(_CHUNK, left))
        if not block:
            return
        left -= len(block)
        if left <= 0:
            raise UntrustedFileError(f"{path}: more than {max_bytes} bytes, more than a {what} can be")
        yield block


def read_capped(path, max_bytes: int, what: str = "model file") -> bytes:
    """The bytes of regular file ``path`` (symlinks resolved), refused beyond ``max_bytes``."""
    path = Path(path)
    fd, _ = _open_regular(path, max_bytes, what)
    try:
        return b"".join(_chunks(fd, path, max_bytes, what))
    finally:
        os.close(fd)


def sha256_capped(path, max_bytes: int, what: str = "model file") -> str:
    """sha256 of regular file ``path`` read as ``read_capped`` reads it, without holding it in memory."""
    path = Path(path)
    fd, _ = _open_regular(path, max_bytes, what)
    h = hashlib.sha256()
    try:
        for block in _chunks(fd, path, max_bytes, what):
            h.update(block)
    finally:
        os.close(fd)
    return h.hexdigest()


def _reject_constant(name: str):
    raise ValueError(f"non-standard JSON constant {name}")


def json_depth(obj) -> int:
    """Nesting depth of parsed JSON (a scalar: 0, ``[]``: 1), without recursion."""
    if not isinstance(obj, (dict, list)):
        return 0
    depth, stack = 0, [(obj, 1)]
    while stack:
        value, level = stack.pop()
        depth = max(depth, level)
        items = value.values() if isinstance(value, dict) else value
        stack.extend((v, level + 1) for v in items if isinstance(v, (dict, list)))
    return depth


def parse_json(text: str | bytes, where, what: str, max_depth: int = MAX_JSON_DEPTH):
    """Strict JSON (no NaN/Infinity) nested at most ``max_depth`` deep; UntrustedFileError otherwise."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        doc = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise UntrustedFileError(f"{where}: not a {what}: JSON nested deeper than {max_depth} levels") from None
    except (UnicodeDecodeError, ValueError) as err:
        raise UntrustedFileError(f"{where}: not a {what}: {err}") from None
    if json_depth(doc) > max_depth:
        raise UntrustedFileError(f"{where}: not a {what}: JSON nested deeper than {max_depth} levels")
    return doc


def load_json(path, max_bytes: int, what: str, max_depth: int = MAX_JSON_DEPTH):
    """``parse_json`` of ``read_capped(path)``."""
    return parse_json(read_capped(path, max_bytes, what), path, what, max_depth)
