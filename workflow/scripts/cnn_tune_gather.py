"""Snakemake adapter: outputs of an architecture's search once its workers are done (logic in sts.dl.tune)."""

import logging
from pathlib import Path

from sts.dl.pack import load_packed
from sts.dl.tune import TuneSettings, tune_gather

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
tune_gather(load_packed(snakemake.input.packed), Path(snakemake.output.best).parent,
            TuneSettings(**snakemake.params.settings), snakemake.params.storage, reports=snakemake.input.workers)
