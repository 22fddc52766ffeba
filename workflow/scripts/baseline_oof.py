"""Snakemake adapter: LightGBM out-of-fold predictions on the manifest's folds (logic in sts.baseline.oof)."""

import logging

from sts.baseline.oof import out_of_fold

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
out_of_fold(snakemake.input.features, snakemake.input.manifest, snakemake.input.best, snakemake.output.oof,
            snakemake.params.classes, seed=snakemake.params.seed)  # fmt: skip
