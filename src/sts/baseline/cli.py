"""``sts baseline-published``: the paper's LightGBM baseline on the published EP feature tables.

The flow (and what OUT_DIR receives) is ``sts.baseline.flow.run_baseline``'s; the feature
source is ``sts.baseline.published.load_published``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sts.baseline.flow import JOURNAL, BaselineSettings

DEFAULTS = BaselineSettings()


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``baseline-published`` on an argparse subparsers object."""
    d = DEFAULTS
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
    p.add_argument("--trials", type=int, default=d.trials, help=f"Optuna trials in total (default {d.trials})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"seed of folds, sampler and LightGBM (default {d.seed})")
    p.add_argument("--jobs", type=int, default=d.jobs,
                   help=f"CV folds fitted at once (one thread each); the final fit's threads (default {d.jobs})")
    p.add_argument("--folds", type=int, default=d.folds, help=f"CV folds in the search (default {d.folds})")
    p.add_argument(
        "--early-stopping", type=int, default=d.early_stopping, metavar="ROUNDS",
        help="stop each CV fit after ROUNDS rounds without validation logloss gain; n_estimators "
        "is then a cap and the refit uses the mean best iteration (default 0: off, n_estimators searched)",
    )  # fmt: skip
    p.add_argument(
        "--space", default=None, metavar="JSON",
        help='search-space overrides, a JSON object or a .json file: {"num_leaves": ["int", 7, 31, true], '
        '"class_weight": "balanced"} (a list is a range or ["categorical", [...]], anything else is fixed)',
    )  # fmt: skip
    p.add_argument("--top-k", type=int, default=d.top_k, help=f"features per SHAP beeswarm (default {d.top_k})")
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
    from sts.baseline.flow import run_baseline
    from sts.baseline.published import load_published

    settings = BaselineSettings(trials=args.trials, seed=args.seed, jobs=args.jobs, folds=args.folds,
                                early_stopping=args.early_stopping, space=parse_space(args.space),
                                top_k=args.top_k)  # fmt: skip
    run_baseline(load_published(args.reference_dir), args.out_dir, settings, resume=not args.no_resume)
    return 0
