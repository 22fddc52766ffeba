# Per cell: rheobase and rheobase + 40 pA long squares, windowed and resampled to 4 kHz.
# Input: {nwb_dir}/{id}.nwb, or the local cohort's own file (NWB or ABF, with its CSV protocol).


rule select_sweeps:
    input:
        nwb=CELL_INPUT,
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
        args=SELECTION_ARGS,
        meta=cell_meta_args,
        protocol=CELL_PROTOCOL,
    shell:
        "sts select-sweeps {input.nwb:q} {output.sweeps} --specimen-id {wildcards.specimen_id} "
        "{params.meta} {params.args} {params.protocol} 2> {log}"
