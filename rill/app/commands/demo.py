"""`rill demo`: digit, shape and emoji grids and a denoising strip from the bundled models (rill.app.demo)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..common import DEVICE_HELP, check_out_dir, number, set_threads

HELP = "digit, shape and emoji grids and a denoising strip from the bundled models"


def add_arguments(d: argparse.ArgumentParser) -> None:
    pos, seed = number("int>=1"), number("int>=0")
    d.add_argument("--out", default="rill-demo", help="output folder (default ./rill-demo)")
    d.add_argument("--nfe", type=pos, default=16, help="denoiser evaluations per image (default 16)")
    d.add_argument("--seed", type=seed, default=0, help="seed of the first column (default 0)")
    d.add_argument("--columns", type=pos, default=6, help="samples per prompt (default 6)")
    d.add_argument("--device", help=DEVICE_HELP)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    check_out_dir(args.out)  # before any work: a file or an unwritable folder is a one-line error
    print(f"torch threads: {set_threads()}")
    run_demo(Path(args.out), nfe=args.nfe, seed=args.seed, device=args.device, columns=args.columns)
    return 0
