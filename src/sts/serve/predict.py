"""Classify new recordings with a trained CNN or the saved LightGBM baseline (``sts predict``).

Each file (NWB v1, NWB 2 or ABF) is prepared exactly as the training cells were, from the
parameters saved in ``model.pt`` and never from the current config: sweep selection
(``preparation.sweeps``), the CWT (``preparation.scalogram``), the image transform
(``normalisation``, ``input_size``) and the rounding to the packed file's storage type
(``image_dtype``; float16 for models saved before it was recorded, the pack default). The
scalogram itself is rounded to the per-cell files' storage type (``scalogram_dtype``: float16;
float32, i.e. no rounding, for models saved before it was recorded, whose files were float32)
before the image is made, so the image equals the packed one bit for bit.
Inference goes through the evaluation step's own ``predict_proba``.

The output CSV has one row per input file: ``file, specimen_id, status, reason, predicted,
p_<class>...`` (model class order), ``rheobase_pa, second_pa, rheobase_sweep, second_sweep``, the
predictor's extra columns, and ``scheme``: the class scheme of the model's classes (its saved
``label_scheme``; study for models saved before schemes).
A file that cannot be prepared is an ``excluded`` row with the reason sweep selection gives.
A file's stem is its ``specimen_id`` when it is a valid id (``sts.cohort.ids``), else a safe id derived
from it (``sts.cohort.ids.derived_id``: its allowed characters and a hash), which also names its
figure; ``file`` keeps the name as given. Reasons are one line, cut (``sts.prep.prepared.Prepared``);
the text columns are ``spreadsheet_safe`` (``sts.io.text``: a leading ``=+-@`` gets a ``'``).

The LightGBM baseline (its model folder or ``model.json``, see ``sts.baseline.saved``) goes
through the same rows and CSV: its ``LgbmPredictor`` computes each file's EP features with the
saved feature parameters; it fills ``rheobase_pa``/``rheobase_sweep`` only (it uses every long
square, not a +40 pA pair). Both add ``ood_score, in_distribution``: the model's
out-of-distribution detector (``sts.trust.ood``; CNN: its embedding of the cell, LightGBM: the EP
features) and whether the score is within the training cells' threshold; empty for a model
saved without a detector.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

import sts.cnn  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
from sts.prep.prepared import Prepared
from sts.settings import DEFAULT_DEVICE

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

SUFFIXES = (".nwb", ".abf")
FIXED_COLUMNS = ("file", "specimen_id", "status", "reason", "predicted")
SWEEP_COLUMNS = ("rheobase_pa", "second_pa", "second_offset_pa", "rheobase_sweep", "second_sweep")


class NoReadableInput(RuntimeError):
    """Not one input file could be opened."""


@dataclass
class Item:
    """One input: its file, id (the file's stem, or an id derived from it where the stem is not a
    valid id, unless a --table gives one), ABF ladder, and the reason it cannot be used when its
    --table row says so."""

    path: Path
    specimen_id: str
    protocol: object = None
    excluded: str = ""


def find_recordings(inputs) -> list[Path]:
    """Files as given; folders searched (recursively) for .nwb/.abf files, sorted."""
    found = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += sorted(p for p in item.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
        else:
            found.append(item)  # a missing file becomes an excluded row
    return found


def probability_problem(proba, n_classes: int) -> str:
    """Why a model's output for one file is not ``n_classes`` probabilities ('' when it is)."""
    proba = np.asarray(proba, dtype=np.float64)
    if proba.shape != (n_classes,):
        return f"the model gave {proba.shape} outputs for {n_classes} classes"
    if not np.isfinite(proba).all():
        return "the model gave non-finite probabilities (NaN or infinite): a broken model, this file not classified"
    if (proba < -1e-9).any() or (proba > 1 + 1e-9).any() or abs(proba.sum() - 1) > 1e-4:
        return f"the model gave probabilities outside [0, 1] or not summing to 1 (sum {proba.sum():.6g})"
    return ""


