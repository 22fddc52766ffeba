"""Snakemake adapter: the local cohort's CSV as results/metadata.csv (logic in sts.cohort.manifest.write_local_table)."""

import logging

from sts.cohort.manifest import write_local_table

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
write_local_table(snakemake.input.labels, snakemake.params.classes, snakemake.output.metadata)
