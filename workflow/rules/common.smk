# Config validation, the cell table and every input/params function live here.
import os

from snakemake.utils import validate

validate(config, "../schemas/config.schema.yaml")

from sts.config_checks import check_config

# What the schema cannot say: keys that must agree with each other (messages name them).
check_config(config)

from sts.ids import ID_PATTERN
from sts.settings import (
    BaselineSettings,
    CnnJobSettings,
    TuneSettings,
    cnn_params,
    cnn_settings,
    default,
    rule_params,
)

# Each block's settings as the dict its dataclass (sts.settings) is built from, computed once:
# param functions run for every job of the DAG. Per-cell shell rules pass theirs as one
# --params JSON argument, so a changed key re-runs exactly the rules it reaches.
PARAMS = rule_params(config)


# Every cohort's ids follow sts.ids: cells with other ids are excluded rows, never paths.
wildcard_constraints:
    specimen_id=ID_PATTERN,


def cohort_table():
    """One row per metadata entry (duplicated ids included: the manifest excludes them)."""
    from sts.cohort import cohort_table as table

    return table(config)


COHORT = cohort_table()
# Rows excluded when the table was read (local cohort: missing file, unsafe or duplicate id,
# unknown label) never become jobs; results/metadata.csv carries their reason to the manifest.
USABLE = COHORT[COHORT["status"] == "ok"] if "status" in COHORT else COHORT
# Plain dicts, not DataFrame lookups: param functions run for every job of the DAG.
CELLS = {
    r["specimen_id"]: r
    for r in USABLE.drop_duplicates("specimen_id").to_dict("records")
}
SPECIMEN_IDS = sorted(CELLS)
NWB = os.path.join(config["nwb_dir"], "{specimen_id}.nwb")


def cell(wildcards):
    return CELLS[wildcards.specimen_id]


def cell_meta_args(wildcards):
    """Metadata stored with the cell's files (shell-quoted: Vip/Lamp5, free-text datasets)."""
    from shlex import quote

    row = cell(wildcards)
    return f"--dataset {quote(str(row['dataset']))} --label {quote(str(row['label']))}"


def cli_flags(params):
    """--key-name value flags of a settings dict (sts synth's --n-cells, --seed, ...)."""
    return " ".join(f"--{k.replace('_', '-')} {v}" for k, v in params.items())


def json_arg(params):
    """One shell-quoted --params JSON argument (keys sorted: the same dict, the same string)."""
    import json
    from shlex import quote

    return f"--params {quote(json.dumps(params, sort_keys=True))}"


def synth_cell_args(wildcards):
    """One synthetic cell is fully given by its row: only changed rows re-run."""
    row = cell(wildcards)
    return (
        f"--dataset {row['dataset']} --label '{row['label']}' --fs-hz {row['fs_hz']} "
        f"--defect '{row['defect']}' --cell-seed {row['cell_seed']} --model-class '{row['model_class']}'"
    )


# The sweeps: block (absent keys: the code's defaults) and the scalogram: block with its
# compression (the file changes): changing a key re-runs the select_sweeps / scalogram jobs.
SELECTION_ARGS = json_arg(PARAMS["sweeps"])
SCALOGRAM_ARGS = json_arg(PARAMS["scalogram"])
# The EP features read the ladder as sweep selection does (the sweeps: keys they share).
FEATURE_ARGS = json_arg(PARAMS["features"])


def published_reference_files():
    """The study's feature tables, labels and split files (baseline.features: published)."""
    from sts.baseline.published import FILES

    ref = config["baseline"].get("reference_dir")
    if not ref:
        raise ValueError(
            "baseline.features is 'published' but baseline.reference_dir is not set"
        )
    return [os.path.join(ref, name) for name in FILES.values()]


BASELINE_OUT = "results/baseline"


# --- Deep-learning stage (workflow/rules/cnn.smk) ---------------------------------------
CNN = config.get("cnn")
CNN_ARCHS = CNN["architectures"] if CNN else []


def cnn_weights_path(arch):
    """A pre-staged (or fetched) ImageNet state dict, when weights are imagenet from a folder."""
    if CNN["weights"] == "imagenet" and CNN["weights_dir"]:
        return os.path.join(CNN["weights_dir"], f"{arch}.pth")
    return None


