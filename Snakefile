# STS: Spike Train Scalograms. Per-cell preparation DAG:
#   NWB (synthetic or downloaded) -> select sweeps -> scalogram -> manifest
#   NWB -> EP features (ipfx) -> features table (baseline input)
#   scalograms -> packed arrays -> per CNN: tune -> train -> evaluate, explain
#   out-of-fold predictions of every model -> fusion; per model: calibration (temperature)
#   cross-dataset fits (train on one dataset, test on the other) -> report
# Config: config/config.yaml (validated against workflow/schemas/config.schema.yaml); see
# config/README.md for the other configs and how to lay them over it.
from snakemake.utils import min_version

# The oldest Snakemake this workflow is tested with (pyproject.toml pins the same).
min_version("9.27")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/sweeps.smk"
include: "workflow/rules/scalograms.smk"
include: "workflow/rules/manifest.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/baseline.smk"


# Where the per-cell files come from: the generator, the real services, or the users' CSV.
if config["cohort"] == "synthetic":

    include: "workflow/rules/cohort.smk"

elif config["cohort"] == "local":

    include: "workflow/rules/local.smk"

else:

    include: "workflow/rules/download.smk"


# Deep-learning stage (CNNs on the scalograms), when config has a `cnn:` block.
if CNN:

    include: "workflow/rules/cnn.smk"


# Fusion of the trained models (two or more: CNNs, LightGBM on computed features), and the
# calibration of each served model.
if FUSION:

    include: "workflow/rules/fusion.smk"


if CALIBRATED:

    include: "workflow/rules/calibration.smk"


# Classifying new recordings, when config names a folder in predict.inputs.
if PREDICT.get("inputs"):

    include: "workflow/rules/predict.smk"


# Cross-dataset table: LightGBM and the CNNs trained on one dataset, tested on the other.
if CROSS["enabled"]:

    include: "workflow/rules/cross_dataset.smk"


# Report figures and tables (snakemake --report results/report.html).
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        manifest="results/manifest.csv",
        baseline="results/baseline/metrics.json",
        acquire=(
            []
            if config["cohort"] in ("synthetic", "local")
            else "results/acquire/report.csv"
        ),
        cnn=cnn_targets() if CNN else [],
        fusion="results/fusion/metrics.json" if FUSION else [],
        calibration=calibration_targets(),
        predict=predict_targets() if PREDICT.get("inputs") else [],
        report=report_targets(),
