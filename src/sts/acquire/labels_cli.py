"""``sts labels ...``: classes from metadata tables (the study's rules in ``sts.acquire.labels``, other
class schemes in ``sts.acquire.schemes``)."""

from __future__ import annotations

import argparse


def _patchseq(args: argparse.Namespace) -> int:
    from sts.acquire.labels import PatchseqColumns, write_patchseq_labels
    from sts.acquire.schemes import SchemeError, get_scheme

    dendrite = None if args.dendrite_column.lower() == "none" else args.dendrite_column
    columns = PatchseqColumns(specimen_id=args.id_column, ttype=args.ttype_column, dendrite=dendrite)
    try:
        scheme = get_scheme(args.scheme)
    except SchemeError as err:
        raise SystemExit(f"sts labels patchseq: {err}") from None
    write_patchseq_labels(args.metadata, args.out, columns, scheme)
    return 0


def add_parser(subparsers) -> None:
    """Register ``labels`` and its subcommands on the ``sts`` subparsers."""
    from sts.acquire.labels import PatchseqColumns  # light import: the defaults' one home
    from sts.settings import LabelSettings

    default_scheme = LabelSettings().scheme

    top = subparsers.add_parser("labels", help="classes from metadata (CSV specimen_id,label,reason)")
    sub = top.add_subparsers(dest="labels_command", required=True, metavar="SOURCE")
    default = PatchseqColumns()
    p = sub.add_parser(
        "patchseq", help="labels of the patch-seq (DANDI 000020) cells from their T-type and dendrite type",
        description="Write 'specimen_id,label,reason' for every cell of a patch-seq metadata CSV (default: the "
        "Gouwens 2020 mouse metadata shipped with ipfx). T-type subclass: Pvalb, Sst; Vip, Lamp5, Sncg, "
        "Serpinf1 -> Vip/Lamp5; excitatory types -> Excitatory. No T-type but spiny or sparsely spiny "
        "dendrites -> Excitatory. Anything else -> Unsure, with its reason. Other class schemes: --scheme.",
    )
    p.add_argument("metadata", nargs="?", default=None,
                   help="metadata CSV (default: ipfx/data_release/20200625_patchseq_metadata_mouse.csv)")
    p.add_argument("out", help="output CSV (specimen_id,label,reason)")
    p.add_argument("--id-column", default=default.specimen_id, help="specimen id column (default: %(default)s)")
    p.add_argument("--ttype-column", default=default.ttype, help="T-type column (default: %(default)s)")
    p.add_argument("--dendrite-column", default=default.dendrite,
                   help="dendrite type column, 'none' for no dendrite rule (default: %(default)s)")
    p.add_argument("--scheme", default=default_scheme,
                   help="class scheme: study, subclass, inhibitory or a .yaml map of T-type prefixes to classes "
                   "(sts.acquire.schemes; default: %(default)s)")  # fmt: skip
    p.set_defaults(func=_patchseq)
