"""Snakemake adapter: every model's holdout scores in one table (logic in sts.report.comparison)."""

import logging

from sts.report.comparison import write_comparison

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
write_comparison(snakemake.input.baseline, dict(zip(snakemake.params.archs, snakemake.input.cnn)),
                 snakemake.output.csv, snakemake.output.html, snakemake.output.figure)  # fmt: skip
