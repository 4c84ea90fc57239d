"""Training previews: a PNG of samples from a model (an image grid, a scatter for 2-D points, curves for
1-D signals)."""

from __future__ import annotations

import os
from pathlib import Path

from ..inference.generate import generate
from .images import save_grid

__all__ = ["save_preview"]


def save_preview(model, prompts: list[str], path: str | os.PathLike, nfe: int = 16) -> Path:
    """A PNG of samples from `model` via rill.generate: an image grid (one row per prompt), a scatter for 2D
    points in [-3, 3]², or curves for 1D signals."""
    path = Path(path)
    n = max(1, 64 // len(prompts))
    x = generate(model, prompts, n=n, nfe=nfe, seed=0, device=model.device)
    path.parent.mkdir(parents=True, exist_ok=True)
    if x.ndim == 4:
        return save_grid(x, path, nrow=n, scale=max(1, 128 // x.shape[-1]))
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (256, 256), "white")
    draw = ImageDraw.Draw(img)
    flat = x.reshape(len(x), -1).float()
    if flat.shape[1] == 2:  # points
        for px, py in ((flat + 3) / 6 * 255).tolist():
            draw.point((px, 255 - py), fill="black")
    else:  # signals: the first 8 as curves
        for row in flat[:8]:
            ys = ((1 - row.clamp(-1, 1)) / 2 * 255).tolist()
            draw.line([(i * 255 / max(1, len(ys) - 1), y) for i, y in enumerate(ys)], fill="black")
    img.save(path)
    return path
