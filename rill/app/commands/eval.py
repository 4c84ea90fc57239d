"""`rill eval ...`: forwarded to rill.eval.cli (its own parser: `rill eval --help`)."""

from __future__ import annotations

import argparse

HELP = "evaluate a model ('rill eval --help' lists the options)"
FORWARD = True  # the rest of the command line belongs to rill.eval.cli's parser


def run(args: argparse.Namespace) -> int:
    from ...eval.cli import main_eval

    return int(main_eval(args.forward) or 0)
