# Config validation, the cell table and every input/params function live here.
import os

from snakemake.utils import validate

validate(config, "../schemas/config.schema.yaml")


wildcard_constraints:
    specimen_id=r"[A-Za-z0-9_.-]+",


def cohort_table():
    """One row per metadata entry (duplicated ids included: the manifest excludes them)."""
    if config["cohort"] == "synthetic":
        from sts.synth import make_cohort

        s = config["synthetic"]
        return make_cohort(s["n_cells"], s["seed"], s["defect_fraction"])
    raise ValueError(f"cohort {config['cohort']!r} is not available yet")


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
