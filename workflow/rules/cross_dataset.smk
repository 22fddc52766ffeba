# Cross-dataset stage (cross_dataset.enabled): LightGBM and each CNN of
# cross_dataset.architectures trained on one dataset and tested on the other (clamp -> seq and
# seq -> clamp), with the tuned parameters of their own stage, then one table for the report.
# The CNN fits reuse the deep-learning stage's inputs (common.smk: cnn_packed, ...).


include: "cross_dataset_common.smk"


rule cross_dataset_lgbm:
    input:
        unpack(cross_dataset_lgbm_inputs),
        best=f"{BASELINE_OUT}/best_params.json",
    output:
        out_dir=directory("results/cross_dataset/lightgbm"),
    log:
        "logs/cross_dataset/lightgbm.log",
    conda:
        "../envs/baseline.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        features=config["baseline"]["features"],
        reference_dir=config["baseline"].get("reference_dir"),
        classes=config["classes"],
        seed=config["baseline"]["seed"],
        min_cells_per_class=CROSS["min_cells_per_class"],
    script:
        "../scripts/cross_dataset_lgbm.py"


if CNN:

    rule cross_dataset_cnn:
        input:
            packed=cnn_packed,
            manifest="results/manifest.csv",
            best="results/tuning/{arch}/best_params.json",
            weights=cnn_weights_file,
        output:
            out_dir=directory("results/cross_dataset/{arch}"),
        log:
            "logs/cross_dataset/{arch}.log",
        conda:
            "../envs/cnn.yaml"
        threads: CNN["threads"]
        resources:
            mem_mb=CNN["mem_mb"],
            runtime=max(CNN["runtime"] // 2, 10),
            gpu=CNN["gpus"],
        params:
            settings=cnn_train_settings,
            preparation=cnn_preparation(),
            min_cells_per_class=CROSS["min_cells_per_class"],
        script:
            "../scripts/cross_dataset_cnn.py"


rule cross_dataset_table:
    input:
        models=["results/cross_dataset/lightgbm"]
        + expand("results/cross_dataset/{arch}", arch=cross_dataset_archs()),
    output:
        csv=report(
            "results/cross_dataset.csv",
            caption="../report/cross_dataset.rst",
            category="Comparison",
            subcategory="Cross-dataset",
            labels={"figure": "table (CSV)"},
        ),
        html=report(
            "results/report/cross_dataset.html",
            caption="../report/cross_dataset.rst",
            category="Comparison",
            subcategory="Cross-dataset",
            labels={"figure": "table"},
        ),
    log:
        "logs/cross_dataset/table.log",
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/cross_dataset_table.py"
