"""rill's designed σ grid: step locations optimised for few-step sampling (make_grid("rill", n, …)).

A grid of n steps has n nonzero noise levels σ_0 = σ_max > σ_1 > … > σ_{n−1}, then 0. They are stored as knots
in normalised log σ,
    u_k = log(σ_max / σ_k) / log(σ_max / σ_min) ∈ [0, 1]        (u_0 = 0),
so the same table serves any σ range. The knots were found by benchmarks/design_grid.py (regenerate with
`python -m benchmarks.design_grid --steps …`): for each n they minimise the RMS endpoint error of DESIGNED_FOR
against the exact probability-flow ODE solution, pooled over a training family of random Gaussian mixtures
that the sampler benchmark never uses; the derivation is in docs/samplers.md. The last knot may stop short of
σ_min (u < 1) where that lowers the error: the final call then denoises from a larger σ. For n beyond the
table, the knots of the largest designed n are interpolated linearly in (k / (n − 1), u), the way Align Your
Steps (Sabour et al. 2024) stretches its 10-step schedules.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .schedules import _append_zero, _check_range

__all__ = ["KNOTS", "DESIGNED_FOR", "rill_grid", "knots_for"]

DESIGNED_FOR = ("unipc", {"order": 3, "variant": "bh1"})  # the solver the knots were optimised for
# n -> (u_1, …, u_{n−1}) as printed by benchmarks/design_grid.py (σ range 0.002–80 during the design; the
# commands are listed in docs/samplers.md)
KNOTS: dict[int, tuple[float, ...]] = {
    1: (),
    2: (0.4159,),
    3: (0.3331, 0.5060),
    4: (0.2969, 0.4226, 0.5360),
    5: (0.2963, 0.3989, 0.4990, 0.5812),
    6: (0.2676, 0.3815, 0.4572, 0.5385, 0.6084),
    7: (0.2688, 0.3827, 0.4571, 0.5451, 0.6042, 0.6672),
    8: (0.2240, 0.3466, 0.4106, 0.4933, 0.5846, 0.6225, 0.6928),
    9: (0.2651, 0.3850, 0.4078, 0.4613, 0.4815, 0.5792, 0.6078, 0.6850),
    10: (0.1738, 0.3383, 0.3751, 0.4186, 0.4508, 0.5128, 0.5898, 0.6238, 0.6984),
}


def knots_for(n: int) -> np.ndarray:
    """Knots u_0 = 0, u_1, …, u_{n−1} of an n-step grid: the table row, or the largest row interpolated."""
    if n in KNOTS:
        return np.array([0.0, *KNOTS[n]])
    big = max(KNOTS)
    ref = np.array([0.0, *KNOTS[big]])
    return np.interp(np.linspace(0, 1, n), np.linspace(0, 1, big), ref)


def rill_grid(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0) -> Tensor:
    """rill's designed grid of n steps: σ_k = σ_max·(σ_min/σ_max)^{u_k}, then 0 (float64, length n + 1)."""
    _check_range(n, sigma_min, sigma_max)
    u = torch.from_numpy(knots_for(int(n)))
    return _append_zero(sigma_max * (sigma_min / sigma_max) ** u)
