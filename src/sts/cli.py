"""The `sts` command line: one subcommand per pipeline step.

Subcommand handlers import their modules lazily, so that a per-cell job run by
Snakemake pays only for what it uses (``scipy.signal`` or ``pynwb`` alone cost
~1 s of start-up each on a small machine).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

# Per-cell steps run as many single-core jobs side by side: BLAS thread pools in each would
# oversubscribe the cores (measured: 0.33 -> 0.26 s/cell for 100 cells on 2 cores).
ONE_THREAD = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def single_threaded() -> None:
    """Default the BLAS/OpenMP pools to one thread; must run before numpy is imported."""
    for var in ONE_THREAD:
        os.environ.setdefault(var, "1")


def _synth(args: argparse.Namespace) -> int:
    from sts.synth_cli import run

    return run(args)


def _select_sweeps(args: argparse.Namespace) -> int:
    single_threaded()
    from sts.sweeps import SelectionParams, select_sweeps_file

    params = selection_params(args, SelectionParams)
    meta = {"specimen_id": args.specimen_id, "dataset": args.dataset, "label": args.label}
    result = select_sweeps_file(args.nwb, args.out, params, meta, _protocol(args))
    logging.getLogger("sts").info("%s: %s %s", args.specimen_id, result.status, result.reason)
    return 0


def selection_params(args: argparse.Namespace, cls):
    """SelectionParams from the basic flags plus --sweeps-json (the config's other ``sweeps:`` keys)."""
    import json

    values = {"window_s": args.window_s, "fs_hz": args.fs_hz, "plus_pa": args.plus_pa,
              "tolerance_pa": args.tolerance_pa, "dvdt_cutoff_mv_ms": args.dvdt_cutoff}  # fmt: skip
    if args.sweeps_json:
        try:
            extra = json.loads(args.sweeps_json)
            return cls.from_dict({**values, **extra})
        except (ValueError, TypeError) as err:
            raise SystemExit(f"sts {args.command}: --sweeps-json: {err}") from err
    return cls.from_dict(values)


PROTOCOL_OPTIONS = ("first_amplitude_pa", "step_pa", "onset_s", "duration_s")


def _protocol(args: argparse.Namespace):
    """The ABF step ladder from --first-amplitude-pa/--step-pa/--onset-s/--duration-s (all or none)."""
    given = {k: getattr(args, k) for k in PROTOCOL_OPTIONS if getattr(args, k) is not None}
    if not given:
        return None
    if len(given) < len(PROTOCOL_OPTIONS):
        missing = ", ".join("--" + k.replace("_", "-") for k in PROTOCOL_OPTIONS if k not in given)
        command = getattr(args, "command", None) or "select-sweeps"
        raise SystemExit(f"sts {command}: a protocol needs all four options; missing {missing}")
    from sts.recordings.abf import Protocol

    return Protocol(**given)


def add_protocol_options(p: argparse.ArgumentParser) -> None:
    """--first-amplitude-pa/--step-pa/--onset-s/--duration-s, read back by ``_protocol``."""
    g = p.add_argument_group("ABF files without a command waveform: sweep k steps to FIRST + k*STEP pA")
    g.add_argument("--first-amplitude-pa", type=float, help="amplitude of sweep 0 (pA)")
    g.add_argument("--step-pa", type=float, help="amplitude increment per sweep (pA)")
    g.add_argument("--onset-s", type=float, help="step onset from sweep start (s)")
    g.add_argument("--duration-s", type=float, help="step duration (s)")


def _scalogram(args: argparse.Namespace) -> int:
    single_threaded()
    from sts.scalogram_step import ScalogramParams, scalogram_file

    given = {"compression": args.compression} if args.compression else {}  # else the dataclass default
    try:
        params = ScalogramParams(
            wavelet=args.wavelet, fmin_hz=args.fmin_hz, fmax_hz=args.fmax_hz, n_freqs=args.n_freqs, **given
        )
    except ValueError as err:
        raise SystemExit(f"sts scalogram: {err}") from err
    scalogram_file(args.sweeps, args.out, params)
    return 0


def _manifest(args: argparse.Namespace) -> int:
    from sts.manifest import SplitParams, build_manifest_from_dir

    split = SplitParams(
        seed=args.seed,
        test_fraction=args.test_fraction,
        n_folds=args.n_folds,
        train_file=args.train_file,
        test_file=args.test_file,
    )
    build_manifest_from_dir(args.metadata, args.scalograms, args.out, split, classes=args.classes)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sts", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from sts.synth_cli import add_arguments as add_synth_arguments

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
    p.add_argument("--window-s", type=float, default=1.2, help="window length from step onset (s)")
    p.add_argument("--fs-hz", type=float, default=4000.0, help="output sampling rate (Hz)")
    p.add_argument("--plus-pa", type=float, default=40.0, help="second sweep = rheobase + this (pA)")
    p.add_argument("--tolerance-pa", type=float, default=5.0, help="tolerance on the second sweep (pA)")
    p.add_argument("--dvdt-cutoff", type=float, default=20.0, help="spike dV/dt threshold (mV/ms)")
    p.add_argument("--sweeps-json", default=None,
                   help="JSON of the other sweeps: settings (min_step_s, long_square_names, any_square_step, qc)")  # fmt: skip
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
    p.add_argument("--wavelet", default="mexh")
    p.add_argument("--fmin-hz", type=float, default=20.0)
    p.add_argument("--fmax-hz", type=float, default=200.0)
    p.add_argument("--n-freqs", type=int, default=180)
    # No choices= here: sts.scalogram_step imports numpy, which must wait for single_threaded().
    p.add_argument("--compression", default=None,
                   help="none (default), gzip (smallest) or lzf (faster); the file only, the values are the same")  # fmt: skip
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
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--n-folds", type=int, default=3)
    p.add_argument("--train-file", default=None, help="paper-format split file (id, Seq|Clamp)")
    p.add_argument("--test-file", default=None)
    p.add_argument("--classes", nargs="+", default=None, help="classes kept (default: the study's four)")
    p.set_defaults(func=_manifest)

    for module in ("sts.baseline.cli", "sts.baseline.features_cli", "sts.acquire.cli", "sts.acquire.labels_cli",
                   "sts.dl.cli"):
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
