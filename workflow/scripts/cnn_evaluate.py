"""Snakemake adapter: holdout evaluation of one saved CNN (sts.cnn.stages.evaluate_stage)."""

import logging
from pathlib import Path

from sts.cnn.stages import evaluate_stage

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
evaluate_stage(snakemake.input.model, snakemake.input.packed, Path(snakemake.output.metrics).parent,
               device=snakemake.params.device, threads=snakemake.threads)
