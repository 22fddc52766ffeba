# Input and params functions of the local cohort (local.smk), beside its rules but in a file of
# their own (snakemake --lint: rules and functions in separate files).


def local_table_digest():
    """Changes when a row's file, status or protocol changes, so results/metadata.csv is rewritten."""
    from hashlib import sha256

    return sha256(COHORT.to_csv(index=False).encode()).hexdigest()[:16]
