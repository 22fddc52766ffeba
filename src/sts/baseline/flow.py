"""The LightGBM baseline as one flow, whatever made its features: search -> final fit -> holdout
evaluation -> SHAP, and the fit saved for ``sts predict`` when the features come from recordings.

The input is a ``FeatureCells``: training and holdout cells (features, labels, ids) and the
split cells left out, with reasons. ``sts.baseline.published.load_published`` builds it from the
study's tables and split (``sts baseline-published``), ``sts.baseline.computed.load_computed``
from ``sts ep-features``' table and the manifest's split (the workflow's ``baseline`` rule).

``run_baseline`` writes to OUT_DIR: metrics.json, predictions.csv, confusion_matrix.png
(sts.trust.metrics), shap_mean_abs.csv and shap_beeswarm_<class>.png (sts.baseline.explain),
best_params.json, search.json (trials, best CV score, wall time, features, settings),
features.json (feature list and cell counts), excluded.csv and, for computed features,
model/ (model.txt + model.json, sts.baseline.saved). The Optuna study is kept in
OUT_DIR/optuna_journal.log, so a killed run resumes its search. The study is named after a hash
of the training cells (ids, labels, feature names and values) and of the search settings
(``study_name``): changed features, cells or settings start a new study instead of reusing the
old one's trials, and asking for more trials extends the same one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sts.settings import BaselineSettings  # noqa: F401 (its home; imported from here too)

if TYPE_CHECKING:  # the CLI imports this module to build its parser: no pandas before single_threaded()
    import pandas as pd

log = logging.getLogger(__name__)

JOURNAL = "optuna_journal.log"


@dataclass
class Split:
    """One side of the split: features, labels and identifiers, row-aligned (index 0..n-1)."""

    X: pd.DataFrame
    y: pd.Series
    specimen_id: pd.Series
    dataset: pd.Series

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class FeatureCells:
    """A feature source: train and test cells, the feature names, the split cells left out
    (``excluded``: specimen_id, split, label, reason, ...), a name for titles and logs, and the
    ``FeatureParams`` that computed the features from recordings (None: the fit cannot be served)."""

    train: Split
    test: Split
    features: list[str]
    excluded: pd.DataFrame
    name: str
    feature_params: object | None = None

    def summary(self) -> dict:
        """Counts per split and class, and exclusions per reason (for logs and JSON)."""
        return {
            "n_features": len(self.features),
            "train": {str(k): int(v) for k, v in self.train.y.value_counts().sort_index().items()},
            "test": {str(k): int(v) for k, v in self.test.y.value_counts().sort_index().items()},
            "excluded": {str(k): int(v) for k, v in self.excluded["reason"].value_counts().items()},
        }


def study_name(train: Split, settings: BaselineSettings) -> str:
    """``lgbm-seed<seed>-<hash>`` of the training cells and of what defines the search (not
    ``trials``: more trials extend the study; not ``jobs`` or ``top_k``: they do not change it)."""
    import pandas as pd

    h = hashlib.sha1()
    h.update(json.dumps([list(map(str, train.X.columns)), list(map(str, train.specimen_id)),
                         list(map(str, train.y))]).encode())  # fmt: skip
    h.update(pd.util.hash_pandas_object(train.X, index=False).to_numpy().tobytes())
    s = settings
    h.update(json.dumps({"seed": s.seed, "folds": s.folds, "early_stopping": s.early_stopping, "space": s.space},
                        sort_keys=True, default=str).encode())  # fmt: skip
    return f"lgbm-seed{s.seed}-{h.hexdigest()[:10]}"


def run_baseline(cells: FeatureCells, out_dir, settings: BaselineSettings = BaselineSettings(),
                 classes=None, resume: bool = True, scheme: str = "study") -> dict:  # fmt: skip
    """Tune, fit, evaluate on the holdout and explain (and save the fit); returns the holdout metrics.

    ``classes`` (the configured ones) orders the metrics and probability columns; a class
    without training cells gets probability 0. Default: the training labels, sorted.
    ``resume=False`` deletes the journal and searches afresh. ``scheme``: the class scheme of the
    labels (``sts.acquire.schemes``), in features.json and the saved model.
    """
    from sts.io.atomic import write_csv_atomic, write_json_atomic
    from sts.baseline.explain import explain
    from sts.baseline.lgbm import fit_final, predict_in_order, search
    from sts.baseline.saved import save_model
    from sts.io.text import spreadsheet_safe
    from sts.trust.metrics import write_evaluation

    s = settings
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    summary = cells.summary()
    log.info("%s: %d features; train %s; test %s", cells.name, len(cells.features), summary["train"], summary["test"])
    if len(cells.excluded):
        log.warning("excluded split cells: %s", summary["excluded"])
    write_json_atomic(out / "features.json", {"features": cells.features, "label_scheme": scheme, **summary})
    write_csv_atomic(out / "excluded.csv", spreadsheet_safe(cells.excluded))  # users open it

    journal = out / JOURNAL
    if not resume:
        journal.unlink(missing_ok=True)
    train, test = cells.train, cells.test
    name = study_name(train, s)
    result = search(train.X, train.y, n_trials=s.trials, seed=s.seed, n_jobs=s.jobs, n_folds=s.folds,
                    space=s.space, storage=journal, study_name=name,
                    early_stopping_rounds=s.early_stopping or None)  # fmt: skip
    log.info("search: %d trials in %.1f s, best CV balanced accuracy %.4f", result.n_trials, result.wall_s,
             result.best_score)  # fmt: skip
    write_json_atomic(out / "best_params.json", result.best_params)
    write_json_atomic(out / "search.json", {**result.to_dict(), "study": name, "features": cells.features,
                                            "settings": asdict(s)})  # fmt: skip

    model = fit_final(train.X, train.y, result.best_params, seed=s.seed, n_jobs=s.jobs)
    fitted = [str(c) for c in model.classes_]
    classes = [str(c) for c in classes] if classes else fitted
    pred, proba = predict_in_order(model, test.X, classes)
    if cells.feature_params is not None:
        save_model(out / "model", model, cells.features, classes, train.X, feature_params=cells.feature_params,
                   best_params=result.best_params, seed=s.seed, labels=train.y, scheme=scheme)  # fmt: skip
    metrics = write_evaluation(out, test.specimen_id, test.y, pred, proba, classes,
                               title=f"LightGBM ({cells.name}), holdout")  # fmt: skip
    log.info("holdout: balanced accuracy %.4f, weighted F1 %.4f, accuracy %.4f (n=%d)",
             *(metrics[k] for k in ("balanced_accuracy", "weighted_f1", "accuracy", "n_test")))  # fmt: skip
    explain(model, test.X, fitted, out, top_k=s.top_k)
    log.info("done in %.1f s: %s", time.perf_counter() - start, out)
    return metrics
