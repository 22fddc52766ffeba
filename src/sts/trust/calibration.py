"""Temperature scaling of class probabilities, and the scores that say how well calibrated they are.

Temperature scaling (Guo et al., 2017): a model's logits ``z`` become ``z / T``; ``T > 1``
softens over-confident probabilities, ``T < 1`` sharpens under-confident ones, and the
predicted class never changes. Our models hand over probabilities, not logits, so the logits
are their logarithms (clipped at ``PROBA_FLOOR``: a class without training cells has
probability 0): ``softmax(log p / T)``. ``T`` minimises the negative log-likelihood of the
out-of-fold predictions (each training cell predicted by the fold model that did not train
on it), found by bounded scalar minimisation on ``log T``; it is scored where it was not
fitted, on the holdout.

Scores (``probabilistic_scores``), each of (n, k) probabilities and true class codes (n,):

* ``ece`` — expected calibration error with ``N_BINS`` (15) equal-width bins of the top-class
  confidence: sum over bins of (bin share of cells) x |accuracy - mean confidence|;
* ``brier`` — multi-class Brier score: mean over cells of the sum over classes of
  (p - one-hot)^2 (0 best, 2 worst);
* ``log_loss`` — mean negative log-likelihood of the true class (scikit-learn's ``log_loss``,
  which clips probabilities at machine epsilon).

The sidecar ``calibration.json`` (``write_calibration``) sits next to a served model
(``model.pt``, the LightGBM ``model.json``, the fusion's ``model.json``); ``sts predict``
applies its temperature when present (``load_temperature``).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

N_BINS = 15
PROBA_FLOOR = 1e-12  # log(0) would be -inf: a class the model never saw keeps ~0 probability
LOG_T_BOUNDS = (-5.0, 5.0)  # T in [0.0067, 148]
FORMAT = "sts-calibration"
FORMAT_VERSION = 1
SIDECAR = "calibration.json"
MAX_BYTES = 4 * 2**20


def logits(proba) -> np.ndarray:
    """(n, k) log-probabilities used as logits (probabilities clipped at ``PROBA_FLOOR``)."""
    return np.log(np.clip(np.asarray(proba, dtype=np.float64), PROBA_FLOOR, None))


def softmax(z) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def apply_temperature(proba, temperature: float) -> np.ndarray:
    """(n, k) probabilities after temperature scaling: softmax(log p / T)."""
    return softmax(logits(proba) / float(temperature))


def nll(z, y_codes, temperature: float) -> float:
    """Mean negative log-likelihood of the true classes under softmax(z / T)."""
    s = np.asarray(z, dtype=np.float64) / temperature
    m = s.max(axis=1, keepdims=True)
    log_norm = (m + np.log(np.exp(s - m).sum(axis=1, keepdims=True)))[:, 0]
    y = np.asarray(y_codes)
    return float(np.mean(log_norm - s[np.arange(len(y)), y]))


def fit_temperature(z, y_codes) -> float:
    """The temperature minimising the NLL of logits ``z`` (n, k) for true class codes (n,)."""
    from scipy.optimize import minimize_scalar

    z, y = np.asarray(z, dtype=np.float64), np.asarray(y_codes)
    if not len(y):
        raise ValueError("no cells to fit a temperature on")
    res = minimize_scalar(lambda t: nll(z, y, float(np.exp(t))), bounds=LOG_T_BOUNDS, method="bounded",
                          options={"xatol": 1e-6})  # fmt: skip
    t = float(np.exp(res.x))
    if nll(z, y, 1.0) - nll(z, y, t) < 1e-9:
        # Flat likelihood (e.g. a model giving every cell the same probabilities): no evidence to rescale.
        log.warning("temperature scaling gains nothing on these predictions (NLL flat); T = 1")
        return 1.0
    if np.isclose(res.x, LOG_T_BOUNDS, atol=1e-3).any():
        log.warning("fitted temperature %.4g is at the search bound", t)
    return t


def ece(proba, y_codes, n_bins: int = N_BINS) -> float:
    """Expected calibration error of the top-class confidence, ``n_bins`` equal-width bins on
    [0, 1] (a confidence on a bin edge belongs to the bin below it; 0 to the first bin)."""
    proba, y = np.asarray(proba, dtype=np.float64), np.asarray(y_codes)
    conf, correct = proba.max(axis=1), (proba.argmax(axis=1) == y).astype(float)
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    total = 0.0
    for b in np.unique(bins):
        sel = bins == b
        total += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(total)


def brier(proba, y_codes) -> float:
    """Multi-class Brier score: mean over cells of sum_k (p_k - [y = k])^2."""
    proba = np.asarray(proba, dtype=np.float64)
    onehot = np.zeros_like(proba)
    onehot[np.arange(len(proba)), np.asarray(y_codes)] = 1.0
    return float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))


def probabilistic_scores(proba, y_codes) -> dict:
    """``ece`` (15 bins), ``brier`` and ``log_loss`` of (n, k) probabilities."""
    from sklearn.metrics import log_loss

    proba = np.asarray(proba, dtype=np.float64)
    k = proba.shape[1]
    return {"ece": ece(proba, y_codes), "brier": brier(proba, y_codes),
            "log_loss": float(log_loss(y_codes, proba, labels=list(range(k))))}  # fmt: skip


def reliability(proba, y_codes, n_bins: int = N_BINS) -> list[dict]:
    """Per non-empty bin: ``low``, ``high``, ``n``, ``confidence`` (mean), ``accuracy``."""
    proba, y = np.asarray(proba, dtype=np.float64), np.asarray(y_codes)
    conf, correct = proba.max(axis=1), (proba.argmax(axis=1) == y).astype(float)
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    return [{"low": b / n_bins, "high": (b + 1) / n_bins, "n": int((bins == b).sum()),
             "confidence": float(conf[bins == b].mean()), "accuracy": float(correct[bins == b].mean())}
            for b in np.unique(bins)]  # fmt: skip


def check_training_rows(fit_ids, manifest, what: str) -> None:
    """Refuse to fit on a holdout cell: every id of ``fit_ids`` must be a training cell of the
    manifest (``split == 'train'``); raises ValueError naming the offending ids."""
    split = dict(zip(manifest["specimen_id"].astype(str), manifest["split"].astype(str)))
    bad = sorted({str(s) for s in fit_ids if split.get(str(s)) != "train"})
    if bad:
        raise ValueError(f"{what}: {len(bad)} rows are not training cells of the manifest (holdout or unknown): "
                         f"{bad[:5]}; calibration and fusion are fitted on out-of-fold training predictions only")  # fmt: skip


@dataclass(frozen=True)
class Calibration:
    """A fitted temperature and its scores before/after on the fit rows and on the holdout."""

    temperature: float
    classes: list
    n_fit: int
    n_holdout: int
    fit: dict  # {"before": scores, "after": scores} on the out-of-fold rows (in-sample for T)
    holdout: dict  # {"before": ..., "after": ...} where T was not fitted
    reliability: dict  # {"before": bins, "after": bins} on the holdout

    def to_dict(self) -> dict:
        return {"temperature": self.temperature, "classes": list(self.classes), "n_fit": self.n_fit,
                "n_holdout": self.n_holdout, "n_bins": N_BINS, "fit": self.fit, "holdout": self.holdout,
                "reliability": self.reliability}  # fmt: skip


def proba_columns(frame) -> tuple[list[str], np.ndarray]:
    """(classes, (n, k) probabilities) of a predictions.csv-like table (its ``p_<class>`` columns)."""
    cols = [c for c in frame.columns if str(c).startswith("p_")]
    return [c[2:] for c in cols], frame[cols].to_numpy(np.float64)


def codes(labels, classes) -> np.ndarray:
    index = {str(c): i for i, c in enumerate(classes)}
    try:
        return np.array([index[str(v)] for v in labels], dtype=np.int64)
    except KeyError as err:
        raise ValueError(f"label {err.args[0]!r} not among classes {list(classes)}") from None


def calibrate(oof, holdout, manifest=None) -> tuple[Calibration, np.ndarray]:
    """Fit T on the out-of-fold table ``oof`` and score it on the ``holdout`` table (both
    predictions.csv-like: specimen_id, label, p_<class>...; same classes). With ``manifest``,
    refuse out-of-fold rows that are not training cells. Returns the calibration and the
    holdout's calibrated probabilities."""
    classes, p_fit = proba_columns(oof)
    classes_h, p_hold = proba_columns(holdout)
    if classes != classes_h:
        raise ValueError(f"out-of-fold classes {classes} differ from the holdout's {classes_h}")
    if manifest is not None:
        check_training_rows(oof["specimen_id"], manifest, "calibration")
    y_fit, y_hold = codes(oof["label"], classes), codes(holdout["label"], classes)
    t = fit_temperature(logits(p_fit), y_fit)
    after_fit, after_hold = apply_temperature(p_fit, t), apply_temperature(p_hold, t)
    cal = Calibration(
        t, classes, len(y_fit), len(y_hold),
        fit={"before": probabilistic_scores(p_fit, y_fit), "after": probabilistic_scores(after_fit, y_fit)},
        holdout={"before": probabilistic_scores(p_hold, y_hold), "after": probabilistic_scores(after_hold, y_hold)},
        reliability={"before": reliability(p_hold, y_hold), "after": reliability(after_hold, y_hold)},
    )  # fmt: skip
    return cal, after_hold


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_calibration(path, cal: Calibration, model_file) -> None:
    """The sidecar: format, the model file's name and sha256 (a refit model invalidates it), T, scores."""
    from sts.io.atomic import write_json_atomic

    model_file = Path(model_file)
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "model_file": model_file.name,
           "model_sha256": file_sha256(model_file),
           "method": "temperature scaling of log-probabilities, T fitted by NLL on out-of-fold predictions",
           **cal.to_dict()}  # fmt: skip
    write_json_atomic(path, doc)


