# Input and params functions of the synthetic cohort (cohort.smk), beside its rules but in a
# file of their own (snakemake --lint: rules and functions in separate files).


def cli_flags(params):
    """--key-name value flags of a settings dict (sts synth's --n-cells, --seed, ...)."""
    return " ".join(f"--{k.replace('_', '-')} {v}" for k, v in params.items())


def synth_cell_args(wildcards):
    """One synthetic cell is fully given by its row: only changed rows re-run."""
    row = cell(wildcards)
    return (
        f"--dataset {row['dataset']} --label '{row['label']}' --fs-hz {row['fs_hz']} "
        f"--defect '{row['defect']}' --cell-seed {row['cell_seed']} --model-class '{row['model_class']}'"
    )
