"""Snakemake adapter: the baseline's top SHAP features per class (logic in sts.report.shap_top)."""

import logging

from sts.report.shap_top import write_top_features

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
write_top_features(snakemake.input.shap, snakemake.output.figure, snakemake.output.csv, snakemake.output.html,
                   k=snakemake.params.k)  # fmt: skip
