# cohort: local — the users' own recordings (Allen NWB v1, MIES NWB 2, ABF) listed in the CSV
# local.labels. No download: each cell's per-cell jobs read its own file (common.smk: cell_file).


include: "local_common.smk"


localrules:
    local_metadata,


rule local_metadata:
    input:
        labels=config["local"]["labels"],
    output:
        metadata="results/metadata.csv",
    log:
        "logs/local_metadata/local_metadata.log",
    conda:
        "../envs/sts.yaml"
    params:
        classes=config["classes"],
        table=local_table_digest(),
    script:
        "../scripts/local_metadata.py"
