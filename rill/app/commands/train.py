"""`rill train ...`: forwarded to rill.train.cli (its own parser: `rill train --help`)."""

from __future__ import annotations

import argparse

HELP = "train a model ('rill train --help' lists the options)"
FORWARD = True  # the rest of the command line belongs to rill.train.cli's parser


def run(args: argparse.Namespace) -> int:
    from ...train.cli import main

    return int(main(args.forward) or 0)
