"""Snakemake adapter: one tuning job of an architecture's shared Optuna search (sts.cnn.stages.tune_stage)."""

import logging
from pathlib import Path

from sts.cnn.stages import tune_stage

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
tune_stage(snakemake.input.packed, Path(snakemake.output.done).parent, snakemake.params.settings,
           int(snakemake.wildcards.worker), snakemake.resources.trials_per_gpu, snakemake.params.storage,
           threads=snakemake.threads)  # fmt: skip
