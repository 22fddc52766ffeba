"""Snakemake adapter: final fit of one architecture on all training cells (logic in sts.dl.final)."""

import json
import logging
from pathlib import Path

from sts.dl.final import train_final
from sts.dl.pack import load_packed

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
best = json.loads(Path(snakemake.input.best).read_text())
train_final(load_packed(snakemake.input.packed), snakemake.wildcards.arch, best, Path(snakemake.output.model).parent,
            preparation=snakemake.params.preparation, threads=snakemake.threads, **snakemake.params.settings)
