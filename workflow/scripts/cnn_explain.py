"""Snakemake adapter: per-class saliency maps of one saved CNN (logic in sts.dl.saliency)."""

import logging
from pathlib import Path

from sts.dl.pack import load_packed
from sts.dl.saliency import explain

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
explain(snakemake.input.model, load_packed(snakemake.input.packed), Path(snakemake.output.saliency).parent,
        method=snakemake.params.method, device=snakemake.params.device, ig_steps=snakemake.params.ig_steps,
        threads=snakemake.threads)
