"""A cell's recording on the command line: its file and identity (``select-sweeps``,
``ep-features``) and the ABF step ladder (those and ``predict``).

Imports nothing heavy at module level: the per-cell commands import numpy only after
``sts.io.threads.single_threaded``.
"""

from __future__ import annotations

import argparse


def add_cell_arguments(p: argparse.ArgumentParser, out_help: str) -> None:
    """A per-cell command's recording, output and the cell's identity (kept with the output)."""
    p.add_argument("nwb", help="the cell's recording (Allen NWB v1, MIES NWB 2, generic NWB 2 or ABF)")
    p.add_argument("out", help=out_help)
    p.add_argument("--specimen-id", required=True)
    p.add_argument("--dataset", default="", help="dataset tag kept with the output (clamp, seq, ...)")
    p.add_argument("--label", default="", help="cell class kept with the output")


def add_protocol_options(p: argparse.ArgumentParser) -> None:
    """--first-amplitude-pa/--step-pa/--onset-s/--duration-s, read back by ``protocol_from_args``."""
    g = p.add_argument_group("ABF files without a command waveform: sweep k steps to FIRST + k*STEP pA")
    g.add_argument("--first-amplitude-pa", type=float, help="amplitude of sweep 0 (pA)")
    g.add_argument("--step-pa", type=float, help="amplitude increment per sweep (pA)")
    g.add_argument("--onset-s", type=float, help="step onset from sweep start (s)")
    g.add_argument("--duration-s", type=float, help="step duration (s)")


def protocol_from_args(args: argparse.Namespace):
    """The ``sts.recordings.abf.Protocol`` of the four options, or None when none is given
    (SystemExit naming the missing ones when only some are)."""
    from sts.recordings.abf import Protocol
    from sts.settings import PROTOCOL_FIELDS

    given = {k: getattr(args, k) for k in PROTOCOL_FIELDS if getattr(args, k) is not None}
    if not given:
        return None
    if len(given) < len(PROTOCOL_FIELDS):
        missing = ", ".join("--" + k.replace("_", "-") for k in PROTOCOL_FIELDS if k not in given)
        command = getattr(args, "command", None) or "select-sweeps"
        raise SystemExit(f"sts {command}: a protocol needs all four options; missing {missing}")
    return Protocol(**given)
