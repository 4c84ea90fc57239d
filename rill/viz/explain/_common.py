"""What every explain view shares: the View record it returns, the inputs it reads (Inputs), lazy matplotlib,
and small helpers (figure saving, 2-D grids)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "View",
    "Inputs",
    "pyplot",
    "save_figure",
    "image_model",
    "rms",
    "lattice",
    "nearest_mode_distance",
    "spread_around_modes",
    "modes_reached",
]


@dataclass
class View:
    """One explained view: what index.html shows for it."""

    name: str  # registry key, e.g. "developing"
    title: str
    text: str  # two sentences of plain explanation
    figures: list[str] = field(default_factory=list)  # file names inside the output folder
    numbers: dict[str, Any] = field(default_factory=dict)  # the numbers behind the figures (JSON-able)
    skipped: str = ""  # why the view was not drawn for this model ("" = drawn)


@dataclass
class Inputs:
    """What the views read. Only `model` and `out` are required; a view that needs something missing returns
    a skipped View naming what to pass."""

    model: Any  # a rill DiffusionModel (image, points or signals)
    out: Path
    prompt: str = ""
    seed: int = 0
    nfe: int = 16
    points: Any = None  # a 2-D points DiffusionModel (Water, Paths)
    mixture: Any = None  # rill.core.mixture.GaussianMixture: the exact (or empirical) 2-D data distribution
    checkpoints: list[tuple[int, Path]] = field(default_factory=list)  # (step, model file) of a run
    log_csv: Path | None = None  # a run's log.csv
    data: Any = None  # a Dataset of (sample, caption) for the loss per σ bucket
    device: str | torch.device = "cpu"


def lacks_points(view: View, inp: Inputs) -> bool:
    """True (and the view marked skipped) when the 2-D views have no points model or mixture to show."""
    if inp.points is None or inp.mixture is None:
        view.skipped = "needs a 2-D points model and its mixture (rill explain trains one when none is given)"
    return bool(view.skipped)


def pyplot():
    """matplotlib.pyplot with the file-only Agg backend, imported on first use (import rill stays light)."""
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError(
            "rill explain draws with matplotlib, which is missing: pip install 'rill[plot]'"
        ) from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out: Path, name: str) -> str:
    """Save a matplotlib figure as out/name (PNG, 100 dpi), close it, return the name."""
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / name, dpi=100, bbox_inches="tight")
    pyplot().close(fig)
    return name


def image_model(model: Any) -> bool:
    shape = tuple(model.config.shape)
    return len(shape) == 3 and shape[0] in (1, 3)


def rms(a: Tensor, b: Tensor | None = None) -> float:
    """Root mean square of a (or of a − b)."""
    d = a if b is None else a - b
    return float(d.double().pow(2).mean().sqrt())


def lattice(n: int, lim: float) -> tuple[Tensor, Tensor, Tensor]:
    """An n×n grid over [-lim, lim]²: (xs (n,), ys (n,), points (n·n, 2) row-major in y)."""
    xs = torch.linspace(-lim, lim, n)
    gy, gx = torch.meshgrid(xs, xs, indexing="ij")
    return xs, xs, torch.stack([gx.flatten(), gy.flatten()], 1)


def nearest_mode_distance(x: Tensor, means: Tensor) -> Tensor:
    """Distance of each point (N, 2) to its nearest mixture mean (K, 2): (N,)."""
    return torch.cdist(x.double(), means.double()).min(dim=1).values


def spread_around_modes(x: Tensor, means: Tensor) -> float:
    """RMS distance of points to the centre of their cluster (points grouped by their nearest mode), per
    coordinate: a Gaussian mode of std s gives ≈ s; points collapsed onto one spot per mode give ≈ 0."""
    label = torch.cdist(x.double(), means.double()).argmin(dim=1)
    sq = 0.0
    for k in label.unique():
        pts = x[label == k].double()
        sq += float((pts - pts.mean(0)).pow(2).sum())
    return math.sqrt(sq / x.numel()) if len(x) else math.nan


def modes_reached(x: Tensor, means: Tensor, share: float = 0.01) -> int:
    """How many modes hold at least `share` of the points (nearest-mode assignment)."""
    label = torch.cdist(x.double(), means.double()).argmin(dim=1)
    return int((torch.bincount(label, minlength=len(means)) >= share * len(x)).sum())
