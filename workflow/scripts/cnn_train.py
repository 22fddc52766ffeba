"""Snakemake adapter: final fit of one architecture on all training cells (sts.cnn.stages.train_stage)."""

import logging
from pathlib import Path

from sts.cnn.stages import train_stage

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
train_stage(snakemake.input.packed, snakemake.input.best, Path(snakemake.output.model).parent, snakemake.wildcards.arch,
            preparation=snakemake.params.preparation, threads=snakemake.threads,
            scheme=snakemake.config["labels"]["scheme"], ood_folds_path=snakemake.input.ood_folds,
            **snakemake.params.settings)
