"""Design rill's σ grid (rill/grids.py): optimise step locations on a training family of Gaussian mixtures.

    python -m benchmarks.design_grid --steps 2 3 4 5 6    # prints the knots to paste into rill/grids.py

Method: an n-step grid has the nonzero levels σ_k = σ_max·(σ_min/σ_max)^{u_k}, u_0 = 0 < u_1 < … < u_{n−1} ≤ 1
("normalised log σ"). The knots u_k minimise the RMS endpoint error of the solver against the exact
probability-flow ODE solution (benchmarks.samplers.exact_endpoint), pooled over a training family of
random mixtures: six whose dims and std ranges differ from the benchmark's, plus six drawn like the
benchmark's (d = 2 / 64, 8 components, stds 0.03–0.25) from other seeds — a train/test split: the
benchmark's mixtures (seed 0) and noise are never seen. Derivation and results: docs/samplers.md.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
from scipy.optimize import minimize

from benchmarks.samplers import FastMixtureDenoiser, exact_endpoint
from rill.core.designed_grid import resample_row
from rill.core.grids import karras
from rill.core.mixture import GaussianMixture
from rill.samplers import get_sampler

SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
MIN_GAP = 1e-3  # smallest knot spacing in u (σ ratio ≥ 1.01 between steps on the 0.002–80 range)
# (dim, components, std range, seed, scale of the means): the training family
FAMILY = [
    (4, 6, (0.02, 0.20), 101, 1.0),
    (16, 10, (0.05, 0.30), 102, 1.2),
    (32, 8, (0.04, 0.35), 103, 0.8),
    (48, 12, (0.02, 0.15), 104, 1.0),
    (96, 6, (0.05, 0.20), 105, 1.1),
    (128, 10, (0.03, 0.30), 106, 0.9),
    # drawn like the benchmark's mixtures, other seeds (the benchmark uses seed 0)
    *[(64, 8, (0.03, 0.25), s, 1.0) for s in (201, 202, 203, 204)],
    *[(2, 8, (0.03, 0.25), s, 1.0) for s in (205, 206)],
]


def training_data(
    samples: int = 512, seed: int = 7
) -> list[tuple[GaussianMixture, torch.Tensor, torch.Tensor]]:
    """(mixture, starting noise at σ_max, exact endpoint) for every member of FAMILY."""
    g = torch.Generator().manual_seed(seed)
    data = []
    for dim, k, stds, s, scale in FAMILY:
        gm = FastMixtureDenoiser(GaussianMixture.random(dim, k, std_range=stds, seed=s, scale=scale))
        x = torch.randn(samples, dim, generator=g, dtype=torch.float64) * SIGMA_MAX
        if gm.check(x) > 1e-10:
            raise AssertionError("FastMixtureDenoiser disagrees with GaussianMixture.denoise")
        data.append((gm, x, exact_endpoint(gm.gm, x, SIGMA_MAX, SIGMA_MIN)))
    return data


def knots_from_params(theta: np.ndarray) -> np.ndarray:
    """Unconstrained θ (n values) → knots u_1 … u_{n−1}: softmax gives n positive gaps summing to 1; the last
    gap is the distance from u_{n−1} to 1 (σ_min), so the last knot may stop above σ_min."""
    gaps = np.exp(theta - theta.max())
    gaps = (gaps / gaps.sum() + MIN_GAP) / (1 + len(gaps) * MIN_GAP)  # keeps σ strictly decreasing
    return np.cumsum(gaps)[:-1]


def params_from_knots(u: np.ndarray) -> np.ndarray:
    gaps = np.diff(np.concatenate([[0.0], u, [1.0]])) * (1 + (len(u) + 1) * MIN_GAP) - MIN_GAP
    return np.log(np.maximum(gaps, 1e-9))


def grid_from_knots(
    u: np.ndarray, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX
) -> torch.Tensor:
    u = torch.as_tensor(np.concatenate([[0.0], u]), dtype=torch.float64)
    return torch.cat([sigma_max * (sigma_min / sigma_max) ** u, torch.zeros(1, dtype=torch.float64)])


def loss(u: np.ndarray, sampler: str, data, options: dict) -> float:
    """RMS endpoint error pooled over the family (mean of the per-mixture mean squared errors)."""
    fn = get_sampler(sampler)
    grid = grid_from_knots(u)
    mse = [float(((fn(gm, x, grid, **options) - ref) ** 2).mean()) for gm, x, ref in data]
    return math.sqrt(sum(mse) / len(mse))


def karras_knots(n: int, rho: float = 7.0) -> np.ndarray:
    s = karras(n, SIGMA_MIN, SIGMA_MAX, rho)[1:-1].numpy()
    return np.log(SIGMA_MAX / s) / math.log(SIGMA_MAX / SIGMA_MIN)


def stretch(knots: tuple[float, ...], n: int) -> np.ndarray:
    """An m-step knot row stretched to n steps (rill.grids.resample_row), without u_0."""
    return resample_row(knots, n)[1:]


def optimise(
    n: int, sampler: str, data, options: dict, starts: list[np.ndarray], maxfev: int = 600, restarts: int = 0
):
    """Powell's method (scipy; line searches, no gradients: the loss is rough where samples change mixture
    component) on θ from each start, then `restarts` more runs from the best point; returns (knots, loss)."""
    best_u, best = None, math.inf
    for u0 in [*starts, *([None] * restarts)]:
        res = minimize(
            lambda th: loss(knots_from_params(th), sampler, data, options),
            params_from_knots(best_u if u0 is None else u0),
            method="Powell",
            options={"maxfev": maxfev, "xtol": 1e-3, "ftol": 1e-6},
        )
        if res.fun < best:
            best_u, best = knots_from_params(res.x), float(res.fun)
    return best_u, best


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description="Optimise rill's σ grid knots (rill/grids.py) on a training family."
    )
    p.add_argument("--sampler", default="unipc")
    p.add_argument("--options", default='{"order": 3, "variant": "bh1"}', help="sampler options (JSON)")
    p.add_argument("--steps", type=int, nargs="+", default=list(range(2, 11)), help="grid sizes n to design")
    p.add_argument("--samples", type=int, default=512, help="noise draws per training mixture")
    p.add_argument("--evals", type=int, default=100, help="Powell evaluations per knot per start")
    p.add_argument("--restarts", type=int, default=0, help="extra Powell runs from the best point")
    p.add_argument(
        "--warm-from-table",
        action="store_true",
        help="also start from rill.grids.KNOTS rows: n, the largest stored n' < n and ⌈n/2⌉, stretched",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    options = json.loads(args.options)
    t0 = time.perf_counter()
    data = training_data(args.samples)
    print(f"# exact references for {len(data)} mixtures: {time.perf_counter() - t0:.0f} s", flush=True)
    table: dict[int, tuple[float, ...]] = {1: ()}
    for n in sorted(args.steps):
        starts = [karras_knots(n), np.linspace(0, 0.7, n)[1:]]
        if n - 1 in table and n > 2:  # warm start: the previous entry stretched to n knots
            starts.append(stretch(table[n - 1], n))
        if (
            args.warm_from_table
        ):  # refine the stored table (coarse-to-fine: also the half-size grid stretched)
            from rill.core.designed_grid import KNOTS

            smaller = [m for m in KNOTS if 1 < m < n]
            for m in {n, max(smaller, default=0), (n + 1) // 2} & set(KNOTS) - {1}:
                starts.append(np.array(KNOTS[m]) if m == n else stretch(KNOTS[m], n))
        u, err = optimise(n, args.sampler, data, options, starts, args.evals * (n - 1), args.restarts)
        table[n] = tuple(round(float(v), 4) for v in u)
        err_k = loss(karras_knots(n), args.sampler, data, options)
        print(
            f"# n={n}: training RMS {err:.4f} (Karras ρ=7: {err_k:.4f}), knots {table[n]}, "
            f"{time.perf_counter() - t0:.0f} s",
            flush=True,
        )
    print(f"DESIGNED_FOR = ({args.sampler!r}, {options!r})")
    print("KNOTS: dict[int, tuple[float, ...]] = {")
    for n, u in table.items():
        print(f"    {n}: ({', '.join(f'{v:.4f}' for v in u)}{',' if len(u) == 1 else ''}),")
    print("}")


if __name__ == "__main__":
    main()
