"""rill's designed σ grid: step locations optimised for few-step sampling (make_grid("rill", n, …)).

A grid of n steps has n nonzero noise levels σ_0 = σ_max > σ_1 > … > σ_{n−1}, then 0. They are stored as knots
in normalised log σ,
    u_k = log(σ_max / σ_k) / log(σ_max / σ_min) ∈ [0, 1]        (u_0 = 0),
so the same table serves any σ range. The knots were found by benchmarks/design_grid.py (regenerate with
`python -m benchmarks.design_grid --steps …`): for each n they minimise the RMS endpoint error of DESIGNED_FOR
against the exact probability-flow ODE solution, pooled over a training family of random Gaussian mixtures
that the sampler benchmark never uses; the derivation is in docs/samplers.md. The last knot may stop short of
σ_min (u < 1) where that lowers the error: the final call then denoises from a larger σ. For an n between
rows, the two neighbouring rows are resampled to n knots (linearly in (k / (n − 1), u), the way Align Your
Steps (Sabour et al. 2024) stretches its 10-step schedules) and blended; beyond the table the largest row is
stretched.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .sigma import SIGMA_MAX, SIGMA_MIN, append_zero, check_grid_args, karras_ramp

__all__ = ["KNOTS", "DESIGNED_FOR", "NET_ROWS", "NET_KARRAS_SHARE", "rill_grid", "rill_nets_grid",
           "knots_for", "net_knots_for", "karras_knots", "resample_row"]  # fmt: skip

DESIGNED_FOR = ("unipc", {"order": 3, "variant": "bh1"})  # the solver the knots were optimised for
# n -> (u_1, …, u_{n−1}) as printed by benchmarks/design_grid.py (σ range 0.002–80 during the design; the
# commands are listed in docs/samplers.md)
# fmt: off
KNOTS: dict[int, tuple[float, ...]] = {
    1: (),
    2: (0.4168,),
    3: (0.3203, 0.4998),
    4: (0.3056, 0.4103, 0.5297),
    5: (0.2856, 0.3869, 0.4916, 0.5783),
    6: (0.2789, 0.3687, 0.4531, 0.5369, 0.6062),
    7: (0.1972, 0.3176, 0.3750, 0.4805, 0.5656, 0.6267),
    8: (0.1833, 0.3129, 0.3500, 0.4222, 0.5126, 0.5939, 0.6448),
    9: (0.1189, 0.2788, 0.3385, 0.4002, 0.4872, 0.5843, 0.6192, 0.6885),
    10: (0.1569, 0.2867, 0.3340, 0.3738, 0.4233, 0.4819, 0.5778, 0.6106, 0.6833),
    15: (
        0.0983, 0.2124, 0.2983, 0.3231, 0.3668, 0.3928, 0.4343, 0.4419, 0.4905, 0.5319,
        0.6073, 0.6269, 0.6731, 0.7295,
    ),
    20: (
        0.0655, 0.2191, 0.2978, 0.3303, 0.3614, 0.3892, 0.4142, 0.4406, 0.4468, 0.4751,
        0.4942, 0.5255, 0.5564, 0.5860, 0.6263, 0.6677, 0.7055, 0.7574, 0.8016,
    ),
}
# fmt: on


def resample_row(knots: tuple[float, ...], n: int) -> np.ndarray:
    """A knot row (u_1, …) resampled to n knots u_0 = 0, …, u_{n−1}, linearly in (k / (n − 1), u)."""
    ref = np.array([0.0, *knots])
    return np.interp(np.linspace(0, 1, n), np.linspace(0, 1, len(ref)), ref)


def knots_for(n: int) -> np.ndarray:
    """Knots u_0 = 0, u_1, …, u_{n−1} of an n-step grid: the table row if there is one; between rows a < n < b
    rows a and b resampled to n knots and blended with weight (n − a)/(b − a) on b; beyond the table, the
    largest row stretched (on the training family the blend beat either neighbour alone: docs/samplers.md)."""
    if n in KNOTS:
        return np.array([0.0, *KNOTS[n]])
    larger = [m for m in KNOTS if m > n]
    if not larger:
        return resample_row(KNOTS[max(KNOTS)], n)
    a, b = max(m for m in KNOTS if m < n), min(larger)
    w = (n - a) / (b - a)
    return (1 - w) * resample_row(KNOTS[a], n) + w * resample_row(KNOTS[b], n)


# The "rill-nets" grid (sampler auto's): the same table, except that on trained networks these budgets use
# the row of a smaller n stretched to n knots (n -> the row used): row 6 for 7–9 (chosen on the bundled digits
# model, w = 3) and row 8 from 12 on (chosen on design nets, session 10; docs/samplers.md has the numbers).
NET_ROWS: dict[int, int] = {7: 6, 8: 6, 9: 6, **{n: 8 for n in range(12, 45)}}
# n >= key -> share s of the Karras grid (ρ = 7) in the rill-nets knots, u = (1 − s)·u_rill + s·u_karras. The
# mixture-designed rows stop short of σ_min and bunch their steps mid-range; on trained 32×32 nets that costs
# detail from about 10 calls on (bundled shapes, w = 1, 20 calls: 0.110 px; DPM++ 2M Karras: 0.015).
# Chosen on design nets the benchmark never judges (benchmarks/results/design_samplers_nets.md), kept small
# enough that auto stays monotone on the exact mixture, where a larger share costs accuracy.
NET_KARRAS_SHARE: dict[int, float] = {1: 0.0, 12: 0.25, 20: 0.375, 25: 0.5}


def karras_knots(
    n: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, rho: float = 7.0
) -> np.ndarray:
    """EDM's grid (rill.core.grids.karras) as knots u_0 = 0, …, u_{n−1} = 1 in normalised log σ."""
    sig = karras_ramp(np.linspace(0, 1, n) if n > 1 else np.zeros(1), sigma_min, sigma_max, rho)
    return np.log(sigma_max / sig) / np.log(sigma_max / sigma_min)


