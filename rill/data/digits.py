"""scikit-learn's 1797 real 8x8 handwritten digits, with varied captions (numeral and word)."""

from __future__ import annotations

import functools
import random

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from rill.conditioning.labels import NUMBER_WORDS

__all__ = ["DigitsDataset", "CAPTION_TEMPLATES", "NUMBER_WORDS", "digit_caption", "SPLITS"]

# {n} = numeral, {w} = number word; one is chosen per image, deterministically from (seed, index).
CAPTION_TEMPLATES = (
    "a handwritten digit {n}",
    "the number {w}",
    "a {n}",
    "digit {w}, handwritten",
    "the digit {n}",
    "a handwritten {w}",
    "number {n}",
    "{w}",
    "a drawing of the number {w}",
    "handwritten {n}",
)
SPLITS = ("train", "heldout", "all")


@functools.lru_cache(maxsize=1)
def _load() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ImportError("the digits dataset needs scikit-learn: pip install rill[data]") from e
    bunch = load_digits()
    return bunch.images.astype(np.float32), bunch.target.astype(np.int64)  # (1797, 8, 8) in 0..16, (1797,)


def digit_caption(label: int, index: int, seed: int = 0) -> str:
    """The caption of image `index` (deterministic from (seed, index))."""
    template = random.Random(f"digits:{seed}:{index}").choice(CAPTION_TEMPLATES)
    return template.format(n=label, w=NUMBER_WORDS[label])


def heldout_mask(labels: np.ndarray, fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """Stratified, deterministic held-out mask: round(fraction·n_c) images of each class c."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        mask[rng.permutation(idx)[: int(round(fraction * len(idx)))]] = True
    return mask


class DigitsDataset(Dataset):
    """(image (1, 8, 8) float in [-1, 1], caption). Pixel values 0..16 map linearly to [-1, 1].

    split: "all" (1797), "train" (~80%) or "heldout" (~20%, stratified by class, fixed by `seed`; keep it
    for classifier evaluation). `.indices` are positions in sklearn's array, `.labels` the classes (int64).
    """

    image_shape = (1, 8, 8)
    num_classes = 10

    def __init__(self, split: str = "all", seed: int = 0, heldout_fraction: float = 0.2) -> None:
        if split not in SPLITS:
            raise ValueError(f"digits: split={split!r} is not one of {SPLITS}")
        if not 0.0 < heldout_fraction < 1.0:
            raise ValueError(f"digits: heldout_fraction must be in (0, 1), got {heldout_fraction}")
        images, labels = _load()
        held = heldout_mask(labels, heldout_fraction, seed)
        keep = {"all": np.ones_like(held), "train": ~held, "heldout": held}[split]
        self.split = split
        self.indices = np.flatnonzero(keep)
        self.labels = labels[self.indices]
        self.images = torch.from_numpy(images[self.indices] / 8.0 - 1.0).unsqueeze(1)  # (N, 1, 8, 8)
        self.captions = [digit_caption(int(labels[i]), int(i), seed) for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Tensor, str]:
        return self.images[i], self.captions[i]

    def __repr__(self) -> str:
        return f"DigitsDataset(split={self.split!r}, n={len(self)})"
