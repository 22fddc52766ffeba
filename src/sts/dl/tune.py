"""Optuna TPE search of one architecture's hyper-parameters over the manifest's CV folds.

Objective: mean validation balanced accuracy over the training folds (each fold is validated
once, on its own cells, with early stopping). After every epoch the trial reports the fold's
best score so far at step ``fold * max_epochs + epoch``, so a pruner (median by default)
stops hopeless trials; ``search.json`` counts the epochs that pruning saved (estimated from
the mean epochs of the completed trials).

The search space is a dict (DEFAULT_SPACE, overridable from config): a list is a categorical
choice; ``{low, high}`` is a range (``learning_rate`` log-uniform, ``decay_period`` and
``patience`` integers). The study lives in an Optuna journal file under OUT_DIR, named after
a hash of the settings: a killed job resumes it, several workers (e.g. a SLURM array) can
share it, and changed settings start a new study instead of mixing trials.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sts.dl.models import check_arch
from sts.dl.train import TrainParams, fit

log = logging.getLogger(__name__)

JOURNAL = "journal.log"
DEFAULT_SPACE: dict = {
    "batch_size": [32, 64],
    "learning_rate": {"low": 1e-3, "high": 0.08},
    "decay_factor": [0, 0.01, 0.1],
    "decay_period": {"low": 5, "high": 20},
    "patience": {"low": 10, "high": 20},
    "dropout": [0, 0.3, 0.5, 0.7],
}
LOG_RANGES = {"learning_rate"}
INT_RANGES = {"decay_period", "patience"}


@dataclass(frozen=True)
class TuneSettings:
    """Everything that defines one architecture's search (its hash names the study)."""

    arch: str
    n_trials: int = 50
    max_epochs: int = 30
    seed: int = 0
    space: dict = field(default_factory=lambda: dict(DEFAULT_SPACE))
    pruner: str = "median"  # median | none
    pruner_startup_trials: int = 5
    pruner_warmup_epochs: int = 5
    weights: str = "none"
    weights_path: str | None = None
    device: str = "auto"
    recalibrate_bn: bool = False

    def __post_init__(self):
        check_arch(self.arch)
        unknown = set(self.space) - set(DEFAULT_SPACE)
        if unknown:
            raise ValueError(f"search space: unknown parameter(s) {sorted(unknown)}; known: {list(DEFAULT_SPACE)}")
        if self.pruner not in ("median", "none"):
            raise ValueError(f"pruner {self.pruner!r}: expected 'median' or 'none'")

    @property
    def full_space(self) -> dict:
        return {**DEFAULT_SPACE, **self.space}

    def study_name(self) -> str:
        # n_trials is left out: asking for more trials extends the same study.
        text = json.dumps({**asdict(self), "space": self.full_space, "n_trials": None}, sort_keys=True)
        return f"{self.arch}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"


def suggest(trial, space: dict) -> dict:
    """Draw one parameter set from ``space`` (see the module docstring)."""
    params = {}
    for name, spec in space.items():
        if isinstance(spec, dict):
            if name in INT_RANGES:
                params[name] = trial.suggest_int(name, int(spec["low"]), int(spec["high"]))
            else:
                params[name] = trial.suggest_float(name, spec["low"], spec["high"], log=name in LOG_RANGES)
        else:
            params[name] = trial.suggest_categorical(name, list(spec))
    return params


