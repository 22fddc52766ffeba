"""Optuna TPE search of one architecture's hyper-parameters over the manifest's CV folds.

Objective: mean validation balanced accuracy over the training folds (each fold is validated
once, on its own cells, with early stopping). After every epoch the trial reports the fold's
best score so far at step ``fold * max_epochs + epoch``, so a pruner (median by default)
stops hopeless trials; ``search.json`` counts the epochs that pruning saved (estimated from
the mean epochs of the completed trials). Every completed trial also leaves its out-of-fold
predictions, ``oof/{study}/trial_{n}.csv``: each training cell's class probabilities from the
fold that validated it, at that fold's kept epoch (``specimen_id, fold, label, predicted,
p_<class>...``; ``sts.trust.metrics.read_predictions`` reads it); a completed trial that leads
the study also leaves its folds' embeddings, ``oof/{study}/trial_{n}_ood.npz``
(``sts.cnn.fold_embeddings``: what the CNN's out-of-distribution threshold comes from).

The search space is a dict (``sts.settings.CNN_SPACE``, overridable from config): a list is a
categorical choice; ``{low, high}`` is a range (``learning_rate`` log-uniform, ``decay_period`` and
``patience`` integers).

Parallel search (see ``sts.cnn.study``): ``tune_worker`` takes trials of the architecture's
shared study until it has ``n_trials`` finished ones and writes ``worker_{k}.done``; any number
of workers can run at once and a killed one resumes. ``tune_gather`` then writes
``best_params.json``, ``trials.csv``, ``search.json``, ``oof_best.csv`` (the best trial's
out-of-fold predictions) and ``ood_folds.npz`` (its folds' embeddings). ``tune`` is worker 0
then the gather: with one worker, the same trials as a plain sequential ``study.optimize``.
``tune_job`` is one tuning job of the workflow (``cnn.tune_workers`` of them per architecture):
``cnn.trials_per_gpu`` workers at once on the job's device, each its own process (see
``tune_job`` for what that costs on a GPU).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from sts.cnn import fold_embeddings
from sts.cnn.study import WORKER, claim, data_key, finished, open_study, recover_orphans
from sts.cnn.train import TrainParams, fit
from sts.settings import TuneSettings

log = logging.getLogger(__name__)

LOG_RANGES = {"learning_rate"}
INT_RANGES = {"decay_period", "patience"}


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


def _objective(packed, out: Path, settings: TuneSettings, study_name: str, threads: int | None):
    """The trial function: CV folds in order, pruning after every epoch, out-of-fold file at the end."""
    import optuna

    from sts.io.atomic import write_csv_atomic
    from sts.trust.metrics import predictions_frame

    folds = cv_folds(packed)
    images, y, classes = packed.images, packed.y, list(packed.classes)
    space = settings.full_space

    def objective(trial):
        hp = suggest(trial, space)
        scores, best_epochs, epochs, oof, fits = [], [], 0, [], []
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

            result = fit(settings.arch, images, y, len(classes), train_idx, valid_idx, params,
                         on_epoch=report, threads=threads)  # fmt: skip
            scores.append(result.best_score)
            best_epochs.append(result.best_epoch)
            trial.set_user_attr("fold_scores", scores)
            trial.set_user_attr("best_epochs", best_epochs)
            if result.valid_proba is not None:
                frame = predictions_frame(packed.specimen_id[valid_idx], packed.label[valid_idx],
                                          [classes[i] for i in result.valid_proba.argmax(axis=1)],
                                          result.valid_proba, classes)  # fmt: skip
                frame.insert(1, "fold", k)
                oof.append(frame)
            fits.append((train_idx, valid_idx, result.state_dict))
        value = float(np.mean(scores))
        # Written before the trial is told COMPLETE: a complete trial always has its file, and
        # the best one its fold embeddings (no completed trial can score above it unseen).
        write_csv_atomic(oof_path(out, study_name, trial.number), pd.concat(oof, ignore_index=True))
        if _leads(trial.study, value):
            emb = fold_embeddings.embed_folds(settings.arch, packed, fits, hp.get("dropout", 0.0), settings.weights,
                                              settings.device, trial.number)  # fmt: skip
            fold_embeddings.save(fold_embeddings.trial_path(out, study_name, trial.number), emb)
        return value

    return objective


def _leads(study, value: float) -> bool:
    """Whether ``value`` is at least every completed trial's (those of any worker)."""
    import optuna

    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return all(value >= t.value for t in done)


def oof_path(out_dir: str | Path, study_name: str, number: int) -> Path:
    """Out-of-fold predictions of trial ``number`` (per study: trial numbers restart in a new one)."""
    return Path(out_dir) / "oof" / study_name / f"trial_{number}.csv"


