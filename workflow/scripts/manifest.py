"""Snakemake adapter: build the split manifest (logic in sts.cohort.manifest)."""

import logging

from sts.cohort.manifest import build_manifest

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
build_manifest(
    snakemake.input.metadata,
    list(snakemake.input.scalograms),
    snakemake.output.manifest,
    snakemake.params.split,
    classes=snakemake.params.classes,
)
