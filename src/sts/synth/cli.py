"""``sts synth``: the synthetic cohort's metadata table, or one cell's NWB file."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from sts.settings import SynthParams


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Synthetic cohort (deterministic from --seed). 'sts synth metadata OUT.csv' writes the "
        "table (specimen_id, dataset, label, ...); 'sts synth cell SPECIMEN_ID OUT.nwb' writes "
        "that cell's NWB file in its dataset's layout (clamp: Allen NWB v1, seq: MIES NWB 2); "
        "'sts synth all DIR' writes both for every cell."
    )
    p.add_argument("what", choices=["metadata", "cell", "all"])
    p.add_argument("args", nargs="+", help="metadata: OUT.csv | cell: SPECIMEN_ID OUT.nwb | all: DIR")
    for f in fields(SynthParams):  # the config's synthetic: block
        p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default)
    row = p.add_argument_group(
        "one cell given by its cohort row (cell only; then --n-cells/--seed are not used)"
    )
    row.add_argument("--dataset", choices=["clamp", "seq"])
    row.add_argument("--label")
    row.add_argument("--fs-hz", type=float)
    row.add_argument("--defect", default="")
    row.add_argument("--cell-seed", type=int)
    row.add_argument("--model-class", help="the physiology (differs from --label for Unsure cells)")


def write_metadata(cohort, out_csv: str | Path) -> None:
    from sts.io.atomic import write_csv_atomic

    write_csv_atomic(out_csv, cohort.rename(columns={"defect": "synthetic_defect"}))


def run(args: argparse.Namespace) -> int:
    from sts.synth import make_cohort, write_cell

    cohort = make_cohort(args.n_cells, args.seed, args.defect_fraction)  # fast: a table only
    if args.what == "metadata":
        write_metadata(cohort, args.args[0])
    elif args.what == "cell":
        sid, out = args.args[:2]
        if args.cell_seed is not None:
            row = {"specimen_id": sid, "dataset": args.dataset, "label": args.label,
                   "fs_hz": args.fs_hz, "defect": args.defect, "cell_seed": args.cell_seed,
                   "model_class": args.model_class or args.label}
            write_cell(row, out)
            return 0
        rows = cohort[cohort["specimen_id"] == sid]
        if rows.empty:
            raise SystemExit(f"sts synth: specimen_id {sid} is not in the cohort (n={args.n_cells}, seed={args.seed})")
        write_cell(rows.iloc[0].to_dict(), out)
    else:
        from tqdm import tqdm

        out_dir = Path(args.args[0])
        write_metadata(cohort, out_dir / "metadata.csv")
        for row in tqdm(cohort.drop_duplicates("specimen_id").to_dict("records"), desc="cells"):
            write_cell(row, out_dir / "nwb" / f"{row['specimen_id']}.nwb")
    return 0


def add_parser(sub) -> None:
    """Register ``synth`` on the ``sts`` subparsers."""
    p = sub.add_parser("synth", help="write the synthetic cohort (metadata table or one cell's NWB)")
    add_arguments(p)
    p.set_defaults(func=run)
