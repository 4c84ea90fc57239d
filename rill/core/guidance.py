"""Classifier-free guidance as a denoiser wrapper (Ho & Salimans 2022), with a guidance interval and CFG
rescale."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .denoiser import Cond, Denoiser
from .tensors import append_dims, sigma_batch

__all__ = ["CFGDenoiser", "cat_cond"]


def _expand_cond(cond: dict[str, Tensor], batch: int) -> dict[str, Tensor]:
    out = {}
    for k, v in cond.items():
        if v.shape[0] == batch:
            out[k] = v
        elif v.shape[0] == 1:
            out[k] = v.expand(batch, *v.shape[1:])
        else:
            raise ValueError(f"conditioning {k!r} has batch {v.shape[0]}; expected 1 or {batch}")
    return out


def cat_cond(a: dict[str, Tensor], b: dict[str, Tensor], batch: int) -> dict[str, Tensor]:
    """Stack two conditionings along the batch (both broadcast to `batch` first); keys must match."""
    if a.keys() != b.keys():
        raise ValueError(f"conditional and unconditional inputs differ in keys: {sorted(a)} vs {sorted(b)}")
    a, b = _expand_cond(a, batch), _expand_cond(b, batch)
    return {k: torch.cat([a[k], b[k]]) for k in a}


class CFGDenoiser(nn.Module):
    """Classifier-free guidance (Ho & Salimans 2022, Eq. 6) as a denoiser:

        D_cfg = D(x; σ, ∅) + w·(D(x; σ, c) − D(x; σ, ∅))

    `uncond` is the unconditional (or negative-prompt) conditioning, batch 1 or B. Guidance applies only for σ
    inside `interval` (Kynkäänniemi et al. 2024); outside it the conditional prediction is returned.
    `rescale` φ (Lin et al. 2023, Eq. 15–16) rescales D_cfg to the per-sample std of D(x; σ, c) and mixes:
    φ·rescaled + (1 − φ)·D_cfg — applied here in x0-space.
    """

    def __init__(
        self,
        denoiser: Denoiser,
        uncond: dict[str, Tensor] | None,
        scale: float = 1.0,
        interval: tuple[float, float] = (0.0, math.inf),
        rescale: float = 0.0,
    ):
        super().__init__()
        if not math.isfinite(scale):
            raise ValueError(f"guidance scale must be finite, got {scale}")
        if not 0.0 <= rescale <= 1.0:
            raise ValueError(f"CFG rescale must be in [0, 1], got {rescale}")
        lo, hi = interval
        if not 0 <= lo < hi:
            raise ValueError(f"guidance interval must satisfy 0 <= lo < hi, got {interval}")
        self.denoiser, self.uncond, self.scale = denoiser, uncond, float(scale)
        self.interval, self.rescale = (float(lo), float(hi)), float(rescale)

    def forward(self, x: Tensor, sigma: Tensor, cond: Cond = None) -> Tensor:
        sigma = sigma_batch(sigma, x)
        lo, hi = self.interval
        active = (sigma >= lo) & (sigma <= hi)
        if self.scale == 1.0 or cond is None or self.uncond is None or not bool(active.any()):
            return self.denoiser(x, sigma, cond)
        b = x.shape[0]
        both = self.denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), cat_cond(cond, self.uncond, b))
        d_c, d_u = both[:b], both[b:]
        out = d_u + self.scale * (d_c - d_u)
        if self.rescale > 0:
            dims = tuple(range(1, x.ndim))
            ratio = d_c.std(dim=dims, keepdim=True) / out.std(dim=dims, keepdim=True).clamp(min=1e-12)
            out = self.rescale * (out * ratio) + (1 - self.rescale) * out
        return torch.where(append_dims(active, x.ndim), out, d_c)
