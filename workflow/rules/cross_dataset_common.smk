# Input and params functions of the cross-dataset stage (cross_dataset.smk), beside its rules
# but in a file of their own (snakemake --lint: rules and functions in separate files).


def cross_dataset_archs():
    """CNNs of the cross-dataset table: cross_dataset.architectures, or all of cnn.architectures."""
    archs = CROSS.get("architectures")
    if archs is None:
        return list(CNN_ARCHS)
    unknown = [a for a in archs if a not in CNN_ARCHS]
    if unknown:
        raise ValueError(
            f"cross_dataset.architectures {unknown} are not in cnn.architectures {CNN_ARCHS}"
        )
    return archs


def cross_dataset_lgbm_inputs(wildcards):
    """The baseline's feature inputs: computed table + manifest, or the published tables."""
    if config["baseline"]["features"] == "published":
        return {"tables": published_reference_files()}
    return {
        "features": "results/baseline/features.csv",
        "manifest": "results/manifest.csv",
    }
