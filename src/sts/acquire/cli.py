"""``sts acquire ...``: listings, one cell's download or stream, the cohort table, the byte report."""

from __future__ import annotations

import argparse

from sts.settings import ACQUIRE_DEFAULTS as ACQ  # the flags' defaults


def _policy(args):
    from sts.acquire.http import RetryPolicy

    return RetryPolicy(retries=args.retries, backoff_s=args.backoff_s, timeout_s=args.timeout_s)


def _cell(args: argparse.Namespace) -> int:
    from sts.acquire.cell import Sources, acquire_cell
    from sts.prep.cli import selection_params

    src = Sources(args.allen_api or Sources.allen_api, args.dandi_api, args.dandiset, args.dandiset_version,
                  args.dandi_mode, args.block_size_kb * 1024)
    selection = selection_params(args)
    acquire_cell(args.specimen_id, args.dataset, args.out, args.report, src, _policy(args), args.asset_table,
                 selection)
    return 0


def _listing(args: argparse.Namespace) -> int:
    from sts.acquire.listings import write_allen_listing, write_dandi_listing

    acq = {**ACQ, "retries": args.retries, "backoff_s": args.backoff_s, "timeout_s": args.timeout_s}
    if args.which == "allen-cells":
        write_allen_listing({**acq, "allen_api": args.api or acq["allen_api"]}, args.out)
    else:
        write_dandi_listing({**acq, "dandi_api": args.api, "dandiset": args.dandiset,
                             "dandiset_version": args.dandiset_version}, args.out)
    return 0


def _report(args: argparse.Namespace) -> int:
    from sts.acquire.cell import write_report

    write_report(args.reports, args.out)
    return 0


def _retry_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--retries", type=int, default=ACQ["retries"], help="retries on 5xx / timeouts / broken connections")
    p.add_argument("--backoff-s", type=float, default=ACQ["backoff_s"], help="first retry wait (s), doubling")
    p.add_argument("--timeout-s", type=float, default=ACQ["timeout_s"], help="per-request timeout (s)")


def add_parser(subparsers) -> None:
    """Register ``acquire`` and its subcommands on the ``sts`` subparsers."""
    from sts.prep.cli import add_selection_options

    top = subparsers.add_parser("acquire", help="real data: API listings, per-cell download/stream, byte report")
    sub = top.add_subparsers(dest="acquire_command", required=True, metavar="STEP")

    p = sub.add_parser(
        "cell", help="fetch one cell's NWB file (Allen: whole file; DANDI: two streamed sweeps or whole)",
        description="Always writes OUT (the NWB file, or a placeholder carrying the exclusion reason for a "
        "404 or an unusable file) and REPORT (JSON: status, reason, bytes fetched, remote size). Exits "
        "non-zero only for transient failures that outlast the retries; a re-run resumes partial files.",
    )
    p.add_argument("specimen_id")
    p.add_argument("out", help="{nwb_dir}/{specimen_id}.nwb")
    p.add_argument("--report", required=True, help="per-cell JSON report")
    p.add_argument("--dataset", required=True, choices=["clamp", "seq"])
    p.add_argument("--allen-api", default=None, help="Allen Brain Map API (default: acquire.allen_api's)")
    p.add_argument("--dandi-api", default=ACQ["dandi_api"])
    p.add_argument("--dandiset", default=ACQ["dandiset"])
    p.add_argument("--dandiset-version", default=None, help="default: the most recent published version")
    p.add_argument("--dandi-mode", choices=["stream", "whole"], default=ACQ["dandi_mode"])
    p.add_argument("--block-size-kb", type=int, default=ACQ["block_size_kb"], help="range-request size when streaming")
    p.add_argument("--asset-table", default=None, help="DANDI asset listing (sts acquire dandi-assets)")
    add_selection_options(p)  # which sweeps a streamed DANDI cell fetches
    _retry_args(p)
    p.set_defaults(func=_cell)

    p = sub.add_parser("allen-cells", help="list mouse cells of the Allen Cell Types Database (CSV)")
    p.add_argument("out")
    p.add_argument("--api", default=None, help="Allen Brain Map API (default: acquire.allen_api's)")
    _retry_args(p)
    p.set_defaults(func=_listing, which="allen-cells")

    p = sub.add_parser("dandi-assets", help="list the NWB assets of a dandiset with their specimen ids (CSV)")
    p.add_argument("out")
    p.add_argument("--api", default=ACQ["dandi_api"])
    p.add_argument("--dandiset", default=ACQ["dandiset"])
    p.add_argument("--dandiset-version", default=None)
    _retry_args(p)
    p.set_defaults(func=_listing, which="dandi-assets")

    p = sub.add_parser("report", help="bytes fetched per cell, from the per-cell JSON reports (CSV)")
    p.add_argument("out")
    p.add_argument("reports", nargs="+")
    p.set_defaults(func=_report)
