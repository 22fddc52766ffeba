"""Snakemake adapter: the cohort's cell table (logic in sts.cohort.table) as results/metadata.csv."""

import logging

from sts.cohort.table import cohort_table
from sts.io.atomic import write_csv_atomic
from sts.cohort.manifest import for_spreadsheets

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
table = cohort_table(snakemake.params.cohort)
write_csv_atomic(snakemake.output.metadata, for_spreadsheets(table, snakemake.params.classes))
logging.info("%d cells: %s", len(table), table.groupby(["dataset", "label"]).size().to_dict())
