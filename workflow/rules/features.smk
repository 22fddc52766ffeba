# Per cell: ipfx EP features from all of the cell's long squares (LightGBM baseline input);
# then one table over all cells (excluded cells kept, with their reason).


# The EP features read the ladder as sweep selection does (the sweeps: keys they share).
FEATURE_ARGS = json_arg(PARAMS["features"])


rule ep_features:
    input:
        nwb=CELL_INPUT,
    output:
        features="results/baseline/features/{specimen_id}.json",
    log:
        "logs/ep_features/{specimen_id}.log",
    conda:
        "../envs/baseline.yaml"
    resources:
        mem_mb=1500,
        runtime=5,
    params:
        args=FEATURE_ARGS,
        meta=cell_meta_args,
        protocol=CELL_PROTOCOL,
    shell:
        "sts ep-features {input.nwb:q} {output.features} --specimen-id {wildcards.specimen_id} "
        "{params.meta} {params.args} {params.protocol} 2> {log}"


rule ep_features_table:
    input:
        features=expand(
            "results/baseline/features/{specimen_id}.json", specimen_id=SPECIMEN_IDS
        ),
    output:
        table="results/baseline/features.csv",
    log:
        "logs/ep_features_table/ep_features_table.log",
    conda:
        "../envs/baseline.yaml"
    script:
        "../scripts/aggregate_features.py"
