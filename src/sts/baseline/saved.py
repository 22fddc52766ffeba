"""The LightGBM baseline's final fit, saved for ``sts predict`` and read back without pickle.

A saved model is a folder (``results/baseline/model/``) with two files:

* ``model.txt`` — the booster as LightGBM model text (``Booster.model_to_string``);
* ``model.json`` — ``format: "sts-lightgbm-baseline"`` and ``format_version``, the sha256 of
  model.txt, ``features`` (names, in the booster's column order), ``classes`` (the probability
  columns, configured order) and ``fitted_classes`` (the booster's outputs: classes with
  training cells, sorted), ``label_scheme`` (the class scheme, ``sts.acquire.schemes``; absent in
  models saved before it: study), ``feature_params`` (``sts.baseline.features.FeatureParams``: the
  ipfx and sweep settings that made the features), ``imputation`` / ``standardisation`` (none
  for the trees: NaN is routed natively, as in training), ``ood`` (``sts.trust.ood``), the
  tuned parameters, training cell counts and package versions.

A CNN is one ``model.pt`` (torch); a LightGBM model is that folder or its ``model.json``.
Loading reads JSON and LightGBM text only: model.txt must match its recorded sha256, the
booster's feature names must equal ``features`` and be EP features sts computes, its number
of outputs must match ``fitted_classes``; anything else is refused with the reason.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sts.settings import SCHEME_KEY, saved_scheme

log = logging.getLogger(__name__)

FORMAT = "sts-lightgbm-baseline"
FORMAT_VERSION = 1
META_FILE = "model.json"
BOOSTER_FILE = "model.txt"
MAX_BYTES = 64 * 2**20  # either file; a real baseline is a few MB (model.txt is parsed in Python first)
LGBM_SUFFIXES = (".json", ".txt")


class ModelFileError(ValueError):
    """A LightGBM model folder that is not one ``save_model`` wrote (or was changed since)."""


@dataclass(frozen=True)
class SavedModel:
    """A loaded LightGBM baseline: booster, feature order, class order, feature parameters."""

    path: Path  # model.json
    booster: object  # lightgbm.Booster
    features: list[str]
    classes: list[str]
    fitted_classes: list[str]
    feature_params: object  # FeatureParams
    ood: object | None  # KnnNovelty
    meta: dict

    @property
    def scheme(self) -> str:
        """The class scheme of its classes (study for models saved before schemes)."""
        return saved_scheme(self.meta)

    def predict_proba(self, X, threads: int | None = None) -> np.ndarray:
        """(n, len(classes)) probabilities of features ``X`` (n, len(features)), as the baseline's
        evaluation computes them (LGBMClassifier.predict_proba); classes without training cells get 0."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.features):
            raise ValueError(f"expected (n, {len(self.features)}) features, got {X.shape}")
        kwargs = {"num_threads": int(threads)} if threads else {}
        raw = np.asarray(self.booster.predict(X, **kwargs), dtype=np.float64)
        if raw.ndim == 1:  # binary: P(second fitted class), as the sklearn wrapper expands it
            raw = np.vstack((1.0 - raw, raw)).T
        proba = np.zeros((len(X), len(self.classes)))
        proba[:, [self.classes.index(c) for c in self.fitted_classes]] = raw
        return proba


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("sts", "lightgbm", "ipfx", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def save_model(out_dir, model, features: list[str], classes: list[str], X_train, feature_params=None,
               best_params: dict | None = None, seed: int | None = None, labels=None, scheme: str = "study") -> Path:
    """Write ``model.txt`` then ``model.json`` (each atomically) for a fitted LGBMClassifier
    ``model`` trained on ``X_train`` (its ``features`` columns); returns the model.json path.

    ``feature_params``: the FeatureParams that made the features (default: FeatureParams()).
    model.json is written last and names model.txt's hash, so a run killed between the two
    leaves a pair that ``load_model`` refuses rather than a silently mismatched one.
    """
    from sts.baseline.features import FeatureParams
    from sts.io.atomic import write_json_atomic, write_text_atomic
    from sts.trust.ood import KnnNovelty

    out = Path(out_dir)
    text = model.booster_.model_to_string()
    fitted = [str(c) for c in model.classes_]
    X = np.asarray(X_train, dtype=float)
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "model_file": BOOSTER_FILE, "model_sha256": _sha256(text.encode()),
        "features": [str(f) for f in features], "classes": [str(c) for c in classes], "fitted_classes": fitted,
        SCHEME_KEY: scheme,
        "feature_source": "sts.baseline.features.compute_features (sts ep-features), on each file's long squares",
        "feature_params": asdict(feature_params or FeatureParams()),
        "imputation": "none: undefined features stay NaN and LightGBM routes them natively, as in training",
        "standardisation": "none for the trees; the OOD score standardises with ood.means/scales",
        "ood": KnnNovelty.fit(X).to_dict(),
        "best_params": best_params or {}, "seed": seed, "n_train": int(len(X)),
        "train_class_counts": ({str(k): int(v) for k, v in zip(*np.unique(np.asarray(labels, dtype=str),
                                                                              return_counts=True))}
                               if labels is not None else None),
        "versions": _versions(),
    }  # fmt: skip
    write_text_atomic(out / BOOSTER_FILE, text)
    write_json_atomic(out / META_FILE, meta)
    log.info("LightGBM model (%d features, classes %s) -> %s", len(features), fitted, out)
    return out / META_FILE


