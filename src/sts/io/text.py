"""Text from outside (file attributes, exception messages, file names, users' tables) on its way
into our reasons and tables.

``clean_text``: control characters (newlines, terminal escape codes, bidirectional overrides) become
one space and the text is cut to ``MAX_REASON_CHARS``: a reason stays one readable line of a log, a
CSV cell or a model card, however much a hostile file wrote.

``spreadsheet_safe``: a CSV cell starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return is
a formula to a spreadsheet (formula injection); such text cells get a leading ``'`` (the OWASP
recipe). Which CSVs and columns: the ones users open, where a cell holds outside text (ids, file
names, labels, reasons). Files the pipeline reads back still round-trip, because
- only ``str`` cells change: numbers (negative ones included) are floats or ints, and a string that
  parses as a number (``-70.5``) is left alone too;
- every valid specimen id (``sts.cohort.ids``) starts with a letter, digit or ``_``: ids of usable cells
  never change; only ids that are already excluded (unsafe) get the ``'``;
- the prefix is idempotent (``'=x`` starts with ``'``): reading a table back and writing it again
  changes nothing;
- writers keep the columns they match exactly unchanged where it matters (the manifest keeps its
  usable cells' labels, configured class names; see ``sts.cohort.manifest``).
"""

from __future__ import annotations

import re

MAX_REASON_CHARS = 500
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# C0 and C1 controls, DEL, and the format/separator characters that reorder or hide text.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]+")


def clean_text(text, limit: int = MAX_REASON_CHARS) -> str:
    """``text`` (any value, ``str()`` of it) on one line, without control characters, at most
    ``limit`` characters (cut ones end with '...')."""
    text = str(text)
    if len(text) > 4 * limit:  # never run the pattern over megabytes
        text = text[: 4 * limit]
        cut = True
    else:
        cut = False
    text = _CONTROL.sub(" ", text).strip()
    if cut or len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def neutralise(value):
    """A text value a spreadsheet would run as a formula, with a leading ``'``; anything else as is."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _is_number(value):
        return "'" + value
    return value


def spreadsheet_safe(frame, columns=None):
    """A copy of the DataFrame with the text cells of ``columns`` (default: every column holding
    objects or strings) neutralised; numeric columns are never touched."""
    out = frame.copy()
    for col in columns if columns is not None else out.columns:
        if col in out.columns and (out[col].dtype == object or str(out[col].dtype).startswith("string")):
            out[col] = out[col].map(neutralise, na_action="ignore")
    return out
