"""Snakemake adapter: bytes fetched per cell (logic in sts.acquire.cell.write_report)."""

import logging

from sts.acquire.cell import write_report

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
write_report(list(snakemake.input.reports), snakemake.output.report)
