"""Snakemake adapter: per-cell EP-feature JSON files -> one CSV (logic in sts.baseline.feature_files)."""

import logging

from sts.baseline.feature_files import aggregate

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
aggregate(list(snakemake.input.features), snakemake.output.table)
