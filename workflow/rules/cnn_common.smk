# Input and params functions of the deep-learning stage (cnn.smk), beside its rules but in a
# file of their own (snakemake --lint: rules and functions in separate files).

from sts.settings import cnn_params

CNN_PARAMS = cnn_params(config)


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


def cnn_targets():
    return expand(
        "results/models/{arch}/{out}",
        arch=CNN_ARCHS,
        out=["metrics.json", "saliency.h5"],
    )
