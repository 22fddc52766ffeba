# Per cell: rheobase and rheobase + 40 pA long squares, windowed and resampled to 4 kHz.


rule select_sweeps:
    input:
        nwb=NWB,
    output:
        sweeps="results/sweeps/{specimen_id}.h5",
    log:
        "logs/select_sweeps/{specimen_id}.log",
    conda:
        "../envs/sts.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        args=selection_args(),
        meta=cell_meta_args,
    shell:
        "sts select-sweeps {input.nwb} {output.sweeps} --specimen-id {wildcards.specimen_id} "
        "{params.meta} {params.args} 2> {log}"
