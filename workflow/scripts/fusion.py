"""Snakemake adapter: the stacked fusion of the members' out-of-fold probabilities (logic in sts.fusion.stack)."""

import logging
from pathlib import Path

from sts.fusion.stack import fit_fusion_files

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
i = snakemake.input
fit_fusion_files(snakemake.params.members, i.models, i.oof, i.predictions, i.manifest, Path(snakemake.output.model).parent,
                 snakemake.params.classes, scheme=snakemake.config["labels"]["scheme"])  # fmt: skip
