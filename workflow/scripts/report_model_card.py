"""Snakemake adapter: one served model's card, markdown and HTML (logic in sts.report.model_card)."""

import logging

from sts.report.model_card import model_card

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
inp = snakemake.input
model_card(snakemake.params.family, snakemake.wildcards.model, inp.model, inp.get("features"), snakemake.output.markdown,
           snakemake.output.html, manifest=inp.manifest, metrics=inp.metrics, confusion_png=inp.confusion,
           cohort=snakemake.params.cohort, ood_holdout=inp.get("ood_holdout"), calibration=inp.get("calibration"))  # fmt: skip
