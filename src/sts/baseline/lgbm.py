"""LightGBM classifier (multiclass; binary for two classes) tuned by an Optuna TPE search.

Each trial scores one parameter set by stratified k-fold CV on the training cells (mean
balanced accuracy, folds fixed by the seed); the search never sees the holdout. The best
parameters are then refitted on all training cells (``fit_final``).

The search space is a dict (DEFAULT_SPACE; pass ``space=`` to override or extend it): each
value is ``("int"|"float", low, high, log)``, ``("categorical", [choices])`` or a plain
value (fixed). Keys are LGBMClassifier arguments (scikit-learn names: ``colsample_bytree``
= feature_fraction, ``subsample``/``subsample_freq`` = bagging, ``reg_alpha``/``reg_lambda``
= lambda_l1/l2). LightGBM's defaults (with class_weight balanced) are the first trial, so
the search cannot end below them in CV.

With ``early_stopping_rounds`` set, ``n_estimators`` is a cap: each fold stops on its
validation log loss, and the final model uses the mean best iteration of the best trial.

Each CV fit of the search runs on one LightGBM thread; ``n_jobs`` is the number of folds
fitted side by side (Python threads: LightGBM releases the GIL). On these tables (thousands
of cells, 16 features) a fit is many tiny OpenMP loops, and a team of threads pays for each:
with libgomp's default spin-waiting a 2-thread fit was 20x slower than a 1-thread one on busy
shared cores (the spinners take the cores their partners need); with ``OMP_WAIT_POLICY=PASSIVE``
(set by ``sts.cnn``, hence inside ``sts``) 1.8x slower, with ~10^5 context switches per fit:
the system time of the search. ``benchmarks/bench_lgbm_search.py`` compares the search with a
plain one. Runs are deterministic for a given seed, whatever ``n_jobs`` (LightGBM
``deterministic=True``, ``force_col_wise``, seeded TPE; 1 and 2 LightGBM threads per fit
give the same trees).

With ``storage`` (a ``.db``/``.sqlite`` file for SQLite, anything else an Optuna journal
file) a killed search resumes, up to ``n_trials`` finished (a resumed search is not
trial-for-trial identical to an uninterrupted one).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

DEFAULT_SPACE: dict = {
    "num_leaves": ("int", 7, 63, True),
    "learning_rate": ("float", 0.02, 0.3, True),
    "n_estimators": ("int", 50, 500, True),
    "min_child_samples": ("int", 5, 100, True),
    "colsample_bytree": ("float", 0.4, 1.0, False),
    "subsample": ("float", 0.5, 1.0, False),
    "subsample_freq": ("categorical", [0, 1]),
    "reg_alpha": ("float", 1e-8, 10.0, True),
    "reg_lambda": ("float", 1e-8, 10.0, True),
    "class_weight": ("categorical", ["balanced", None]),
}
# LightGBM's own defaults, enqueued as the first trial where the space allows them.
DEFAULT_TRIAL = {
    "num_leaves": 31, "learning_rate": 0.1, "n_estimators": 100, "min_child_samples": 20,
    "colsample_bytree": 1.0, "subsample": 1.0, "subsample_freq": 0, "reg_alpha": 1e-8,
    "reg_lambda": 1e-8, "class_weight": "balanced",
}  # fmt: skip


@dataclass
class SearchResult:
    """Outcome of ``search``: best parameters (fixed ones included) and the trial history."""

    best_params: dict
    best_score: float
    n_trials: int
    wall_s: float
    trials: list = field(default_factory=list)
    cpu_s: float = 0.0  # CPU seconds of the process (all threads) during the search

    def to_dict(self) -> dict:
        return {
            "best_cv_balanced_accuracy": self.best_score,
            "n_trials": self.n_trials,
            "wall_s": self.wall_s,
            "cpu_s": self.cpu_s,
            "best_params": self.best_params,
            "trials": self.trials,
        }


def base_params(seed: int = 0, n_jobs: int = 1) -> dict:
    """Fixed LightGBM arguments that make a fit reproducible and quiet; ``n_jobs`` LightGBM
    threads (one is fastest here, see the module docstring). No ``objective``: the classifier
    takes 'multiclass' for more than two classes and 'binary' for two ('multiclass' with two
    classes fails)."""
    return {"random_state": seed, "n_jobs": n_jobs, "deterministic": True, "force_col_wise": True, "verbose": -1}


def make_model(params: dict, seed: int = 0, n_jobs: int = 1):
    """An LGBMClassifier with ``params`` over the fixed reproducible arguments."""
    from lightgbm import LGBMClassifier

    return LGBMClassifier(**{**base_params(seed, n_jobs), **params})


def suggest(trial, space: dict) -> dict:
    """Draw one parameter set from ``space`` (see module docstring)."""
    params = {}
    for name, spec in space.items():
        if not isinstance(spec, tuple):
            params[name] = spec
        elif spec[0] == "int":
            params[name] = trial.suggest_int(name, spec[1], spec[2], log=bool(spec[3:] and spec[3]))
        elif spec[0] == "float":
            params[name] = trial.suggest_float(name, spec[1], spec[2], log=bool(spec[3:] and spec[3]))
        elif spec[0] == "categorical":
            params[name] = trial.suggest_categorical(name, list(spec[1]))
        else:
            raise ValueError(f"search space {name}: unknown kind {spec[0]!r}")
    return params


def cv_score(X, y, params, folds, seed=0, n_jobs=2, early_stopping_rounds=None) -> tuple[float, int]:
    """Mean balanced accuracy over ``folds`` and mean number of trees used.

    The folds are fitted side by side, ``n_jobs`` at a time (see the module docstring)."""
    from concurrent.futures import ThreadPoolExecutor

    import lightgbm as lgb
    from sklearn.metrics import balanced_accuracy_score

    y = pd.Series(pd.factorize(np.asarray(y), sort=True)[0])  # LightGBM 4.7 leaves eval_y unencoded
    metric = "multi_logloss" if y.nunique() > 2 else "binary_logloss"

    def fold(indices) -> tuple[float, int]:
        train_idx, valid_idx = indices
        model = make_model(params, seed)
        xt, yt, xv, yv = X.iloc[train_idx], y.iloc[train_idx], X.iloc[valid_idx], y.iloc[valid_idx]
        if early_stopping_rounds:
            stop = lgb.early_stopping(early_stopping_rounds, first_metric_only=True, verbose=False)
            model.fit(xt, yt, **_eval_kwargs(model, xv, yv), eval_metric=metric, callbacks=[stop])
            n_iter = model.best_iteration_ or params.get("n_estimators", 100)
        else:
            model.fit(xt, yt)
            n_iter = params.get("n_estimators", 100)
        return balanced_accuracy_score(yv, model.predict(xv)), n_iter

    with ThreadPoolExecutor(max(1, min(n_jobs, len(folds)))) as pool:  # LightGBM releases the GIL
        scores, iters = zip(*pool.map(fold, folds))
    return float(np.mean(scores)), int(round(np.mean(iters)))


def _eval_kwargs(model, xv, yv) -> dict:
    """Validation data for ``fit``: ``eval_X``/``eval_y`` (LightGBM >= 4.7) or ``eval_set``."""
    import inspect

    if "eval_X" in inspect.signature(model.fit).parameters:
        return {"eval_X": (xv,), "eval_y": (yv,)}
    return {"eval_set": [(xv, yv)]}


def _storage(path):
    import optuna

    if path is None:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".db", ".sqlite", ".sqlite3"):
        return f"sqlite:///{path.resolve()}"
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def search(
    X: pd.DataFrame,
    y: pd.Series,
    n_trials: int = 50,
    seed: int = 0,
    n_jobs: int = 2,
    n_folds: int = 3,
    space: dict | None = None,
    storage: str | Path | None = None,
    study_name: str = "lgbm",
    early_stopping_rounds: int | None = None,
) -> SearchResult:
    """Optuna TPE search maximising mean CV balanced accuracy; ``space`` updates DEFAULT_SPACE."""
    import optuna
    from sklearn.model_selection import StratifiedKFold

    space = {**DEFAULT_SPACE, **(space or {})}
    X, y = X.reset_index(drop=True), pd.Series(np.asarray(y), name="label")
    folds = list(StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(X, y))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=study_name,
        storage=_storage(storage),
        load_if_exists=True,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
    )
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not study.trials:
        first = {k: v for k, v in DEFAULT_TRIAL.items() if isinstance(space.get(k), tuple)}
        if all(_allowed(space[k], v) for k, v in first.items()):
            study.enqueue_trial(first)
    if done:
        log.info("resuming study %r: %d finished trials", study_name, len(done))

    def objective(trial):
        params = suggest(trial, space)
        score, n_iter = cv_score(X, y, params, folds, seed, n_jobs, early_stopping_rounds)
        trial.set_user_attr("n_estimators_used", n_iter)
        return score

    def report(study, trial):
        log.info(
            "trial %d/%d: CV balanced accuracy %.4f (best %.4f, trial %d)",
            trial.number + 1, n_trials, trial.value if trial.value is not None else float("nan"),
            study.best_value, study.best_trial.number,
        )  # fmt: skip

    start, cpu = time.perf_counter(), time.process_time()
    remaining = max(0, n_trials - len(done))
    if remaining:
        study.optimize(objective, n_trials=remaining, callbacks=[report], gc_after_trial=False)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    best = study.best_trial
    params = {**{k: v for k, v in space.items() if not isinstance(v, tuple)}, **best.params}
    if early_stopping_rounds:
        params["n_estimators"] = int(best.user_attrs["n_estimators_used"])
    trials = [
        {"number": t.number, "value": t.value, "params": t.params, "state": t.state.name,
         "seconds": t.duration.total_seconds() if t.duration else None}
        for t in study.trials
    ]  # fmt: skip
    n_done = sum(t["state"] == "COMPLETE" for t in trials)
    return SearchResult(params, float(best.value), n_done, wall, trials, cpu)


def _allowed(spec: tuple, value) -> bool:
    if spec[0] == "categorical":
        return value in spec[1]
    return spec[1] <= value <= spec[2]


def fit_final(X: pd.DataFrame, y, params: dict, seed: int = 0, n_jobs: int = 1):
    """Refit ``params`` on all training cells, with ``n_jobs`` LightGBM threads (model.txt records
    the number; the trees do not depend on it)."""
    model = make_model(params, seed, n_jobs)
    model.fit(X.reset_index(drop=True), np.asarray(y))
    return model


def predict_in_order(model, X: pd.DataFrame, classes: list[str]) -> tuple[list[str], np.ndarray]:
    """(predicted classes, probabilities (n, len(classes))) of a fitted ``model`` on ``X``, the
    columns in ``classes`` order; a class the model never saw in training gets probability 0."""
    fitted = [str(c) for c in model.classes_]
    unknown = sorted(set(fitted) - set(classes))
    if unknown:
        raise ValueError(f"training labels {unknown} are not among the classes {classes}")
    proba = np.zeros((len(X), len(classes)))
    proba[:, [classes.index(c) for c in fitted]] = model.predict_proba(X.reset_index(drop=True))
    return [classes[i] for i in proba.argmax(axis=1)], proba