def read_sts_json(path: Path, fmt: str, version: int, max_bytes: int, what: str, error=ValueError) -> dict:
    """A JSON document sts wrote (``format``/``format_version`` fields), read as an untrusted file
    (``sts.io.untrusted``: a regular file, size bound, strict JSON of bounded depth); anything else
    raises ``error`` naming ``path`` and ``what``."""
    from sts.io.untrusted import UntrustedFileError, load_json

    try:
        doc = load_json(path, max_bytes, what)
    except UntrustedFileError as err:
        raise error(str(err)) from None
    if not isinstance(doc, dict) or doc.get("format") != fmt or doc.get("format_version") != version:
        raise error(f"{path}: not a {what} written by sts (format {fmt!r} v{version})")
    return doc


def sidecar_for(model_path) -> Path:
    """Where a model's calibration.json lives: beside model.pt / model.json (in a model folder)."""
    model_path = Path(model_path)
    return model_path / SIDECAR if model_path.is_dir() else model_path.with_name(SIDECAR)


def load_temperature(model_path, classes) -> float | None:
    """The temperature of the sidecar next to ``model_path`` (None when there is none). A sidecar
    fitted for another model file (hash) or other classes is refused with a ValueError."""
    path = sidecar_for(model_path)
    if not path.exists():
        return None
    doc = read_sts_json(path, FORMAT, FORMAT_VERSION, MAX_BYTES, "calibration file")
    from sts.io.untrusted import MAX_MODEL_BYTES, sha256_capped

    model_dir = Path(model_path) if Path(model_path).is_dir() else Path(model_path).parent
    target = model_dir / str(doc.get("model_file", ""))
    if Path(str(doc.get("model_file", ""))).name != doc.get("model_file") or not target.is_file():
        raise ValueError(f"{path}: names model file {doc.get('model_file')!r}, not found beside it")
    if sha256_capped(target, MAX_MODEL_BYTES) != doc.get("model_sha256"):
        raise ValueError(f"{path}: fitted for another version of {target} (sha256 differs); re-run the calibration "
                         "or remove the stale file")  # fmt: skip
    if not isinstance(doc.get("classes"), list) or [str(c) for c in doc["classes"]] != [str(c) for c in classes]:
        raise ValueError(f"{path}: classes {doc.get('classes')} differ from the model's {list(classes)}")
    t = doc.get("temperature")
    if not isinstance(t, (int, float)) or not np.isfinite(t) or t <= 0:
        raise ValueError(f"{path}: temperature {t!r} is not a positive number")
    return float(t)


class CalibratedPredictor:
    """A served model (``sts.serve.predict``'s predictors) whose probabilities go through its temperature
    (None: unchanged); adds the ``calibrated`` column (true/false) to every classified row."""

    def __init__(self, inner, temperature: float | None, why_raw: str = "no calibration.json beside the model"):
        self.inner, self.temperature = inner, temperature
        self.classes = inner.classes
        self.extra_columns = (*inner.extra_columns, "calibrated")
        if temperature is None:
            log.info("%s: %s: probabilities are uncalibrated", inner.model_path, why_raw)
        else:
            log.info("%s: calibrated probabilities (temperature %.4g)", inner.model_path, temperature)

    def prepare(self, *args, **kwargs):
        return self.inner.prepare(*args, **kwargs)

    def classify(self, prepared) -> tuple[np.ndarray, dict]:
        proba, extra = self.inner.classify(prepared)
        if self.temperature is not None:
            proba = apply_temperature(proba[None], self.temperature)[0]
        return proba, {**extra, "calibrated": self.temperature is not None}

    def figure(self, prepared, proba, path) -> None:
        self.inner.figure(prepared, proba, path)

    def __getattr__(self, name):  # model, meta, selection, ... of the wrapped predictor
        return getattr(self.inner, name)