def _row(p: Prepared, classes: list[str], proba: np.ndarray | None) -> dict:
    row = {"file": str(p.path), "specimen_id": p.specimen_id, "status": p.status, "reason": p.reason,
           "predicted": classes[int(np.argmax(proba))] if proba is not None else ""}  # fmt: skip
    for j, c in enumerate(classes):
        row[f"p_{c}"] = float(proba[j]) if proba is not None else np.nan
    amps, sweeps = p.attrs.get("amplitudes_pa", [np.nan] * 2), p.attrs.get("sweep_numbers", [None] * 2)
    row.update(rheobase_pa=amps[0], second_pa=amps[1], second_offset_pa=p.attrs.get("second_offset_pa", np.nan),
               rheobase_sweep=sweeps[0], second_sweep=sweeps[1])  # fmt: skip
    return row


def items_from_table(csv_path: str | Path) -> list[Item]:
    """Inputs listed in a local-cohort CSV (file, optional specimen_id, label and ABF ladder columns);
    rows it cannot use (missing file, unsafe or duplicate id, bad ladder) stay, with their reason."""
    from sts.cohort.local import read_local_labels, row_protocol

    table = read_local_labels(csv_path, None)
    return [Item(Path(r["file"]) if r["file"] else Path(str(r["specimen_id"])), str(r["specimen_id"]),
                 row_protocol(r) if r["status"] == "ok" else None, r["reason"] if r["status"] != "ok" else "")
            for r in table.to_dict("records")]  # fmt: skip


def figure_names(items: list[Item]) -> list[str]:
    """One distinct PNG name per input: the id, plus a hash of the full path where ids collide
    (two ``cell1.nwb`` in different folders must not overwrite each other's figure)."""
    import hashlib

    from sts.cohort.ids import safe_id

    ids = [safe_id(it.specimen_id) for it in items]  # already safe, unless a caller's Item is not
    counts: dict[str, int] = {}
    for sid in ids:
        counts[sid.casefold()] = counts.get(sid.casefold(), 0) + 1
    names = []
    for it, name in zip(items, ids):
        if counts[name.casefold()] > 1:
            name += "-" + hashlib.sha1(os.fsencode(it.path.absolute())).hexdigest()[:8]
        names.append(f"{name}.png")
    return names


def load_predictor(model_path, device: str = DEFAULT_DEVICE, threads: int | None = None,
                   selection_overrides: dict | None = None, calibrate: bool = True):
    """A ``CnnPredictor`` for a CNN model.pt, an ``LgbmPredictor`` for the LightGBM baseline's model
    folder (or its model.json), a ``FusionPredictor`` for a fusion model.json; each raises
    ValueError for a file it cannot use. With ``calibrate``, wrapped to apply the temperature of the
    model's ``calibration.json`` when there is one (``sts.trust.calibration.CalibratedPredictor``)."""
    from sts.baseline.saved import is_lightgbm_model
    from sts.serve.cnn import CnnPredictor
    from sts.serve.lgbm import LgbmPredictor
    from sts.trust.calibration import CalibratedPredictor, load_temperature
    from sts.fusion.model import is_fusion_model
    from sts.serve.fusion import FusionPredictor

    if is_fusion_model(model_path):
        predictor = FusionPredictor(model_path, load_predictor, device, threads, selection_overrides)
    elif is_lightgbm_model(model_path):
        if device not in ("auto", "cpu"):
            log.info("--device %s: the LightGBM baseline runs on the CPU", device)
        predictor = LgbmPredictor(model_path, threads, selection_overrides)
    else:
        predictor = CnnPredictor(model_path, device, threads, selection_overrides)
    if not calibrate:
        return predictor
    return CalibratedPredictor(predictor, load_temperature(model_path, predictor.classes))


