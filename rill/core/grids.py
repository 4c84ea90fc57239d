"""Sampling σ grids and their registry: each returns a float64 tensor of n + 1 decreasing values ending in 0
(n steps, the last one to σ = 0).

    make_grid("karras", 10, sigma_min, sigma_max)      # any name in GRIDS, e.g. "rill" (designed knots)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from .designed_grid import rill_grid, rill_nets_grid
from .schedules import VPSchedule
from .sigma import SIGMA_MAX, SIGMA_MIN, append_zero, check_grid_args, karras_ramp, logsnr_to_sigma

__all__ = ["GRIDS", "make_grid", "karras", "exponential", "logsnr_uniform", "polyexponential", "vp_timesteps",
           "rill_grid"]  # fmt: skip


def karras(n: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, rho: float = 7.0) -> Tensor:
    """EDM Eq. 5: σ_i = (σ_max^(1/ρ) + i/(n−1)·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ, then 0."""
    check_grid_args(n, sigma_min, sigma_max)
    ramp = torch.linspace(0, 1, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64)
    return append_zero(karras_ramp(ramp, sigma_min, sigma_max, rho))


def exponential(n: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX) -> Tensor:
    """Uniform in log σ (k-diffusion's exponential grid)."""
    check_grid_args(n, sigma_min, sigma_max)
    if n == 1:
        return append_zero(torch.tensor([sigma_max], dtype=torch.float64))
    return append_zero(torch.linspace(math.log(sigma_max), math.log(sigma_min), n, dtype=torch.float64).exp())


def logsnr_uniform(n: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX) -> Tensor:
    """Uniform in λ = −2 log σ (DPM-Solver's 'logSNR' spacing). In σ-space this is the same set of points as
    `exponential`; both names exist because users know both."""
    check_grid_args(n, sigma_min, sigma_max)
    lam = torch.linspace(-2 * math.log(sigma_max), -2 * math.log(sigma_min), max(n, 2), dtype=torch.float64)
    return append_zero(logsnr_to_sigma(lam)[:n])


def polyexponential(
    n: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, rho: float = 1.0
) -> Tensor:
    """k-diffusion's polyexponential: log σ interpolated with a ramp raised to ρ (ρ = 1: exponential)."""
    check_grid_args(n, sigma_min, sigma_max)
    ramp = (
        torch.linspace(1, 0, n, dtype=torch.float64) ** rho if n > 1 else torch.ones(1, dtype=torch.float64)
    )
    return append_zero((ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min)).exp())


def vp_timesteps(n: int, schedule: VPSchedule, spacing: str = "trailing", steps_offset: int = 0) -> Tensor:
    """σ at discrete VP timesteps chosen as diffusers does (Lin et al. 2023, Table 2), then 0.

    leading: t = k·(T//n) + offset;  trailing: t = round(T − k·T/n) − 1;
    linspace: round(linspace(0, T−1, n)).
    """
    T = schedule.num_timesteps
    if int(n) != n or not 1 <= n <= T:
        raise ValueError(f"number of steps must be in [1, {T}], got {n!r}")
    if spacing == "leading":
        t = np.arange(0, n) * (T // n) + steps_offset
    elif spacing == "trailing":
        t = np.round(np.arange(T, 0, -T / n)).astype(np.int64) - 1
    elif spacing == "linspace":
        t = np.linspace(0, T - 1, n).round().astype(np.int64)
    else:
        raise ValueError(f"unknown timestep spacing {spacing!r}; choose 'leading', 'trailing' or 'linspace'")
    t = np.sort(np.clip(t, 0, T - 1))[::-1].copy()
    return append_zero(schedule.sigmas[torch.from_numpy(t)])


# name -> grid(n, sigma_min, sigma_max, **options); a new grid is one function and one entry here
GRIDS: dict[str, Callable[..., Tensor]] = {
    "karras": karras,
    "exponential": exponential,
    "logsnr": logsnr_uniform,
    "polyexponential": polyexponential,
    "rill": rill_grid,
    "rill-nets": rill_nets_grid,
}


def make_grid(name: str, n: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, **kw) -> Tensor:
    """A named σ grid of n steps ending in 0 (see GRIDS)."""
    if name not in GRIDS:
        raise ValueError(f"unknown σ grid {name!r}; choose one of {sorted(GRIDS)}")
    return GRIDS[name](n, sigma_min, sigma_max, **kw)
