# Config validation, the cell table and every input/params function live here.
import os

from snakemake.utils import validate

validate(config, "../schemas/config.schema.yaml")


wildcard_constraints:
    specimen_id=r"[A-Za-z0-9_.-]+",


def cohort_table():
    """One row per metadata entry (duplicated ids included: the manifest excludes them)."""
    from sts.cohort import cohort_table as table

    return table(config)


COHORT = cohort_table()
# Plain dicts, not DataFrame lookups: param functions run for every job of the DAG.
CELLS = {
    r["specimen_id"]: r
    for r in COHORT.drop_duplicates("specimen_id").to_dict("records")
}
SPECIMEN_IDS = sorted(CELLS)
NWB = os.path.join(config["nwb_dir"], "{specimen_id}.nwb")


def cell(wildcards):
    return CELLS[wildcards.specimen_id]


def cell_meta_args(wildcards):
    """Metadata stored with the cell's files (quoted: labels such as Vip/Lamp5)."""
    row = cell(wildcards)
    return f"--dataset '{row['dataset']}' --label '{row['label']}'"


def synth_args():
    """Everything that determines one synthetic cell, so only changed cells re-run."""
    s = config["synthetic"]
    return f"--n-cells {s['n_cells']} --seed {s['seed']} --defect-fraction {s['defect_fraction']}"


def synth_cell_args(wildcards):
    """One synthetic cell is fully given by its row: only changed rows re-run."""
    row = cell(wildcards)
    return (
        f"--dataset {row['dataset']} --label '{row['label']}' --fs-hz {row['fs_hz']} "
        f"--defect '{row['defect']}' --cell-seed {row['cell_seed']} --model-class '{row['model_class']}'"
    )


def selection_args():
    s = config["sweeps"]
    return (
        f"--window-s {s['window_s']} --fs-hz {s['fs_hz']} --plus-pa {s['plus_pa']} "
        f"--tolerance-pa {s['tolerance_pa']} --dvdt-cutoff {s['dvdt_cutoff_mv_ms']}"
    )


def scalogram_args():
    s = config["scalogram"]
    return f"--wavelet {s['wavelet']} --fmin-hz {s['fmin_hz']} --fmax-hz {s['fmax_hz']} --n-freqs {s['n_freqs']}"


def split_params():
    s = config["split"]
    return {
        "seed": s["seed"],
        "test_fraction": s["test_fraction"],
        "n_folds": s["n_folds"],
        "train_file": s.get("train_file"),
        "test_file": s.get("test_file"),
    }


def published_reference_files():
    """The study's feature tables, labels and split files (baseline.features: published)."""
    from sts.baseline.published import FILES

    ref = config["baseline"].get("reference_dir")
    if not ref:
        raise ValueError(
            "baseline.features is 'published' but baseline.reference_dir is not set"
        )
    return [os.path.join(ref, name) for name in FILES.values()]


# --- Deep-learning stage (workflow/rules/cnn.smk) ---------------------------------------
CNN = config.get("cnn")
CNN_ARCHS = CNN["architectures"] if CNN else []


def cnn_arch(arch):
    """One architecture's settings: the global ones with its overrides applied."""
    over = CNN["overrides"].get(arch, {})
    keys = ("input_size", "trials", "max_epochs", "seed")
    settings = {k: over.get(k, CNN[k]) for k in keys}
    settings["search_space"] = over.get("search_space", CNN.get("search_space", {}))
    return settings


def cnn_input_size(arch):
    from sts.dl.models import check_arch

    size = cnn_arch(arch)["input_size"]
    # Fails the DAG build with a clear message (e.g. inception_v3 below 75 px).
    check_arch(arch, size)
    return size


def cnn_packed(wildcards):
    return f"results/cnn/packed_{cnn_input_size(wildcards.arch)}px.h5"


def cnn_weights_file(wildcards):
    """A pre-staged (or fetched) ImageNet state dict, when weights are imagenet from a folder."""
    if CNN["weights"] == "imagenet" and CNN["weights_dir"]:
        return os.path.join(CNN["weights_dir"], f"{wildcards.arch}.pth")
    return []


def cnn_tune_settings(wildcards):
    """Everything that defines one architecture's search (only its own settings)."""
    a, p = cnn_arch(wildcards.arch), CNN["pruner"]
    return {
        "arch": wildcards.arch,
        "n_trials": a["trials"],
        "max_epochs": a["max_epochs"],
        "seed": a["seed"],
        "space": a["search_space"],
        "pruner": p["kind"],
        "pruner_startup_trials": p["startup_trials"],
        "pruner_warmup_epochs": p["warmup_epochs"],
        "weights": CNN["weights"],
        "weights_path": cnn_weights_file(wildcards) or None,
        "device": CNN["device"],
        "recalibrate_bn": CNN["recalibrate_bn"],
    }


def cnn_train_settings(wildcards):
    return {
        "seed": cnn_arch(wildcards.arch)["seed"],
        "weights": CNN["weights"],
        "weights_path": cnn_weights_file(wildcards) or None,
        "device": CNN["device"],
        "recalibrate_bn": CNN["recalibrate_bn"],
    }


def cnn_preparation():
    """Sweep-selection and scalogram parameters, stored in model.pt to classify new recordings."""
    return {"sweeps": dict(config["sweeps"]), "scalogram": dict(config["scalogram"])}


def cnn_targets():
    return expand(
        "results/models/{arch}/{out}",
        arch=CNN_ARCHS,
        out=["metrics.json", "saliency.h5"],
    )
