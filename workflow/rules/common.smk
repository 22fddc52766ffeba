# Config validation, the cell table, and the switches and input/params functions that several
# stages share. A function only one stage uses lives beside its rules, in that stage's .smk.
import os

from snakemake.utils import validate

validate(config, "../schemas/config.schema.yaml")

from sts.prep.config_checks import check_config

# What the schema cannot say: keys that must agree with each other (messages name them).
check_config(config)

from sts.cohort.ids import ID_PATTERN
from sts.settings import (
    BaselineSettings,
    CnnJobSettings,
    TuneSettings,
    cnn_params,
    cnn_settings,
    default,
    rule_params,
)

from snakemake.logging import logger

from sts.cohort.table import run_scheme

# The class scheme (labels.scheme) and the run's classes, resolved once: config classes null means
# the scheme's classes; every rule (and the report) reads config["classes"] and config["labels"].
SCHEME, _classes = run_scheme(config)
config["classes"] = list(_classes)
config["labels"] = {**(config.get("labels") or {}), "scheme": SCHEME.name}

# Each block's settings as the dict its dataclass (sts.settings) is built from, computed once:
# param functions run for every job of the DAG. Per-cell shell rules pass theirs as one
# --params JSON argument, so a changed key re-runs exactly the rules it reaches.
PARAMS = rule_params(config)
if SCHEME.name != "study" and PARAMS["split"]["train_file"]:
    # The paper's split files hold the study's classes: another scheme splits afresh (stratified).
    logger.warning(
        f"labels.scheme {SCHEME.name}: split.train_file/test_file ignored, stratified split"
    )
    PARAMS["split"] = {**PARAMS["split"], "train_file": None, "test_file": None}


# Every cohort's ids follow sts.cohort.ids: cells with other ids are excluded rows, never paths.
wildcard_constraints:
    specimen_id=ID_PATTERN,


def cohort_table():
    """One row per metadata entry (duplicated ids included: the manifest excludes them)."""
    from sts.cohort.table import cohort_table as table

    return table(config)


if config["cohort"] == "local":
    from sts.cohort.local import read_table

    # The users' label table: its columns (a misspelt one would be ignored) and their types.
    validate(
        read_table(config["local"]["labels"]),
        "../schemas/local_cohort.schema.yaml",
        set_default=False,
    )


COHORT = cohort_table()
if config["cohort"] == "local":
    from sts.cohort.local_table import check_label_table

    # What no row check can see: an id given twice, a file that does not exist (rows named).
    check_label_table(COHORT, config["local"]["labels"])
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


def grows_with_attempt(base):
    """A memory (MB) or runtime (min) resource that grows with each retry: ``base`` on the first
    attempt, ``attempt * base`` on the next (the training, pack and baseline rules, which a
    cluster kills for memory or time). Retries come from the profile (profiles/slurm); without
    them every job has attempt 1 and gets ``base``. A failed job is never a data error worth
    retrying the same way: bad cells become excluded rows, not failures."""
    return lambda wildcards, attempt: base * attempt


def cell(wildcards):
    return CELLS[wildcards.specimen_id]


def cell_meta_args(wildcards):
    """Metadata stored with the cell's files (shell-quoted: Vip/Lamp5, free-text datasets)."""
    from shlex import quote

    row = cell(wildcards)
    return f"--dataset {quote(str(row['dataset']))} --label {quote(str(row['label']))}"


def json_arg(params):
    """One shell-quoted --params JSON argument (keys sorted: the same dict, the same string)."""
    import json
    from shlex import quote

    return f"--params {quote(json.dumps(params, sort_keys=True))}"


# The sweeps: block (absent keys: the code's defaults): changing a key re-runs the
# select_sweeps jobs (and a streamed DANDI download, which selects the sweeps it fetches).
SELECTION_ARGS = json_arg(PARAMS["sweeps"])


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


# --- Deep-learning stage (workflow/rules/cnn.smk; the cross-dataset fits reuse its inputs) ----
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


def cnn_packed(wildcards):
    return f"results/cnn/packed_{CNN_SETTINGS[wildcards.arch]['input_size']}px.h5"


def cnn_weights_file(wildcards):
    return cnn_weights_path(wildcards.arch) or []


def cnn_train_settings(wildcards):
    return dict(CNN_SETTINGS[wildcards.arch]["train"])


def cnn_preparation():
    """Sweep-selection and scalogram parameters, stored in model.pt to classify new recordings
    (not the files' compression: it does not change the values)."""
    scalogram = {k: v for k, v in PARAMS["scalogram"].items() if k != "compression"}
    return {"sweeps": PARAMS["sweeps"], "scalogram": scalogram}


# --- Classifying new recordings (workflow/rules/predict.smk; the switch for the Snakefile) ----------------------------
PREDICT = config.get("predict") or {}


# --- Local cohort (workflow/rules/local.smk): the users' own files, listed in a CSV --------
LOCAL = config["cohort"] == "local"


def cell_file(wildcards):
    """A local cell's own file (NWB or ABF), wherever the CSV says it is."""
    return cell(wildcards)["file"]


# The per-cell input of select_sweeps and ep_features.
CELL_INPUT = cell_file if LOCAL else NWB


def cell_protocol_args(wildcards):
    """An ABF row's step ladder from the CSV (files without a command waveform); else ''."""
    from sts.cohort.local import protocol_options

    return protocol_options(cell(wildcards))


# A params function costs Snakemake time for every job of the DAG: only the local cohort has one.
CELL_PROTOCOL = cell_protocol_args if LOCAL else ""


if LOCAL and not config["split"].get("train_file"):
    from sts.cohort.manifest import check_class_counts

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


# --- Cross-dataset table (workflow/rules/cross_dataset.smk; the report lists it) --------------------------
CROSS = config.get("cross_dataset") or {"enabled": False}


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


def fusion_member_inputs(key):
    return [member_files(m)[key] for m in FUSION_MEMBERS]


def calibration_targets():
    return [f"{member_files(m)['folder']}/calibration.json" for m in CALIBRATED]
