"""The one contract: denoiser(x, sigma, cond) -> x0_hat, in VE coordinates x = x0 + σ·n.

Everything a sampler needs follows from it (Karras et al. 2022, "EDM", Eq. 3):
    score(x; σ)  = (D(x; σ) − x) / σ²
    dx/dσ        = (x − D(x; σ)) / σ          (probability-flow ODE)
This module holds the contract, EDM preconditioning, adapters that turn ε-, v- and x0-prediction networks
trained on a discrete VP schedule into the contract, and classifier-free guidance as a wrapper.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor, nn

from .schedules import VPSchedule
from .utils import append_dims, sigma_batch

Cond = dict[str, Tensor] | None


class Denoiser(Protocol):
    def __call__(self, x: Tensor, sigma: Tensor, cond: Cond = None) -> Tensor: ...


def score(denoiser: Denoiser, x: Tensor, sigma: float | Tensor, cond: Cond = None) -> Tensor:
    """∇ log p_σ(x) = (D(x; σ) − x) / σ²  (Tweedie; EDM Eq. 3)."""
    s = sigma_batch(sigma, x)
    return (denoiser(x, s, cond) - x) / append_dims(s, x.ndim) ** 2


# --- EDM preconditioning --------------------------------------------------------------------------
class EDMPrecond(nn.Module):
    """D(x; σ) = c_skip(σ)·x + c_out(σ)·F(c_in(σ)·x, c_noise(σ))   (EDM Eq. 7, Table 1).

    dtype policy: the four coefficients are computed in float32 (float64 if x is float64); the network runs in
    its own dtype (or under autocast); the output is returned in x's dtype.
    """

    def __init__(self, net: nn.Module, sigma_data: float = 0.5):
        super().__init__()
        self.net = net
        self.sigma_data = float(sigma_data)

    def coefficients(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        sd = self.sigma_data
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
        c_in = 1 / (sigma**2 + sd**2).sqrt()
        c_noise = sigma.log() / 4
        return c_skip, c_out, c_in, c_noise

    def forward(self, x: Tensor, sigma: Tensor, cond: Cond = None) -> Tensor:
        work = torch.float64 if x.dtype == torch.float64 else torch.float32
        sigma = sigma_batch(sigma, x).to(work)
        c_skip, c_out, c_in, c_noise = (append_dims(c, x.ndim) for c in self.coefficients(sigma))
        net_dtype = next(self.net.parameters()).dtype
        f = self.net((c_in * x.to(work)).to(net_dtype), c_noise.flatten(), cond)
        return (c_skip * x.to(work) + c_out * f.to(work)).to(x.dtype)

    def loss_weight(self, sigma: Tensor) -> Tensor:
        """λ(σ) = 1 / c_out² so the effective target of F has unit variance (EDM Eq. 8, Table 1)."""
        return (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2


# --- adapters for networks trained on a discrete VP schedule --------------------------------------
PREDICTIONS = ("epsilon", "v_prediction", "sample")


class VPAdapter(nn.Module):
    """Wrap model(x_vp, t, cond) trained on a discrete VP schedule into the σ contract.

    x_vp = sqrt(ᾱ)·x = x / sqrt(1 + σ²);  t = schedule.sigma_to_t(σ) (fractional, log-σ interpolation).
      epsilon:       x0 = x − σ·ε                               (x = x0 + σ·ε)
      v_prediction:  x0 = sqrt(ᾱ)·x_vp − sqrt(1 − ᾱ)·v          (Salimans & Ho 2022, Sec. 4)
      sample:        x0 = model output
    `discrete_t=True` rounds t to the nearest integer timestep (for models that only accept integers).
    """

    def __init__(
        self, model: Callable, schedule: VPSchedule, prediction: str = "epsilon", discrete_t: bool = False
    ):
        super().__init__()
        if prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction type {prediction!r}; choose one of {PREDICTIONS}")
        self.model, self.schedule, self.prediction, self.discrete_t = model, schedule, prediction, discrete_t

    def forward(self, x: Tensor, sigma: Tensor, cond: Cond = None) -> Tensor:
        sigma = sigma_batch(sigma, x)
        s = append_dims(sigma, x.ndim)
        alpha = 1 / (1 + s**2).sqrt()  # sqrt(ᾱ)
        x_vp = x * alpha
        t = self.schedule.sigma_to_t(sigma)
        if self.discrete_t:
            t = t.round()
        out = self.model(x_vp, t, cond).to(x.dtype)
        if self.prediction == "epsilon":
            return x - s * out
        if self.prediction == "v_prediction":
            return alpha * x_vp - (s * alpha) * out  # sqrt(1 − ᾱ) = σ·sqrt(ᾱ)
        return out


# --- classifier-free guidance ---------------------------------------------------------------------
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
