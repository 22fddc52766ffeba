"""Figures and tables of the Snakemake report (``snakemake --report results/report.html``).

Modules: ``scalograms`` (example scalograms per class), ``shap_top`` (the baseline's top
SHAP features per class), ``comparison`` (every model's holdout scores beside the study's
published ones), ``tables`` (CSV tables as standalone HTML pages for the report), ``cross_dataset`` (each model
trained on one dataset and tested on the other, and their table).
matplotlib is imported inside the plotting functions only.
"""