def tune_worker(packed, out_dir: str | Path, settings: TuneSettings, worker: int = 0, storage_url: str | None = None,
                threads: int | None = None, write_report: bool = True) -> dict:  # fmt: skip
    """Worker ``worker`` of the shared search: recover its orphans, then take trials until the
    study has ``n_trials`` finished ones (see ``sts.cnn.study``). Writes (unless ``write_report``
    is false: a slot of ``tune_job``) and returns its report, ``OUT_DIR/worker_{worker}.done``
    (JSON: study, worker, the trials it ran, wall_s)."""
    import optuna

    from sts.io.atomic import write_json_atomic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    study = open_study(out, settings, data_key(packed), storage_url, worker=worker)
    objective = _objective(packed, out, settings, study.study_name, threads)
    retries = recover_orphans(study, worker)
    done = len(finished(study))
    if done:
        log.info("worker %d: study %s has %d of %d trials finished", worker, study.study_name, done,
                 settings.n_trials)  # fmt: skip
    ran = []
    while (trial := claim(study, settings.n_trials, worker, retries.pop(0) if retries else None)) is not None:
        log.info("trial %d started by worker %d", trial.number, worker)
        state, value = None, None
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            state = optuna.trial.TrialState.PRUNED
        except (Exception, KeyboardInterrupt):
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        frozen = study.tell(trial, value, state=state)
        ran.append(trial.number)
        log.info("trial %d finished: %s, CV balanced accuracy %s, %s", trial.number, frozen.state.name,
                 frozen.value, frozen.params)  # fmt: skip
    report = {"study": study.study_name, "worker": worker, "trials": ran, "wall_s": time.perf_counter() - t0}
    if write_report:
        write_json_atomic(worker_report_path(out, worker), report)
    log.info("worker %d: ran %d trial(s) %s; study has %d finished", worker, len(ran), ran, len(finished(study)))
    return report


def worker_report_path(out_dir: str | Path, worker: int) -> Path:
    return Path(out_dir) / f"worker_{worker}.done"


def tune_job(packed_path: str | Path, out_dir: str | Path, settings: TuneSettings, job: int = 0, per_gpu: int = 1,
             storage_url: str | None = None, threads: int | None = None) -> dict:  # fmt: skip
    """Tuning job ``job`` of the workflow: ``per_gpu`` workers of the shared search at once on
    this job's device (cnn.trials_per_gpu, for a GPU that one model does not fill), with study
    worker ids ``job * per_gpu + slot`` and ``threads // per_gpu`` CPU threads each. One worker
    runs in this process (``per_gpu`` 1: ``tune_worker`` itself); more are spawned processes
    (CUDA cannot be forked), one per slot. Each process holds
    its own CUDA context, model and resident copy of the packed images (``device_images``):
    the GPU carries ``per_gpu`` x the array's bytes (1.7 GB x per_gpu at 5,590 packed cells, 224 px,
    float16), and each copy is checked against the memory still free when its fit starts.
    A killed job is resumed with the same ``per_gpu`` (its slots then retry their orphans).
    Writes ``OUT_DIR/worker_{job}.done`` (with ``slots``: the worker ids) once all are done."""
    from sts.cnn.pack import load_packed
    from sts.io.atomic import write_json_atomic

    if per_gpu < 1:
        raise ValueError(f"trials per GPU {per_gpu}: expected at least 1")
    if per_gpu == 1:
        return tune_worker(load_packed(packed_path), out_dir, settings, job, storage_url, threads)
    each = max(1, threads // per_gpu) if threads else None
    ids = [job * per_gpu + slot for slot in range(per_gpu)]
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    log_file = handlers[0].baseFilename if handlers else None
    log.info("job %d: %d workers %s at once on one device, %s threads each", job, per_gpu, ids, each)
    args = [(str(packed_path), str(out_dir), settings, w, storage_url, each, log_file) for w in ids]
    with multiprocessing.get_context("spawn").Pool(per_gpu) as pool:  # a failed slot stops the others
        reports = pool.starmap(_slot, args)
    report = {"study": reports[0]["study"], "worker": job, "slots": ids,
              "trials": sorted(t for r in reports for t in r["trials"]),
              "wall_s": max(r["wall_s"] for r in reports)}  # fmt: skip
    write_json_atomic(worker_report_path(out_dir, job), report)
    return report


def _slot(packed_path, out_dir, settings, worker, storage_url, threads, log_file) -> dict:
    """One spawned worker of ``tune_job`` (its report goes back to the job, not to a file)."""
    from sts.cnn.pack import load_packed

    if log_file:
        logging.basicConfig(filename=log_file, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return tune_worker(load_packed(packed_path), out_dir, settings, worker, storage_url, threads, write_report=False)


def tune_gather(packed, out_dir: str | Path, settings: TuneSettings, storage_url: str | None = None,
                reports: list | None = None) -> dict:  # fmt: skip
    """Write the search's outputs once its workers are done (``reports``: their .done files;
    default every ``worker_*.done`` in OUT_DIR). Fails when the study has fewer than
    ``n_trials`` finished trials (a worker stopped early), naming the trials still running."""
    import optuna

    out = Path(out_dir)
    study = open_study(out, settings, data_key(packed), storage_url)
    paths = sorted(out.glob("worker_*.done")) if reports is None else [Path(r) for r in reports]
    runs = [r for r in (json.loads(p.read_text()) for p in paths) if r.get("study") == study.study_name]
    done = len(finished(study))
    if done < settings.n_trials:
        running = [(t.number, t.user_attrs.get(WORKER)) for t in study.get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))]  # fmt: skip
        raise RuntimeError(
            f"study {study.study_name}: {done} of {settings.n_trials} trials finished; still RUNNING (trial, "
            f"worker): {running}. A worker was killed or is still running: run (again) the workers named there "
            "(a restarted worker fails its orphans and retries them), then gather."
        )
    wall_s = max((r["wall_s"] for r in runs), default=0.0)
    workers = sum(len(r.get("slots", [r["worker"]])) for r in runs)  # a job's slots (tune_job) count each
    return write_outputs(study, out, settings, wall_s, workers=workers)


