"""2D toy point sets: `points:NAME`. Each item is (point (2,) float32, caption).

All sets live roughly in [-2.5, 2.5]^2 with a per-coordinate std near 1 (fixed formulas, no data-dependent
rescaling, so the generating distributions are known exactly):
    moons         two interleaved half circles (noise std 0.05 before scaling by 1.5), centred
    swissroll     a 2D spiral t·(cos t, sin t)/5, t in [1.5π, 4.5π], noise std 0.05
    rings         three concentric circles, radii 0.6, 1.2, 1.8, radial noise std 0.04
    gaussians8    8 Gaussians (std GAUSSIANS8_STD) on a circle of radius 2; caption = the component's compass
                  direction ("east", "north east", ...; y points up), see GAUSSIANS8_CENTRES
    checkerboard  uniform on the 8 "black" cells of a 4x4 board over [-2, 2]^2
Captions are the set name, except for gaussians8.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from rill.core.checks import check_positive_int

__all__ = ["PointsDataset", "POINT_SETS", "GAUSSIANS8_CENTRES", "GAUSSIANS8_NAMES", "GAUSSIANS8_STD"]

GAUSSIANS8_NAMES = (
    "east", "north east", "north", "north west", "west", "south west", "south", "south east",
)  # fmt: skip
GAUSSIANS8_CENTRES = np.array(
    [(2.0 * math.cos(k * math.pi / 4), 2.0 * math.sin(k * math.pi / 4)) for k in range(8)], dtype=np.float64
)
GAUSSIANS8_STD = 0.15


def _moons(rng: np.random.Generator, n: int) -> tuple[np.ndarray, list[str]]:
    upper = rng.random(n) < 0.5
    t = rng.uniform(0.0, math.pi, n)
    x = np.where(upper, np.cos(t), 1.0 - np.cos(t))
    y = np.where(upper, np.sin(t), 0.5 - np.sin(t))
    pts = np.stack([x, y], 1) + rng.normal(0.0, 0.05, (n, 2))
    return (pts - [0.5, 0.25]) * 1.5, ["moons"] * n


def _swissroll(rng: np.random.Generator, n: int) -> tuple[np.ndarray, list[str]]:
    t = 1.5 * math.pi * (1.0 + 2.0 * rng.random(n))
    pts = np.stack([t * np.cos(t), t * np.sin(t)], 1) / 5.0 + rng.normal(0.0, 0.05, (n, 2))
    return pts, ["swissroll"] * n


def _rings(rng: np.random.Generator, n: int) -> tuple[np.ndarray, list[str]]:
    radius = rng.choice([0.6, 1.2, 1.8], n) + rng.normal(0.0, 0.04, n)
    angle = rng.uniform(0.0, 2 * math.pi, n)
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], 1), ["rings"] * n


def _gaussians8(rng: np.random.Generator, n: int) -> tuple[np.ndarray, list[str]]:
    k = rng.integers(0, 8, n)
    pts = GAUSSIANS8_CENTRES[k] + rng.normal(0.0, GAUSSIANS8_STD, (n, 2))
    return pts, [GAUSSIANS8_NAMES[i] for i in k]


def _checkerboard(rng: np.random.Generator, n: int) -> tuple[np.ndarray, list[str]]:
    col, row = rng.integers(0, 4, n), rng.integers(0, 2, n)
    row = 2 * row + (col % 2)  # cells with (row + col) even
    pts = np.stack([col, row], 1) + rng.random((n, 2))
    return pts - 2.0, ["checkerboard"] * n


POINT_SETS: dict[str, Callable[[np.random.Generator, int], tuple[np.ndarray, list[str]]]] = {
    "moons": _moons,
    "swissroll": _swissroll,
    "rings": _rings,
    "gaussians8": _gaussians8,
    "checkerboard": _checkerboard,
}


class PointsDataset(Dataset):
    """n points of the named 2D set, generated up front (deterministic from `seed`); `.points` is (n, 2)."""

    image_shape = (2,)

    def __init__(self, name: str = "moons", n: int = 10000, seed: int = 0) -> None:
        if name not in POINT_SETS:
            raise ValueError(f"points: unknown set {name!r}; choose one of {tuple(POINT_SETS)}")
        check_positive_int("points: n", n, exact=True)
        self.name = name
        pts, self.captions = POINT_SETS[name](np.random.default_rng(seed), n)
        self.points = torch.from_numpy(np.asarray(pts, dtype=np.float32))  # (n, 2)

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, i: int) -> tuple[Tensor, str]:
        return self.points[i], self.captions[i]

    def __repr__(self) -> str:
        return f"PointsDataset({self.name!r}, n={len(self)})"
