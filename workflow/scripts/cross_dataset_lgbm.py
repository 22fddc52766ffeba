"""Snakemake adapter: LightGBM trained on one dataset, tested on the other (logic in sts.report.cross_dataset)."""

import logging

from sts.report.cross_dataset import lgbm_cross_stage

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
p = snakemake.params
lgbm_cross_stage(p.features, p.reference_dir, snakemake.input.get("features"), snakemake.input.get("manifest"),
                 snakemake.input.best, p.classes, snakemake.output.out_dir, seed=p.seed, n_jobs=snakemake.threads,
                 min_cells_per_class=p.min_cells_per_class)  # fmt: skip
