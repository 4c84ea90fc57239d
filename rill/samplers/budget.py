"""rill.sample(): a budget of denoiser calls → a sampler, a σ grid, and the clean sample.

`nfe` counts denoiser calls (network evaluations), the cost that matters; each sampler's INFO[name].nfe says
how many calls n steps take, and the largest n that fits the budget is used. sampler="auto" picks rill's best
sampler and grid for the budget from the table AUTO below, which was decided from the benchmark in
benchmarks/results/samplers.md (`python -m benchmarks.samplers`).
"""

from __future__ import annotations

from torch import Tensor

from ..core.checks import check_positive_int
from ..core.grids import make_grid
from ..core.sigma import SIGMA_MAX, SIGMA_MIN, check_sigma_range
from .registry import INFO, get_sampler

__all__ = ["AUTO", "AUTO_GUIDED", "DEFAULT_GRID", "sample", "sigmas_for", "steps_for", "resolve"]

# nfe ≥ key → (sampler, options, grid), chosen from benchmarks/results/samplers.md and, on trained nets,
# benchmarks/results/design_samplers_nets.md (docs/samplers.md says why). From 12 calls the grid blends in the
# Karras grid (rill.core.designed_grid.NET_KARRAS_SHARE) and UniPC-2 bh2 beats the third-order bh1 predictor
# on the 32×32 nets (design nets; held out: the bundled shapes, digits and emoji models).
AUTO: dict[int, tuple[str, dict, str]] = {
    1: ("unipc", {"order": 3, "variant": "bh1"}, "rill-nets"),
    12: ("unipc", {"order": 2, "variant": "bh2"}, "rill-nets"),
    45: ("unipc", {"order": 3}, "karras"),
}
# with classifier-free guidance (w != 1): UniPC-2 bh2 on the same grid. The guided ODE is stiffer and the
# third-order bh1 predictor overshoots at few steps (shapes w = 3, 5 calls: 0.341 -> 0.162 px, adherence
# 19% -> 100%; held-out nets agree: benchmarks/results/auto_guided.md). Unguided nets and mixtures keep AUTO.
AUTO_GUIDED: dict[int, tuple[str, dict, str]] = {
    1: ("unipc", {"order": 2, "variant": "bh2"}, "rill-nets"),
    45: AUTO[45],
}
DEFAULT_GRID = "karras"  # grid for an explicitly named sampler when grid=None


def _check_nfe(nfe: int) -> int:
    return check_positive_int("nfe (the number of denoiser calls)", nfe)


def resolve(
    sampler: str,
    nfe: int,
    grid: str | Tensor | None = None,
    options: dict | None = None,
    guided: bool = False,
) -> tuple[str, dict, str | Tensor]:
    """(sampler name, options, grid) that rill.sample will use; "auto" is looked up by budget in AUTO, or in
    AUTO_GUIDED when the denoiser is guided (classifier-free guidance with w != 1)."""
    _check_nfe(nfe)
    options = dict(options or {})
    if sampler == "auto":
        table = AUTO_GUIDED if guided else AUTO
        name, auto_opts, auto_grid = table[max(k for k in table if k <= nfe)]
        return name, {**auto_opts, **options}, auto_grid if grid is None else grid
    get_sampler(sampler)  # unknown name → ValueError with suggestions
    return sampler, options, DEFAULT_GRID if grid is None else grid


def steps_for(sampler: str, nfe: int, options: dict | None = None) -> int:
    """The largest number of steps n with INFO[sampler].nfe(n) <= nfe (ValueError if one step is too many)."""
    _check_nfe(nfe)
    get_sampler(sampler)
    info, options = INFO[sampler], options or {}
    if info.nfe(1, options) > nfe:
        raise ValueError(
            f"sampler {sampler!r} needs at least {info.nfe(1, options)} denoiser calls "
            f"(one step with options {options}); nfe={nfe} is too small"
        )
    n = 1
    while n < nfe and info.nfe(n + 1, options) <= nfe:  # every sampler makes >= 1 call per step
        n += 1
    return n


def sigmas_for(
    sampler: str,
    nfe: int,
    sigma_min: float = SIGMA_MIN,
    sigma_max: float = SIGMA_MAX,
    grid: str | Tensor | None = None,
    **options,
) -> Tensor:
    """The σ grid (float64, ending in 0) that `sample` runs for this sampler and budget.

    grid: a name known to rill.core.grids.make_grid ("karras", "exponential", "rill", …), None for the default
    (the AUTO table's grid for sampler="auto", else DEFAULT_GRID), or an explicit decreasing σ tensor ending
    in 0 (its length then fixes the number of steps, which must fit the budget).
    """
    name, options, grid = resolve(sampler, nfe, grid, options)
    if isinstance(grid, Tensor):
        steps = grid.numel() - 1
        need = INFO[name].nfe(steps, options)
        if need > nfe:
            raise ValueError(
                f"the given grid has {steps} steps, which cost {need} denoiser calls with {name!r}; "
                f"nfe={nfe} allows fewer"
            )
        return grid.detach().to("cpu").double()
    return make_grid(grid, steps_for(name, nfe, options), sigma_min, sigma_max)


def sample(
    denoiser,
    noise: Tensor,
    *,
    nfe: int,
    sampler: str = "auto",
    sigma_min: float = SIGMA_MIN,
    sigma_max: float = SIGMA_MAX,
    grid: str | Tensor | None = None,
    cond=None,
    generator=None,
    callback=None,
    start: Tensor | None = None,
    sigma_start: float | None = None,
    guided: bool = False,
    **options,
) -> Tensor:
    """Generate clean samples (σ = 0) from standard-normal `noise` with at most `nfe` denoiser calls.

    The walk starts at the grid's first σ (σ_max for every named grid) from x = start + σ·noise (start = 0:
    pure noise). To begin part-way down, as image-to-image does, pass `start` (the clean image the walk sets
    out from, shaped like noise) and `sigma_start` in (σ_min, σ_max]: the grid then runs from sigma_start to
    sigma_min and the whole budget is spent on that remaining part.
    guided=True tells sampler="auto" that the denoiser applies classifier-free guidance (it then uses
    AUTO_GUIDED). `options` go to the sampler (e.g. eta=…, order=…); see
    rill.samplers.INFO for each sampler's cost and order.
    """
    if not isinstance(noise, Tensor) or not noise.is_floating_point():
        raise ValueError(
            f"noise must be a floating-point tensor of standard normal values, got {type(noise)}"
        )
    sigma_min, sigma_max = check_sigma_range(sigma_min, sigma_max)
    if sigma_start is not None:
        if not sigma_min < float(sigma_start) <= sigma_max:
            raise ValueError(
                f"sigma_start={sigma_start} must lie in (sigma_min, sigma_max] = "
                f"({sigma_min:g}, {sigma_max:g}]"
            )
        sigma_max = float(sigma_start)
    if start is not None and tuple(start.shape) != tuple(noise.shape):
        raise ValueError(f"start has shape {tuple(start.shape)}, noise {tuple(noise.shape)}: they must match")
    name, options, grid_spec = resolve(sampler, nfe, grid, options, guided)
    sigmas = sigmas_for(name, nfe, sigma_min, sigma_max, grid_spec, **options)
    x = noise * float(sigmas[0])
    if start is not None:
        x = start.to(x.dtype) + x
    return get_sampler(name)(
        denoiser, x, sigmas, cond=cond, generator=generator, callback=callback, **options
    )
