"""1D signals: `signals`. Each item is (signal (1, L) float32 in [-1, 1], caption naming the wave type).

Kinds and captions (WAVE_CAPTIONS): a sine, a sum of 2-3 sines, a square, a sawtooth or a triangle wave, with
random frequency (1-6 cycles per signal; 1-8 for the components of a sum), phase and amplitude (0.5-0.95).
Sample i is generated on demand from an RNG seeded by (seed, i), so it does not depend on n.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from rill.core.checks import check_positive_int

__all__ = ["SignalsDataset", "WAVE_CAPTIONS", "make_signal"]

WAVE_CAPTIONS = {
    "sine": "a sine wave",
    "sines": "a sum of sine waves",
    "square": "a square wave",
    "sawtooth": "a sawtooth wave",
    "triangle": "a triangle wave",
}


def make_signal(kind: str, rng: random.Random, length: int = 64) -> np.ndarray:
    """One (length,) float32 signal of the given kind, in [-1, 1]."""
    t = np.arange(length, dtype=np.float64) / length
    amplitude = rng.uniform(0.5, 0.95)
    if kind == "sines":
        parts = rng.randint(2, 3)
        weights = [rng.uniform(0.3, 1.0) for _ in range(parts)]
        wave = sum(
            w * np.sin(2 * math.pi * (rng.uniform(1.0, 8.0) * t + rng.random())) for w in weights
        ) / sum(weights)
    else:
        cycles = rng.uniform(1.0, 6.0) * t + rng.random()  # frequency·t + phase, in cycles
        if kind == "sine":
            wave = np.sin(2 * math.pi * cycles)
        elif kind == "square":
            wave = np.where(np.sin(2 * math.pi * cycles) >= 0, 1.0, -1.0)
        elif kind == "sawtooth":
            wave = 2.0 * (cycles % 1.0) - 1.0
        elif kind == "triangle":
            wave = 1.0 - 4.0 * np.abs(cycles % 1.0 - 0.5)
        else:
            raise ValueError(f"signals: unknown wave kind {kind!r}; choose from {tuple(WAVE_CAPTIONS)}")
    return (amplitude * wave).astype(np.float32)


class SignalsDataset(Dataset):
    """n signals of shape (1, length); `.kinds[i]` the wave kind, `.captions[i]` its caption."""

    def __init__(
        self, n: int = 10000, length: int = 64, seed: int = 0, kinds: Sequence[str] = tuple(WAVE_CAPTIONS)
    ) -> None:
        bad = [k for k in kinds if k not in WAVE_CAPTIONS]
        if bad or not kinds:
            raise ValueError(
                f"signals: kinds {list(kinds)} must be a non-empty subset of {tuple(WAVE_CAPTIONS)}"
            )
        check_positive_int("signals: n", n, exact=True)
        if not isinstance(length, int) or length < 8:
            raise ValueError(f"signals: length must be an int >= 8, got {length!r}")
        self.n, self.length, self.seed, self.kind_choices = n, length, seed, tuple(kinds)
        self.image_shape = (1, length)
        self.kinds = [self._rng(i).choice(self.kind_choices) for i in range(n)]
        self.captions = [WAVE_CAPTIONS[k] for k in self.kinds]

    def _rng(self, i: int) -> random.Random:
        return random.Random(f"signals:{self.seed}:{i}")

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[Tensor, str]:
        if not -self.n <= i < self.n:
            raise IndexError(f"signals: index {i} out of range for {self.n} signals")
        i %= self.n
        rng = self._rng(i)
        kind = rng.choice(self.kind_choices)
        return torch.from_numpy(make_signal(kind, rng, self.length))[None], self.captions[i]

    def __repr__(self) -> str:
        return f"SignalsDataset(n={self.n}, length={self.length}, seed={self.seed})"
