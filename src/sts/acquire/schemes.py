"""Class schemes: which class a patch-seq cell's T-type gives, and why a cell gets none.

A scheme is chosen by name (config ``labels.scheme``, ``--scheme``):

* ``study`` (default): the study's four classes Pvalb, Sst, Vip/Lamp5, Excitatory, by
  ``sts.acquire.labels.label_from_ttype`` (its rules are unchanged; the study's results too).
* ``subclass``: the T-type's subclass (its first word) among Excitatory, Lamp5, Pvalb, Sst, Vip
  and Sncg; excitatory T-types and cells without a T-type but with (sparsely) spiny dendrites
  are Excitatory, as in ``study``. Serpinf1 and Meis2 (47 and 1 cells of the Gouwens 2020
  metadata) are not classes of the scheme: excluded with that reason.
* ``inhibitory``: Lamp5, Pvalb, Sst, Vip (the CGE/MGE subclasses with hundreds of cells);
  everything else, cells without a T-type included, excluded with its reason.
* a YAML file (a name ending .yaml/.yml): a map from T-type prefixes (the first word or words
  of the T-type, e.g. ``Sst Chodl``) to classes; the longest matching prefix wins, whole words
  only (``Sst`` matches ``Sst Calb2 Pdlim5``, not ``Sstx``). The classes are the map's values in
  their order. Cells whose T-type no prefix matches, or without a T-type, are excluded with
  their reason.

Every cell the scheme cannot place gets the label ``Unsure`` and a reason; callers keep that row
(an excluded row with its reason), never drop it.

Class sizes (``too_small``): a class needs one holdout cell and one cell per CV fold (the
manifest's rule, ``sts.cohort.manifest.check_class_counts``); ``sts baseline-published`` excludes the
cells of a smaller class with that reason (e.g. Sncg where a cohort holds only a few), the workflow
stops with the class named (list the classes to keep in ``classes:``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from sts.acquire.labels import EXCITATORY_TTYPE_PREFIX, SPINY, UNSURE, study_label, text_value, unsure_reason
from sts.settings import STUDY_CLASSES

STUDY = "study"
BUILT_IN = ("study", "subclass", "inhibitory")
YAML_SUFFIXES = (".yaml", ".yml")
MAX_MAP_BYTES = 1 << 20
MAX_NAME = 100  # characters of a class name or a prefix


class SchemeError(ValueError):
    """A scheme name or a user's map that cannot be used (the message says why)."""


@dataclass(frozen=True)
class Scheme:
    """``prefixes``: (words of a T-type prefix, class), longest first; ``excitatory``: T-types
    starting like an excitatory type (L2/3, L4, ..., the study's rule) and cells without a T-type
    but with (sparsely) spiny dendrites are Excitatory."""

    name: str
    classes: tuple[str, ...]
    prefixes: tuple[tuple[tuple[str, ...], str], ...] = ()
    excitatory: bool = False

    def label(self, ttype, dendrite_type=None) -> tuple[str, str]:
        """(class, '') of one cell, or (Unsure, reason)."""
        if self.name == STUDY:
            return study_label(ttype, dendrite_type)
        text = text_value(ttype)
        if not text:
            label = "Excitatory" if self.excitatory and text_value(dendrite_type).lower() in SPINY else UNSURE
        else:
            label = self.match(text)
        return (label, "") if label != UNSURE else (UNSURE, unsure_reason(ttype, dendrite_type, self.name))

    def match(self, text: str) -> str:
        words = tuple(text.split())
        for prefix, cls in self.prefixes:
            if words[: len(prefix)] == prefix:
                return cls
        if self.excitatory and text.startswith(EXCITATORY_TTYPE_PREFIX):
            return "Excitatory"
        return UNSURE