# Per architecture, its settings (cnn.overrides applied) as the dicts of sts.settings.cnn_settings:
# tune (TuneSettings), train (the final fit's share of them), input_size. Checked here, so a bad
# value stops the DAG build; each architecture's jobs get only its own.
CNN_SETTINGS = {a: cnn_settings(config, a, cnn_weights_path(a)) for a in CNN_ARCHS}
# What every architecture shares: the pack rule's norm and dtype, the explain rule's saliency.
CNN_PARAMS = cnn_params(config) if CNN else {}


def cnn_packed(wildcards):
    return f"results/cnn/packed_{CNN_SETTINGS[wildcards.arch]['input_size']}px.h5"


def cnn_weights_file(wildcards):
    return cnn_weights_path(wildcards.arch) or []


def cnn_tune_settings(wildcards):
    """Everything that defines one architecture's search (only its own settings)."""
    return dict(CNN_SETTINGS[wildcards.arch]["tune"])


def cnn_tune_workers(wildcards):
    """The done files of the architecture's cnn.tune_workers search workers."""
    return expand(
        "results/tuning/{arch}/worker_{worker}.done",
        arch=wildcards.arch,
        worker=range(CNN["tune_workers"]),
    )


def cnn_train_settings(wildcards):
    return dict(CNN_SETTINGS[wildcards.arch]["train"])


def cnn_preparation():
    """Sweep-selection and scalogram parameters, stored in model.pt to classify new recordings
    (not the files' compression: it does not change the values)."""
    scalogram = {k: v for k, v in PARAMS["scalogram"].items() if k != "compression"}
    return {"sweeps": PARAMS["sweeps"], "scalogram": scalogram}


def cnn_targets():
    return expand(
        "results/models/{arch}/{out}",
        arch=CNN_ARCHS,
        out=["metrics.json", "saliency.h5"],
    )


# --- Classifying new recordings (workflow/rules/predict.smk) ----------------------------
PREDICT = config.get("predict") or {}


def predict_model():
    """An architecture name means the workflow's own model (trained if needed), `lightgbm` the
    baseline's saved fit (on computed features), `fusion` the fusion of the workflow's models,
    else a path."""
    from sts.cnn.models import ARCHITECTURES

    model = PREDICT["model"]
    if model == "fusion":
        if not FUSION:
            raise ValueError(
                "predict.model is 'fusion' but this config has fewer than two models to fuse "
                "(the CNNs of cnn.architectures and LightGBM on computed features)"
            )
        return "results/fusion/model.json"
    if model == "lightgbm":
        if config["baseline"]["features"] != "computed":
            raise ValueError(
                "predict.model is 'lightgbm' but baseline.features is not 'computed': a fit on the "
                "published tables cannot classify recordings (their features do not come from the files)"
            )
        return "results/baseline/model/model.json"
    if model not in ARCHITECTURES:
        return model
    if not CNN:
        raise ValueError(
            f"predict.model is {model!r} but the config has no cnn: block to train it; "
            "give the path of a model.pt instead"
        )
    return f"results/models/{model}/model.pt"


def predict_name():
    """Output name: the architecture, or the model file's folder (results/models/X/model.pt -> X)."""
    model = PREDICT["model"]
    if model != predict_model():
        return model
    path = os.path.abspath(model)
    stem = os.path.splitext(os.path.basename(path))[0]
    return os.path.basename(os.path.dirname(path)) if stem == "model" else stem


def predict_inputs():
    """The recordings of predict.inputs (the cohort's own NWB files when it is nwb_dir)."""
    from sts.predict import find_recordings

    folder = PREDICT["inputs"]
    same = os.path.normpath(folder) == os.path.normpath(config["nwb_dir"])
    if same and config["cohort"] != "local":
        return expand(NWB, specimen_id=SPECIMEN_IDS)
    if not os.path.isdir(folder):
        raise ValueError(f"predict.inputs: {folder!r} is not a folder")
    files = [str(p) for p in find_recordings([folder])]
    if not files:
        raise ValueError(f"predict.inputs: no .nwb or .abf files in {folder!r}")
    return files


def predict_calibration():
    """The workflow's own model's calibration.json, so `predict` serves calibrated probabilities."""
    name = PREDICT["model"]
    return (
        f"{member_files(name)['folder']}/calibration.json" if name in CALIBRATED else []
    )


def predict_targets():
    if not PREDICT.get("inputs"):
        return []
    return [f"results/predictions/{predict_name()}.csv"]


# --- Local cohort (workflow/rules/local.smk): the users' own files, listed in a CSV --------
LOCAL = config["cohort"] == "local"


def cell_file(wildcards):
    """A local cell's own file (NWB or ABF), wherever the CSV says it is."""
    return cell(wildcards)["file"]


