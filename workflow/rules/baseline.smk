# LightGBM baseline: Optuna search (CV on training cells), final fit, holdout evaluation and
# SHAP explanations, on computed EP features (ipfx, per cell) or on the study's published
# feature tables with its split (baseline.features: published). On computed features the final
# fit is saved for `sts predict` (model/model.txt: LightGBM text; model/model.json: features,
# classes, feature parameters, OOD statistics) and its out-of-fold predictions on the
# manifest's folds feed the fusion and calibration; a fit on the published tables cannot be served.

if config["baseline"]["features"] == "computed":

    rule baseline:
        input:
            features="results/baseline/features.csv",
            manifest="results/manifest.csv",
        output:
            metrics=f"{BASELINE_OUT}/metrics.json",
            predictions=f"{BASELINE_OUT}/predictions.csv",
            shap=f"{BASELINE_OUT}/shap_mean_abs.csv",
            best=f"{BASELINE_OUT}/best_params.json",
            model=f"{BASELINE_OUT}/model/model.txt",
            model_meta=f"{BASELINE_OUT}/model/model.json",
            confusion=report(
                f"{BASELINE_OUT}/confusion_matrix.png",
                caption="../report/confusion_baseline.rst",
                category="Baseline",
                subcategory="Holdout",
                labels={"figure": "confusion matrix"},
            ),
        log:
            "logs/baseline/baseline.log",
        conda:
            "../envs/baseline.yaml"
        threads: 2
        resources:
            mem_mb=grows_with_attempt(4000),
            runtime=grows_with_attempt(60),
        params:
            trials=config["baseline"]["trials"],
            seed=config["baseline"]["seed"],
            n_folds=config["split"]["n_folds"],
            classes=config["classes"],
            features=PARAMS["features"],
        script:
            "../scripts/baseline.py"

    # Out-of-fold predictions on the manifest's folds (the CNNs' folds), for fusion and calibration:
    # the tuned parameters refitted per fold on the other folds' training cells.
    rule baseline_oof:
        input:
            features="results/baseline/features.csv",
            manifest="results/manifest.csv",
            best=f"{BASELINE_OUT}/best_params.json",
        output:
            oof=f"{BASELINE_OUT}/oof.csv",
        log:
            "logs/baseline/baseline_oof.log",
        conda:
            "../envs/baseline.yaml"
        threads: 1
        resources:
            mem_mb=grows_with_attempt(4000),
            runtime=grows_with_attempt(30),
        params:
            seed=config["baseline"]["seed"],
            classes=config["classes"],
        script:
            "../scripts/baseline_oof.py"

else:

    rule baseline_published:
        input:
            tables=published_reference_files(),
        output:
            metrics=f"{BASELINE_OUT}/metrics.json",
            predictions=f"{BASELINE_OUT}/predictions.csv",
            shap=f"{BASELINE_OUT}/shap_mean_abs.csv",
            best=f"{BASELINE_OUT}/best_params.json",
            confusion=report(
                f"{BASELINE_OUT}/confusion_matrix.png",
                caption="../report/confusion_baseline.rst",
                category="Baseline",
                subcategory="Holdout",
                labels={"figure": "confusion matrix"},
            ),
        log:
            "logs/baseline/baseline_published.log",
        conda:
            "../envs/baseline.yaml"
        threads: 2
        resources:
            mem_mb=grows_with_attempt(4000),
            runtime=grows_with_attempt(60),
        params:
            reference_dir=config["baseline"]["reference_dir"],
            trials=config["baseline"]["trials"],
            seed=config["baseline"]["seed"],
            n_folds=config["split"]["n_folds"],
        shell:
            "sts baseline-published {params.reference_dir} $(dirname {output.metrics}) --trials {params.trials} "
            "--seed {params.seed} --folds {params.n_folds} --jobs {threads} 2> {log}"
