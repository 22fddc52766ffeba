# Deep-learning stage: pack the scalograms once per input size, then per architecture an
# Optuna search over the CV folds (cnn.tune_workers jobs sharing one study, then a gather;
# its best trial's fold embeddings set the out-of-distribution threshold), a final fit on all
# training cells (with its out-of-distribution detector), one holdout
# evaluation (with the detector's flags on the holdout cells) and per-class saliency maps.
# Each architecture's jobs get only its own settings as params, so changing one
# architecture's settings re-runs that architecture only.


# What every architecture shares: the pack rule's norm and dtype, the explain rule's saliency.
include: "cnn_common.smk"


wildcard_constraints:
    arch="mobilenet_v2|resnet18|densenet121|inception_v3",
    size=r"\d+",
    worker=r"\d+",


# Downloads run where the network is (login node), never in a cluster job; the gather
# only reads the study and copies files.
localrules:
    cnn_fetch_weights,
    cnn_tune_gather,


rule cnn_pack:
    input:
        manifest="results/manifest.csv",
        scalograms=expand(
            "results/scalograms/{specimen_id}.h5", specimen_id=SPECIMEN_IDS
        ),
    output:
        packed="results/cnn/packed_{size}px.h5",
    log:
        "logs/cnn_pack/{size}.log",
    benchmark:
        "benchmarks/cnn_pack/{size}.tsv"
    conda:
        "../envs/cnn.yaml"
    resources:
        mem_mb=grows_with_attempt(2000),
        runtime=grows_with_attempt(120),
    params:
        norm=CNN_PARAMS["pack"]["norm"],
        dtype=CNN_PARAMS["pack"]["dtype"],
        classes=config["classes"],
    script:
        "../scripts/cnn_pack.py"


rule cnn_fetch_weights:
    output:
        weights=os.path.join(CNN["weights_dir"] or "resources/weights", "{arch}.pth"),
    log:
        "logs/cnn_fetch_weights/{arch}.log",
    conda:
        "../envs/cnn.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "sts fetch-weights $(dirname {output.weights}) {wildcards.arch} 2> {log}"


# One job of the search: takes trials of the shared study (results/tuning/{arch}/journal.log,
# or the RDB of cnn.storage; never an output, so a re-run job resumes it) until it has
# `trials` finished ones; a restarted worker retries the trial it was killed in. With
# cnn.trials_per_gpu M the job runs M workers at once on its device(s), with M times the
# threads and memory of one. M is a resource, not a param: how the search is run, not what
# it finds, so changing it re-runs no finished search (nor the training after it).
rule cnn_tune:
    input:
        packed=cnn_packed,
        weights=cnn_weights_file,
    output:
        done="results/tuning/{arch}/worker_{worker}.done",
    log:
        "logs/cnn_tune/{arch}/worker_{worker}.log",
    benchmark:
        "benchmarks/cnn_tune/{arch}/worker_{worker}.tsv"
    conda:
        "../envs/cnn.yaml"
    threads: CNN["threads"] * CNN["trials_per_gpu"]
    resources:
        mem_mb=grows_with_attempt(CNN["mem_mb"] * CNN["trials_per_gpu"]),
        runtime=grows_with_attempt(CNN["runtime"]),
        gpu=CNN["gpus"],
        trials_per_gpu=CNN["trials_per_gpu"],
    params:
        settings=cnn_tune_settings,
        storage=CNN["storage"],
    script:
        "../scripts/cnn_tune.py"


rule cnn_tune_gather:
    input:
        packed=cnn_packed,
        workers=cnn_tune_workers,
    output:
        best="results/tuning/{arch}/best_params.json",
        trials="results/tuning/{arch}/trials.csv",
        search="results/tuning/{arch}/search.json",
        oof="results/tuning/{arch}/oof_best.csv",
        ood_folds="results/tuning/{arch}/ood_folds.npz",
    log:
        "logs/cnn_tune_gather/{arch}.log",
    conda:
        "../envs/cnn.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        settings=cnn_tune_settings,
        storage=CNN["storage"],
    script:
        "../scripts/cnn_tune_gather.py"


rule cnn_train:
    input:
        packed=cnn_packed,
        best="results/tuning/{arch}/best_params.json",
        ood_folds="results/tuning/{arch}/ood_folds.npz",
        weights=cnn_weights_file,
    output:
        model="results/models/{arch}/model.pt",
        history="results/models/{arch}/history.csv",
        curves=report(
            "results/models/{arch}/training_curves.png",
            caption="../report/training_curves.rst",
            category="CNN {arch}",
            subcategory="Training",
            labels={"figure": "training curves"},
        ),
    log:
        "logs/cnn_train/{arch}.log",
    benchmark:
        "benchmarks/cnn_train/{arch}.tsv"
    conda:
        "../envs/cnn.yaml"
    threads: CNN["threads"]
    resources:
        mem_mb=grows_with_attempt(CNN["mem_mb"]),
        runtime=grows_with_attempt(max(CNN["runtime"] // 4, 10)),
        gpu=CNN["gpus"],
    params:
        settings=cnn_train_settings,
        preparation=cnn_preparation(),
    script:
        "../scripts/cnn_train.py"


rule cnn_evaluate:
    input:
        model="results/models/{arch}/model.pt",
        packed=cnn_packed,
    output:
        metrics="results/models/{arch}/metrics.json",
        predictions="results/models/{arch}/predictions.csv",
        ood_holdout="results/models/{arch}/ood_holdout.csv",
        confusion=report(
            "results/models/{arch}/confusion_matrix.png",
            caption="../report/confusion_cnn.rst",
            category="CNN {arch}",
            subcategory="Holdout",
            labels={"figure": "confusion matrix"},
        ),
    log:
        "logs/cnn_evaluate/{arch}.log",
    conda:
        "../envs/cnn.yaml"
    threads: CNN["threads"]
    resources:
        mem_mb=CNN["mem_mb"],
        runtime=30,
    params:
        device=CNN["device"],
    script:
        "../scripts/cnn_evaluate.py"


rule cnn_explain:
    input:
        model="results/models/{arch}/model.pt",
        packed=cnn_packed,
    output:
        saliency="results/models/{arch}/saliency.h5",
        figure=report(
            "results/models/{arch}/saliency.png",
            caption="../report/saliency.rst",
            category="CNN {arch}",
            subcategory="Saliency",
            labels={"figure": "saliency per class"},
        ),
    log:
        "logs/cnn_explain/{arch}.log",
    conda:
        "../envs/cnn.yaml"
    threads: CNN["threads"]
    resources:
        mem_mb=CNN["mem_mb"],
        runtime=60,
    params:
        method=CNN_PARAMS["saliency"]["method"],
        ig_steps=CNN_PARAMS["saliency"]["ig_steps"],
        device=CNN["device"],
    script:
        "../scripts/cnn_explain.py"
