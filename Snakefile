# STS: Spike Train Scalograms. Per-cell preparation DAG:
#   NWB (synthetic or downloaded) -> select sweeps -> scalogram -> manifest
#   NWB -> EP features (ipfx) -> features table (baseline input)
#   scalograms -> packed arrays -> per CNN: tune -> train -> evaluate, explain
#   out-of-fold predictions of every model -> fusion; per model: calibration (temperature)
# Config: config/config.yaml (validated against workflow/schemas/config.schema.yaml).


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


# Report figures and tables (snakemake --report results/report.html), cross-dataset table.
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
        cnn=cnn_targets(),
        fusion="results/fusion/metrics.json" if FUSION else [],
        calibration=calibration_targets(),
        predict=predict_targets(),
        report=report_targets(),
