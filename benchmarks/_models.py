"""What the model benchmarks share: `--checkpoint NAME=PATH` to evaluate a file instead of a bundled model."""

from __future__ import annotations

import argparse


def add_checkpoint_flag(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="evaluate this file instead of the bundled model NAME (repeatable)",
    )


def checkpoint_paths(args: argparse.Namespace) -> dict[str, str]:
    """{NAME: PATH} from the --checkpoint flags (a clear error for a malformed one)."""
    out = {}
    for item in args.checkpoint:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--checkpoint expects NAME=PATH, got {item!r}")
        out[name] = path
    return out
