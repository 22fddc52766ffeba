"""``sts baseline-published``: the paper's LightGBM baseline on the published EP feature tables.

The flow (and what OUT_DIR receives) is ``sts.baseline.flow.run_baseline``'s, then the benchmark
(``sts.baseline.benchmark``); the feature source is ``sts.baseline.published.load_published`` (the
study's scheme) or ``load_scheme`` (another class scheme, ``--scheme``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sts.baseline.flow import JOURNAL, BaselineSettings
from sts.settings import LabelSettings

FEATURE_SETS = ("study", "all")  # sts.baseline.published.FEATURE_SETS (pandas-free here, for the parser)

DEFAULTS = BaselineSettings()


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``baseline-published`` on an argparse subparsers object."""
    d = DEFAULTS
    p = subparsers.add_parser(
        "baseline-published",
        help="LightGBM baseline on the published EP features, with the paper's split (or another class scheme)",
        description="Load the published EP feature tables, labels and train/test split from "
        "REFERENCE_DIR, tune LightGBM by an Optuna TPE search (stratified CV on the training "
        "cells, mean balanced accuracy), refit on all training cells, evaluate once on the "
        "holdout and explain it with SHAP. benchmark.json/.md: accuracy, balanced accuracy, macro-F1 and "
        "per-class recall with bootstrap 95 % intervals, of the holdout and (--cv K) of a nested K-fold CV.",
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
    p.add_argument(
        "--scheme", default=LabelSettings().scheme,
        help="class scheme: study (the paper's labels and split), or subclass, inhibitory or a .yaml map of "
        "T-type prefixes to classes (patch-seq cells labelled from their T-types, stratified 20 %% holdout; "
        "sts.acquire.schemes) (default: %(default)s)",
    )  # fmt: skip
    p.add_argument("--features", choices=FEATURE_SETS, default=None,
                   help="study: the paper's 16 columns (the default); all: every column common to both tables, 45")
    p.add_argument("--cv", type=int, default=0, metavar="K",
                   help="also a nested stratified K-fold CV over all usable cells, in OUT_DIR/benchmark.md "
                   "(default 0: holdout only)")  # fmt: skip
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
    """Handler of ``baseline-published``: the baseline, then its benchmark (holdout and, with --cv, a
    nested k-fold CV, with bootstrap intervals)."""
    from sts.acquire.schemes import STUDY, SchemeError, get_scheme
    from sts.baseline.benchmark import cross_validate, write_benchmark
    from sts.baseline.flow import run_baseline
    from sts.baseline.published import FEATURE_SETS, load_published, load_scheme
    from sts.trust.metrics import PREDICTIONS_FILE, read_predictions

    if args.cv == 1 or args.cv < 0:
        raise SystemExit("--cv: 0 (off) or at least 2 folds")
    try:
        scheme = get_scheme(args.scheme)
    except SchemeError as err:
        raise SystemExit(f"sts baseline-published: {err}") from None
    settings = BaselineSettings(trials=args.trials, seed=args.seed, jobs=args.jobs, folds=args.folds,
                                early_stopping=args.early_stopping, space=parse_space(args.space),
                                top_k=args.top_k)  # fmt: skip
    stems = FEATURE_SETS[args.features or "study"]
    if scheme.name == STUDY:
        cells = load_published(args.reference_dir, stems=stems)
    else:  # one holdout cell and one cell per fold of the search and of the CV
        cells = load_scheme(args.reference_dir, scheme, stems, min_cells=max(args.folds, args.cv) + 1)
    metrics = run_baseline(cells, args.out_dir, settings, resume=not args.no_resume, scheme=scheme.name)
    holdout, _, _ = read_predictions(Path(args.out_dir) / PREDICTIONS_FILE)
    cv = cross_validate(cells, settings, args.cv, metrics["classes"]) if args.cv else None
    write_benchmark(args.out_dir, cells, holdout, metrics["classes"], scheme.name, cv, args.cv)
    return 0
