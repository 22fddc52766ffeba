"""Snakemake adapter: Optuna search of one architecture (logic in sts.dl.tune)."""

import logging
from pathlib import Path

from sts.dl.pack import load_packed
from sts.dl.tune import TuneSettings, tune

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
tune(load_packed(snakemake.input.packed), Path(snakemake.output.best).parent,
     TuneSettings(**snakemake.params.settings), threads=snakemake.threads)
