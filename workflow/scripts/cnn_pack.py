"""Snakemake adapter: pack all usable cells' scalograms at one input size (sts.cnn.stages.pack_stage)."""

import logging
from pathlib import Path

from sts.cnn.stages import pack_stage

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
scalogram_dir = Path(snakemake.input.scalograms[0]).parent if snakemake.input.scalograms else Path("results/scalograms")
pack_stage(snakemake.input.manifest, scalogram_dir, snakemake.output.packed, int(snakemake.wildcards.size),
           snakemake.params.norm, classes=list(snakemake.params.classes), dtype=snakemake.params.dtype)  # fmt: skip
