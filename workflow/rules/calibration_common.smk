# Input and params functions of the calibration stage (calibration.smk), beside its rules but in
# a file of their own (snakemake --lint: rules and functions in separate files).

CALIBRATION_DIRS = {member_files(m)["folder"]: m for m in CALIBRATED}


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
