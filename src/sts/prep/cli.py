"""``sts select-sweeps | scalogram``: the per-cell preparation commands, and the settings flags they share
with the other stages' commands (defaults from ``sts.settings``)."""

from __future__ import annotations

import argparse
import logging

from sts.io.threads import single_threaded
from sts.prep.protocol_args import add_cell_arguments, add_protocol_options, protocol_from_args
from sts.settings import ScalogramParams, SelectionParams, default


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


def _select_sweeps(args: argparse.Namespace) -> int:
    single_threaded()
    from sts.prep.sweeps import select_sweeps_file

    params = selection_params(args)
    meta = {"specimen_id": args.specimen_id, "dataset": args.dataset, "label": args.label}
    result = select_sweeps_file(args.nwb, args.out, params, meta, protocol_from_args(args))
    logging.getLogger("sts").info("%s: %s %s", args.specimen_id, result.status, result.reason)
    return 0


def _scalogram(args: argparse.Namespace) -> int:
    single_threaded()
    from sts.prep.scalogram_file import scalogram_file

    scalogram_file(args.sweeps, args.out, settings_from_args(args, ScalogramParams, SCALOGRAM_FLAGS))
    return 0


def add_parser(sub) -> None:
    """Register ``select-sweeps`` and ``scalogram`` on the ``sts`` subparsers."""
    p = sub.add_parser(
        "select-sweeps",
        help="pick the rheobase and rheobase+40 pA long squares of one cell, resample to 4 kHz",
        description="Detect spikes (dV/dt threshold), choose the rheobase long square and the one "
        "at rheobase + PLUS pA, cut a window from step onset, resample to FS. A cell that cannot be "
        "used still gets OUT.h5, with status 'excluded' and the reason.",
    )
    add_cell_arguments(p, "output HDF5 (dataset traces_mv, shape (2, n))")
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
