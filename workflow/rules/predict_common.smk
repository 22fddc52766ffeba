# Input and params functions of the classification of new recordings (predict.smk), beside its
# rules but in a file of their own (snakemake --lint: rules and functions in separate files).

from sts.settings import TuneSettings, default


def predict_model():
    """An architecture name means the workflow's own model (trained if needed), `lightgbm` the
    baseline's saved fit (on computed features), `fusion` the fusion of the workflow's models,
    else a path."""
    from sts.settings import ARCHITECTURES

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
    from sts.serve.predict import find_recordings

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
    return [f"results/predictions/{predict_name()}.csv"]