def cv_folds(packed) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, valid) indices per manifest fold of the training cells."""
    folds = sorted(int(k) for k in np.unique(packed.fold[packed.split == "train"]) if k >= 0)
    if len(folds) < 2:
        raise ValueError(f"need at least 2 CV folds among the training cells, found {folds}")
    return [(packed.indices("train", k, exclude_fold=True), packed.indices("train", k)) for k in folds]


def storage(path: str | Path):
    import optuna
    from optuna.storages.journal import JournalFileBackend

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def open_study(out_dir: str | Path, settings: TuneSettings, seed_offset: int | None = None):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    st = storage(Path(out_dir) / JOURNAL)
    name = settings.study_name()
    pruner = (
        optuna.pruners.MedianPruner(settings.pruner_startup_trials, settings.pruner_warmup_epochs)
        if settings.pruner == "median"
        else optuna.pruners.NopPruner()
    )
    # Each (re)start or parallel worker draws from its own seed, so workers do not repeat trials.
    existing = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(st)}.get(name, 0)
    offset = existing if seed_offset is None else seed_offset
    sampler = optuna.samplers.TPESampler(seed=settings.seed + offset)
    return optuna.create_study(study_name=name, storage=st, direction="maximize", sampler=sampler,
                               pruner=pruner, load_if_exists=True)  # fmt: skip


def finished(study) -> list:
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return [t for t in study.trials if t.state in states]


def tune(packed, out_dir: str | Path, settings: TuneSettings, threads: int | None = None) -> dict:
    """Run (or resume) the search until ``n_trials`` trials have finished; write the outputs."""
    import optuna
    from optuna.study import MaxTrialsCallback

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    folds = cv_folds(packed)
    images, y, n_classes = packed.images, packed.y, len(packed.classes)
    study = open_study(out, settings)
    space = settings.full_space
    t0 = time.perf_counter()

    def objective(trial):
        hp = suggest(trial, space)
        scores, best_epochs, epochs = [], [], 0
        for k, (train_idx, valid_idx) in enumerate(folds):
            params = TrainParams(**hp, max_epochs=settings.max_epochs, seed=settings.seed + k,
                                 weights=settings.weights, weights_path=settings.weights_path,
                                 device=settings.device, recalibrate_bn=settings.recalibrate_bn)  # fmt: skip

            def report(epoch, best, k=k):
                nonlocal epochs
                epochs += 1
                trial.set_user_attr("epochs_run", epochs)
                trial.report(best, step=k * settings.max_epochs + epoch)
                if trial.should_prune():
                    log.info("trial %d pruned at fold %d epoch %d (%.4f)", trial.number, k, epoch + 1, best)
                    raise optuna.TrialPruned()

            result = fit(settings.arch, images, y, n_classes, train_idx, valid_idx, params,
                         on_epoch=report, threads=threads)  # fmt: skip
            scores.append(result.best_score)
            best_epochs.append(result.best_epoch)
            trial.set_user_attr("fold_scores", scores)
            trial.set_user_attr("best_epochs", best_epochs)
        return float(np.mean(scores))

    def recorded(study, trial):  # runs once the trial's result is in the journal
        log.info("trial %d finished: %s, CV balanced accuracy %s, %s", trial.number, trial.state.name,
                 trial.value, trial.params)  # fmt: skip

    done = len(finished(study))
    if done:
        log.info("resuming study %s: %d of %d trials finished", study.study_name, done, settings.n_trials)
    if done < settings.n_trials:
        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        study.optimize(objective, n_trials=settings.n_trials - done,
                       callbacks=[recorded, MaxTrialsCallback(settings.n_trials, states=states)])  # fmt: skip
    return write_outputs(study, out, settings, time.perf_counter() - t0)


def trials_frame(study) -> pd.DataFrame:
    rows = []
    for t in study.trials:
        rows.append({"number": t.number, "state": t.state.name, "value": t.value,
                     **{f"param_{k}": v for k, v in t.params.items()},
                     "epochs_run": t.user_attrs.get("epochs_run", 0),
                     "best_epochs": json.dumps(t.user_attrs.get("best_epochs", [])),
                     "fold_scores": json.dumps(t.user_attrs.get("fold_scores", []))})  # fmt: skip
    return pd.DataFrame(rows)


def write_outputs(study, out: Path, settings: TuneSettings, wall_s: float) -> dict:
    """best_params.json, trials.csv and search.json (pruning savings included)."""
    import optuna

    from sts.metrics import write_csv_atomic, write_json_atomic

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise RuntimeError(f"study {study.study_name}: no completed trial (all pruned or failed)")
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    full = float(np.mean([t.user_attrs.get("epochs_run", 0) for t in complete]))
    run_pruned = sum(t.user_attrs.get("epochs_run", 0) for t in pruned)
    saved = sum(max(full - t.user_attrs.get("epochs_run", 0), 0.0) for t in pruned)
    best = study.best_trial
    final_epochs = max(1, int(round(np.mean(best.user_attrs["best_epochs"]))))
    best_params = {"arch": settings.arch, "params": best.params, "cv_balanced_accuracy": best.value,
                   "trial": best.number, "fold_scores": best.user_attrs["fold_scores"],
                   "best_epochs": best.user_attrs["best_epochs"], "final_epochs": final_epochs}  # fmt: skip
    summary = {
        "study": study.study_name, "n_trials": len(study.trials), "complete": len(complete), "pruned": len(pruned),
        "epochs_run": int(sum(t.user_attrs.get("epochs_run", 0) for t in study.trials)),
        "epochs_run_by_pruned_trials": int(run_pruned), "mean_epochs_complete_trial": full,
        "epochs_saved_by_pruning": round(saved, 1), "wall_s_this_run": wall_s,
        "best_cv_balanced_accuracy": best.value, "settings": {**asdict(settings), "space": settings.full_space},
    }  # fmt: skip
    write_csv_atomic(out / "trials.csv", trials_frame(study))
    write_json_atomic(out / "search.json", summary)
    write_json_atomic(out / "best_params.json", best_params)
    log.info("%s: best CV balanced accuracy %.4f (trial %d), %d complete, %d pruned, ~%.0f epochs saved",
             settings.arch, best.value, best.number, len(complete), len(pruned), saved)  # fmt: skip
    return best_params
