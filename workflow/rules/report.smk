# Report stage: figures and tables for `snakemake --report results/report.html` (example
# scalograms, the baseline's top SHAP features, every model's holdout scores with bootstrap
# intervals and calibration scores beside the study's, the paired bootstrap differences best CNN
# minus LightGBM and fusion minus the best single model and each member), one model card per
# served model; the cross-dataset table (workflow/rules/cross_dataset.smk) when
# cross_dataset.enabled. Outputs of other stages join the report through report() flags in
# their own rules (confusion matrices, training curves, saliency maps).


report: "../report/workflow.rst"


include: "report_common.smk"


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
