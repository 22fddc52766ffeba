"""Snakemake adapter: LightGBM baseline on computed EP features (logic in sts.baseline.computed)."""

import logging
from pathlib import Path

from sts.baseline.computed import train_computed

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
train_computed(
    snakemake.input.features,
    snakemake.input.manifest,
    Path(snakemake.output.metrics).parent,
    n_trials=snakemake.params.trials,
    seed=snakemake.params.seed,
    n_jobs=snakemake.threads,
    n_folds=snakemake.params.n_folds,
    classes=snakemake.params.classes,
)
