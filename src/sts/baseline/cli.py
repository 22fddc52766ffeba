"""``sts baseline-published``: the paper's LightGBM baseline on the published EP feature tables.

OUT_DIR receives metrics.json, predictions.csv, confusion_matrix.png (sts.metrics),
shap_mean_abs.csv and shap_beeswarm_<class>.png (sts.baseline.explain), best_params.json,
search.json (trials, best CV score, wall time), features.json (feature list and cell counts)
and excluded.csv (split cells left out, with reasons). The Optuna study is kept in
OUT_DIR/optuna_journal.log, so a killed run resumes its search.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)

JOURNAL = "optuna_journal.log"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``baseline-published`` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "baseline-published",
        help="LightGBM baseline on the published EP features, with the paper's split",
        description="Load the published EP feature tables, labels and train/test split from "
        "REFERENCE_DIR, tune LightGBM by an Optuna TPE search (stratified CV on the training "
        "cells, mean balanced accuracy), refit on all training cells, evaluate once on the "
        "holdout and explain it with SHAP.",
    )
    p.add_argument("reference_dir", metavar="REFERENCE_DIR", help="folder laid out like ../shared/reference")
    p.add_argument("out_dir", metavar="OUT_DIR", help="output folder (created)")
    p.add_argument("--trials", type=int, default=50, help="Optuna trials in total (default 50)")
    p.add_argument("--seed", type=int, default=0, help="seed of folds, sampler and LightGBM (default 0)")
    p.add_argument("--jobs", type=int, default=2, help="LightGBM threads (default 2)")
    p.add_argument("--folds", type=int, default=3, help="CV folds in the search (default 3)")
    p.add_argument(
        "--early-stopping", type=int, default=0, metavar="ROUNDS",
        help="stop each CV fit after ROUNDS rounds without validation logloss gain; n_estimators "
        "is then a cap and the refit uses the mean best iteration (default 0: off, n_estimators searched)",
    )  # fmt: skip
    p.add_argument(
        "--space", default=None, metavar="JSON",
        help='search-space overrides, a JSON object or a .json file: {"num_leaves": ["int", 7, 31, true], '
        '"class_weight": "balanced"} (a list is a range or ["categorical", [...]], anything else is fixed)',
    )  # fmt: skip
    p.add_argument("--top-k", type=int, default=5, help="features per SHAP beeswarm (default 5)")
    p.add_argument("--no-resume", action="store_true", help=f"delete OUT_DIR/{JOURNAL} and search afresh")
    p.set_defaults(func=run)
    return p


def parse_space(text: str | None) -> dict:
    """``--space`` (JSON text or a .json file) as a search-space dict: lists become tuples."""
    if not text:
        return {}
    raw = json.loads(Path(text).read_text() if text.endswith(".json") else text)
    if not isinstance(raw, dict):
        raise SystemExit("--space must be a JSON object")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}


def run(args: argparse.Namespace) -> int:
    """Handler of ``baseline-published``."""
    from sts.baseline.explain import explain
    from sts.baseline.lgbm import fit_final, search
    from sts.baseline.published import load_published
    from sts.atomic import write_csv_atomic, write_json_atomic
    from sts.metrics import write_evaluation

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    data = load_published(args.reference_dir)
    summary = data.summary()
    log.info("%d features; train %s; test %s", len(data.features), summary["train"], summary["test"])
    if len(data.excluded):
        log.warning("excluded split cells: %s", summary["excluded"])
    write_json_atomic(out / "features.json", {"features": data.features, **summary})
    write_csv_atomic(out / "excluded.csv", data.excluded)

    journal = out / JOURNAL
    if args.no_resume:
        journal.unlink(missing_ok=True)
    result = search(
        data.train.X, data.train.y, n_trials=args.trials, seed=args.seed, n_jobs=args.jobs,
        n_folds=args.folds, space=parse_space(args.space), storage=journal,
        study_name=f"lgbm-seed{args.seed}", early_stopping_rounds=args.early_stopping or None,
    )  # fmt: skip
    log.info("search: %d trials in %.1f s, best CV balanced accuracy %.4f", result.n_trials, result.wall_s,
             result.best_score)  # fmt: skip
    write_json_atomic(out / "best_params.json", result.best_params)
    settings = {k: getattr(args, k) for k in ("seed", "jobs", "folds", "early_stopping", "space")}
    write_json_atomic(out / "search.json", {**result.to_dict(), "settings": settings})

    model = fit_final(data.train.X, data.train.y, result.best_params, seed=args.seed, n_jobs=args.jobs)
    classes = [str(c) for c in model.classes_]
    proba = model.predict_proba(data.test.X)
    pred = [classes[i] for i in proba.argmax(axis=1)]
    metrics = write_evaluation(out, data.test.specimen_id, data.test.y, pred, proba, classes,
                               title="LightGBM, holdout")  # fmt: skip
    log.info("holdout: balanced accuracy %.4f, weighted F1 %.4f, accuracy %.4f (n=%d)",
             *(metrics[k] for k in ("balanced_accuracy", "weighted_f1", "accuracy", "n_test")))  # fmt: skip
    explain(model, data.test.X, classes, out, top_k=args.top_k)
    log.info("done in %.1f s: %s", time.perf_counter() - start, out)
    return 0