# The per-cell input of select_sweeps and ep_features.
CELL_INPUT = cell_file if LOCAL else NWB


def cell_protocol_args(wildcards):
    """An ABF row's step ladder from the CSV (files without a command waveform); else ''."""
    from sts.local_cohort import protocol_options

    return protocol_options(cell(wildcards))


# A params function costs Snakemake time for every job of the DAG: only the local cohort has one.
CELL_PROTOCOL = cell_protocol_args if LOCAL else ""


def local_table_digest():
    """Changes when a row's file, status or protocol changes, so results/metadata.csv is rewritten."""
    from hashlib import sha256

    return sha256(COHORT.to_csv(index=False).encode()).hexdigest()[:16]


if LOCAL and not config["split"].get("train_file"):
    from sts.manifest import check_class_counts

    # Stops the DAG build, before any job, when a class is too small for the holdout and folds.
    try:
        check_class_counts(
            COHORT,
            config["split"]["n_folds"],
            config["split"]["test_fraction"],
            config["classes"],
        )
    except ValueError as err:
        raise ValueError(f"local.labels {config['local']['labels']}: {err}") from None


# --- Report (workflow/rules/report.smk) and cross-dataset table --------------------------
CROSS = config.get("cross_dataset") or {"enabled": False}


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


def cross_dataset_archs():
    """CNNs of the cross-dataset table: cross_dataset.architectures, or all of cnn.architectures."""
    if not CROSS["enabled"]:
        return []
    archs = CROSS.get("architectures")
    if archs is None:
        return list(CNN_ARCHS)
    unknown = [a for a in archs if a not in CNN_ARCHS]
    if unknown:
        raise ValueError(
            f"cross_dataset.architectures {unknown} are not in cnn.architectures {CNN_ARCHS}"
        )
    return archs


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


def cross_dataset_lgbm_inputs(wildcards):
    """The baseline's feature inputs: computed table + manifest, or the published tables."""
    if config["baseline"]["features"] == "published":
        return {"tables": published_reference_files()}
    return {
        "features": "results/baseline/features.csv",
        "manifest": "results/manifest.csv",
    }


# --- Fusion and calibration (workflow/rules/fusion.smk, calibration.smk) -----------------
# Members: every CNN and the LightGBM baseline on computed features (a fit on the published
# tables has no manifest-fold predictions and cannot be served). A fusion needs two members.
LGBM_SERVED = config["baseline"]["features"] == "computed"
FUSION_MEMBERS = list(CNN_ARCHS) + (["lightgbm"] if LGBM_SERVED else [])
FUSION = len(FUSION_MEMBERS) >= 2


def member_files(name):
    """A served model's files: model, out-of-fold predictions (training cells, manifest folds),
    holdout predictions, and the folder its calibration.json goes to."""
    if name == "lightgbm":
        return {
            "model": f"{BASELINE_OUT}/model/model.json",
            "oof": f"{BASELINE_OUT}/oof.csv",
            "predictions": f"{BASELINE_OUT}/predictions.csv",
            "folder": f"{BASELINE_OUT}/model",
        }
    if name == "fusion":
        return {
            "model": "results/fusion/model.json",
            "oof": "results/fusion/oof.csv",
            "predictions": "results/fusion/predictions.csv",
            "folder": "results/fusion",
        }
    return {
        "model": f"results/models/{name}/model.pt",
        "oof": f"results/tuning/{name}/oof_best.csv",
        "predictions": f"results/models/{name}/predictions.csv",
        "folder": f"results/models/{name}",
    }


CALIBRATED = FUSION_MEMBERS + (["fusion"] if FUSION else [])
CALIBRATION_DIRS = {member_files(m)["folder"]: m for m in CALIBRATED}


def fusion_member_inputs(key):
    return [member_files(m)[key] for m in FUSION_MEMBERS]


def calibration_inputs(wildcards):
    files = member_files(CALIBRATION_DIRS[wildcards.model_dir])
    return {
        "model": files["model"],
        "oof": files["oof"],
        "predictions": files["predictions"],
        "manifest": "results/manifest.csv",
    }


def calibration_title(wildcards):
    name = CALIBRATION_DIRS[wildcards.model_dir]
    return {"lightgbm": "LightGBM (EP features)"}.get(name, name)


def calibration_targets():
    return [f"{member_files(m)['folder']}/calibration.json" for m in CALIBRATED]


# After the fusion and calibration definitions it reads.
MODEL_CARDS = model_cards()
