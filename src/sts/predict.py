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
p_<class>...`` (model class order), ``rheobase_pa, second_pa, rheobase_sweep, second_sweep``.
A file that cannot be prepared is an ``excluded`` row with the reason sweep selection gives.
A file's stem is its ``specimen_id`` when it is a valid id (``sts.cohort.ids``), else a safe id derived
from it (``sts.cohort.ids.derived_id``: its allowed characters and a hash), which also names its
figure; ``file`` keeps the name as given. Reasons are one line, cut (``sts.prep.prepared.Prepared``);
the text columns are ``spreadsheet_safe`` (``sts.io.text``: a leading ``=+-@`` gets a ``'``).

The LightGBM baseline (its model folder or ``model.json``, see ``sts.baseline.served``) goes
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
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

import sts.cnn  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
from sts.prep.prepared import Prepared, with_protocol_hint
from sts.settings import DEFAULT_DEVICE

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

SUFFIXES = (".nwb", ".abf")
FIXED_COLUMNS = ("file", "specimen_id", "status", "reason", "predicted")
SWEEP_COLUMNS = ("rheobase_pa", "second_pa", "second_offset_pa", "rheobase_sweep", "second_sweep")
# Which sweeps qualify may follow the lab's protocol; the window, rate and spike threshold that
# shaped the training inputs may not (train/serve parity).
SELECTION_OVERRIDES = ("tolerance_pa", "any_square_step", "long_square_names")
DEFAULT_IMAGE_DTYPE = "float16"  # sts pack's default, for model.pt files without image_dtype
LEGACY_SCALOGRAM_DTYPE = "float32"  # per-cell scalogram files of models saved without scalogram_dtype


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


class Predictor:
    """A loaded model.pt with the preparation that made its training inputs."""

    extra_columns: tuple[str, ...] = ("ood_score", "in_distribution")  # columns after SWEEP_COLUMNS

    def __init__(self, model_path: str | Path, device: str = DEFAULT_DEVICE, threads: int | None = None,
                 selection_overrides: dict | None = None):
        """``selection_overrides``: sweep settings that only decide which sweeps qualify
        (``tolerance_pa``, ``any_square_step``, ``long_square_names``), never how they are prepared."""
        import torch

        from sts.cnn.final import load_model
        from sts.cnn.model_meta import ModelMetaError, check_serving
        from sts.cnn.train import select_device
        from sts.prep.sweeps import SelectionParams
        from sts.io.untrusted import UntrustedFileError

        if threads:
            torch.set_num_threads(threads)
        self.model_path = Path(model_path)
        self.device = select_device(device)
        from sts.cnn.safe_torch import UnsafeModelError

        try:
            self.model, self.meta = load_model(model_path, self.device)
        except (UnsafeModelError, UntrustedFileError, ModelMetaError):
            raise
        except Exception as err:  # missing, not a torch file, or not ours
            raise ValueError(f"{model_path}: not a model.pt written by sts train: {err}") from err
        # Bounded (sizes a served cell's arrays) before anything is prepared. Unknown keys are an
        # error (they shaped training); numbers cast as the per-cell commands cast them (4000 ->
        # 4000.0), so results are identical.
        self.selection, self.scalogram, self.norm = check_serving(self.meta, model_path)
        overrides = {k: v for k, v in (selection_overrides or {}).items() if v is not None}
        if set(overrides) - set(SELECTION_OVERRIDES):
            raise ValueError(f"only {SELECTION_OVERRIDES} may differ from the model's sweep selection")
        if overrides:
            self.selection = SelectionParams.from_dict({**asdict(self.selection), **overrides})
        self.input_size = tuple(int(v) for v in self.meta["input_size"])
        self.image_dtype = np.dtype(self.meta.get("image_dtype", DEFAULT_IMAGE_DTYPE))
        self.scalogram_dtype = np.dtype(self.meta.get("scalogram_dtype", LEGACY_SCALOGRAM_DTYPE))
        self.classes = [str(c) for c in self.meta["classes"]]
        from sts.cnn.evaluate import read_ood

        self.ood = read_ood(self.meta, model_path, self.model)  # None (logged) for an older model.pt
        axes = self.meta.get("scalogram_axes")
        if axes and not np.allclose(axes["freqs_hz"], self.scalogram.freqs_hz):
            raise ValueError(f"{model_path}: saved frequencies differ from its preparation.scalogram parameters")

    def prepare(self, path: str | Path, protocol=None, specimen_id: str | None = None) -> Prepared:
        """Select the sweeps, compute the scalogram and the network image of one file; never raises
        for a bad recording (excluded, with the reason)."""
        from sts.cnn.pack import prepare_images
        from sts.recordings import NwbReadError, open_recording
        from sts.prep.scalogram_file import as_stored, scalogram_of
        from sts.prep.sweeps import select_from_recording

        path = Path(path)
        sid = specimen_id or path.stem
        try:
            rec = open_recording(path, protocol)
        except NwbReadError as err:
            return Prepared(path, sid, "excluded", with_protocol_hint(str(err)), readable=False)
        except Exception as err:  # a reader's unexpected failure: that file only
            log.warning("%s: cannot open", path, exc_info=True)
            return Prepared(path, sid, "excluded", f"unreadable file {path}: {type(err).__name__}: {err}",
                            readable=False)  # fmt: skip
        try:
            with rec:
                sel = select_from_recording(rec, self.selection)
        except Exception as err:  # e.g. a damaged dataset inside an otherwise readable file
            log.warning("%s: sweep selection failed", path, exc_info=True)
            return Prepared(path, sid, "excluded", f"cannot read sweeps of {path}: {type(err).__name__}: {err}")
        if sel.status != "ok":
            return Prepared(path, sid, "excluded", predict_hint(sel.reason))
        scal = scalogram_of(sel.traces_mv, self.selection.fs_hz, self.scalogram)
        stored, reason = as_stored(scal, self.scalogram_dtype)  # as the training cells' files held it
        if stored is None:
            return Prepared(path, sid, "excluded", reason, attrs=sel.attrs)
        image = prepare_images(stored[None], self.input_size, self.norm)[0].numpy().astype(self.image_dtype)
        return Prepared(path, sid, "ok", traces_mv=sel.traces_mv, scalogram=scal, image=image, attrs=sel.attrs)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """(B, n_classes) softmax of (B, 3, H, W) prepared images, as ``sts evaluate`` computes them."""
        from sts.cnn.train import predict_proba

        return predict_proba(self.model, images, np.arange(len(images)), self.device)

    def classify(self, prepared: Prepared) -> tuple[np.ndarray, dict]:
        """Class probabilities of one prepared cell and its OOD columns (one forward pass)."""
        from sts.cnn.embed import proba_and_embeddings

        proba, emb = proba_and_embeddings(self.model, prepared.image[None], np.arange(1), self.device)
        if self.ood is None:
            return proba[0], {"ood_score": np.nan, "in_distribution": None}
        score = float(self.ood.score(emb)[0])
        return proba[0], {"ood_score": score, "in_distribution": bool(score <= self.ood.threshold)}

    def figure(self, prepared: Prepared, proba: np.ndarray, path: Path) -> None:
        """Traces, scalograms and the saliency of the predicted class (``sts.predict_figure``)."""
        from sts.predict_figure import plot_cell

        target = int(np.argmax(proba))
        plot_cell(prepared, proba, self.classes, self.saliency(prepared, target), self.selection.fs_hz,
                  self.scalogram.freqs_hz, path, title=f"{self.meta['arch']}")  # fmt: skip

    def saliency(self, prepared: Prepared, target: int, method: str = "gradient") -> np.ndarray:
        """(2, n_freqs, n_times) |attribution| of class ``target`` on the scalogram's axes."""
        from sts.cnn.saliency import attribute, to_scalogram_axes
        from sts.cnn.train import batch_tensor

        x = batch_tensor(prepared.image[None], np.arange(1), self.device).requires_grad_(True)
        maps = attribute(self.model, x, target, method)[0].float().cpu().numpy()
        return to_scalogram_axes(maps, *prepared.scalogram.shape[1:])


def predict_hint(reason: str) -> str:
    """Sweep selection names config keys; here the options of ``sts predict`` say what can change
    (the window cannot: it shaped the model's inputs)."""
    import re

    reason = re.sub(r"sweeps\.tolerance_pa >= ([\d.]+)", r"--tolerance-pa \1", reason)
    reason = reason.replace("add the ladder's name to sweeps.long_square_names or set sweeps.any_square_step",
                            "give the ladder's name with --long-square-names or use --any-square-step")  # fmt: skip
    return re.sub(r"sweeps\.window_s <= ([\d.]+) would fit",
                  r"a model trained with sweeps.window_s <= \1 would fit (sts predict keeps the model's window)",
                  reason)  # fmt: skip


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
    """A ``Predictor`` for a CNN model.pt, an ``LgbmPredictor`` for the LightGBM baseline's model
    folder (or its model.json), a ``FusionPredictor`` for a fusion model.json; each raises
    ValueError for a file it cannot use. With ``calibrate``, wrapped to apply the temperature of the
    model's ``calibration.json`` when there is one (``sts.trust.calibration.CalibratedPredictor``)."""
    from sts.baseline.served import LgbmPredictor, is_lightgbm_model
    from sts.trust.calibration import CalibratedPredictor, load_temperature
    from sts.fusion.model import is_fusion_model
    from sts.fusion.served import FusionPredictor

    if is_fusion_model(model_path):
        predictor = FusionPredictor(model_path, load_predictor, device, threads, selection_overrides)
    elif is_lightgbm_model(model_path):
        if device not in ("auto", "cpu"):
            log.info("--device %s: the LightGBM baseline runs on the CPU", device)
        predictor = LgbmPredictor(model_path, threads, selection_overrides)
    else:
        predictor = Predictor(model_path, device, threads, selection_overrides)
    if not calibrate:
        return predictor
    return CalibratedPredictor(predictor, load_temperature(model_path, predictor.classes))


def predict_files(
    predictor, files, out_csv: str | Path, figures_dir: str | Path | None = None, protocol=None
) -> pd.DataFrame:
    """Classify every file (a path, or an ``Item``), write OUT.csv atomically (its text columns
    ``spreadsheet_safe``) and one figure per usable cell; return the table (as computed).
    ``protocol`` is the ABF ladder of inputs given as bare paths.
    ``predictor``: a ``Predictor`` or an ``LgbmPredictor`` (``prepare``, ``classify``, ``figure``,
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
                log.warning("%s excluded: %s", path, problem)
            elif figures_dir is not None:
                predictor.figure(p, proba, Path(figures_dir) / figure)
        else:
            log.warning("%s excluded: %s", path, p.reason)
        rows.append({**_row(p, predictor.classes, proba), **extra})
    columns = [*FIXED_COLUMNS, *(f"p_{c}" for c in predictor.classes), *SWEEP_COLUMNS, *predictor.extra_columns]
    table = pd.DataFrame(rows, columns=columns)
    for col in ("rheobase_sweep", "second_sweep"):
        table[col] = table[col].astype("Int64")
    write_csv_atomic(out_csv, spreadsheet_safe(table, FIXED_COLUMNS))  # users open it in spreadsheets
    n_ok = int((table["status"] == "ok").sum())
    log.info("%d files: %d classified, %d excluded -> %s", len(table), n_ok, len(table) - n_ok, out_csv)
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
