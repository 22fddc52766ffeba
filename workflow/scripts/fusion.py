"""Snakemake adapter: the stacked fusion of the members' out-of-fold probabilities (logic in sts.fusion.stack)."""

import logging
from pathlib import Path

from sts.fusion.stack import Member, fit_fusion

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
i = snakemake.input
members = [Member(*m) for m in zip(snakemake.params.members, i.models, i.oof, i.predictions)]
fit_fusion(members, i.manifest, Path(snakemake.output.model).parent, snakemake.params.classes)