def _built_in(name: str) -> Scheme:
    if name == "study":  # its rules: label_from_ttype
        return Scheme("study", STUDY_CLASSES, excitatory=True)
    if name == "subclass":
        kept = ("Lamp5", "Pvalb", "Sst", "Vip", "Sncg")
        return Scheme("subclass", ("Excitatory",) + kept, tuple(((c,), c) for c in kept), excitatory=True)
    kept = ("Lamp5", "Pvalb", "Sst", "Vip")
    return Scheme("inhibitory", kept, tuple(((c,), c) for c in kept))


def get_scheme(value: str | None) -> Scheme:
    """The scheme named ``value`` (None: study), or the one a YAML map file defines."""
    value = (value or STUDY).strip()
    if value in BUILT_IN:
        return _built_in(value)
    if value.lower().endswith(YAML_SUFFIXES):
        return scheme_from_yaml(value)
    raise SchemeError(f"unknown class scheme {value!r}: choose {', '.join(BUILT_IN)} or a .yaml map of "
                      "T-type prefixes to classes")  # fmt: skip


def scheme_from_yaml(path: str | Path) -> Scheme:
    """A user's scheme: a YAML mapping ``T-type prefix: class`` (see the module docstring)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise SchemeError(f"class scheme {path}: no such file")
    if path.stat().st_size > MAX_MAP_BYTES:
        raise SchemeError(f"class scheme {path}: larger than {MAX_MAP_BYTES} bytes")
    try:
        raw = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise SchemeError(f"class scheme {path}: not valid YAML ({err})") from None
    return scheme_from_map(raw, str(path))


def scheme_from_map(raw, name: str) -> Scheme:
    """A scheme from a ``{T-type prefix: class}`` mapping (its problems named, with ``name``)."""
    if not isinstance(raw, Mapping) or not raw:
        raise SchemeError(f"class scheme {name}: expected a mapping 'T-type prefix: class', got "
                          f"{type(raw).__name__}")  # fmt: skip
    problems, pairs, seen = [], [], {}
    for key, cls in raw.items():
        words = tuple(key.split()) if isinstance(key, str) else ()
        if not words or len(key) > MAX_NAME or not key.isprintable():
            problems.append(f"prefix {key!r} must be one or more words of text (at most {MAX_NAME} characters)")
        elif not isinstance(cls, str) or not cls.strip() or len(cls) > MAX_NAME or not cls.isprintable():
            problems.append(f"{key!r}: class {cls!r} must be a name of text (at most {MAX_NAME} characters)")
        elif cls.strip() == UNSURE:
            problems.append(f"{key!r}: {UNSURE} is not a class (unmapped T-types are excluded already)")
        elif words in seen:
            problems.append(f"prefix {key!r} given twice (also as {seen[words]!r})")
        else:
            seen[words] = key
            pairs.append((words, cls.strip()))
    classes = tuple(dict.fromkeys(cls for _, cls in pairs))
    if not problems and len(classes) < 2:
        problems.append(f"needs at least two classes, got {list(classes)}")
    if problems:
        raise SchemeError(f"class scheme {name}: " + "; ".join(problems))
    pairs.sort(key=lambda p: -len(p[0]))  # the longest prefix first
    return Scheme(name, classes, tuple(pairs))


def run_classes(scheme: Scheme, classes=None) -> tuple[str, ...]:
    """The classes of a run: the scheme's, or the subset ``classes`` the user lists (in that order)."""
    if not classes:
        return scheme.classes
    unknown = [c for c in classes if c not in scheme.classes]
    if unknown:
        raise SchemeError(f"classes {unknown} are not classes of scheme {scheme.name} "
                          f"({', '.join(scheme.classes)}): list a subset, or leave classes out")  # fmt: skip
    return tuple(classes)


def too_small(labels, need: int) -> dict[str, str]:
    """Class -> reason, for each class of ``labels`` (a sequence) with fewer than ``need`` cells."""
    from collections import Counter

    return {c: f"class {c}: {n} cells, fewer than the {need} needed (one holdout cell and one per fold)"
            for c, n in Counter(labels).items() if c != UNSURE and n < need}  # fmt: skip
