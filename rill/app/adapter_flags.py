"""The adapter flags of `rill generate`: `--lora FILE[:scale]` (repeatable) and `--control IMG
--control-scale s`, and the model they make for the duration of one generation."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from typing import Any

__all__ = ["add_adapter_arguments", "adapted"]


def add_adapter_arguments(g: argparse.ArgumentParser) -> None:
    g.add_argument(
        "--lora", action="append", default=[], metavar="FILE[:SCALE]",
        help="merge a LoRA adapter from 'rill finetune --lora' (scale default 1); repeat for several",
    )  # fmt: skip


@contextlib.contextmanager
def adapted(model: Any, args: argparse.Namespace) -> Iterator[Any]:
    """`model` with the adapters the flags name; its own weights are restored exactly afterwards."""
    from ..inference.adapters import loras

    with contextlib.ExitStack() as stack:
        if args.lora:
            stack.enter_context(loras(model, args.lora))
            print(f"LoRA: {', '.join(args.lora)}")
        yield model