def is_lightgbm_model(path) -> bool:
    """A folder, a .json or a .txt is taken for a LightGBM baseline model; anything else for a CNN model.pt."""
    path = Path(path)
    return path.is_dir() or path.suffix.lower() in LGBM_SUFFIXES


def _read_bounded(path: Path) -> bytes:
    from sts.io.untrusted import UntrustedFileError, read_capped

    try:
        return read_capped(path, MAX_BYTES, "LightGBM baseline model file")
    except UntrustedFileError as err:
        raise ModelFileError(str(err)) from None


def _names(meta: dict, key: str, where: Path) -> list[str]:
    value = meta.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ModelFileError(f"{where}: {key!r} must be a non-empty list of names")
    if len(set(value)) != len(value):
        raise ModelFileError(f"{where}: {key!r} has duplicates: {value}")
    return value


def load_model(path) -> SavedModel:
    """Read a saved baseline (its folder, or model.json); raises ModelFileError with the reason."""
    import lightgbm as lgb

    from sts.baseline.features import FEATURE_NAMES, FeatureParams
    from sts.baseline.model_text import ModelTextError, check_model_text
    from sts.trust.ood import KnnNovelty
    from sts.io.untrusted import UntrustedFileError, parse_json

    path = Path(path)
    if path.suffix.lower() == ".txt":
        raise ModelFileError(f"{path}: give the LightGBM model's folder or its {META_FILE} (it holds the features, "
                             f"classes and parameters that go with {path.name})")  # fmt: skip
    meta_path = path / META_FILE if path.is_dir() else path
    try:
        meta = parse_json(_read_bounded(meta_path), meta_path, "LightGBM model written by the sts baseline")
    except UntrustedFileError as err:
        raise ModelFileError(str(err)) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{meta_path}: not a LightGBM model written by the sts baseline (format is not {FORMAT!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{meta_path}: format_version {meta.get('format_version')!r}; "
                             f"this sts reads version {FORMAT_VERSION}")  # fmt: skip
    name = meta.get("model_file")
    if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name or "\\" in name:
        raise ModelFileError(f"{meta_path}: model_file must be a file name in the same folder, not {name!r}")
    data = _read_bounded(meta_path.parent / name)
    if _sha256(data) != meta.get("model_sha256"):
        raise ModelFileError(f"{meta_path.parent / name}: its sha256 differs from the one in {meta_path} "
                             "(changed, or from another fit): refused")  # fmt: skip

    features = _names(meta, "features", meta_path)
    unknown = [f for f in features if f not in FEATURE_NAMES]
    if unknown:
        raise ModelFileError(f"{meta_path}: features {unknown} are not EP features that sts computes "
                             "(a model trained on other tables, e.g. the published ones, cannot be served)")  # fmt: skip
    classes = _names(meta, "classes", meta_path)
    fitted = _names(meta, "fitted_classes", meta_path)
    if set(fitted) - set(classes) or len(fitted) < 2:
        raise ModelFileError(f"{meta_path}: fitted_classes {fitted} must be at least two of classes {classes}")
    try:
        saved_scheme(meta)
    except ValueError as err:
        raise ModelFileError(f"{meta_path}: {err}") from None
    try:
        feature_params = FeatureParams.from_dict(meta.get("feature_params") or {})
    except (TypeError, ValueError) as err:
        raise ModelFileError(f"{meta_path}: {err}") from err
    ood = None
    if meta.get("ood") is not None:
        try:
            ood = KnnNovelty.from_dict(meta["ood"], len(features))
        except ValueError as err:
            raise ModelFileError(f"{meta_path}: {err}") from err

    outputs = 1 if len(fitted) == 2 else len(fitted)
    try:  # before LightGBM's parser, which trusts the text (a cycle hangs it, an index out of range crashes it)
        text = data.decode("utf-8")
        check_model_text(text, features, outputs)
        booster = lgb.Booster(model_str=text)
    except (UnicodeDecodeError, ModelTextError, lgb.basic.LightGBMError) as err:
        raise ModelFileError(f"{meta_path.parent / name}: not LightGBM model text of this model card: {err}") from None
    if booster.feature_name() != features:
        raise ModelFileError(f"{meta_path}: features {features} differ from the booster's {booster.feature_name()} "
                             "(names and order must match the training columns)")  # fmt: skip
    if booster.num_model_per_iteration() != outputs:
        raise ModelFileError(f"{meta_path}: the booster has {booster.num_model_per_iteration()} output(s) per "
                             f"iteration, which does not fit {len(fitted)} fitted classes {fitted}")  # fmt: skip
    _warn_versions(meta.get("versions"), meta_path)
    return SavedModel(meta_path, booster, features, classes, fitted, feature_params, ood, meta)


def _warn_versions(saved, where: Path) -> None:
    if not isinstance(saved, dict):
        return
    now = _versions()
    for pkg in ("lightgbm", "ipfx"):
        if saved.get(pkg) and now.get(pkg) and saved[pkg] != now[pkg]:
            log.warning("%s: saved with %s %s, running %s: features or predictions may differ", where, pkg,
                        saved[pkg], now[pkg])  # fmt: skip
