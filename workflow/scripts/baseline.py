"""Snakemake adapter: LightGBM baseline on computed EP features (logic in sts.baseline.flow)."""

import logging
from pathlib import Path

from sts.baseline.computed import load_computed
from sts.baseline.features import FeatureParams
from sts.baseline.flow import BaselineSettings, run_baseline
from sts.settings import from_dict

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
settings = BaselineSettings(trials=snakemake.params.trials, seed=snakemake.params.seed, jobs=snakemake.threads,
                            folds=snakemake.params.n_folds)  # fmt: skip
features = from_dict(FeatureParams, snakemake.params.features, "features")  # what made the table: saved with the model
run_baseline(load_computed(snakemake.input.features, snakemake.input.manifest, features),
             Path(snakemake.output.metrics).parent, settings, classes=snakemake.params.classes)  # fmt: skip
