"""Snakemake adapter: LightGBM trained on one dataset, tested on the other (logic in sts.cross_dataset)."""

import logging

from sts.cross_dataset import (
    computed_feature_cells,
    lgbm_cross,
    published_feature_cells,
    read_best_params,
)

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
p = snakemake.params
if p.features == "published":
    cells, features = published_feature_cells(p.reference_dir, p.classes)
else:
    cells, features = computed_feature_cells(snakemake.input.features, snakemake.input.manifest)
lgbm_cross(cells, features, read_best_params(snakemake.input.best), p.classes, snakemake.output.out_dir,
           seed=p.seed, n_jobs=snakemake.threads, min_cells_per_class=p.min_cells_per_class)  # fmt: skip
