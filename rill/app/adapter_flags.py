"""The adapter flags of `rill generate`: `--lora FILE[:scale]` (repeatable) and `--control IMG
--control-scale s`, and the model they make for the duration of one generation."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from typing import Any

from .common import UserError, number

__all__ = ["add_adapter_arguments", "adapted"]


def add_adapter_arguments(g: argparse.ArgumentParser) -> None:
    g.add_argument(
        "--lora", action="append", default=[], metavar="FILE[:SCALE]",
        help="merge a LoRA adapter from 'rill finetune --lora' (scale default 1); repeat for several",
    )  # fmt: skip
    g.add_argument(
        "--control", metavar="IMG", help="control image (PNG at the model's size, white = object / edge) for "
        "a control branch from 'rill finetune --control' (--controlnet FILE, or a group in the model file)",
    )  # fmt: skip
    g.add_argument(
        "--controlnet", metavar="FILE", help="the control branch file (.safetensors) for --control"
    )
    g.add_argument(
        "--control-scale", type=number("float"), default=1.0, help="strength of the control; 0 = the base "
        "model's images exactly (default 1)",
    )  # fmt: skip


@contextlib.contextmanager
def adapted(model: Any, args: argparse.Namespace) -> Iterator[Any]:
    """`model` with the adapters the flags name; its own weights are restored exactly afterwards."""
    from ..inference.adapters import loras

    with contextlib.ExitStack() as stack:
        if args.lora:
            stack.enter_context(loras(model, args.lora))
            print(f"LoRA: {', '.join(args.lora)}")
        if args.control is None:
            if args.controlnet:
                raise UserError("--controlnet FILE needs --control IMG (the control image to follow)")
            yield model
            return
        from ..inference.adapters import controlled

        branch = args.controlnet or _model_group(model)
        print(
            f"control: {args.control} (scale {args.control_scale}, branch {getattr(branch, 'name', branch)})"
        )
        yield controlled(model, branch, args.control, args.control_scale)


def _model_group(model: Any) -> Any:
    groups = [g for g in model.groups.values() if g.kind == "controlnet"]
    if len(groups) != 1:
        raise UserError(
            f"--control IMG needs a control branch: pass --controlnet FILE (from 'rill finetune --control'); "
            f"the model file holds {len(groups)} control group(s)"
        )
    return groups[0]
