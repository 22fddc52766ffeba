"""Specimen ids: one rule for every cohort (synthetic, Allen, DANDI, paper, local) and for
``sts predict``.

An id becomes file names (``{nwb_dir}/{id}.nwb``, ``results/scalograms/{id}.h5``, logs,
benchmarks, figures; the atomic writers add a temporary prefix and suffix), a Snakemake wildcard
and a command-line argument. So an id is letters, digits, ``_``, ``-`` and ``.`` only (matched
whole: a ``$`` would let ``id\\n`` through), starts with a letter, digit or ``_`` (not ``.``:
``.``/``..`` and hidden files; not ``-``: an option), and has at most ``MAX_ID_LENGTH``
characters. Such an id never starts with a character a spreadsheet reads as a formula
(``= + - @``), which lets ``sts.io.text.spreadsheet_safe`` leave every valid id unchanged.

``ID_PATTERN`` is the whole rule as one regular expression: the workflow's wildcard constraint
(``workflow/rules/common.smk``) is that same string.
"""

from __future__ import annotations

import hashlib
import re

MAX_ID_LENGTH = 200  # {id}.features.json under an atomic writer's temporary name stays < 255 bytes
ID_PATTERN = rf"[A-Za-z0-9_][A-Za-z0-9_.-]{{0,{MAX_ID_LENGTH - 1}}}"
SAFE_ID = re.compile(ID_PATTERN)  # of the whole id: fullmatch
_ALLOWED = re.compile(r"[A-Za-z0-9_.-]+")
_DERIVED_PREFIX = 40  # characters of the original name kept in a derived id


def id_problem(specimen_id: str) -> str:
    """Why ``specimen_id`` is unsafe as a file name / wildcard / command-line argument; '' if safe.
    The message shows the id cut short (``repr``, control characters escaped)."""
    specimen_id = str(specimen_id)
    if SAFE_ID.fullmatch(specimen_id):
        return ""
    shown = repr(specimen_id[:40]) + ("..." if len(specimen_id) > 40 else "")
    if len(specimen_id) > MAX_ID_LENGTH and _ALLOWED.fullmatch(specimen_id):
        return f"unsafe specimen_id {shown}: longer than {MAX_ID_LENGTH} characters ({len(specimen_id)})"
    if not _ALLOWED.fullmatch(specimen_id):
        return f"unsafe specimen_id {shown}: use only letters, digits, '_', '-' and '.'"
    return f"unsafe specimen_id {shown}: must not start with '.' or '-'"


def derived_id(name: str) -> str:
    """A safe id for a name that is not one (a file stem like ``=HYPERLINK(..)``, 250 characters,
    spaces or newlines): its allowed characters (others become ``_``, at most 40 kept) and a short
    hash of the whole name, so distinct names stay distinct and the same name gives the same id."""
    digest = hashlib.sha256(str(name).encode("utf-8", "surrogateescape")).hexdigest()[:12]
    prefix = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).lstrip(".-")[:_DERIVED_PREFIX]
    return f"{prefix}-{digest}" if prefix else f"file-{digest}"


def safe_id(name: str) -> str:
    """``name`` itself when it is a valid id, else its ``derived_id``."""
    return name if not id_problem(name) else derived_id(name)
