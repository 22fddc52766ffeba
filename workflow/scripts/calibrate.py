"""Snakemake adapter: temperature scaling of one model, fitted out of fold (logic in sts.trust.calibrate)."""

import logging

from sts.trust.calibrate import calibrate_model

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
i, o = snakemake.input, snakemake.output
calibrate_model(i.oof, i.predictions, i.model, i.manifest, o.calibration, o.predictions, o.figure,
                snakemake.params.title)  # fmt: skip
