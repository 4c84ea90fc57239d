"""What the `rill` commands share: the one-line user error, number types for flags, finding a model file,
and the thread choice."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

__all__ = ["UserError", "number", "choose_bundled", "check_checkpoint", "model_path", "bundled_path",
           "set_threads", "slug", "BUNDLED", "DEVICE_HELP"]  # fmt: skip

DEVICE_HELP = "cpu | cuda | mps (default: the best available)"


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


_KINDS = {"int>=1": "a positive integer", "int>=0": "a non-negative integer", "float": "a finite number"}


def number(kind: str):
    """An argparse type: "int>=1", "int>=0" or "float" (finite); the error names what was expected."""

    def parse(text: str) -> int | float:
        try:
            value = float(text) if kind == "float" else int(text)
        except ValueError:
            value = None
        lo = {"int>=1": 1, "int>=0": 0}.get(kind, -float("inf"))
        if value is None or not (lo <= value < float("inf")):
            raise argparse.ArgumentTypeError(f"expected {_KINDS[kind]}, got {text!r}")
        return value

    return parse


BUNDLED = ("digits", "shapes")
_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_DIGIT_RE = re.compile(
    r"(?<![a-z0-9])(\d|digit|digits|number|numeral|handwritten|" + "|".join(_NUMBER_WORDS) + ")"
    r"(?![a-z0-9])"
)


def choose_bundled(prompt: str) -> str:
    """'digits' when the prompt mentions a digit or a number ("7", "seven", "digit", "handwritten"), else
    'shapes'."""
    return "digits" if _DIGIT_RE.search(prompt.lower()) else "shapes"


def check_checkpoint(path: str) -> Path:
    """A readable .safetensors file, or a UserError saying what is wrong and what to do."""
    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(
            f"checkpoint {path!r} does not exist; pass a .safetensors file written by 'rill train' "
            f"or a bundled model: {', '.join(BUNDLED)}"
        )
    if p.is_dir():
        if (p / "model.safetensors").is_file():  # a training run's folder: its final model
            return check_checkpoint(str(p / "model.safetensors"))
        raise UserError(
            f"checkpoint {path!r} is a folder without a model.safetensors; pass a .safetensors file"
        )
    with open(p, "rb") as f:
        head = f.read(9)
    if p.suffix != ".safetensors" or len(head) < 9 or head[8:9] != b"{":
        raise UserError(
            f"checkpoint {path!r} is not a safetensors file; rill reads models saved by "
            "'rill train' (model.safetensors), never pickles"
        )
    return p


def model_path(spec: str) -> Path:
    """The model file of a bundled name ('digits', 'shapes'), a .safetensors path or a run's folder."""
    return bundled_path(spec) if spec in BUNDLED else check_checkpoint(spec)


def set_threads() -> int:
    """torch threads = the cores not already busy (1-min load average), unless OMP_NUM_THREADS is set.

    torch's OpenMP threads spin-wait for each other: on an oversubscribed CPU, 16 denoiser calls of the digits
    model took 24 s with 2 threads and 0.8 s with 1 (2 cores, load average 9), so never ask for busy cores.
    """
    import torch

    if not os.environ.get("OMP_NUM_THREADS"):
        cores = os.cpu_count() or 1
        try:
            free = round(cores - os.getloadavg()[0])
        except OSError:  # no load average on this platform
            free = cores
        torch.set_num_threads(max(1, min(cores, free)))
    return torch.get_num_threads()


def slug(prompt: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:48] or "unconditional"


def bundled_path(name: str) -> Path:
    """The file of a bundled model (rill/assets/NAME.safetensors), or a UserError if it is not installed."""
    from importlib import resources

    path = Path(str(resources.files("rill") / "assets" / f"{name}.safetensors"))
    if not path.is_file():
        raise UserError(
            f"the bundled model {name!r} is not installed ({path} is missing); reinstall rill "
            f"(pip install -e .) or train one: rill train --preset {name}"
        )
    return path
