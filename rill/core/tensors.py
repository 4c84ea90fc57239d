"""Small tensor helpers shared by every module (one place, never copied)."""

from __future__ import annotations

import torch
from torch import Tensor


def append_dims(x: Tensor, ndim: int) -> Tensor:
    """Append trailing singleton dims so `x` (B,) broadcasts against a (B, ...) tensor of `ndim` dims."""
    missing = ndim - x.ndim
    if missing < 0:
        raise ValueError(f"append_dims: input has {x.ndim} dims, more than the target {ndim}")
    return x.reshape(*x.shape, *((1,) * missing))


def sigma_batch(sigma: float | Tensor, x: Tensor) -> Tensor:
    """σ as a (B,) tensor in x's dtype and device: the form every denoiser receives."""
    if isinstance(sigma, Tensor) and sigma.ndim == 1 and sigma.shape[0] == x.shape[0]:
        return sigma.to(device=x.device, dtype=x.dtype)
    return torch.full((x.shape[0],), float(sigma), device=x.device, dtype=x.dtype)
