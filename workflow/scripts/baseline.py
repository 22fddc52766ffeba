"""Snakemake adapter: LightGBM baseline on computed EP features (logic in sts.baseline.flow)."""

import logging
from pathlib import Path

from sts.baseline.computed import load_computed
from sts.baseline.flow import BaselineSettings, run_baseline

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
settings = BaselineSettings(trials=snakemake.params.trials, seed=snakemake.params.seed, jobs=snakemake.threads,
                            folds=snakemake.params.n_folds)  # fmt: skip
run_baseline(load_computed(snakemake.input.features, snakemake.input.manifest),
             Path(snakemake.output.metrics).parent, settings, classes=snakemake.params.classes)  # fmt: skip
