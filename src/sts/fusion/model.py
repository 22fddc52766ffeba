"""The fusion's saved model: one JSON file, no pickle.

``model.json``: ``format: "sts-fusion"``, ``format_version``, ``classes`` (probability columns,
configured order), ``members`` (in feature order: ``name``, ``kind`` cnn|lightgbm, ``path``
relative to model.json's folder, ``sha256`` of that file), ``features`` (how the stacker's input
is made: log-probabilities clipped at ``floor``, member-major), ``stacker`` (``coef``,
``intercept``, ``fitted_classes`` of the multinomial logistic regression), ``params``
(``FusionParams``), ``n_train``, ``cv_balanced_accuracy`` (its out-of-fold score). Its
temperature lives in the ``calibration.json`` beside it, as for every served model.

Loading checks the format, sizes and shapes, that every member file exists and still has its
recorded sha256 (a refitted member invalidates the fusion).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

FORMAT = "sts-fusion"
FORMAT_VERSION = 1
MAX_BYTES = 16 * 2**20


class FusionFileError(ValueError):
    """A fusion model.json that ``save_fusion`` did not write (or whose members changed since)."""


@dataclass(frozen=True)
class SavedFusion:
    path: Path
    classes: list[str]
    members: list[dict]  # name, kind, path (absolute here), sha256
    stacker: dict
    meta: dict


def member_kind(path) -> str:
    from sts.baseline.served import is_lightgbm_model

    return "lightgbm" if is_lightgbm_model(path) else "cnn"


def save_fusion(path, members, classes, stacker: dict, params, n_train: int, cv_balanced_accuracy: float,
                floor: float) -> Path:
    """Write model.json atomically (members' paths relative to its folder)."""
    from sts.calibration import file_sha256
    from sts.atomic import write_json_atomic

    path = Path(path)
    folder = path.parent.resolve()
    doc = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "classes": [str(c) for c in classes],
        "members": [{"name": m.name, "kind": member_kind(m.model),
                     "path": os.path.relpath(Path(m.model).resolve(), folder), "sha256": file_sha256(m.model)}
                    for m in members],
        "features": {"kind": "log_probability", "floor": floor, "order": "member-major, classes in order"},
        "stacker": {"kind": "multinomial logistic regression (scikit-learn LogisticRegression, L2)", **stacker},
        "params": asdict(params), "n_train": int(n_train), "cv_balanced_accuracy": float(cv_balanced_accuracy),
        "fitted_on": "out-of-fold predictions of the training cells (manifest folds); no holdout cell",
    }  # fmt: skip
    write_json_atomic(path, doc)
    return path


def is_fusion_model(path) -> bool:
    """A .json (or a folder with model.json) whose format is the fusion's."""
    path = Path(path)
    target = path / "model.json" if path.is_dir() else path
    if target.suffix.lower() != ".json" or not target.is_file() or target.stat().st_size > MAX_BYTES:
        return False
    try:
        doc = json.loads(target.read_text())
    except (UnicodeDecodeError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("format") == FORMAT


def load_fusion(path) -> SavedFusion:
    """Read and check a fusion model.json; raises FusionFileError with the reason."""
    from sts.calibration import file_sha256, read_sts_json

    path = Path(path)
    path = path / "model.json" if path.is_dir() else path
    if not path.is_file():
        raise FusionFileError(f"{path}: no such file")
    doc = read_sts_json(path, FORMAT, FORMAT_VERSION, MAX_BYTES, "fusion model", FusionFileError)
    classes = doc.get("classes")
    if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) for c in classes):
        raise FusionFileError(f"{path}: 'classes' must be a list of at least two names")
    members = doc.get("members")
    if not isinstance(members, list) or len(members) < 2:
        raise FusionFileError(f"{path}: 'members' must list at least two models")
    resolved = []
    for m in members:
        if not isinstance(m, dict) or not all(isinstance(m.get(k), str) for k in ("name", "kind", "path", "sha256")):
            raise FusionFileError(f"{path}: each member needs name, kind, path and sha256")
        target = (path.parent / m["path"]).resolve()
        if not target.is_file():
            raise FusionFileError(f"{path}: member {m['name']}: {target} not found")
        if file_sha256(target) != m["sha256"]:
            raise FusionFileError(f"{path}: member {m['name']}: {target} changed since the fusion was fitted "
                                  "(sha256 differs): refit the fusion")  # fmt: skip
        resolved.append({**m, "path": str(target)})
    stacker = doc.get("stacker") or {}
    try:
        coef = np.asarray(stacker["coef"], dtype=np.float64)
        intercept = np.asarray(stacker["intercept"], dtype=np.float64)
        fitted = [str(c) for c in stacker["fitted_classes"]]
    except (KeyError, TypeError, ValueError) as err:
        raise FusionFileError(f"{path}: stacker: {err}") from err
    d = len(members) * len(classes)
    rows = 1 if len(fitted) == 2 else len(fitted)
    if set(fitted) - set(classes) or coef.shape != (rows, d) or intercept.shape != (rows,):
        raise FusionFileError(f"{path}: stacker shapes coef {coef.shape}, intercept {intercept.shape} do not fit "
                              f"{len(members)} members x {len(classes)} classes and fitted classes {fitted}")  # fmt: skip
    if not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
        raise FusionFileError(f"{path}: non-finite stacker coefficients")
    return SavedFusion(path, classes, resolved, {"coef": coef, "intercept": intercept, "fitted_classes": fitted}, doc)
