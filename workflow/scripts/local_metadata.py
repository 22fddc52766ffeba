"""Snakemake adapter: the local cohort's CSV as results/metadata.csv (logic in sts.cohort.local)."""

import logging

from sts.cohort.local import read_local_labels
from sts.io.atomic import write_csv_atomic
from sts.cohort.manifest import for_spreadsheets

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
table = read_local_labels(snakemake.input.labels, snakemake.params.classes)
write_csv_atomic(snakemake.output.metadata, for_spreadsheets(table, snakemake.params.classes))
ok = table["status"] == "ok"
logging.info("%d rows, %d usable: %s", len(table), ok.sum(), table[ok].groupby(["dataset", "label"]).size().to_dict())
for row in table[~ok].itertuples():
    logging.info("excluded %s (%s): %s", row.specimen_id, row.file, row.reason)
