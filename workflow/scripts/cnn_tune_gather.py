"""Snakemake adapter: outputs of an architecture's search once its workers are done
(sts.cnn.stages.tune_gather_stage)."""

import logging
from pathlib import Path

from sts.cnn.stages import tune_gather_stage

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
tune_gather_stage(snakemake.input.packed, Path(snakemake.output.best).parent, snakemake.params.settings,
                  snakemake.params.storage, reports=snakemake.input.workers)  # fmt: skip
