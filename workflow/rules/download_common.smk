# Input/params functions of the real-data rules (download.smk), apart from common.smk so that
# the acquisition stage stays in its own files.
from sts.acquire.listings import listing_path
from sts.acquire.schemes import BUILT_IN
from sts.cohort.table import patchseq_metadata_path
from sts.settings import acquire_settings

ACQ = acquire_settings(config)
ALLEN_CELLS = str(listing_path(ACQ, "clamp"))
DANDI_ASSETS = str(listing_path(ACQ, "seq"))
TABLE_KEYS = (
    "cells",
    "max_cells",
    "metadata_dir",
    "label_file",
    "patchseq_metadata",
    "patchseq_id_column",
    "patchseq_ttype_column",
    "patchseq_dendrite_column",
)


def retry_args():
    return f"--retries {ACQ['retries']} --backoff-s {ACQ['backoff_s']} --timeout-s {ACQ['timeout_s']}"


def cohort_params():
    """What decides the cell table (so editing it re-runs exactly the table; the study scheme adds
    no key, so runs from before schemes keep their params)."""
    split = config.get("split") or {}
    params = {
        "cohort": config["cohort"],
        "split": {k: split.get(k) for k in ("train_file", "test_file")},
        "acquire": {k: ACQ[k] for k in TABLE_KEYS},
    }
    if SCHEME.name != "study":
        params["labels"] = {"scheme": SCHEME.name}
    return params


def cohort_inputs():
    """Listings and label/split files the table is built from."""
    files = {
        "allen": [ALLEN_CELLS],
        "dandi": [DANDI_ASSETS],
        "paper": [config["split"]["train_file"], config["split"]["test_file"]],
    }[config["cohort"]]
    if ACQ["label_file"]:
        files.append(ACQ["label_file"])
    elif config["cohort"] == "dandi":
        # the user's patch-seq metadata, or the one shipped with ipfx
        files.append(str(patchseq_metadata_path(ACQ)))
    if SCHEME.name not in BUILT_IN:  # a user's map of T-type prefixes to classes
        files.append(SCHEME.name)
    return files


def download_inputs(wildcards):
    """A DANDI cell is looked up in the asset listing; an Allen cell needs nothing local."""
    return {"assets": DANDI_ASSETS} if cell(wildcards)["dataset"] == "seq" else {}


def download_args(wildcards):
    """Where and how one cell is fetched; a streamed DANDI cell also depends on the sweep choice."""
    if cell(wildcards)["dataset"] == "clamp":
        return f"--dataset clamp --allen-api {ACQ['allen_api']} {retry_args()}"
    version = (
        f"--dandiset-version {ACQ['dandiset_version']}"
        if ACQ["dandiset_version"]
        else ""
    )
    args = (
        f"--dataset seq --dandi-api {ACQ['dandi_api']} --dandiset {ACQ['dandiset']} {version} "
        f"--dandi-mode {ACQ['dandi_mode']} --block-size-kb {ACQ['block_size_kb']} "
        f"--asset-table {DANDI_ASSETS} {retry_args()}"
    )
    return args + (f" {SELECTION_ARGS}" if ACQ["dandi_mode"] == "stream" else "")
