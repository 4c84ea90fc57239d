"""Exact references on Gaussian mixtures, shared by benchmarks/samplers.py and benchmarks/design_grid.py.

The end convention (the same for rill and diffusers): integrate the probability-flow ODE from σ_max down to σ_min,
then apply the final denoise D(x; σ_min) — what every sampler whose grid ends [σ_min, 0] does with its last call.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.integrate import solve_ivp
from torch import Tensor


def exact_endpoint(denoiser, x_start: Tensor, sigma_max: float = 80.0, sigma_min: float = 0.002,
                   rtol: float = 1e-9, atol: float = 1e-9) -> Tensor:
    """D(x(σ_min); σ_min) where x(σ) solves the PF-ODE from x(σ_max) = x_start (float64).

    Integrated in s = log σ, where the ODE dx/dσ = (x − D(x; σ))/σ (EDM Eq. 3) reads dx/ds = x − D(x; e^s):
    its Jacobian has eigenvalues in [0, 1] for a Gaussian mixture, so an explicit DOP853 is accurate and cheap.
    """
    shape = x_start.shape
    x_start = x_start.to(torch.float64)

    def rhs(s: float, y: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(y).view(shape)
        return (x - denoiser(x, math.exp(s))).reshape(-1).numpy()

    sol = solve_ivp(rhs, (math.log(sigma_max), math.log(sigma_min)), x_start.reshape(-1).numpy(),
                    method="DOP853", rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"reference PF-ODE solve failed: {sol.message}")
    x_end = torch.from_numpy(sol.y[:, -1].copy()).view(shape)
    return denoiser(x_end, sigma_min)


def rms_error(x: Tensor, ref: Tensor) -> float:
    """Root-mean-square difference per coordinate, sqrt(mean((x − ref)²))."""
    return float(((x.to(torch.float64) - ref) ** 2).mean().sqrt())


def sliced_wasserstein(a: Tensor, b: Tensor, projections: int = 256, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance between two equal-size sample sets (B, d): the RMS over random unit
    directions of the 1-D W2 between the projected samples (sorted-sample matching)."""
    if a.shape != b.shape:
        raise ValueError(f"sample sets must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(a.shape[1], projections, generator=g, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    pa = (a.to(torch.float64) @ dirs).sort(dim=0).values
    pb = (b.to(torch.float64) @ dirs).sort(dim=0).values
    return float(((pa - pb) ** 2).mean().sqrt())
