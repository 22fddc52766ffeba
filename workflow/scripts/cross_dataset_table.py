"""Snakemake adapter: the cross-dataset rows of every model in one table (logic in sts.report.cross_dataset)."""

import logging
from pathlib import Path

from sts.report.cross_dataset import ROWS_FILE, write_table

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
table = write_table([Path(d) / ROWS_FILE for d in snakemake.input.models], snakemake.output.csv, snakemake.output.html)
logging.info("cross-dataset table:\n%s", table.to_string(index=False))
