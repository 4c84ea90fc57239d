"""Datasets: torch Datasets of (sample, caption); images are float (C, H, W) in [-1, 1].

    load_dataset("digits", split="train")          sklearn's 1797 real 8x8 digits, (1, 8, 8)
    load_dataset("shapes", image_size=32)           procedural coloured shapes, (3, 32, 32), held-out pairs
    load_dataset("emoji", split="train")            Noto Color Emoji with CLDR captions, (3, 32, 32), held out
    load_dataset("folder:PATH", image_size=64)      images + metadata.jsonl / .txt captions
    load_dataset("points:moons")                    2D toy sets, (2,)
    load_dataset("signals", length=64)              1D waves, (1, 64)

Every dataset exposes `.captions` (list[str]) and `.image_shape` (the shape of one sample).
scikit-learn and PIL are imported lazily, when a dataset needs them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils.data import Dataset

from rill.data.digits import DigitsDataset
from rill.data.emoji import EmojiDataset
from rill.data.folder import FolderDataset
from rill.data.points import POINT_SETS, PointsDataset
from rill.data.shapes import ShapesDataset
from rill.data.signals import SignalsDataset

__all__ = [
    "load_dataset", "DATASETS", "DATASET_SPECS", "DigitsDataset", "ShapesDataset", "EmojiDataset",
    "FolderDataset",
    "PointsDataset",
    "SignalsDataset",
]  # fmt: skip

# kind -> (constructor, takes an argument after "kind:"); a new dataset is one file and one entry here
DATASETS: dict[str, tuple[Callable[..., Dataset], bool]] = {
    "digits": (DigitsDataset, False),
    "shapes": (ShapesDataset, False),
    "emoji": (EmojiDataset, False),
    "signals": (SignalsDataset, False),
    "folder": (FolderDataset, True),
    "points": (PointsDataset, True),
}
DATASET_SPECS = (
    "digits",
    "shapes",
    "emoji",
    "folder:PATH",
    *(f"points:{name}" for name in POINT_SETS),
    "signals",
)


def load_dataset(spec: str, **kw: Any) -> Dataset:
    """The dataset named by `spec` (see the module docstring); keyword arguments go to its constructor."""
    if not isinstance(spec, str):
        raise TypeError(f"dataset spec must be a string like 'digits' or 'folder:PATH', got {spec!r}")
    kind, sep, arg = spec.partition(":")
    if kind in DATASETS:
        make, takes_arg = DATASETS[kind]
        if takes_arg and arg:
            return make(arg, **kw)
        if not takes_arg and not sep:
            return make(**kw)
    raise ValueError(f"unknown dataset spec {spec!r}; valid specs: {', '.join(DATASET_SPECS)}")
