# LightGBM on the computed EP features: Optuna search (CV on training cells), final fit,
# holdout evaluation and SHAP explanations.


rule baseline:
    input:
        features="results/baseline/features.csv",
        manifest="results/manifest.csv",
    output:
        metrics="results/baseline/metrics.json",
        predictions="results/baseline/predictions.csv",
        shap="results/baseline/shap_mean_abs.csv",
    log:
        "logs/baseline/baseline.log",
    conda:
        "../envs/baseline.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        trials=config["baseline"]["trials"],
        seed=config["baseline"]["seed"],
        n_folds=config["split"]["n_folds"],
    script:
        "../scripts/baseline.py"
