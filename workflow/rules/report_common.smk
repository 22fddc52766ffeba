# Input and params functions of the report stage (report.smk), beside its rules but in a file of
# their own (snakemake --lint: rules and functions in separate files).


def report_class_files():
    """Class -> file-name-safe stem of its example-scalogram figure (Vip/Lamp5 -> Vip-Lamp5)."""
    from sts.baseline.explain import class_filename

    return {c: class_filename(c) for c in config["classes"]}


def report_example_cells():
    """The few cells per class and dataset whose files the example figures may read."""
    from sts.report.scalograms import candidate_cells

    # Rows excluded when the table was read have no files.
    cells = USABLE.drop_duplicates("specimen_id")
    return candidate_cells(cells, config["classes"], seed=config["split"]["seed"])


def report_targets():
    """Figures and tables made for `snakemake --report` (part of `all`)."""
    out = expand(
        "results/report/scalograms/{name}.png", name=report_class_files().values()
    )
    out += ["results/report/shap_top5.png", "results/report/comparison.html"]
    if CROSS["enabled"]:
        out += ["results/cross_dataset.csv"]
    out += expand("results/report/model_cards/{model}.md", model=MODEL_CARDS)
    return out


def model_cards():
    """Served models -> their family and the files their card reads (report_model_card);
    each CNN, the LightGBM baseline on computed features, the fusion; with its calibration.json.
    """
    cards = {}
    for name in FUSION_MEMBERS + (["fusion"] if FUSION else []):
        files = member_files(name)
        family = name if name in ("lightgbm", "fusion") else "cnn"
        folder = {"lightgbm": BASELINE_OUT, "fusion": "results/fusion"}.get(
            name, files["folder"]
        )
        cards[name] = {
            "family": family,
            "model": files["model"],
            "metrics": f"{folder}/metrics.json",
            "confusion": f"{folder}/confusion_matrix.png",
            "calibration": f"{files['folder']}/calibration.json",
        }
        if family == "lightgbm":
            cards[name]["features"] = "results/baseline/features.csv"
        if family == "cnn":
            cards[name]["ood_holdout"] = f"{folder}/ood_holdout.csv"
    return cards


def model_card_inputs(wildcards):
    return {k: v for k, v in MODEL_CARDS[wildcards.model].items() if k != "family"}


MODEL_CARDS = model_cards()


REPORT_CELLS = report_example_cells()
