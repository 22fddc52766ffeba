# Fusion: a multinomial logistic regression stacked on the out-of-fold class probabilities of
# every CNN and the LightGBM baseline (training cells, manifest folds; never a holdout cell),
# scored once on the holdout from the members' predictions and saved as JSON for `sts predict`.
# Adding a CNN re-runs its own stages, this rule and what reads the fusion.


rule fusion:
    input:
        manifest="results/manifest.csv",
        models=fusion_member_inputs("model"),
        oof=fusion_member_inputs("oof"),
        predictions=fusion_member_inputs("predictions"),
    output:
        model="results/fusion/model.json",
        oof="results/fusion/oof.csv",
        metrics="results/fusion/metrics.json",
        predictions="results/fusion/predictions.csv",
        excluded="results/fusion/excluded.csv",
        confusion=report(
            "results/fusion/confusion_matrix.png",
            caption="../report/confusion_fusion.rst",
            category="Fusion",
            subcategory="Holdout",
            labels={"figure": "confusion matrix"},
        ),
    log:
        "logs/fusion/fusion.log",
    conda:
        "../envs/baseline.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        members=FUSION_MEMBERS,
        classes=config["classes"],
    script:
        "../scripts/fusion.py"
