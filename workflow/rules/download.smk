# Real cohorts (allen | dandi | paper): API listings, one download job per cell, the cell
# table and the per-run byte report. The synthetic cohort uses cohort.smk instead.


include: "download_common.smk"


localrules:
    allen_cells,
    dandi_assets,
    cohort_metadata,
    acquire_report,


rule allen_cells:
    output:
        cells=ALLEN_CELLS,
    log:
        "logs/allen_cells/allen_cells.log",
    conda:
        "../envs/allensdk.yaml"
    params:
        api=ACQ["allen_api"],
    script:
        "../scripts/allen_cells.py"


rule dandi_assets:
    output:
        assets=DANDI_ASSETS,
    log:
        "logs/dandi_assets/dandi_assets.log",
    conda:
        "../envs/acquire.yaml"
    params:
        api=ACQ["dandi_api"],
        dandiset=ACQ["dandiset"],
        version=(
            f"--dandiset-version {ACQ['dandiset_version']}"
            if ACQ["dandiset_version"]
            else ""
        ),
        retry=retry_args(),
    shell:
        "sts acquire dandi-assets {output.assets} --api {params.api} --dandiset {params.dandiset} "
        "{params.version} {params.retry} 2> {log}"


rule cohort_metadata:
    input:
        cohort_inputs(),
    output:
        metadata="results/metadata.csv",
    log:
        "logs/cohort_metadata/cohort_metadata.log",
    conda:
        "../envs/acquire.yaml"
    params:
        cohort=cohort_params(),
        classes=config["classes"],
    script:
        "../scripts/cohort_metadata.py"


rule download:
    input:
        unpack(download_inputs),
    output:
        nwb=NWB,
        report="results/acquire/{specimen_id}.json",
    log:
        "logs/download/{specimen_id}.log",
    retries: 2
    conda:
        "../envs/acquire.yaml"
    resources:
        downloads=1,
        mem_mb=1000,
        runtime=30,
    params:
        args=download_args,
    shell:
        "sts acquire cell {wildcards.specimen_id} {output.nwb} --report {output.report} "
        "{params.args} 2> {log}"


rule acquire_report:
    input:
        reports=expand("results/acquire/{specimen_id}.json", specimen_id=SPECIMEN_IDS),
    output:
        report="results/acquire/report.csv",
    log:
        "logs/acquire_report/acquire_report.log",
    conda:
        "../envs/acquire.yaml"
    script:
        "../scripts/acquire_report.py"
