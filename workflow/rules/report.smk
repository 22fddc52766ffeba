# Report stage: figures and tables for `snakemake --report results/report.html` (example
# scalograms, the baseline's top SHAP features, every model's holdout scores with bootstrap
# intervals and calibration scores beside the study's, the paired bootstrap differences best CNN
# minus LightGBM and fusion minus the best single model and each member), one model card per
# served model, and the cross-dataset table (train on clamp, test on seq and the reverse) when
# cross_dataset.enabled. Outputs of other stages join the report through report() flags in
# their own rules (confusion matrices, training curves, saliency maps).


report: "../report/workflow.rst"


REPORT_CELLS = report_example_cells()


rule report_scalograms:
    input:
        manifest="results/manifest.csv",
        scalograms=expand(
            "results/scalograms/{specimen_id}.h5", specimen_id=REPORT_CELLS
        ),
        sweeps=expand("results/sweeps/{specimen_id}.h5", specimen_id=REPORT_CELLS),
    output:
        figures=[
            report(
                f"results/report/scalograms/{name}.png",
                caption="../report/scalograms.rst",
                category="Data",
                subcategory="Example scalograms",
                labels={"class": cls, "figure": "example scalograms"},
            )
            for cls, name in report_class_files().items()
        ],
    log:
        "logs/report/scalograms.log",
    conda:
        "../envs/report.yaml"
    params:
        classes=list(report_class_files()),
        cells=REPORT_CELLS,
        n_examples=3,
        seed=config["split"]["seed"],
    script:
        "../scripts/report_scalograms.py"


rule report_shap:
    input:
        shap=f"{BASELINE_OUT}/shap_mean_abs.csv",
    output:
        figure=report(
            "results/report/shap_top5.png",
            caption="../report/shap_top5.rst",
            category="Baseline",
            subcategory="SHAP",
            labels={"figure": "top-5 features per class"},
        ),
        html=report(
            "results/report/shap_top5.html",
            caption="../report/shap_top5.rst",
            category="Baseline",
            subcategory="SHAP",
            labels={"figure": "top-5 features per class (table)"},
        ),
        csv="results/report/shap_top5.csv",
    log:
        "logs/report/shap.log",
    conda:
        "../envs/report.yaml"
    params:
        k=default(BaselineSettings, "top_k"),
    script:
        "../scripts/report_shap.py"


rule report_comparison:
    input:
        baseline=f"{BASELINE_OUT}/metrics.json",
        baseline_predictions=f"{BASELINE_OUT}/predictions.csv",
        cnn=expand("results/models/{arch}/metrics.json", arch=CNN_ARCHS),
        cnn_predictions=expand("results/models/{arch}/predictions.csv", arch=CNN_ARCHS),
        cnn_best=expand("results/tuning/{arch}/best_params.json", arch=CNN_ARCHS),
        fusion="results/fusion/metrics.json" if FUSION else [],
        fusion_predictions="results/fusion/predictions.csv" if FUSION else [],
        oof=fusion_member_inputs("oof") if FUSION else [],
        calibrations=calibration_targets(),
    output:
        csv=report(
            "results/report/comparison.csv",
            caption="../report/comparison.rst",
            category="Comparison",
            subcategory="Holdout scores",
            labels={"figure": "table (CSV)"},
        ),
        html=report(
            "results/report/comparison.html",
            caption="../report/comparison.rst",
            category="Comparison",
            subcategory="Holdout scores",
            labels={"figure": "table"},
        ),
        figure=report(
            "results/report/comparison.png",
            caption="../report/comparison.rst",
            category="Comparison",
            subcategory="Holdout scores",
            labels={"figure": "bar chart"},
        ),
        paired_csv=report(
            "results/report/paired_difference.csv",
            caption="../report/comparison.rst",
            category="Comparison",
            subcategory="Holdout scores",
            labels={"figure": "paired difference (CSV)"},
        ),
        paired_html=report(
            "results/report/paired_difference.html",
            caption="../report/comparison.rst",
            category="Comparison",
            subcategory="Holdout scores",
            labels={"figure": "paired difference"},
        ),
    log:
        "logs/report/comparison.log",
    conda:
        "../envs/report.yaml"
    params:
        archs=CNN_ARCHS,
        members=FUSION_MEMBERS if FUSION else [],
        calibrated=CALIBRATED,
    script:
        "../scripts/report_comparison.py"


rule report_model_card:
    input:
        unpack(model_card_inputs),
        manifest="results/manifest.csv",
    output:
        markdown="results/report/model_cards/{model}.md",
        html=report(
            "results/report/model_cards/{model}.html",
            caption="../report/model_card.rst",
            category="Model cards",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "model card"},
        ),
    log:
        "logs/report/model_card/{model}.log",
    wildcard_constraints:
        model="|".join(MODEL_CARDS) or "no-model",
    conda:
        "../envs/cnn.yaml"
    params:
        family=lambda wildcards: MODEL_CARDS[wildcards.model]["family"],
        cohort=config["cohort"],
    script:
        "../scripts/report_model_card.py"


if CROSS["enabled"]:

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
