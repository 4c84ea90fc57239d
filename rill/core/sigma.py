"""Noise levels σ: the default sampling range, the one σ-range check, and the VP ↔ VE conversions.

Conversions (VP ↔ VE):  ᾱ = 1 / (1 + σ²),  σ = sqrt((1 − ᾱ) / ᾱ),  log-SNR λ(σ) = log(ᾱ / (1 − ᾱ)) = −2 log σ.
A VP sample is x_vp = sqrt(ᾱ)·x, so any VP model is a VE model seen through a rescaling (EDM, Sec. 2).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .checks import check_positive_int

__all__ = [
    "SIGMA_MIN",
    "SIGMA_MAX",
    "check_sigma_range",
    "check_grid_args",
    "sigma_to_alpha_bar",
    "alpha_bar_to_sigma",
    "sigma_to_logsnr",
    "logsnr_to_sigma",
    "half_logsnr",
    "append_zero",
    "karras_ramp",
]

SIGMA_MIN = 0.002  # EDM's sampling range (Karras et al. 2022, Table 1)
SIGMA_MAX = 80.0


def check_sigma_range(sigma_min: float, sigma_max: float) -> tuple[float, float]:
    """(σ_min, σ_max) as floats if 0 < σ_min < σ_max < ∞, else a ValueError naming both."""
    lo, hi = float(sigma_min), float(sigma_max)
    if not (0 < lo < hi) or not math.isfinite(hi):
        raise ValueError(
            f"need 0 < sigma_min < sigma_max < inf, got sigma_min={sigma_min}, sigma_max={sigma_max}"
        )
    return lo, hi


def check_grid_args(n: int, sigma_min: float, sigma_max: float) -> None:
    """A σ grid of n steps over [σ_min, σ_max]: n a positive integer, the range valid."""
    check_positive_int("number of steps", n)
    check_sigma_range(sigma_min, sigma_max)


def sigma_to_alpha_bar(sigma: Tensor) -> Tensor:
    return 1.0 / (1.0 + sigma**2)


def alpha_bar_to_sigma(alpha_bar: Tensor) -> Tensor:
    return ((1.0 - alpha_bar) / alpha_bar).sqrt()


def sigma_to_logsnr(sigma: Tensor) -> Tensor:
    """λ(σ) = −2 log σ (the one λ; SNR = 1/σ²)."""
    return -2.0 * torch.log(sigma)


def half_logsnr(sigma: float) -> float:
    """DPM-Solver's λ = log(α/σ_VP) = −log σ, i.e. λ(σ)/2 (Lu et al. 2022, Sec. 3.1), on a Python float."""
    return -math.log(sigma)


def logsnr_to_sigma(logsnr: Tensor) -> Tensor:
    return torch.exp(-0.5 * logsnr)


def karras_ramp(ramp, sigma_min: float, sigma_max: float, rho: float):
    """EDM Eq. 5 at ramp ∈ [0, 1] (tensor or array): (σ_max^(1/ρ) + ramp·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ."""
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def append_zero(s: Tensor) -> Tensor:
    """A float64 σ grid with the final 0 (the clean sample) appended."""
    return torch.cat([s.to(torch.float64), s.new_zeros(1, dtype=torch.float64)])
