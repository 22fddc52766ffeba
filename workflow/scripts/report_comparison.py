"""Snakemake adapter: every model's holdout scores in one table (with the fusion and calibration scores),
and the paired differences best CNN minus LightGBM, fusion minus members (logic in sts.report.comparison)."""

import logging

from sts.report.comparison import write_comparison

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
i, o, archs = snakemake.input, snakemake.output, snakemake.params.archs
write_comparison(i.baseline, dict(zip(archs, i.cnn)), o.csv, o.html, o.figure, dict(zip(archs, i.cnn_best)),
                 o.paired_csv, o.paired_html, fusion=i.fusion or None,
                 calibrations=dict(zip(snakemake.params.calibrated, i.calibrations)),
                 oofs=dict(zip(snakemake.params.members, i.oof)))  # fmt: skip
