"""The `sts` command line: one subcommand per pipeline step.

Subcommand handlers import their modules lazily, so that a per-cell job run by
Snakemake pays only for what it uses (``scipy.signal`` or ``pynwb`` alone cost
~1 s of start-up each on a small machine).
"""

from __future__ import annotations

import argparse
import logging
import sys

# Standard library only: the settings' defaults are read before numpy may be imported.
from sts.prep.protocol_args import add_protocol_options, protocol_from_args
from sts.settings import ScalogramParams, SelectionParams, SplitParams, default
from sts.io.threads import single_threaded


def _synth(args: argparse.Namespace) -> int:
    from sts.synth.cli import run

    return run(args)


def _select_sweeps(args: argparse.Namespace) -> int:
    single_threaded()
    from sts.prep.sweeps import select_sweeps_file

    params = selection_params(args)
    meta = {"specimen_id": args.specimen_id, "dataset": args.dataset, "label": args.label}
    result = select_sweeps_file(args.nwb, args.out, params, meta, protocol_from_args(args))
    logging.getLogger("sts").info("%s: %s %s", args.specimen_id, result.status, result.reason)
    return 0


# Settings flags kept for users: flag -> (dataclass field, help), defaults from the dataclass
# (sts.settings). The workflow passes a per-cell rule's whole config block as --params instead.
SELECTION_FLAGS = {
    "--window-s": ("window_s", "window length from step onset (s)"),
    "--fs-hz": ("fs_hz", "output sampling rate (Hz)"),
    "--plus-pa": ("plus_pa", "second sweep = rheobase + this (pA)"),
    "--tolerance-pa": ("tolerance_pa", "tolerance on the second sweep (pA)"),
    "--dvdt-cutoff": ("dvdt_cutoff_mv_ms", "spike dV/dt threshold (mV/ms)"),
}
SCALOGRAM_FLAGS = {
    "--wavelet": ("wavelet", "real pywt wavelet"),
    "--fmin-hz": ("fmin_hz", "lowest frequency (Hz)"),
    "--fmax-hz": ("fmax_hz", "highest frequency (Hz)"),
    "--n-freqs": ("n_freqs", "frequencies, linearly spaced"),
    "--compression": ("compression", "none, gzip (smallest) or lzf (faster); the file only, the values are the same"),
}
SPLIT_FLAGS = {
    "--seed": ("seed", "seed of the holdout and folds"),
    "--test-fraction": ("test_fraction", "stratified holdout share"),
    "--n-folds": ("n_folds", "stratified CV folds over the training cells"),
    "--train-file": ("train_file", "paper-format split file (id, Seq|Clamp)"),
    "--test-file": ("test_file", "paper-format split file of the holdout"),
}


def add_settings_options(p: argparse.ArgumentParser, cls, flags: dict, block: str | None = None) -> None:
    """One flag per entry of ``flags`` (default and type from dataclass ``cls``); with ``block``,
    also --params (that config block as JSON)."""
    for flag, (name, help_) in flags.items():
        value = default(cls, name)
        p.add_argument(flag, dest=name, type=str if value is None else type(value), default=value,
                       help=f"{help_} (default: %(default)s)")  # fmt: skip
    if block:
        p.add_argument("--params", default=None, metavar="JSON",
                       help=f"the config's {block}: block as JSON (as the workflow passes it); its keys override the flags")  # fmt: skip


def settings_from_args(args: argparse.Namespace, cls, flags: dict):
    """``cls`` from the flags, with the keys of --params over them; a bad value exits naming it."""
    import json

    values = {name: getattr(args, name) for name, _ in flags.values()}
    try:
        return cls.from_dict({**values, **json.loads(args.params or "{}")})
    except (ValueError, TypeError) as err:
        raise SystemExit(f"sts {args.command}: {err}") from err


def add_selection_options(p: argparse.ArgumentParser) -> None:
    add_settings_options(p, SelectionParams, SELECTION_FLAGS, "sweeps")


def selection_params(args: argparse.Namespace):
    """SelectionParams from the flags of ``add_selection_options``."""
    return settings_from_args(args, SelectionParams, SELECTION_FLAGS)


