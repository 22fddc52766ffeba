"""Snakemake adapter: example scalograms per class for the report (logic in sts.report.scalograms)."""

import logging
from pathlib import Path

from sts.report.scalograms import write_examples_per_class

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
write_examples_per_class(snakemake.input.manifest, snakemake.params.classes, snakemake.output.figures,
                         scalogram_dir=Path(snakemake.input.scalograms[0]).parent,
                         sweeps_dir=Path(snakemake.input.sweeps[0]).parent, n=snakemake.params.n_examples,
                         seed=snakemake.params.seed, among=snakemake.params.cells)  # fmt: skip
