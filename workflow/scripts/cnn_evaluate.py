"""Snakemake adapter: holdout evaluation of one saved CNN (logic in sts.dl.evaluate)."""

import logging
from pathlib import Path

from sts.dl.evaluate import evaluate_model
from sts.dl.pack import load_packed

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
evaluate_model(snakemake.input.model, load_packed(snakemake.input.packed), Path(snakemake.output.metrics).parent,
               device=snakemake.params.device, threads=snakemake.threads)
