# All cells: status, exclusion reason, holdout split and CV folds.


rule manifest:
    input:
        metadata="results/metadata.csv",
        scalograms=expand(
            "results/scalograms/{specimen_id}.h5", specimen_id=SPECIMEN_IDS
        ),
    output:
        manifest="results/manifest.csv",
    log:
        "logs/manifest/manifest.log",
    conda:
        "../envs/sts.yaml"
    params:
        split=PARAMS["split"],
        classes=config["classes"],
    script:
        "../scripts/manifest.py"
