# The cohort: its metadata table and one NWB file per cell. The synthetic cohort stands
# in for the download step (same shape: one file per cell where downloads would put it).


include: "cohort_common.smk"


rule synth_metadata:
    output:
        metadata="results/metadata.csv",
    log:
        "logs/synth_metadata/synth_metadata.log",
    conda:
        "../envs/sts.yaml"
    params:
        args=cli_flags(PARAMS["synthetic"]),
    shell:
        "sts synth metadata {output.metadata} {params.args} 2> {log}"


rule synth_cell:
    output:
        nwb=NWB,
    log:
        "logs/synth_cell/{specimen_id}.log",
    conda:
        "../envs/sts.yaml"
    resources:
        mem_mb=500,
        runtime=5,
    params:
        args=synth_cell_args,
    shell:
        "sts synth cell {wildcards.specimen_id} {output.nwb} {params.args} 2> {log}"
