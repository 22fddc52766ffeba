# STS: Spike Train Scalograms. Per-cell preparation DAG:
#   NWB (synthetic or downloaded) -> select sweeps -> scalogram -> manifest
#   NWB -> EP features (ipfx) -> features table (baseline input)
# Config: config/config.yaml (validated against workflow/schemas/config.schema.yaml).


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/cohort.smk"
include: "workflow/rules/sweeps.smk"
include: "workflow/rules/scalograms.smk"
include: "workflow/rules/manifest.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/baseline.smk"


rule all:
    default_target: True
    input:
        manifest="results/manifest.csv",
        baseline="results/baseline/metrics.json",
