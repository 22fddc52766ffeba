"""Snakemake adapter: LightGBM baseline on computed EP features (logic in sts.baseline.computed.computed_baseline)."""

import logging
from pathlib import Path

from sts.baseline.computed import computed_baseline

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
p = snakemake.params
computed_baseline(snakemake.input.features, snakemake.input.manifest, Path(snakemake.output.metrics).parent, p.features,
                  trials=p.trials, seed=p.seed, folds=p.n_folds, jobs=snakemake.threads, classes=p.classes,
                  scheme=snakemake.config["labels"]["scheme"])  # fmt: skip
