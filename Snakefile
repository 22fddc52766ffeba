# STS: Spike Train Scalograms. Per-cell preparation DAG:
#   NWB (synthetic or downloaded) -> select sweeps -> scalogram -> manifest
#   NWB -> EP features (ipfx) -> features table (baseline input)
#   scalograms -> packed arrays -> per CNN: tune -> train -> evaluate, explain
# Config: config/config.yaml (validated against workflow/schemas/config.schema.yaml).


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/sweeps.smk"
include: "workflow/rules/scalograms.smk"
include: "workflow/rules/manifest.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/baseline.smk"


# Where the per-cell NWB files come from: the generator, or the real services.
if config["cohort"] == "synthetic":

    include: "workflow/rules/cohort.smk"

else:

    include: "workflow/rules/download.smk"


# Deep-learning stage (CNNs on the scalograms), when config has a `cnn:` block.
if CNN:

    include: "workflow/rules/cnn.smk"


rule all:
    default_target: True
    input:
        manifest="results/manifest.csv",
        baseline="results/baseline/metrics.json",
        acquire=[] if config["cohort"] == "synthetic" else "results/acquire/report.csv",
        cnn=cnn_targets(),
