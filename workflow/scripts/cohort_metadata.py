"""Snakemake adapter: the cohort's cell table as results/metadata.csv (logic in sts.cohort.table.write_cohort_table)."""

import logging

from sts.cohort.table import write_cohort_table

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
write_cohort_table(snakemake.params.cohort, snakemake.params.classes, snakemake.output.metadata)
