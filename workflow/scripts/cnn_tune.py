"""Snakemake adapter: one worker of an architecture's shared Optuna search (logic in sts.dl.tune)."""

import logging
from pathlib import Path

from sts.dl.pack import load_packed
from sts.dl.tune import TuneSettings, tune_worker

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
tune_worker(load_packed(snakemake.input.packed), Path(snakemake.output.done).parent,
            TuneSettings(**snakemake.params.settings), int(snakemake.wildcards.worker), snakemake.params.storage,
            threads=snakemake.threads)  # fmt: skip
