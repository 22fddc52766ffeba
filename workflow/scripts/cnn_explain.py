"""Snakemake adapter: per-class saliency maps of one saved CNN (sts.cnn.stages.explain_stage)."""

import logging
from pathlib import Path

from sts.cnn.stages import explain_stage

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
explain_stage(snakemake.input.model, snakemake.input.packed, Path(snakemake.output.saliency).parent,
              method=snakemake.params.method, ig_steps=snakemake.params.ig_steps, device=snakemake.params.device,
              threads=snakemake.threads)
