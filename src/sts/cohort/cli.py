"""``sts manifest``: the cohort's cells with their status, split and fold."""

from __future__ import annotations

import argparse

from sts.prep.cli import add_settings_options
from sts.settings import SplitParams


SPLIT_FLAGS = {
    "--seed": ("seed", "seed of the holdout and folds"),
    "--test-fraction": ("test_fraction", "stratified holdout share"),
    "--n-folds": ("n_folds", "stratified CV folds over the training cells"),
    "--train-file": ("train_file", "paper-format split file (id, Seq|Clamp)"),
    "--test-file": ("test_file", "paper-format split file of the holdout"),
}


def _manifest(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sts.cohort.manifest import build_manifest

    split = SplitParams(**{name: getattr(args, name) for name, _ in SPLIT_FLAGS.values()})
    files = sorted(Path(args.scalograms).glob("*.h5"))  # every file of the folder is a cell of the cohort
    build_manifest(args.metadata, files, args.out, split, classes=args.classes)
    return 0


def add_parser(sub) -> None:
    """Register ``manifest`` on the ``sts`` subparsers."""
    p = sub.add_parser(
        "manifest",
        help="one row per cell: status, reason, split and fold",
        description="Combine the metadata table and the per-cell scalogram files into the manifest "
        "CSV; stratified holdout and folds (seeded), or the split of the paper's files.",
    )
    p.add_argument("metadata", help="CSV with specimen_id, dataset, label")
    p.add_argument("scalograms", help="folder of per-cell scalogram files ({specimen_id}.h5)")
    p.add_argument("out", help="manifest CSV")
    add_settings_options(p, SplitParams, SPLIT_FLAGS)
    p.add_argument("--classes", nargs="+", default=None, help="classes kept (default: the study's four)")
    p.set_defaults(func=_manifest)