def _scalogram(args: argparse.Namespace) -> int:
    single_threaded()
    from sts.prep.scalogram_file import scalogram_file

    scalogram_file(args.sweeps, args.out, settings_from_args(args, ScalogramParams, SCALOGRAM_FLAGS))
    return 0


def _manifest(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sts.cohort.manifest import build_manifest

    split = SplitParams(**{name: getattr(args, name) for name, _ in SPLIT_FLAGS.values()})
    files = sorted(Path(args.scalograms).glob("*.h5"))  # every file of the folder is a cell of the cohort
    build_manifest(args.metadata, files, args.out, split, classes=args.classes)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sts", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from sts.synth.cli import add_arguments as add_synth_arguments

    p = sub.add_parser("synth", help="write the synthetic cohort (metadata table or one cell's NWB)")
    add_synth_arguments(p)
    p.set_defaults(func=_synth)

    p = sub.add_parser(
        "select-sweeps",
        help="pick the rheobase and rheobase+40 pA long squares of one cell, resample to 4 kHz",
        description="Detect spikes (dV/dt threshold), choose the rheobase long square and the one "
        "at rheobase + PLUS pA, cut a window from step onset, resample to FS. A cell that cannot be "
        "used still gets OUT.h5, with status 'excluded' and the reason.",
    )
    p.add_argument("nwb", help="the cell's recording (Allen NWB v1, MIES NWB 2, generic NWB 2 or ABF)")
    p.add_argument("out", help="output HDF5 (dataset traces_mv, shape (2, n))")
    p.add_argument("--specimen-id", required=True)
    p.add_argument("--dataset", default="", help="dataset tag stored as attribute (clamp, seq, ...)")
    p.add_argument("--label", default="", help="cell class stored as attribute")
    add_selection_options(p)
    add_protocol_options(p)
    p.set_defaults(func=_select_sweeps)

    p = sub.add_parser(
        "scalogram",
        help="Mexican-hat CWT of a cell's two selected sweeps",
        description="Read the sweeps file written by select-sweeps and write dataset 'scalogram' "
        "(float16, shape (2, n_freqs, n_times), one chunk per sweep) with attributes freqs_hz, fs_hz, "
        "wavelet. A cell whose coefficients exceed float16's range is excluded with the reason.",
    )
    p.add_argument("sweeps", help="input HDF5 from select-sweeps")
    p.add_argument("out", help="output HDF5")
    add_settings_options(p, ScalogramParams, SCALOGRAM_FLAGS, "scalogram")
    p.set_defaults(func=_scalogram)

    p = sub.add_parser(
        "manifest",
        help="one row per cell: status, reason, split and fold",
        description="Combine the metadata table and the per-cell scalogram files into the manifest "
        "CSV; stratified holdout and folds (seeded), or the split of the paper's files.",
    )
    p.add_argument("metadata", help="CSV with specimen_id, dataset, label")
    p.add_argument("scalograms", help="folder of per-cell scalogram files ({specimen_id}.h5)")
    p.add_argument("out", help="manifest CSV")
    add_settings_options(p, SplitParams, SPLIT_FLAGS)
    p.add_argument("--classes", nargs="+", default=None, help="classes kept (default: the study's four)")
    p.set_defaults(func=_manifest)

    for module in ("sts.baseline.cli", "sts.baseline.feature_files", "sts.acquire.cli", "sts.acquire.labels_cli",
                   "sts.cnn.cli"):
        __import__(module, fromlist=["add_parser"]).add_parser(sub)  # handlers import lazily
    return parser


def main(argv: list[str] | None = None, warm: bool | None = None) -> int:
    """Run one command. From the command line (``argv`` None), per-cell commands go through
    the warm-start server (``sts.warm``) unless ``STS_WARM=0``; ``warm`` forces either way."""
    if warm is None:
        warm = argv is None
    argv = sys.argv[1:] if argv is None else argv
    if warm:
        from sts import warm as warm_start

        if warm_start.enabled(argv):
            code = warm_start.run_remote(argv)
            if code is not None:
                return code
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