def tune(packed, out_dir: str | Path, settings: TuneSettings, threads: int | None = None,
         storage_url: str | None = None) -> dict:  # fmt: skip
    """Run (or resume) the search as worker 0 until ``n_trials`` trials have finished; write the outputs."""
    report = tune_worker(packed, out_dir, settings, 0, storage_url, threads)
    return tune_gather(packed, out_dir, settings, storage_url, [worker_report_path(out_dir, report["worker"])])


def _keep_best_fold_embeddings(study, out: Path, arch: str, best) -> None:
    """The best trial's fold embeddings -> ood_folds.npz (a file without folds when it has none);
    those of trials that scored lower deleted."""
    import shutil

    import optuna

    from sts.io.atomic import atomic_path

    source = fold_embeddings.trial_path(out, study.study_name, best.number)
    if source.exists():
        with atomic_path(out / fold_embeddings.FILE, ".npz") as tmp:
            shutil.copyfile(source, tmp)
    else:
        log.warning("%s: the best trial (%d) has no fold embeddings (it ran before they were kept): the OOD "
                    "threshold stays the training cells' leave-one-out quantile", arch, best.number)  # fmt: skip
        fold_embeddings.save_empty(out / fold_embeddings.FILE, arch)
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if t.value < best.value:
            fold_embeddings.trial_path(out, study.study_name, t.number).unlink(missing_ok=True)


def trials_frame(study) -> pd.DataFrame:
    rows = []
    for t in study.trials:
        rows.append({"number": t.number, "state": t.state.name, "value": t.value, "worker": t.user_attrs.get(WORKER),
                     **{f"param_{k}": v for k, v in t.params.items()},
                     "epochs_run": t.user_attrs.get("epochs_run", 0),
                     "best_epochs": json.dumps(t.user_attrs.get("best_epochs", [])),
                     "fold_scores": json.dumps(t.user_attrs.get("fold_scores", []))})  # fmt: skip
    return pd.DataFrame(rows)


def write_outputs(study, out: Path, settings: TuneSettings, wall_s: float, workers: int = 1) -> dict:
    """best_params.json, trials.csv, search.json (pruning savings included), oof_best.csv and
    ood_folds.npz (the fold embeddings of lower-scoring trials are deleted).

    ``wall_s``: the longest worker's wall time; ``workers``: how many took part."""
    import optuna

    from sts.io.atomic import write_csv_atomic, write_json_atomic, write_text_atomic

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
        "epochs_saved_by_pruning": round(saved, 1), "wall_s_this_run": wall_s, "workers": workers,
        "failed": sum(t.state == optuna.trial.TrialState.FAIL for t in study.trials),
        "best_cv_balanced_accuracy": best.value, "settings": {**asdict(settings), "space": settings.full_space},
    }  # fmt: skip
    oof = oof_path(out, study.study_name, best.number)
    if not oof.exists():
        raise FileNotFoundError(f"{oof}: out-of-fold predictions of the best trial are missing (deleted?)")
    write_text_atomic(out / "oof_best.csv", oof.read_text())
    _keep_best_fold_embeddings(study, out, settings.arch, best)
    write_csv_atomic(out / "trials.csv", trials_frame(study))
    write_json_atomic(out / "search.json", summary)
    write_json_atomic(out / "best_params.json", best_params)
    log.info("%s: best CV balanced accuracy %.4f (trial %d), %d complete, %d pruned, ~%.0f epochs saved",
             settings.arch, best.value, best.number, len(complete), len(pruned), saved)  # fmt: skip
    return best_params
