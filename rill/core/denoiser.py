"""The one contract: denoiser(x, sigma, cond) -> x0_hat, in VE coordinates x = x0 + σ·n.

Everything a sampler needs follows from it (Karras et al. 2022, "EDM", Eq. 3):
    score(x; σ)  = (D(x; σ) − x) / σ²
    dx/dσ        = (x − D(x; σ)) / σ          (probability-flow ODE)
Parametrisations (rill.core.parametrisations) turn networks into this contract; guidance
(rill.core.guidance) and editing wrappers take a denoiser and return one.
"""

from __future__ import annotations

from typing import Protocol

from torch import Tensor

from .tensors import append_dims, sigma_batch

__all__ = ["Cond", "Denoiser", "score"]

Cond = dict[str, Tensor] | None


class Denoiser(Protocol):
    def __call__(self, x: Tensor, sigma: Tensor, cond: Cond = None) -> Tensor: ...


def score(denoiser: Denoiser, x: Tensor, sigma: float | Tensor, cond: Cond = None) -> Tensor:
    """∇ log p_σ(x) = (D(x; σ) − x) / σ²  (Tweedie; EDM Eq. 3)."""
    s = sigma_batch(sigma, x)
    return (denoiser(x, s, cond) - x) / append_dims(s, x.ndim) ** 2
