"""The fusion's saved model: one JSON file, no pickle.

``model.json``: ``format: "sts-fusion"``, ``format_version``, ``classes`` (probability columns,
configured order), ``label_scheme`` (their class scheme; absent before schemes: study),
``members`` (in feature order: ``name``, ``kind`` cnn|lightgbm, ``path`` relative to model.json's
folder, ``sha256`` of that file), ``features`` (how the stacker's input is made: log-probabilities
clipped at ``floor``, member-major), ``stacker`` (``coef``, ``intercept``, ``fitted_classes`` of the
multinomial logistic regression), ``params`` (``FusionParams``), ``n_train``, ``cv_balanced_accuracy``
(its out-of-fold score). Its temperature lives in the ``calibration.json`` beside it, as for every
served model.

Loading checks the format, sizes and shapes, that every member file exists and still has its
recorded sha256 (a refitted member invalidates the fusion).
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sts.settings import SCHEME_KEY

FORMAT = "sts-fusion"
FORMAT_VERSION = 1
MAX_BYTES = 16 * 2**20
MAX_CLASSES = 1000
MAX_MEMBERS = 32
# An L2-regularised logistic regression on log-probabilities >= log(floor) has coefficients of
# order 1-100; 1e308 would overflow the scores into NaN probabilities.
MAX_ABS_COEF = 1e6
MEMBER_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class FusionFileError(ValueError):
    """A fusion model.json that ``save_fusion`` did not write (or whose members changed since)."""


@dataclass(frozen=True)
class SavedFusion:
    path: Path
    classes: list[str]
    members: list[dict]  # name, kind, path (absolute here), sha256
    stacker: dict
    meta: dict
    floor: float  # the stacker's inputs are log-probabilities clipped at this


def member_kind(path) -> str:
    from sts.baseline.saved import is_lightgbm_model

    return "lightgbm" if is_lightgbm_model(path) else "cnn"


def save_fusion(path, members, classes, stacker: dict, params, n_train: int, cv_balanced_accuracy: float,
                floor: float, scheme: str = "study") -> Path:
    """Write model.json atomically (members' paths relative to its folder)."""
    from sts.trust.calibration import file_sha256
    from sts.io.atomic import write_json_atomic

    path = Path(path)
    folder = path.parent.resolve()
    doc = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "classes": [str(c) for c in classes],
        SCHEME_KEY: scheme,
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
    """A .json (or a folder with model.json) whose format is the fusion's; FusionFileError for a
    file that is not a bounded regular file of strict, shallow JSON."""
    from sts.baseline.saved import MAX_BYTES as LGBM_MAX_BYTES
    from sts.io.untrusted import UntrustedFileError, load_json

    path = Path(path)
    target = path / "model.json" if path.is_dir() else path
    if target.suffix.lower() != ".json":
        return False
    if not target.exists():
        return False
    try:  # neither served model can be read from a file that fails here: refused, saying why
        doc = load_json(target, max(MAX_BYTES, LGBM_MAX_BYTES), "served model (a fusion or LightGBM model.json)")
    except UntrustedFileError as err:
        raise FusionFileError(str(err)) from None
    return isinstance(doc, dict) and doc.get("format") == FORMAT


def load_fusion(path) -> SavedFusion:
    """Read and check a fusion model.json; raises FusionFileError with the reason."""
    from sts.trust.calibration import read_sts_json
    from sts.io.untrusted import MAX_MODEL_BYTES, UntrustedFileError, sha256_capped

    path = Path(path)
    path = path / "model.json" if path.is_dir() else path
    if not path.is_file():
        raise FusionFileError(f"{path}: no such file")
    doc = read_sts_json(path, FORMAT, FORMAT_VERSION, MAX_BYTES, "fusion model", FusionFileError)
    classes = doc.get("classes")
    if (not isinstance(classes, list) or not 2 <= len(classes) <= MAX_CLASSES
            or not all(isinstance(c, str) and c for c in classes) or len(set(classes)) != len(classes)):
        raise FusionFileError(f"{path}: 'classes' must be a list of 2..{MAX_CLASSES} distinct names")  # fmt: skip
    members = doc.get("members")
    if not isinstance(members, list) or not 2 <= len(members) <= MAX_MEMBERS:
        raise FusionFileError(f"{path}: 'members' must list 2..{MAX_MEMBERS} models")
    resolved = []
    for m in members:
        if not isinstance(m, dict) or not all(isinstance(m.get(k), str) for k in ("name", "kind", "path", "sha256")):
            raise FusionFileError(f"{path}: each member needs name, kind, path and sha256")
        if not MEMBER_NAME.fullmatch(m["name"]):  # it names CSV columns (predicted_<name>)
            raise FusionFileError(f"{path}: member name {m['name'][:80]!r} is not 1-64 of [A-Za-z0-9_.-]")
        if m["name"] in (r["name"] for r in resolved):
            raise FusionFileError(f"{path}: member name {m['name']!r} is given twice")
        target = (path.parent / m["path"]).resolve()
        if not target.is_file():
            raise FusionFileError(f"{path}: member {m['name']}: {target} not found")
        if m["kind"] != member_kind(target) or is_fusion_model(target):
            raise FusionFileError(f"{path}: member {m['name']}: {target} is not a {m['kind']!r} model "
                                  "(members: CNN model.pt files and LightGBM baselines, never a fusion)")  # fmt: skip
        try:
            digest = sha256_capped(target, MAX_MODEL_BYTES)
        except UntrustedFileError as err:
            raise FusionFileError(f"{path}: member {m['name']}: {err}") from None
        if digest != m["sha256"]:
            raise FusionFileError(f"{path}: member {m['name']}: {target} changed since the fusion was fitted "
                                  "(sha256 differs): refit the fusion")  # fmt: skip
        resolved.append({**m, "path": str(target)})
    floor = doc["features"].get("floor") if isinstance(doc.get("features"), dict) else None
    if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not 0 < floor < 1:
        raise FusionFileError(f"{path}: features.floor {floor!r} must be a number between 0 and 1 "
                              "(the probability floor of the stacker's log-probability inputs)")  # fmt: skip
    stacker = doc.get("stacker") or {}
    try:
        coef = np.asarray(stacker["coef"], dtype=np.float64)
        intercept = np.asarray(stacker["intercept"], dtype=np.float64)
        fitted = [str(c) for c in stacker["fitted_classes"]]
    except (KeyError, TypeError, ValueError) as err:
        raise FusionFileError(f"{path}: stacker: {err}") from err
    d = len(members) * len(classes)
    rows = 1 if len(fitted) == 2 else len(fitted)
    if (set(fitted) - set(classes) or len(set(fitted)) != len(fitted) or coef.shape != (rows, d)
            or intercept.shape != (rows,)):
        raise FusionFileError(f"{path}: stacker shapes coef {coef.shape}, intercept {intercept.shape} do not fit "
                              f"{len(members)} members x {len(classes)} classes and fitted classes {fitted}")  # fmt: skip
    if not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
        raise FusionFileError(f"{path}: non-finite stacker coefficients")
    if max(np.abs(coef).max(), np.abs(intercept).max()) > MAX_ABS_COEF:
        raise FusionFileError(f"{path}: stacker coefficients beyond +-{MAX_ABS_COEF:g}: not a fitted logistic "
                              "regression")  # fmt: skip
    stacker = {"coef": coef, "intercept": intercept, "fitted_classes": fitted}
    return SavedFusion(path, classes, resolved, stacker, doc, float(floor))
