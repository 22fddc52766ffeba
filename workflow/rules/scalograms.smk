# Per cell: Mexican-hat CWT of both selected sweeps.


# The scalogram: block with its compression (the file changes): changing a key re-runs the
# scalogram jobs.
SCALOGRAM_ARGS = json_arg(PARAMS["scalogram"])


rule scalogram:
    input:
        sweeps="results/sweeps/{specimen_id}.h5",
    output:
        scalogram="results/scalograms/{specimen_id}.h5",
    log:
        "logs/scalogram/{specimen_id}.log",
    conda:
        "../envs/sts.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        args=SCALOGRAM_ARGS,
    shell:
        "sts scalogram {input.sweeps} {output.scalogram} {params.args} 2> {log}"