def net_knots_for(
    n: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, karras_share: float | None = None
) -> np.ndarray:
    """Knots of the "rill-nets" grid: NET_ROWS' row stretched where listed, else knots_for(n), blended with
    the Karras knots by karras_share (default: NET_KARRAS_SHARE for this n)."""
    u = resample_row(KNOTS[NET_ROWS[n]], n) if n in NET_ROWS else knots_for(n)
    if karras_share is None:
        karras_share = NET_KARRAS_SHARE[max(k for k in NET_KARRAS_SHARE if k <= n)]
    if not 0.0 <= karras_share <= 1.0:
        raise ValueError(f"karras_share must lie in [0, 1] (0: rill's knots, 1: Karras), got {karras_share}")
    if karras_share == 0.0:
        return u
    return (1 - karras_share) * u + karras_share * karras_knots(n, sigma_min, sigma_max)


def _grid(u: np.ndarray, sigma_min: float, sigma_max: float) -> Tensor:
    return append_zero(sigma_max * (sigma_min / sigma_max) ** torch.from_numpy(u))


def rill_nets_grid(
    n: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, karras_share: float | None = None
) -> Tensor:
    """The grid sampler auto uses on trained networks (NET_ROWS, NET_KARRAS_SHARE), float64, length n + 1."""
    check_grid_args(n, sigma_min, sigma_max)
    return _grid(net_knots_for(int(n), sigma_min, sigma_max, karras_share), sigma_min, sigma_max)


def rill_grid(n: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX) -> Tensor:
    """rill's designed grid of n steps: σ_k = σ_max·(σ_min/σ_max)^{u_k}, then 0 (float64, length n + 1)."""
    check_grid_args(n, sigma_min, sigma_max)
    return _grid(knots_for(int(n)), sigma_min, sigma_max)
