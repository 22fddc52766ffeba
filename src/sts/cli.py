"""The `sts` command line: one subcommand per pipeline step.

Subcommand handlers import their modules lazily, so that a per-cell job run by
Snakemake pays only for what it uses (``scipy.signal`` or ``pynwb`` alone cost
~1 s of start-up each on a small machine).
"""

from __future__ import annotations

import argparse
import logging
import sys

# Each package registers its own commands (``add_parser``), in the pipeline's order; their handlers import
# lazily, so the parser itself needs the standard library and sts.settings only.
COMMANDS = (
    "sts.synth.cli", "sts.acquire.cli", "sts.acquire.labels_cli", "sts.prep.cli", "sts.cohort.cli",
    "sts.baseline.feature_files", "sts.baseline.cli", "sts.cnn.cli", "sts.serve.cli",
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sts", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        __import__(module, fromlist=["add_parser"]).add_parser(sub)
    return parser


def main(argv: list[str] | None = None, warm: bool | None = None) -> int:
    """Run one command. From the command line (``argv`` None), per-cell commands go through
    the warm-start server (``sts.warm.client``) unless ``STS_WARM=0``; ``warm`` forces either way."""
    if warm is None:
        warm = argv is None
    argv = sys.argv[1:] if argv is None else argv
    if warm:
        from sts.warm import client as warm_start

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
    from sts.warm.client import WARM_SERVER_FLAG

    if sys.argv[1:2] == [WARM_SERVER_FLAG] and len(sys.argv) == 3:  # started by sts.warm.client, not by users
        from sts.warm.server import main as serve_warm

        sys.exit(serve_warm(sys.argv[2], main))
    sys.exit(main())
