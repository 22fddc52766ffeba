"""Snakemake adapter: one CNN trained on one dataset, tested on the other (logic in sts.report.cross_dataset)."""

import logging

from sts.report.cross_dataset import cnn_cross_stage

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
cnn_cross_stage(snakemake.input.packed, snakemake.input.manifest, snakemake.wildcards.arch, snakemake.input.best,
                snakemake.output.out_dir, min_cells_per_class=snakemake.params.min_cells_per_class,
                threads=snakemake.threads, preparation=snakemake.params.preparation, **snakemake.params.settings)  # fmt: skip
