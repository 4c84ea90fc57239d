"""The denoising strip: x and the model's x̂0 = D(x; σ) at every σ the sampler visits (coarse to fine).

strip = denoising_strip(model, "a red circle", nfe=12)
strip.save("strip.png", scale=4); strip.save_gif("denoise.gif", scale=4)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..inference.generate import generate
from .images import make_grid, save_gif, to_pil

__all__ = ["DenoisingStrip", "denoising_strip"]


@dataclass
class DenoisingStrip:
    """What the sampler saw at each step: σ_i, the current sample x_i and the model's x̂0 = D(x_i; σ_i).

    `xs` are shown in VP scale, x / sqrt(1 + σ²), so the noisy samples stay in a viewable range; `final` is
    the sample the sampler returned (σ = 0).
    """

    sigmas: list[float]
    xs: Tensor  # (S, C, H, W) x_i / sqrt(1 + σ_i²)
    x0s: Tensor  # (S, C, H, W) x̂0 at step i
    final: Tensor  # (C, H, W)
    prompt: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def picture(self, columns: int | None = 8) -> Tensor:
        """A 2-row (C, H', W') image: top row x over σ, bottom row x̂0 over σ; `columns` evenly spaced steps
        (always the first and the last), plus a final column with the returned sample in both rows."""
        idx = _spread(len(self.sigmas), columns)
        top = torch.cat([self.xs[idx], self.final[None]])
        bottom = torch.cat([self.x0s[idx], self.final[None]])
        return make_grid(torch.cat([top, bottom]), nrow=len(idx) + 1)

    def picked_sigmas(self, columns: int | None = 8) -> list[float]:
        return [self.sigmas[i] for i in _spread(len(self.sigmas), columns)] + [0.0]

    def save(self, path: str | Path, scale: int = 4, columns: int | None = 8, labels: bool = True) -> Path:
        """Save the strip as a PNG; with `labels`, σ is written above each column (Pillow's default font)."""
        pil = to_pil(self.picture(columns), scale).convert("RGB")
        if labels:
            pil = _label_columns(pil, self.picked_sigmas(columns), self.xs.shape[-1] * scale, scale)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        pil.save(path)
        return path

    def save_gif(self, path: str | Path, scale: int = 4, duration_ms: int = 150) -> Path:
        """An animation: each frame shows x (left) next to x̂0 (right) at one step, ending on the sample."""
        frames = [make_grid(torch.stack([x, x0]), nrow=2) for x, x0 in zip(self.xs, self.x0s)]
        frames.append(make_grid(torch.stack([self.final, self.final]), nrow=2))
        return save_gif(frames, path, scale=scale, duration_ms=duration_ms)


def _spread(n: int, columns: int | None) -> list[int]:
    if columns is None or columns >= n:
        return list(range(n))
    if columns < 2:
        raise ValueError(f"columns must be >= 2 (first and last step), got {columns}")
    return sorted({round(i * (n - 1) / (columns - 1)) for i in range(columns)})


def _label_columns(pil, sigmas: list[float], cell: int, scale: int):
    from PIL import Image, ImageDraw

    band = 14
    out = Image.new("RGB", (pil.width, pil.height + band), "white")
    out.paste(pil, (0, band))
    draw = ImageDraw.Draw(out)
    for k, s in enumerate(sigmas):
        x = scale + k * (cell + scale)  # padding of 1 pixel, upscaled
        draw.text((x + 1, 1), f"sigma {s:.3g}" if s else "output", fill=(0, 0, 0))  # ASCII: any font has it
    return out


def denoising_strip(
    model,
    prompt: str,
    *,
    negative: str = "",
    nfe: int = 16,
    sampler: str = "auto",
    guidance: float | None = None,
    seed: int = 0,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    device: str | torch.device | None = None,
) -> DenoisingStrip:
    """Generate one image for `prompt` and record x and x̂0 at every sampler step (via the sampler callback).

    x̂0 develops coarse to fine: at large σ it is a blurry average of everything that fits the prompt, and the
    detail appears as σ falls.
    """
    sigmas: list[float] = []
    xs: list[Tensor] = []
    x0s: list[Tensor] = []

    def record(step: int, x: Tensor, sigma: float, x0_hat: Tensor) -> None:
        sigmas.append(float(sigma))
        xs.append((x[0] / math.sqrt(1 + float(sigma) ** 2)).detach().float().cpu())
        x0s.append(x0_hat[0].detach().float().cpu())

    final = generate(
        model,
        prompt,
        negative=negative,
        n=1,
        nfe=nfe,
        sampler=sampler,
        guidance=guidance,
        seed=seed,
        sigma_min=sigma_min,
        sigma_max=sigma_max,
        callback=record,
        device=device,
    )
    if not sigmas:
        raise RuntimeError("the sampler never called back; cannot draw a denoising strip")
    meta = {"nfe": nfe, "sampler": sampler, "guidance": guidance, "seed": seed, "negative": negative}
    return DenoisingStrip(sigmas, torch.stack(xs), torch.stack(x0s), final[0].cpu(), prompt, meta)
