"""Snakemake adapter: every model's holdout scores in one table, and the paired difference best
CNN minus LightGBM (logic in sts.report.comparison)."""

import logging

from sts.report.comparison import write_comparison

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
archs = snakemake.params.archs
write_comparison(snakemake.input.baseline, dict(zip(archs, snakemake.input.cnn)), snakemake.output.csv,
                 snakemake.output.html, snakemake.output.figure, dict(zip(archs, snakemake.input.cnn_best)),
                 snakemake.output.paired_csv, snakemake.output.paired_html)  # fmt: skip