def predict_files(
    predictor, files, out_csv: str | Path, figures_dir: str | Path | None = None, protocol=None
) -> pd.DataFrame:
    """Classify every file (a path, or an ``Item``), write OUT.csv atomically (its text columns
    ``spreadsheet_safe``) and one figure per usable cell; return the table (as computed).
    ``protocol`` is the ABF ladder of inputs given as bare paths.
    ``predictor``: a ``CnnPredictor``, ``LgbmPredictor`` or ``FusionPredictor`` (``prepare``, ``classify``, ``figure``,
    ``classes``, ``extra_columns``).

    Raises ``NoReadableInput`` (after writing the table) when not one file could be opened.
    """
    import pandas as pd
    from tqdm import tqdm

    from sts.io.atomic import write_csv_atomic
    from sts.cohort.ids import safe_id
    from sts.io.text import spreadsheet_safe

    items = [f if isinstance(f, Item) else Item(Path(f), safe_id(Path(f).stem), protocol) for f in files]
    figures = figure_names(items)
    rows, n_readable = [], 0
    no_figure = " (no figure)" if figures_dir is not None else ""
    for item, figure in tqdm(list(zip(items, figures)), desc="predict", unit="cell", mininterval=2):
        path = item.path
        if item.excluded:
            p = Prepared(path, item.specimen_id, "excluded", item.excluded, readable=False)
        else:
            p = predictor.prepare(path, item.protocol, item.specimen_id)
        n_readable += p.readable
        proba, extra = None, {}
        if p.status == "ok":
            proba, extra = predictor.classify(p)
            problem = probability_problem(proba, len(predictor.classes))
            if problem:  # a model whose output is not probabilities never makes an "ok" row
                p, proba, extra = replace(p, status="excluded", reason=problem), None, {}
                log.warning("%s excluded%s: %s", path, no_figure, problem)
            elif figures_dir is not None:
                predictor.figure(p, proba, Path(figures_dir) / figure)
        else:
            log.warning("%s excluded%s: %s", path, no_figure, p.reason)
        rows.append({**_row(p, predictor.classes, proba), **extra, "scheme": predictor.scheme})
    columns = [*FIXED_COLUMNS, *(f"p_{c}" for c in predictor.classes), *SWEEP_COLUMNS, *predictor.extra_columns,
               "scheme"]  # fmt: skip
    table = pd.DataFrame(rows, columns=columns)
    for col in ("rheobase_sweep", "second_sweep"):
        table[col] = table[col].astype("Int64")
    write_csv_atomic(out_csv, spreadsheet_safe(table, [*FIXED_COLUMNS, "scheme"]))  # users open it in spreadsheets
    n_ok = int((table["status"] == "ok").sum())
    log.info("%d files: %d classified, %d excluded (class scheme %s) -> %s", len(table), n_ok, len(table) - n_ok,
             predictor.scheme, out_csv)  # fmt: skip
    if items and not n_readable:
        raise NoReadableInput(f"none of the {len(items)} input files could be read (first: {rows[0]['reason']}; "
                              f"all reasons in {out_csv})")  # fmt: skip
    return table


def run(model_path, inputs, out_csv, figures_dir=None, device=DEFAULT_DEVICE, protocol=None, threads=None,
        table=None, selection_overrides=None, calibrate=True) -> int:
    """The ``sts predict`` command: 0 when at least one file could be read."""
    files: list = find_recordings(inputs or [])
    if table is not None:
        try:
            files += items_from_table(table)
        except (ValueError, FileNotFoundError) as err:
            raise SystemExit(f"sts predict: --table: {err}") from err
    if not files:
        raise SystemExit(f"sts predict: no .nwb or .abf files in {', '.join(map(str, inputs or [table]))}")
    try:
        predictor = load_predictor(model_path, device, threads, selection_overrides, calibrate)
        if not calibrate:  # raw probabilities, still with the calibrated column
            from sts.trust.calibration import CalibratedPredictor

            predictor = CalibratedPredictor(predictor, None, "--uncalibrated")
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"sts predict: {err}") from err
    if figures_dir is not None:
        os.makedirs(figures_dir, exist_ok=True)
    try:
        predict_files(predictor, files, out_csv, figures_dir, protocol)
    except NoReadableInput as err:
        raise SystemExit(f"sts predict: {err}") from err
    return 0
